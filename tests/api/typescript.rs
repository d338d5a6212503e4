//! The TypeScript client library (`clients/typescript`): type-checked and built with
//! `tsc`, then its `node --test` suite — the published vectors, the size budget, the
//! served bundle, and flows against a real server of every backend (signed, so the
//! pinned-key tests run) — must pass with nothing skipped; then the README's "Protect your
//! API" example (examples/gateway: the orders service, the gateway, the Node client) runs
//! as written.

use crate::helpers::signing_key;
use crate::support::*;

pub(crate) fn node(
    dir: &std::path::Path,
    args: &[&str],
    envs: &[(&str, String)],
) -> (bool, String) {
    let out = std::process::Command::new("node")
        .args(args)
        .current_dir(dir)
        .envs(envs.iter().map(|(k, v)| (*k, v.as_str())))
        .output()
        .expect("node is installed (scripts/test.sh installs it)");
    let text = format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[tokio::test(flavor = "multi_thread")]
async fn the_typescript_library_passes_its_suite_against_every_backend() {
    let dir = std::path::Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../clients/typescript"
    ));
    assert!(
        dir.join("node_modules/typescript").exists(),
        "run `npm ci --prefix clients/typescript` (scripts/test.sh does)"
    );
    let (ok, out) = node(
        dir,
        &["node_modules/typescript/bin/tsc", "-p", "tsconfig.json"],
        &[],
    );
    assert!(ok, "tsc: {out}");
    // Every server is also a gateway to a Python echo service (test/gateway.test.mjs).
    let (servers, python) = signed_gateways("typescript");
    let urls = server_urls(&servers);
    let dir_owned = dir.to_owned();
    let (ok, out) = tokio::task::spawn_blocking(move || {
        node(&dir_owned, &["--test", "test/"], &[("SERVER_URLS", urls)])
    })
    .await
    .unwrap();
    assert!(ok, "{out}");
    assert!(
        out.contains("# fail 0") && out.contains("# skipped 0"),
        "{out}"
    );
    let passed: usize = out
        .lines()
        .find_map(|l| l.strip_prefix("# pass "))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(0);
    assert!(passed >= 4 + 2 * backends().len() + 3, "{out}");
    assert!(out.contains("bytes minified + gzipped"), "{out}");
    drop(python);

    // The README's "Protect your API" example, as written: the orders service, the
    // gateway in front of it, and the Node client.
    let orders = OrdersBehindGateway::start();
    let url = orders.gateway.url.clone();
    let example = dir.join("../../examples/gateway/client.mjs");
    let (ok, out) = tokio::task::spawn_blocking(move || {
        node(
            std::path::Path::new("."),
            &[example.to_str().unwrap(), &url],
            &[],
        )
    })
    .await
    .unwrap();
    drop(orders);
    assert_orders_example(ok, &out);
}

/// One server per crypto backend, each signing its init answers with one key and each a
/// gateway to a Python echo service (returned too: it lives as long as they do).
pub(crate) fn signed_gateways(name: &str) -> (Vec<Server>, upstream::PythonUpstream) {
    let key = signing_key(name);
    let file = key.private.to_str().unwrap().to_owned();
    let echo = upstream::PythonUpstream::start();
    let servers = backends()
        .into_iter()
        .map(|crypto| {
            Server::start_with(
                crypto,
                &[
                    ("SERVER_SIGNING_KEY_FILE", &file),
                    ("GATEWAY_UPSTREAM", &echo.url),
                ],
            )
        })
        .collect();
    (servers, echo)
}

/// `SERVER_URLS` for a client library's suite: `backend=url,…`.
pub(crate) fn server_urls(servers: &[Server]) -> String {
    servers
        .iter()
        .map(|s| format!("{}={}", s.crypto.name, s.url))
        .collect::<Vec<_>>()
        .join(",")
}

/// The example orders service (examples/gateway/orders.py) and a gateway in front of it.
pub(crate) struct OrdersBehindGateway {
    service: std::process::Child,
    pub(crate) gateway: Server,
}

impl OrdersBehindGateway {
    pub(crate) fn start() -> Self {
        let mut service = std::process::Command::new("python3")
            .arg(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/../examples/gateway/orders.py"
            ))
            .arg("0")
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("python3");
        let mut line = String::new();
        std::io::BufRead::read_line(
            &mut std::io::BufReader::new(service.stdout.take().unwrap()),
            &mut line,
        )
        .unwrap();
        let upstream = line.trim().rsplit(' ').next().unwrap().to_owned();
        let gateway = Server::start(&[("GATEWAY_UPSTREAM", &upstream)]);
        Self { service, gateway }
    }
}

impl Drop for OrdersBehindGateway {
    fn drop(&mut self) {
        let _ = self.service.kill();
        let _ = self.service.wait();
    }
}

/// What examples/gateway/client.mjs prints against the orders service.
pub(crate) fn assert_orders_example(ok: bool, out: &str) {
    assert!(ok, "{out}");
    let lines: Vec<&str> = out.lines().filter(|l| !l.trim().is_empty()).collect();
    assert!(
        lines[0].starts_with("201 { id: '1', item: 'book', qty: 2, owner: 'shop-web' }"),
        "{out}"
    );
    assert!(lines[1].starts_with("200 [ { id: '1'"), "{out}");
    assert!(
        lines[2].starts_with("404 { error: 'no such order' }"),
        "{out}"
    );
    assert_eq!(lines[3], "204", "{out}");
}

//! The client libraries as their users get them: packed the way each ecosystem
//! publishes, installed into a fresh project, type-checked, and run against a real server
//! (the example orders service behind a gateway).

use crate::support::services::temp_dir;
use crate::typescript::{OrdersBehindGateway, assert_orders_example, node};

fn run(dir: &std::path::Path, program: &str, args: &[&str]) -> String {
    let out = std::process::Command::new(program)
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap_or_else(|e| panic!("{program}: {e}"));
    let text = format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{program} {args:?}: {text}");
    text
}

/// `npm pack` (which builds), then `npm install` of the tarball into a fresh project: the
/// package holds what it promises (ESM, types, LICENSE files, changelog), its types
/// check under `tsc --strict` with Node's module resolution, and the gateway example
/// runs from it.
#[tokio::test(flavor = "multi_thread")]
async fn the_packed_typescript_library_installs_and_runs_in_a_fresh_project() {
    let lib = std::path::Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../clients/typescript"
    ));
    // Packed from a copy (its own dist/, built by prepack), so that the other tests'
    // builds of clients/typescript/dist are left alone.
    let copy = temp_dir("npm-package");
    for entry in std::fs::read_dir(lib).unwrap() {
        let path = entry.unwrap().path();
        match path.file_name().unwrap().to_str().unwrap() {
            "node_modules" => {
                std::os::unix::fs::symlink(&path, copy.join("node_modules")).unwrap();
            }
            "dist" => {}
            _ => {
                run(
                    lib,
                    "cp",
                    &["-r", path.to_str().unwrap(), copy.to_str().unwrap()],
                );
            }
        }
    }
    let packs = temp_dir("npm-pack");
    let packed = run(
        &copy,
        "npm",
        &["pack", "--pack-destination", packs.to_str().unwrap()],
    );
    for file in [
        "dist/index.js",
        "dist/index.d.ts",
        "LICENSE-MIT",
        "LICENSE-APACHE",
        "CHANGELOG.md",
        "README.md",
    ] {
        assert!(packed.contains(file), "{file} not packed: {packed}");
    }
    assert!(
        !packed.contains("src/"),
        "sources are not shipped: {packed}"
    );
    let tarball = std::fs::read_dir(&packs)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|x| x == "tgz"))
        .expect("a tarball");

    let app = temp_dir("npm-consumer");
    std::fs::write(
        app.join("package.json"),
        r#"{"name":"consumer","private":true,"type":"module"}"#,
    )
    .unwrap();
    run(
        &app,
        "npm",
        &[
            "install",
            "--no-audit",
            "--no-fund",
            tarball.to_str().unwrap(),
        ],
    );
    // The gateway example, importing the package by name.
    let example = std::fs::read_to_string(lib.join("../../examples/gateway/client.mjs"))
        .unwrap()
        .replace(
            "'../../clients/typescript/dist/index.js'",
            "'session-crypto-client'",
        );
    assert!(example.contains("from 'session-crypto-client'"));
    std::fs::write(app.join("client.mjs"), example).unwrap();
    std::fs::write(
        app.join("consumer.ts"),
        r#"import { SessionCrypto, ServerRefusedError, TimeoutError, type SealedRequestInit } from 'session-crypto-client';
const init: SealedRequestInit = { method: 'POST', body: { item: 'book' }, timeoutMs: 1000, headers: new Headers() };
export async function status(baseUrl: string): Promise<number> {
  const s = await SessionCrypto.connect({ baseUrl, clientId: 'typed', serverKey: ['-----BEGIN PUBLIC KEY-----'] });
  try {
    return (await s.fetch('/api/orders', init)).status;
  } catch (e) {
    if (e instanceof ServerRefusedError || e instanceof TimeoutError) return 0;
    throw e;
  }
}
"#,
    )
    .unwrap();
    let tsc = lib.join("node_modules/typescript/bin/tsc");
    let (ok, out) = node(
        &app,
        &[
            tsc.to_str().unwrap(),
            "--noEmit",
            "--strict",
            "--module",
            "nodenext",
            "--moduleResolution",
            "nodenext",
            "--target",
            "es2022",
            "--lib",
            "es2022,dom",
            "consumer.ts",
        ],
        &[],
    );
    assert!(ok, "the package's types: {out}");

    let orders = OrdersBehindGateway::start();
    let url = orders.gateway.url.clone();
    let (ok, out) = tokio::task::spawn_blocking(move || node(&app, &["client.mjs", &url], &[]))
        .await
        .unwrap();
    drop(orders);
    assert_orders_example(ok, &out);
}

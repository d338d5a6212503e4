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
    let tarball = npm_pack(lib);
    let app = npm_project("consumer", &[tarball.to_str().unwrap()]);
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

/// `npm pack` of the TypeScript library (which builds it), from a copy so that the other
/// tests' builds of clients/typescript/dist are left alone; checks what the package
/// holds and returns the tarball.
fn npm_pack(lib: &std::path::Path) -> std::path::PathBuf {
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
    std::fs::read_dir(&packs)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|x| x == "tgz"))
        .expect("a tarball")
}

/// A fresh npm project (an ES module package) with `packages` installed.
fn npm_project(name: &str, packages: &[&str]) -> std::path::PathBuf {
    let app = temp_dir(&format!("npm-{name}"));
    std::fs::write(
        app.join("package.json"),
        format!(r#"{{"name":"{name}","private":true,"type":"module"}}"#),
    )
    .unwrap();
    let mut args = vec!["install", "--no-audit", "--no-fund", "--loglevel=error"];
    args.extend_from_slice(packages);
    run(&app, "npm", &args);
    app
}

/// The crates a Rust user needs, packed the way `cargo publish` packs them.
const CRATES: [&str; 4] = [
    "session-crypto-ports",
    "session-crypto-domain",
    "session-crypto-rustcrypto",
    "session-crypto-client",
];

/// `cargo package` of the client and the crates it shares with the server (verified:
/// each is built from its packed sources alone), then a `cargo new` project that
/// depends on `session-crypto-client = "0.1"` — the packed crates standing in for the
/// registry — builds and runs against the orders service behind a gateway.
#[tokio::test(flavor = "multi_thread")]
async fn the_packaged_rust_library_builds_and_runs_in_a_fresh_project() {
    let root = std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/.."));
    let mut args = vec!["package", "--allow-dirty"];
    for c in CRATES {
        args.extend(["-p", c]);
    }
    run(root, "cargo", &args);
    let packed = root.join("target/package");
    for c in CRATES {
        assert!(
            packed.join(format!("{c}-0.1.0.crate")).exists(),
            "{c} packed"
        );
    }
    let app = temp_dir("cargo-consumer");
    run(
        &app,
        "cargo",
        &["new", "--bin", "--vcs", "none", "consumer"],
    );
    let app = app.join("consumer");
    let mut manifest = std::fs::read_to_string(app.join("Cargo.toml")).unwrap();
    manifest.push_str(
        "session-crypto-client = \"0.1\"\nserde_json = \"1\"\n\
         tokio = { version = \"1\", features = [\"macros\", \"rt-multi-thread\"] }\n\n\
         [patch.crates-io]\n",
    );
    for c in CRATES {
        let dir = packed.join(format!("{c}-0.1.0"));
        manifest.push_str(&format!("{c} = {{ path = {:?} }}\n", dir.to_str().unwrap()));
    }
    std::fs::write(app.join("Cargo.toml"), manifest).unwrap();
    // The workspace's lock pins the same versions of everything else.
    std::fs::copy(root.join("Cargo.lock"), app.join("Cargo.lock")).unwrap();
    std::fs::write(
        app.join("src/main.rs"),
        r#"use session_crypto_client::{Error, Session};

#[tokio::main]
async fn main() -> Result<(), Error> {
    let url = std::env::args().nth(1).expect("the server's URL");
    let session = Session::connect(&url, "shop-rust").await?;
    let created = session
        .post("/api/orders")
        .json(&serde_json::json!({ "item": "book", "qty": 2 }))
        .send()
        .await?;
    let order: serde_json::Value = created.json()?;
    println!("{} {order}", created.status());
    let gone = session
        .delete(&format!("/api/orders/{}", order["id"].as_str().unwrap()))
        .send()
        .await?;
    println!("{}", gone.status());
    session.revoke().await
}
"#,
    )
    .unwrap();
    let target = root.join("target/consumer");
    let build = std::process::Command::new("cargo")
        .args(["build", "--quiet"])
        .env("CARGO_TARGET_DIR", &target)
        .current_dir(&app)
        .output()
        .unwrap();
    assert!(
        build.status.success(),
        "the consumer builds: {}",
        String::from_utf8_lossy(&build.stderr)
    );
    let orders = OrdersBehindGateway::start();
    let out = std::process::Command::new(target.join("debug/consumer"))
        .arg(&orders.gateway.url)
        .output()
        .unwrap();
    drop(orders);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines[0].starts_with("201 {"), "{text}");
    assert!(lines[0].contains(r#""owner":"shop-rust""#), "{text}");
    assert_eq!(lines[1], "204", "{text}");
}

/// A Vite app on its own origin, built with the packed library (`npm install` of the
/// tarball, `vite build`), runs a v2 session against the server in headless Chromium.
#[tokio::test(flavor = "multi_thread")]
async fn the_packed_typescript_library_in_a_vite_app_on_another_origin() {
    let lib = std::path::Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../clients/typescript"
    ));
    let tarball = npm_pack(lib);
    let server = crate::support::Server::start(&[]);
    let app = npm_project("spa", &["vite@8", tarball.to_str().unwrap()]);
    std::fs::write(
        app.join("index.html"),
        "<!doctype html><meta charset=\"utf-8\"><title>SPA</title>\n<script type=\"module\" src=\"/main.js\"></script>\n",
    )
    .unwrap();
    std::fs::write(
        app.join("main.js"),
        format!(
            r#"import {{ SessionCrypto }} from 'session-crypto-client';
try {{
  const s = await SessionCrypto.connect({{ baseUrl: '{url}', clientId: 'VITE_SPA', timeoutMs: 10000 }});
  const res = await s.fetch('/transaction/purchase', {{ method: 'POST', body: {{ schemeCode: 'AEF', amount: 5000 }} }});
  const extractable = await Promise.all(s.cryptoKeys.map((k) => crypto.subtle.exportKey('raw', k).then(() => true, () => false)));
  window.result = {{ status: (await res.json()).status, protocol: s.protocol, extractable }};
  await s.revoke();
}} catch (e) {{
  window.result = {{ error: e.name + ': ' + e.message }};
}}
"#,
            url = server.url
        ),
    )
    .unwrap();
    run(&app, "npx", &["vite", "build", "--logLevel", "warn"]);
    let dist = app.join("dist");
    let script = lib.join("../../tests/browser/built-page.mjs");
    let chromium = std::env::var("CHROMIUM_PATH").unwrap_or_else(|_| "/usr/bin/chromium".into());
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new("node")
            .arg(script)
            .arg(dist)
            .env("CHROMIUM_PATH", chromium)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let page: serde_json::Value = serde_json::from_str(text.trim()).unwrap();
    assert_eq!(page["status"], "SUCCESS", "{page}");
    assert_eq!(page["protocol"], 2, "{page}");
    assert_eq!(
        page["extractable"],
        serde_json::json!([false, false]),
        "{page}"
    );
    assert_eq!(page["problems"], serde_json::json!([]), "{page}");
}

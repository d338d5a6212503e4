//! The browser demo driven in headless Chromium, and the client library cross-origin.

use crate::support::*;

/// Runs `script` (in tests/browser) with `args` in headless Chromium and returns what
/// it printed: the page's state as JSON. The scripts wait at most 30 s for the page.
async fn run_in_chromium(script: &str, args: Vec<String>) -> serde_json::Value {
    let dir = std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/browser"));
    assert!(
        dir.join("node_modules/playwright-core").exists(),
        "playwright-core is missing: run `npm ci --prefix tests/browser` (scripts/test.sh does)"
    );
    let chromium = std::env::var("CHROMIUM_PATH").unwrap_or_else(|_| "/usr/bin/chromium".into());
    assert!(
        std::path::Path::new(&chromium).exists(),
        "{chromium} is missing: apt-get install chromium (scripts/test.sh does)"
    );
    let script = dir.join(script);
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new("node")
            .arg(script)
            .args(args)
            .env("CHROMIUM_PATH", &chromium)
            .output()
    })
    .await
    .unwrap()
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(stdout.trim()).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn browser_demo_runs_in_headless_chromium() {
    // Signed, so the page checks the signature against the published key too.
    let key = crate::helpers::signing_key("browser");
    let server = Server::start(&[("SERVER_SIGNING_KEY_FILE", key.private.to_str().unwrap())]);
    // The screenshot is kept as a test artefact.
    let shot = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("browser-demo.png");
    let _ = std::fs::remove_file(&shot);
    let args = vec![format!("{}/", server.url), shot.display().to_string()];
    let page = run_in_chromium("demo.mjs", args).await;
    assert_eq!(page["statusClass"], "ok", "{page}");
    let status = page["status"].as_str().unwrap();
    assert!(
        status.contains("protocol 2") && status.contains("keys confirmed"),
        "{status}"
    );
    assert_eq!(page["problems"], serde_json::json!([]), "{page}");
    let txn = page["transactionId"].as_str().unwrap();
    assert!(
        txn.len() == 20
            && txn.starts_with("TXN-")
            && txn[4..].bytes().all(|b| b.is_ascii_hexdigit()),
        "decrypted transaction id shown: {txn:?}"
    );
    let response: serde_json::Value =
        serde_json::from_str(page["response"].as_str().unwrap()).unwrap();
    assert_eq!(response["status"], "SUCCESS");
    assert_eq!(response["amount"], 5000);
    let steps: Vec<&str> = page["timings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|row| row[0].as_str().unwrap().trim())
        .collect();
    // The library's steps, its two round trips and the server's own steps.
    for step in [
        "SessionCrypto.connect",
        "POST /session/init",
        "ecdh-compute",
        "session.fetch",
        "POST /transaction/purchase",
        "aes-gcm-decrypt",
        "total",
    ] {
        assert!(
            steps.contains(&step),
            "timing row {step:?} missing: {steps:?}"
        );
    }
    // Both session keys exist in the page and neither can be exported.
    assert_eq!(
        page["exportable"],
        serde_json::json!({"count": 2, "exported": 0, "extractable": [false, false]}),
        "{page}"
    );
    let png = std::fs::read(&shot).expect("screenshot saved");
    assert!(png.starts_with(b"\x89PNG"), "screenshot is a PNG");
}

/// The client library on a page of another origin, against the server: CORS as an SPA
/// on its own domain needs it (docs: README, CORS; clients/typescript/README.md).
#[tokio::test(flavor = "multi_thread")]
async fn the_client_library_works_cross_origin_in_headless_chromium() {
    let server = Server::start(&[]);
    let page = run_in_chromium("cross-origin.mjs", vec![server.url.clone()]).await;
    assert_eq!(page["status"], "SUCCESS", "{page}");
    assert_eq!(page["protocol"], 2);
    // X-Request-Id was allowed by the preflight, honoured and exposed.
    assert_eq!(page["requestId"], "spa-request-1", "{page}");
    // Timing-Allow-Origin: the server's steps are visible to the page.
    let steps = page["serverTiming"]
        .as_array()
        .expect("a resource timing entry");
    assert!(steps.iter().any(|s| s == "aes-gcm-decrypt"), "{page}");
    assert_eq!(page["problems"], serde_json::json!([]), "{page}");
}

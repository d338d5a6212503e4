//! Calls a session-crypto server: a v2 session (server key pinned when given), one
//! encrypted purchase, then the session is revoked.
//!
//! ```sh
//! cargo run --release                                   # a server on 127.0.0.1:3000
//! cargo run -p session-crypto-client --example purchase
//! cargo run -p session-crypto-client --example purchase -- http://127.0.0.1:3000 server.pub.pem
//! ```

use session_crypto_client::{Error, Session};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    let mut args = std::env::args().skip(1);
    let url = args
        .next()
        .unwrap_or_else(|| "http://127.0.0.1:3000".into());
    let mut builder = Session::builder(&url, "RUST_EXAMPLE");
    if let Some(path) = args.next() {
        // The PEM `session-crypto keygen --signing` printed, or the `publicKey` of
        // GET /.well-known/session-crypto saved to a file.
        let text =
            std::fs::read_to_string(&path).map_err(|e| Error::Protocol(format!("{path}: {e}")))?;
        let key = session_crypto_client::parse_server_key(&text)
            .ok_or_else(|| Error::Protocol(format!("{path}: no P-256 public key")))?;
        builder = builder.pinned_key(key);
    }
    let session = builder.connect().await?;
    println!(
        "session {} (protocol {})",
        session.kid(),
        session.protocol().number()
    );

    let answer = session
        .send(
            "POST",
            "/transaction/purchase",
            br#"{"schemeCode":"AEF","amount":5000}"#,
        )
        .await?;
    println!("{}", answer.text()?);

    session.revoke().await?;
    println!("session revoked");
    Ok(())
}

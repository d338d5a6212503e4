//! `session-crypto client`: one init + one purchase with a timing table.

use std::time::Duration;

use ports::{CryptoProvider, P256PublicKey, Protocol};
use session_crypto_client::{Endpoint, InitRoute, ProtocolClient, StepTimings};

use crate::args::ClientArgs;

fn ms(d: Duration) -> String {
    format!("{:>9.3} ms", d.as_secs_f64() * 1e3)
}

fn print_step(title: &str, t: &StepTimings, crypto_before_http: usize) {
    println!("{title}");
    for (i, (name, d)) in t.crypto.iter().enumerate() {
        if i == crypto_before_http {
            println!("  http    {:<28}{}", "round trip", ms(t.http));
        }
        println!("  client  {name:<28}{}", ms(*d));
    }
    if t.crypto.len() <= crypto_before_http {
        println!("  http    {:<28}{}", "round trip", ms(t.http));
    }
    for (name, dur) in t.server_steps() {
        println!("  server  {name:<28}{:>9} ms", dur);
    }
}

/// The server endpoint for `url`; for `https`, with a TLS client that trusts
/// `ca_file` (or the system's CA bundle) and uses the rustls provider the backend list
/// gives the crypto backend.
///
/// # Errors
/// A bad URL, or TLS settings that cannot be built.
pub fn endpoint(
    url: &str,
    ca_file: Option<&std::path::Path>,
    crypto: CryptoProvider,
) -> Result<Endpoint, crate::Error> {
    let endpoint = Endpoint::parse(url)?;
    if !endpoint.is_https() {
        if ca_file.is_some() {
            return Err("--ca-file only applies to https:// URLs".into());
        }
        return Ok(endpoint);
    }
    let (provider, _) = crypto_backends::tls_provider(crypto.name).ok_or_else(|| {
        format!(
            "https:// needs a rustls provider, and this build has none for the {} backend: {}",
            crypto.name,
            crypto_backends::tls_advice()
        )
    })?;
    let tls = session_crypto_client::tls::client_config(provider, ca_file)
        .map_err(|e| format!("{e} (--ca-file)"))?;
    Ok(endpoint.with_tls(tls))
}

/// The protocol version of `--protocol` (the argument parser allows 1 and 2 only).
pub fn protocol(number: u8) -> Protocol {
    Protocol::from_number(number.into()).unwrap_or(Protocol::V2)
}

/// The server keys to pin from `--server-key-file`: one or more (during a rotation,
/// the current and the next key).
///
/// # Errors
/// An unreadable file, or a file with no P-256 public key or an invalid one.
pub fn pinned_keys(path: Option<&std::path::Path>) -> Result<Vec<P256PublicKey>, crate::Error> {
    let Some(path) = path else {
        return Ok(Vec::new());
    };
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("--server-key-file {}: {e}", path.display()))?;
    session_crypto_client::parse_server_keys(&text).ok_or_else(|| {
        format!(
            "--server-key-file {}: expected P-256 public keys (SPKI PEM blocks or lines of \
             base64 of the point), and each must be valid",
            path.display()
        )
        .into()
    })
}

/// `session-crypto client`: runs one init and one purchase and prints what happened,
/// step by step.
///
/// # Errors
/// A message for the user.
pub async fn run(args: ClientArgs, crypto: CryptoProvider) -> Result<(), crate::Error> {
    let endpoint = endpoint(&args.url, args.ca_file.as_deref(), crypto)?;
    let pinned = pinned_keys(args.server_key_file.as_deref())?;
    let protocol = protocol(args.protocol);
    if !pinned.is_empty() && protocol != Protocol::V2 {
        return Err("--server-key-file needs --protocol 2".into());
    }
    let mut client = ProtocolClient::connect_to(&endpoint, crypto, &args.client_id)
        .await?
        .with_protocol(protocol)
        .with_unmarked_v1_answers(args.unmarked_v1_answers)
        .with_pinned_keys(pinned);
    let route = if args.v1 {
        InitRoute::V1
    } else {
        InitRoute::Unversioned
    };
    let (session, init) = client.init(route, None).await?;
    let scheme = serde_json::to_string(&args.scheme_code)
        .map_err(|e| crate::Error::Runtime(e.to_string()))?;
    let amount: serde_json::Number = args
        .amount
        .parse()
        .map_err(|_| format!("--amount {:?} is not a JSON number", args.amount))?;
    let payload = format!(r#"{{"schemeCode":{scheme},"amount":{amount}}}"#);
    let (answer, purchase) = client.purchase(&session, payload.as_bytes()).await?;

    println!(
        "session-crypto client → {} (protocol {}{}, crypto backend {}, client id {})",
        args.url,
        protocol.number(),
        match client.pinned_keys().len() {
            0 => String::new(),
            1 => ", server key pinned".to_owned(),
            n => format!(", {n} server keys pinned"),
        },
        crypto.name,
        args.client_id
    );
    println!();
    print_step(
        if args.v1 {
            "POST /v1/session/init"
        } else {
            "POST /session/init"
        },
        &init,
        1,
    );
    println!();
    print_step("POST /transaction/purchase", &purchase, 1);
    println!();
    let total: Duration = init
        .crypto
        .iter()
        .chain(&purchase.crypto)
        .map(|(_, d)| *d)
        .sum::<Duration>()
        + init.http
        + purchase.http;
    println!("total (client crypto + round trips){:>13}", ms(total));
    println!();
    println!("decrypted response: {}", String::from_utf8_lossy(&answer));
    Ok(())
}

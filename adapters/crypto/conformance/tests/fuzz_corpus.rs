//! Replays every committed fuzz seed (and any crash reproducer added later) through the
//! same functions the cargo-fuzz targets call, on stable, in the normal test run.

use std::path::PathBuf;

use crypto_conformance::fuzz;

fn replay(target: &str, f: fn(&[u8])) {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../../fuzz/corpus")
        .join(target);
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.unwrap().path();
        f(&std::fs::read(&path).unwrap());
        n += 1;
    }
    assert!(n > 0, "no seeds in {}", dir.display());
}

#[test]
fn decrypt_envelope_corpus() {
    replay("decrypt_envelope", fuzz::decrypt_envelope);
}

#[test]
fn idempotency_key_corpus() {
    replay("idempotency_key", fuzz::idempotency_key);
}

#[test]
fn init_request_corpus() {
    replay("init_request", fuzz::init_request);
}

#[test]
fn http_request_corpus() {
    replay("http_request", fuzz::http_request);
}

#[test]
fn gateway_forwarding_corpus() {
    replay("gateway_forwarding", fuzz::gateway_forwarding);
}

#[test]
fn the_vector_seed_really_opens() {
    // The seed corpus must reach the interesting path: the vector envelope opens under
    // the fixed session, so mutations start from a valid envelope.
    let seed = std::fs::read(
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../../../fuzz/corpus/decrypt_envelope/vector-request"),
    )
    .unwrap();
    let (key, client, body) = fuzz::split3(&seed).unwrap();
    let key = domain::IdempotencyKey::parse(std::str::from_utf8(key).unwrap()).unwrap();
    let aad = domain::Aad::new(
        key.timestamp_text(),
        key.nonce(),
        fuzz::KID,
        std::str::from_utf8(client).unwrap(),
    );
    let mut buf = body.to_vec();
    let plain = domain::open_envelope(
        fuzz::BACKENDS[0].aead,
        &ports::SessionKey::from_bytes(fuzz::SESSION_KEY),
        &aad,
        &mut buf,
    )
    .unwrap();
    assert_eq!(&*plain, br#"{"schemeCode":"AEF","amount":5000}"#);
}

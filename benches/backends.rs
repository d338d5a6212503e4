//! Criterion benches: every operation is one group with the three backends side by
//! side (`aws-lc-rs`, `ring`, `rustcrypto`), plus the server's whole init and purchase
//! steps on the memory stores — protocol v1 and v2 side by side — and the
//! backend-independent parsers.
//!
//! `cargo bench` runs all; `cargo bench -- ecdh` filters; `scripts/bench-summary.py`
//! turns criterion's saved estimates into the README table.

use std::hint::black_box;

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use domain::client::PURCHASE;
use domain::{Aad, ExchangeRequest, IdempotencyKey};
use ports::crypto::IV_LEN;
use ports::{CryptoProvider, Protocol, SessionKey};

#[path = "support.rs"]
mod support;
use support::{establish, fresh_key, init_request, now_ms, service};

static BACKENDS: std::sync::LazyLock<Vec<CryptoProvider>> =
    std::sync::LazyLock::new(crypto_backends::compiled);

fn keygen(c: &mut Criterion) {
    let mut g = c.benchmark_group("p256-keygen");
    for &p in BACKENDS.iter() {
        g.bench_function(p.name, |b| {
            b.iter(|| black_box(p.key_agreement.generate().unwrap()))
        });
    }
    g.finish();
}

fn ecdh(c: &mut Criterion) {
    let mut g = c.benchmark_group("ecdh");
    for &p in BACKENDS.iter() {
        let peer = p.key_agreement.generate().unwrap().public_key();
        g.bench_function(p.name, |b| {
            b.iter_batched(
                || p.key_agreement.generate().unwrap(),
                |kp| black_box(kp.agree(&peer).unwrap()),
                BatchSize::SmallInput,
            )
        });
    }
    g.finish();
}

fn hkdf(c: &mut Criterion) {
    let mut g = c.benchmark_group("hkdf-sha256-32");
    let z = [0x5a; 32];
    for &p in BACKENDS.iter() {
        g.bench_function(p.name, |b| {
            b.iter(|| {
                let mut out = [0u8; 32];
                p.hkdf
                    .derive(
                        b"S-000102030405060708090a0b0c0d0e0f",
                        &z,
                        &[b"SESSION|A256GCM|", b"NODE_CLIENT"],
                        &mut out,
                    )
                    .unwrap();
                black_box(out)
            })
        });
    }
    g.finish();
}

fn aead(c: &mut Criterion) {
    let key = SessionKey::from_bytes([7; 32]);
    let iv = [9u8; IV_LEN];
    let aad = b"1706700000000|123e4567-e89b-42d3-a456-426614174000|session:S-000102030405060708090a0b0c0d0e0f|NODE_CLIENT";
    for (label, size) in [("64B", 64usize), ("1KiB", 1024), ("16KiB", 16 * 1024)] {
        let mut seal = c.benchmark_group(format!("aes-256-gcm-seal/{label}"));
        seal.throughput(Throughput::Bytes(size as u64));
        for &p in BACKENDS.iter() {
            seal.bench_function(p.name, |b| {
                b.iter_batched(
                    || vec![0x42u8; size],
                    |mut buf| {
                        p.aead.seal(&key, &iv, aad, &mut buf).unwrap();
                        black_box(buf)
                    },
                    BatchSize::SmallInput,
                )
            });
        }
        seal.finish();
        let mut open = c.benchmark_group(format!("aes-256-gcm-open/{label}"));
        open.throughput(Throughput::Bytes(size as u64));
        for &p in BACKENDS.iter() {
            let mut sealed = vec![0x42u8; size];
            p.aead.seal(&key, &iv, aad, &mut sealed).unwrap();
            open.bench_function(p.name, |b| {
                b.iter_batched(
                    || sealed.clone(),
                    |mut buf| black_box(p.aead.open(&key, &iv, aad, &mut buf).unwrap()),
                    BatchSize::SmallInput,
                )
            });
        }
        open.finish();
    }
}

/// ECDSA P-256 signing (a v2 init with a server signing key) and verification (a
/// client that pins the key).
fn ecdsa(c: &mut Criterion) {
    let mut sign = c.benchmark_group("ecdsa-p256-sign");
    for &p in BACKENDS.iter() {
        let key = p.ecdsa.signing_key(&[0x33; 32]).unwrap();
        sign.bench_function(p.name, |b| {
            b.iter(|| black_box(key.sign(black_box(&[7; 66])).unwrap()))
        });
    }
    sign.finish();
    let mut verify = c.benchmark_group("ecdsa-p256-verify");
    for &p in BACKENDS.iter() {
        let key = p.ecdsa.signing_key(&[0x33; 32]).unwrap();
        let (public, sig) = (key.public_key(), key.sign(&[7; 66]).unwrap());
        verify.bench_function(p.name, |b| {
            b.iter(|| assert!(p.ecdsa.verify(&public, black_box(&[7; 66]), &sig)))
        });
    }
    verify.finish();
}

/// The server's whole init, v1 and v2 side by side on each backend
/// (`server-init/<backend>/v<n>`).
fn server_init(c: &mut Criterion) {
    let mut g = c.benchmark_group("server-init");
    for &p in BACKENDS.iter() {
        let client_key = p.key_agreement.generate().unwrap().public_key().0.to_vec();
        for protocol in Protocol::ALL {
            // A fresh service per measurement: stores that already hold the previous
            // run's millions of entries would make the later one slower.
            let svc = service(p, 2_000_000);
            let id = format!("{}/v{}", p.name, protocol.number());
            g.bench_function(id, |b| {
                b.iter_batched(
                    fresh_key,
                    |key| {
                        let req = init_request(&key, client_key.clone(), protocol);
                        black_box(futures_executor::block_on(svc.init(req)).unwrap())
                    },
                    BatchSize::SmallInput,
                )
            });
        }
    }
    g.finish();
}

/// The server's whole purchase exchange (open, handler, nonce, seal), v1 and v2 side
/// by side on each backend (`server-purchase/<backend>/v<n>`).
fn server_purchase(c: &mut Criterion) {
    let mut g = c.benchmark_group("server-purchase");
    let payload = br#"{"schemeCode":"AEF","amount":5000}"#;
    for &p in BACKENDS.iter() {
        for protocol in Protocol::ALL {
            let svc = service(p, 2_000_000);
            let session = establish(&svc, p, protocol);
            let id = format!("{}/v{}", p.name, protocol.number());
            g.bench_function(id, |b| {
                b.iter_batched(
                    || session.seal_request(now_ms(), payload).unwrap(),
                    |mut sealed| {
                        let req = ExchangeRequest {
                            call_key: None,
                            kid: Some(session.kid()),
                            idempotency_key: Some(&sealed.idempotency_key),
                            client_id: Some("BENCH"),
                            line: PURCHASE,
                            body: &mut sealed.envelope,
                        };
                        let svc = &svc;
                        let out = futures_executor::block_on(
                            svc.exchange(req, &http_adapter::routes::purchase::PurchaseRoute),
                        );
                        black_box(out.unwrap())
                    },
                    BatchSize::SmallInput,
                )
            });
        }
    }
    g.finish();
}

fn parsers(c: &mut Criterion) {
    let mut g = c.benchmark_group("parse");
    let key = "1706700000000.123e4567-e89b-42d3-a456-426614174000";
    g.bench_function("idempotency-key", |b| {
        b.iter(|| black_box(IdempotencyKey::parse(black_box(key)).unwrap()))
    });
    let vector = domain::encoding::base64_decode(
        "AAECAwQFBgcICQoLhCHU4WXWU+VlrmmZA33Ogjwr9g/cROz4SvgQOZyNb650dsrDTBN6F3GkTMjPudnuueY=",
    )
    .unwrap();
    g.bench_function("envelope", |b| {
        // Everything a purchase does before AES: header grammars, kid and session id,
        // AAD, envelope split and length checks.
        b.iter(|| {
            let key = IdempotencyKey::parse(black_box(key)).unwrap();
            let client = domain::ClientId::parse(black_box("NODE_CLIENT")).unwrap();
            let kid = black_box("session:S-000102030405060708090a0b0c0d0e0f");
            let id =
                domain::SessionId::parse(domain::headers::kid_session_part(kid).unwrap()).unwrap();
            let aad = Aad::new(key.timestamp_text(), key.nonce(), kid, client.as_str());
            let body = black_box(&vector[..]);
            assert!(body.len() >= domain::envelope::MIN_ENVELOPE_LEN);
            let (iv, rest) = body.split_at(IV_LEN);
            black_box((id, aad, iv, rest))
        })
    });
    g.bench_function("init-body", |b| {
        let body = br#"{"clientPublicKey":"BAIX5hfwtkQ5KCePlpmeaaI6TywVK99tbN9m5bgCgtTtGUp968uXcS0t2jyoWqh2Wlb0X8dYWZZS8ol8ZTBuV5Q=","ttlSec":1800}"#;
        b.iter(|| black_box(http_adapter::routes::init::parse_init_body(black_box(body)).unwrap()))
    });
    g.bench_function("public-key-validation", |b| {
        let pk = domain::encoding::base64_decode("BAIX5hfwtkQ5KCePlpmeaaI6TywVK99tbN9m5bgCgtTtGUp968uXcS0t2jyoWqh2Wlb0X8dYWZZS8ol8ZTBuV5Q=").unwrap();
        b.iter(|| black_box(domain::p256::validate_public_key(black_box(&pk)).unwrap()))
    });
    g.finish();
}

criterion_group!(
    benches,
    keygen,
    ecdh,
    hkdf,
    aead,
    ecdsa,
    server_init,
    server_purchase,
    parsers
);
criterion_main!(benches);

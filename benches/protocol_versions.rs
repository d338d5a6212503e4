//! Protocol v2 against v1 on the server: the whole init and the whole purchase exchange
//! (the same steps as the `server-init` / `server-purchase` criterion groups), measured
//! **interleaved** — rounds of v1 and v2 operations alternate, each round's order
//! swapped — so that the drift of a shared VM's speed, which moves sequential criterion
//! runs by ±30 %, cancels out of the ratio. Prints a Markdown table: the median time per
//! operation of each version and the median of the per-round ratios v2 ÷ v1.
//!
//! `cargo bench --bench protocol_versions` (`ROUNDS=40` for more rounds).

use std::hint::black_box;
use std::time::Instant;

use domain::ExchangeRequest;
use domain::client::{ClientSession, PURCHASE, SealedRequest};
use ports::{CryptoProvider, Protocol};

#[path = "support.rs"]
mod support;
use support::{Service, establish, fresh_key, init_request, now_ms, service};

const PURCHASES_PER_ROUND: usize = 2_000;
const INITS_PER_ROUND: usize = 100;
const PAYLOAD: &[u8] = br#"{"schemeCode":"AEF","amount":5000}"#;

/// One version's state: its own service (so neither's store grows under the other).
struct Side {
    svc: Service,
    session: ClientSession,
    protocol: Protocol,
}

impl Side {
    fn new(p: CryptoProvider, protocol: Protocol) -> Self {
        Self::with_service(p, protocol, service(p, 1_000_000))
    }

    /// v2 with a server signing key: every init is signed too.
    fn signed(p: CryptoProvider) -> Self {
        let identity = domain::ServerIdentity::from_scalar(p, &[0x33; 32]).unwrap();
        Self::with_service(
            p,
            Protocol::V2,
            service(p, 1_000_000).with_identity(Some(identity)),
        )
    }

    fn with_service(p: CryptoProvider, protocol: Protocol, svc: Service) -> Self {
        let session = establish(&svc, p, protocol);
        Self {
            svc,
            session,
            protocol,
        }
    }

    /// Nanoseconds per purchase over one round (sealing is done before the clock runs).
    fn purchases(&self) -> f64 {
        let mut sealed: Vec<SealedRequest> = (0..PURCHASES_PER_ROUND)
            .map(|_| self.session.seal_request(now_ms(), PAYLOAD).unwrap())
            .collect();
        let t = Instant::now();
        for s in &mut sealed {
            let req = ExchangeRequest {
                call_key: None,
                kid: Some(self.session.kid()),
                idempotency_key: Some(&s.idempotency_key),
                client_id: Some("BENCH"),
                line: PURCHASE,
                body: &mut s.envelope,
            };
            let out = futures_executor::block_on(
                self.svc
                    .exchange(req, &http_adapter::routes::purchase::PurchaseRoute),
            );
            black_box(out.unwrap());
        }
        t.elapsed().as_nanos() as f64 / PURCHASES_PER_ROUND as f64
    }

    /// Nanoseconds per init over one round.
    fn inits(&self, client_key: &[u8]) -> f64 {
        let keys: Vec<String> = (0..INITS_PER_ROUND).map(|_| fresh_key()).collect();
        let t = Instant::now();
        for key in &keys {
            let req = init_request(key, client_key.to_vec(), self.protocol);
            black_box(futures_executor::block_on(self.svc.init(req)).unwrap());
        }
        t.elapsed().as_nanos() as f64 / INITS_PER_ROUND as f64
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn fmt(ns: f64) -> String {
    if ns >= 1e3 {
        format!("{:.2} µs", ns / 1e3)
    } else {
        format!("{ns:.0} ns")
    }
}

/// Alternates `v1` and `v2` for `rounds` rounds; returns (median v1, median v2, median
/// of the per-round ratios).
fn interleaved(
    rounds: usize,
    mut v1: impl FnMut() -> f64,
    mut v2: impl FnMut() -> f64,
) -> (f64, f64, f64) {
    let (mut a, mut b, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
    // One unmeasured round each: warm caches and allocators.
    v1();
    v2();
    for round in 0..rounds {
        let (x, y) = if round % 2 == 0 {
            let x = v1();
            (x, v2())
        } else {
            let y = v2();
            (v1(), y)
        };
        a.push(x);
        b.push(y);
        ratios.push(y / x);
    }
    (median(a), median(b), median(ratios))
}

fn main() {
    // `cargo bench` passes `--bench`; nothing else is read from the command line.
    let rounds: usize = std::env::var("ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(20);
    println!(
        "Protocol v2 ÷ v1 on the server, interleaved: {rounds} rounds of {PURCHASES_PER_ROUND} purchases and of {INITS_PER_ROUND} inits per version; medians.\n"
    );
    println!(
        "| backend | init v1 | init v2 | init v2 ÷ v1 | init v2 signed ÷ v1 | purchase v1 | purchase v2 | purchase v2 ÷ v1 |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|");
    for p in crypto_backends::compiled() {
        let (v1, v2) = (Side::new(p, Protocol::V1), Side::new(p, Protocol::V2));
        let (p1, p2, pr) = interleaved(rounds, || v1.purchases(), || v2.purchases());
        let client_key = p.key_agreement.generate().unwrap().public_key().0.to_vec();
        let (i1, i2, ir) = interleaved(rounds, || v1.inits(&client_key), || v2.inits(&client_key));
        let signed = Side::signed(p);
        let (_, _, sr) = interleaved(
            rounds,
            || v1.inits(&client_key),
            || signed.inits(&client_key),
        );
        println!(
            "| {} | {} | {} | {ir:.2}× | {sr:.2}× | {} | {} | {pr:.2}× |",
            p.name,
            fmt(i1),
            fmt(i2),
            fmt(p1),
            fmt(p2)
        );
    }
}

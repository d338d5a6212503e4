//! The encrypted-route contract (`domain::EncryptedRoute`): the pure check runs before
//! the nonce is claimed, the handler — the only part with side effects — only after.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};

use domain::{
    EncryptedRoute, ExchangeError, PayloadError, ResponseContext, RouteError, ServiceConfig,
    SessionService,
};
use memory::{MemoryNonceStore, MemoryQuotas, MemorySessionStore};
use ports::{Claim, NoCache, NonceClaim, NonceError, NonceStore, Stores};

use crate::helpers::*;

/// Yields to the executor once before each claim, so that two copies of one request
/// run side by side: both are opened and checked before either claims its nonce.
struct YieldingNonces(MemoryNonceStore);

impl NonceStore for YieldingNonces {
    async fn claim(&self, claim: Claim<'_>) -> Result<NonceClaim, NonceError> {
        YieldOnce(false).await;
        self.0.claim(claim).await
    }
}

struct YieldOnce(bool);

impl Future for YieldOnce {
    type Output = ();
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.0 {
            Poll::Ready(())
        } else {
            self.0 = true;
            cx.waker().wake_by_ref();
            Poll::Pending
        }
    }
}

/// An "orders/create" route: its check counts the checks, its handler records an
/// order (a side effect, after an await, as a store write would be).
#[derive(Default)]
struct Orders {
    checked: AtomicUsize,
    stored: AtomicUsize,
}

#[derive(Debug, thiserror::Error)]
#[error("the order store failed")]
struct OrderStoreDown;

impl EncryptedRoute for Orders {
    type Checked<'p> = &'p [u8];
    type Error = OrderStoreDown;

    fn check<'p>(
        &self,
        plaintext: &'p [u8],
        _: &ResponseContext,
    ) -> Result<&'p [u8], PayloadError> {
        self.checked.fetch_add(1, Ordering::SeqCst);
        if plaintext.starts_with(b"order:") {
            Ok(plaintext)
        } else {
            Err(PayloadError::Shape("not an order"))
        }
    }

    async fn handle<'p>(
        &'p self,
        order: &'p [u8],
        _: ResponseContext,
    ) -> Result<Vec<u8>, OrderStoreDown> {
        YieldOnce(false).await;
        if order == b"order:fail" {
            return Err(OrderStoreDown);
        }
        let n = self.stored.fetch_add(1, Ordering::SeqCst) + 1;
        Ok(format!("stored #{n}").into_bytes())
    }
}

type RacingService =
    SessionService<Stores<MemorySessionStore, NoCache, YieldingNonces, FakeClock, MemoryQuotas>>;

fn racing_service() -> RacingService {
    SessionService::new(
        CRYPTO,
        Stores {
            sessions: MemorySessionStore::new(100),
            cache: NoCache,
            nonces: YieldingNonces(MemoryNonceStore::new(10_000)),
            clock: FakeClock(AtomicU64::new(NOW)),
            quotas: MemoryQuotas::default(),
        },
        ServiceConfig::default(),
    )
}

#[test]
fn two_racing_copies_of_one_request_act_once() {
    let svc = racing_service();
    let orders = Orders::default();
    let s = establish(&svc, "C", 1);
    for _ in 0..3 {
        let req = s.seal_request(NOW, b"order:1 book").unwrap();
        let (mut a, mut b) = (req.envelope.clone(), req.envelope.clone());
        let (ra, rb) = run(futures_util::future::join(
            svc.exchange(request(&s, &req.idempotency_key, &mut a), &orders),
            svc.exchange(request(&s, &req.idempotency_key, &mut b), &orders),
        ));
        let results = [ra.map(|_| ()), rb.map(|_| ())];
        assert_eq!(
            results.iter().filter(|r| r.is_ok()).count(),
            1,
            "{results:?}"
        );
        assert!(
            results
                .iter()
                .any(|r| matches!(r, Err(RouteError::Exchange(ExchangeError::Replay)))),
            "{results:?}"
        );
    }
    // Both copies were checked side by side each time; each request acted once.
    assert_eq!(orders.checked.load(Ordering::SeqCst), 6);
    assert_eq!(orders.stored.load(Ordering::SeqCst), 3);
}

#[test]
fn a_plaintext_the_check_refuses_keeps_its_nonce_and_never_reaches_the_handler() {
    let svc = racing_service();
    let orders = Orders::default();
    let s = establish(&svc, "C", 1);
    let req = s.seal_request(NOW, br#"{"action":"revoke"}"#).unwrap();
    let mut body = req.envelope.clone();
    let r = run(svc.exchange(request(&s, &req.idempotency_key, &mut body), &orders));
    assert!(matches!(
        r,
        Err(RouteError::Exchange(ExchangeError::Payload(_)))
    ));
    assert_eq!(orders.stored.load(Ordering::SeqCst), 0);
    // The nonce is still unused: the same request is accepted by a route it fits.
    let mut body = req.envelope;
    let fits = |plain: &[u8], _: &ResponseContext| Ok(plain.to_vec());
    assert!(run(svc.exchange(request(&s, &req.idempotency_key, &mut body), &fits)).is_ok());
}

#[test]
fn a_failed_handler_is_the_routes_error_and_its_nonce_stays_used() {
    let svc = racing_service();
    let orders = Orders::default();
    let s = establish(&svc, "C", 1);
    let req = s.seal_request(NOW, b"order:fail").unwrap();
    let mut body = req.envelope.clone();
    let r = run(svc.exchange(request(&s, &req.idempotency_key, &mut body), &orders));
    assert!(
        matches!(r, Err(RouteError::Handler(OrderStoreDown))),
        "{r:?}"
    );
    assert!(body.iter().all(|&b| b == 0), "request body is wiped");
    let mut body = req.envelope;
    let r = run(svc.exchange(request(&s, &req.idempotency_key, &mut body), &orders));
    assert!(matches!(
        r,
        Err(RouteError::Exchange(ExchangeError::Replay))
    ));
}

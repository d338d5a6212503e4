//! The operator commands against a real database.

use crate::support::services::{PgServer, RedisServer};
use session_crypto_client::InitRoute;

use crate::helpers::*;
use crate::support::*;

#[tokio::test(flavor = "multi_thread")]
async fn operator_revokes_every_session_of_one_client() {
    let (pg, redis) = (PgServer::start(), RedisServer::start());
    let server = stateful(&pg, &redis, &[]);
    let mut victim = server.client("VICTIM").await;
    let (v1, _) = victim.init(INIT, None).await.unwrap();
    let (v2, _) = victim.init(InitRoute::V1, None).await.unwrap();
    let mut other = server.client("OTHER").await;
    let (o1, _) = other.init(INIT, None).await.unwrap();
    let (db, r) = (pg.url(), redis.url());
    let ((code, out), err) = run_to_exit_with_stdout(
        &["revoke", "--client-id", "VICTIM"],
        &[
            ("DATABASE_URL", &db),
            ("REDIS_URL", &r),
            ("CRYPTO_BACKEND", default_backend().name),
        ],
    );
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("revoked 2 session(s)"), "{out}");
    assert_eq!(purchase_status(&mut victim, &v1).await, 401);
    assert_eq!(purchase_status(&mut victim, &v2).await, 401);
    assert_eq!(purchase_status(&mut other, &o1).await, 200);
    let ((code, _), err) = run_to_exit_with_stdout(
        &["revoke", "--client-id", "X"],
        &[("CRYPTO_BACKEND", default_backend().name)],
    );
    assert_eq!(code, 1);
    assert!(err.contains("revoke needs DATABASE_URL"), "{err}");
}

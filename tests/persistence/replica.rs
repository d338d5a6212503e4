//! `PG_READ_URL`: lookups that miss the cache read a replica first and the primary
//! when the replica does not have the session; a replica that still has a revoked
//! session cannot bring it back.
//!
//! The "replica" is a second database with the schema and whatever rows the test
//! copies into it: a replica that lags exactly as much as the test wants.

use crate::helpers::*;
use crate::support::services::{PgServer, RedisServer};
use crate::support::*;

/// Copies the row of `session` from the primary into the replica database.
fn copy_row(pg: &PgServer, session: &domain::client::ClientSession) {
    let id = &session.kid()[8..];
    let row = pg.psql(&format!(
        "SELECT format('(%L, decode(%L, ''hex''), %L, %L, %L, %L::timestamptz)', session_id, \
         encode(wrapped_key, 'hex'), kek_id, session_type, client_id, expires_at) \
         FROM sessions WHERE session_id = '{id}'"
    ));
    pg.psql_db(
        "replica",
        &format!(
            "INSERT INTO sessions (session_id, wrapped_key, kek_id, session_type, client_id, \
             expires_at) VALUES {}",
            row.trim()
        ),
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn lookups_read_the_replica_and_fall_back_to_the_primary() {
    let (pg, redis) = (PgServer::start(), RedisServer::start());
    pg.psql("CREATE DATABASE replica");
    let replica = pg.url_for("replica");
    let (code, err) = run_to_exit(&["migrate"], &[("DATABASE_URL", &replica)]);
    assert_eq!(code, 0, "{err}");
    let server = stateful(&pg, &redis, &[("PG_READ_URL", &replica)]);
    let mut client = server.client("C").await;

    // Not on the replica (yet): read from the primary.
    let (fresh, _) = client.init(INIT, None).await.unwrap();
    redis.delete_keys("sess:*");
    assert_eq!(purchase_status(&mut client, &fresh).await, 200);

    // Only on the replica (deleted from the primary behind the server's back, no
    // tombstone): served from the replica, so reads do go there.
    let (on_replica, _) = client.init(INIT, None).await.unwrap();
    copy_row(&pg, &on_replica);
    pg.psql(&format!(
        "DELETE FROM sessions WHERE session_id = '{}'",
        &on_replica.kid()[8..]
    ));
    redis.delete_keys("sess:*");
    assert_eq!(purchase_status(&mut client, &on_replica).await, 200);

    // Revoked, but the replica still has it: the cache's tombstone keeps it out.
    let (revoked, _) = client.init(INIT, None).await.unwrap();
    copy_row(&pg, &revoked);
    client.revoke(&revoked).await.unwrap();
    assert_eq!(purchase_status(&mut client, &revoked).await, 401);
}

//! A signing-key rotation as docs/operations.md prescribes it, rolled across instances
//! of one deployment (PostgreSQL + Redis) while sessions are live: publish the next
//! key, switch instance by instance, retire the previous key. Clients that pin what the
//! well-known document lists never fail; sessions outlive the key that signed their
//! init; a client that pinned only the old key is refused once an instance signs with
//! the new one — the reason the next key is published first.

use crate::support::services::{PgServer, RedisServer};
use hyper::Method;
use ports::{P256PublicKey, Protocol};
use session_crypto_client::{FlowError, ProtocolClient};

use crate::helpers::*;
use crate::support::*;

/// A key pair from `keygen --signing`: the private PEM file and the public key.
struct Key {
    private: String,
    public: P256PublicKey,
    public_file: String,
}

fn keygen(dir: &std::path::Path, name: &str) -> Key {
    let ((code, out), err) = run_to_exit_with_stdout(&["keygen", "--signing"], &[]);
    assert_eq!(code, 0, "{err}");
    let private = dir.join(format!("{name}.pem"));
    std::fs::write(&private, &out).unwrap();
    let public = session_crypto_client::parse_server_key(&out).unwrap();
    let public_file = dir.join(format!("{name}.pub.pem"));
    std::fs::write(&public_file, domain::signing_key::public_key_pem(&public)).unwrap();
    Key {
        private: private.to_str().unwrap().to_owned(),
        public,
        public_file: public_file.to_str().unwrap().to_owned(),
    }
}

/// The keys a client pins from an instance's well-known document, with their status.
async fn published(server: &Server) -> Vec<(String, P256PublicKey)> {
    let mut conn = server.connect().await;
    let resp = conn
        .send(Method::GET, "/.well-known/session-crypto", &[], "")
        .await
        .unwrap();
    json(&resp)["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| {
            let public =
                session_crypto_client::parse_server_key(k["publicKey"].as_str().unwrap()).unwrap();
            (k["status"].as_str().unwrap().to_owned(), public)
        })
        .collect()
}

/// A v2 client of `server` pinning `pins`.
async fn client(server: &Server, pins: &[P256PublicKey]) -> ProtocolClient {
    server
        .client("ROTATE")
        .await
        .with_protocol(Protocol::V2)
        .with_pinned_keys(pins.to_vec())
}

async fn init(
    server: &Server,
    pins: &[P256PublicKey],
) -> Result<domain::client::ClientSession, FlowError> {
    Ok(client(server, pins).await.init(INIT, None).await?.0)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_signing_key_rotates_across_instances_with_live_sessions_and_no_failed_init() {
    let (pg, redis) = (PgServer::start(), RedisServer::start());
    let dir = std::env::temp_dir().join(format!("sc-rotation-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (k1, k2) = (keygen(&dir, "k1"), keygen(&dir, "k2"));
    let statuses = |keys: &[(String, P256PublicKey)]| -> Vec<(String, bool)> {
        keys.iter()
            .map(|(s, k)| (s.clone(), *k == k1.public))
            .collect()
    };

    // Stage 0: one key. An older client pins it alone and holds a session.
    let a0 = stateful(&pg, &redis, &[("SERVER_SIGNING_KEY_FILE", &k1.private)]);
    let old_client_session = init(&a0, &[k1.public]).await.unwrap();

    // Stage 1: every instance publishes the next key. A client that pins what the
    // document lists pins both; both kinds of client still set up sessions.
    let publish = [
        ("SERVER_SIGNING_KEY_FILE", k1.private.as_str()),
        ("SERVER_SIGNING_KEY_NEXT_FILE", k2.private.as_str()),
    ];
    let b1 = stateful(&pg, &redis, &publish);
    drop(a0);
    let b2 = stateful(&pg, &redis, &publish);
    let listed = published(&b1).await;
    assert_eq!(
        statuses(&listed),
        [("current".into(), true), ("next".into(), false)]
    );
    let pins: Vec<P256PublicKey> = listed.iter().map(|(_, k)| *k).collect();
    let new_client_session = init(&b2, &pins).await.unwrap();
    init(&b1, &[k1.public]).await.unwrap();
    assert_eq!(
        purchase_status(&mut client(&b2, &[]).await, &old_client_session).await,
        200,
        "a session from before the rotation, on an instance that publishes the next key"
    );

    // Stage 2, rolling: one instance switches while another still signs with k1.
    let not_after = domain::encoding::utc_timestamp(now() / 1000 + 3600);
    let switched = [
        ("SERVER_SIGNING_KEY_FILE", k2.private.as_str()),
        ("SERVER_SIGNING_KEY_PREVIOUS_FILE", k1.public_file.as_str()),
        ("SERVER_SIGNING_KEY_PREVIOUS_NOT_AFTER", not_after.as_str()),
    ];
    let c1 = stateful(&pg, &redis, &switched);
    drop(b2);
    assert_eq!(
        statuses(&published(&c1).await),
        [("current".into(), false), ("previous".into(), true)]
    );
    // The client pinning both keys sets up sessions on either kind of instance.
    for server in [&c1, &b1] {
        init(server, &pins).await.unwrap();
    }
    // Live sessions from before go on, on every instance, whichever key they began
    // under.
    for server in [&c1, &b1] {
        for session in [&old_client_session, &new_client_session] {
            assert_eq!(
                purchase_status(&mut client(server, &[]).await, session).await,
                200
            );
        }
    }
    // The client that pinned only k1: refused where k2 signs, before any request.
    let refused = init(&c1, &[k1.public]).await.unwrap_err();
    assert!(
        refused.to_string().contains("server signature"),
        "{refused}"
    );

    // Stage 3: the roll-out is over and the previous key's time has passed.
    drop(b1);
    let past = domain::encoding::utc_timestamp(now() / 1000 - 1);
    let d1 = stateful(
        &pg,
        &redis,
        &[
            ("SERVER_SIGNING_KEY_FILE", k2.private.as_str()),
            ("SERVER_SIGNING_KEY_PREVIOUS_FILE", k1.public_file.as_str()),
            ("SERVER_SIGNING_KEY_PREVIOUS_NOT_AFTER", past.as_str()),
        ],
    );
    assert_eq!(statuses(&published(&d1).await), [("current".into(), false)]);
    init(&d1, &[k2.public]).await.unwrap();
    assert_eq!(
        purchase_status(&mut client(&d1, &[]).await, &new_client_session).await,
        200,
        "a session whose init k1 signed, after k1 is gone"
    );
    let _ = std::fs::remove_dir_all(dir);
}

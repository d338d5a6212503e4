//! Rotating the v2 signing key, as an operator does it (docs/operations.md): the
//! well-known document lists the current, next and previous keys and drops a previous
//! key at its not-after time; `check-config` names each key's stage and refuses sets
//! clients could not follow; a client pinning several keys accepts any of them. The
//! rotation across live instances and sessions is in tests/persistence/rotation.rs.

use session_crypto_client::Session;

use crate::helpers::{
    SigningKey, buy, is_signature_refusal, pinned_connect_error, signing_key, well_known,
};
use crate::support::*;

/// The public key of `key` as a PEM file beside its private key.
fn public_pem(key: &SigningKey) -> String {
    let path = key.private.with_file_name("signing.pub.pem");
    std::fs::write(&path, domain::signing_key::public_key_pem(&key.public)).unwrap();
    path.to_str().unwrap().to_owned()
}

fn key_id(key: &SigningKey) -> String {
    domain::v2::signing_key_id(default_backend().digests, &key.public)
}

#[tokio::test]
async fn the_well_known_document_lists_every_key_with_its_status_until_its_not_after_time() {
    let [current, next, previous] = ["rot-current", "rot-next", "rot-previous"].map(signing_key);
    let previous_pub = public_pem(&previous);
    let soon = now() / 1000 + 100;
    let soon_text = domain::encoding::utc_timestamp(soon);
    let server = Server::start(&[
        ("SERVER_SIGNING_KEY_FILE", current.private.to_str().unwrap()),
        // The next key as keygen wrote it (private: only its public part is used); the
        // previous one as a public key.
        (
            "SERVER_SIGNING_KEY_NEXT_FILE",
            next.private.to_str().unwrap(),
        ),
        ("SERVER_SIGNING_KEY_PREVIOUS_FILE", &previous_pub),
        ("SERVER_SIGNING_KEY_PREVIOUS_NOT_AFTER", &soon_text),
    ]);
    let (doc, cache) = well_known(&server).await;
    let keys = doc["keys"].as_array().unwrap();
    let listed: Vec<(&str, &str)> = keys
        .iter()
        .map(|k| (k["kid"].as_str().unwrap(), k["status"].as_str().unwrap()))
        .collect();
    assert_eq!(
        listed,
        [
            (key_id(&current).as_str(), "current"),
            (key_id(&next).as_str(), "next"),
            (key_id(&previous).as_str(), "previous"),
        ]
    );
    assert_eq!(keys[2]["notAfter"], soon_text.as_str());
    assert!(keys[0].get("notAfter").is_none());
    for (k, key) in keys.iter().zip([&current, &next, &previous]) {
        let point = domain::encoding::base64_decode(k["publicKey"].as_str().unwrap()).unwrap();
        assert_eq!(point, key.public.0.to_vec());
    }
    // A cached copy must not outlive the previous key's end.
    let max_age: u64 = cache
        .strip_prefix("public, max-age=")
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("{cache}"));
    assert!((90..=100).contains(&max_age), "{cache}");
    // Only the current key signs: a client pinning only the next key is refused.
    let err = pinned_connect_error(&server, &[next.public]).await;
    assert!(is_signature_refusal(&err), "{err}");

    // Past its not-after time the previous key is no longer published.
    let past = domain::encoding::utc_timestamp(now() / 1000 - 1);
    let later = Server::start(&[
        ("SERVER_SIGNING_KEY_FILE", current.private.to_str().unwrap()),
        ("SERVER_SIGNING_KEY_PREVIOUS_FILE", &previous_pub),
        ("SERVER_SIGNING_KEY_PREVIOUS_NOT_AFTER", &past),
    ]);
    let (doc, cache) = well_known(&later).await;
    let statuses: Vec<&str> = doc["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["status"].as_str().unwrap())
        .collect();
    assert_eq!(statuses, ["current"]);
    assert_eq!(cache, "public, max-age=300");
}

#[tokio::test]
async fn a_client_pinning_the_current_and_next_keys_follows_the_switch() {
    let [old, new] = ["switch-old", "switch-new"].map(signing_key);
    let before = Server::start(&[
        ("SERVER_SIGNING_KEY_FILE", old.private.to_str().unwrap()),
        (
            "SERVER_SIGNING_KEY_NEXT_FILE",
            new.private.to_str().unwrap(),
        ),
    ]);
    let after = Server::start(&[
        ("SERVER_SIGNING_KEY_FILE", new.private.to_str().unwrap()),
        ("SERVER_SIGNING_KEY_PREVIOUS_FILE", &public_pem(&old)),
    ]);
    for server in [&before, &after] {
        let mut session = Session::builder(&server.url, "ROT")
            .crypto(server.crypto)
            .pinned_keys([old.public, new.public])
            .connect()
            .await
            .unwrap();
        buy(&mut session).await.unwrap();
    }
    // A client that pinned only the old key is refused after the switch: why the next
    // key is published first.
    let err = pinned_connect_error(&after, &[old.public]).await;
    assert!(is_signature_refusal(&err), "{err}");

    // The CLI client reads a set of keys from one file: keygen outputs concatenated.
    let both = old.private.with_file_name("both.pem");
    let text = [&old, &new]
        .map(|k| domain::signing_key::public_key_pem(&k.public))
        .concat();
    std::fs::write(&both, text).unwrap();
    let args = [
        "client",
        "--url",
        &after.url,
        "--server-key-file",
        both.to_str().unwrap(),
    ];
    let ((code, out), err) =
        run_to_exit_with_stdout(&args, &[("CRYPTO_BACKEND", after.crypto.name)]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("2 server keys pinned"), "{out}");
}

#[test]
fn check_config_names_each_keys_stage_and_refuses_sets_clients_cannot_follow() {
    let [current, next, previous] = ["cc-current", "cc-next", "cc-previous"].map(signing_key);
    let (current_file, next_file) = (
        current.private.to_str().unwrap(),
        next.private.to_str().unwrap(),
    );
    let previous_pub = public_pem(&previous);
    let until = domain::encoding::utc_timestamp(now() / 1000 + 3600);
    let past = domain::encoding::utc_timestamp(now() / 1000 - 60);
    let check = |envs: &[(&str, &str)]| {
        let mut envs = envs.to_vec();
        envs.push(("CRYPTO_BACKEND", default_backend().name));
        run_to_exit_with_stdout(&["check-config"], &envs)
    };

    let ((code, out), err) = check(&[
        ("SERVER_SIGNING_KEY_FILE", current_file),
        ("SERVER_SIGNING_KEY_NEXT_FILE", next_file),
        ("SERVER_SIGNING_KEY_PREVIOUS_FILE", &previous_pub),
        ("SERVER_SIGNING_KEY_PREVIOUS_NOT_AFTER", &until),
    ]);
    assert_eq!(code, 0, "{err}");
    for line in [
        format!("# signing key {} current: signs", key_id(&current)),
        format!(
            "# signing key {} next: published for clients to pin",
            key_id(&next)
        ),
        format!(
            "# signing key {} previous: published until {until}",
            key_id(&previous)
        ),
    ] {
        assert!(out.contains(&line), "{line}\n{out}");
    }
    let ((code, out), _) = check(&[
        ("SERVER_SIGNING_KEY_FILE", current_file),
        ("SERVER_SIGNING_KEY_PREVIOUS_FILE", &previous_pub),
    ]);
    assert_eq!(code, 0);
    assert!(out.contains("previous: published with no end"), "{out}");
    let ((code, out), _) = check(&[
        ("SERVER_SIGNING_KEY_FILE", current_file),
        ("SERVER_SIGNING_KEY_PREVIOUS_FILE", &previous_pub),
        ("SERVER_SIGNING_KEY_PREVIOUS_NOT_AFTER", &past),
    ]);
    assert_eq!(code, 0);
    assert!(out.contains("no longer published; remove it"), "{out}");

    // Sets clients could not follow, and mistakes: refused, the setting named, no key
    // material in the message.
    for (envs, expected) in [
        (
            vec![("SERVER_SIGNING_KEY_NEXT_FILE", next_file)],
            "a next signing key is set but no current one",
        ),
        (
            vec![
                ("SERVER_SIGNING_KEY_FILE", current_file),
                ("SERVER_SIGNING_KEY_NEXT_FILE", current_file),
            ],
            "the next signing key is the current one",
        ),
        (
            vec![
                ("SERVER_SIGNING_KEY_FILE", current_file),
                ("SERVER_SIGNING_KEY_PREVIOUS_FILE", &previous_pub),
                ("SERVER_SIGNING_KEY_PREVIOUS_NOT_AFTER", "tomorrow"),
            ],
            "SERVER_SIGNING_KEY_PREVIOUS_NOT_AFTER \"tomorrow\": expected an RFC 3339 UTC time",
        ),
        (
            vec![
                ("SERVER_SIGNING_KEY_FILE", current_file),
                ("SERVER_SIGNING_KEY_PREVIOUS_NOT_AFTER", &until),
            ],
            "SERVER_SIGNING_KEY_PREVIOUS_NOT_AFTER is set but no previous key",
        ),
        (
            vec![
                ("SERVER_SIGNING_KEY_FILE", current_file),
                ("SERVER_SIGNING_KEY_NEXT", "bm90IGEga2V5"),
            ],
            "SERVER_SIGNING_KEY_NEXT: not a P-256",
        ),
    ] {
        let ((code, _), err) = check(&envs);
        assert_ne!(code, 0, "{expected}");
        assert!(err.contains(expected), "{expected}\n{err}");
        assert!(!err.contains("BEGIN"), "{err}");
    }
}

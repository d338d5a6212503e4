//! Keys: the reference vector, wrapping at rest and rotation, redacted debug output.

use domain::client::ClientSession;
use domain::encoding::base64_decode;
use ports::SessionStore;

use crate::helpers::*;

#[test]
fn reference_vector_session_key() {
    // docs/PROTOCOL.md §12: HKDF over the vector's Z.
    let z: [u8; 32] =
        hex::decode("ccfc261f58193c98ca4ad4a53bbac6f0ee29bc4d48438090446908622ca79af6")
            .unwrap()
            .try_into()
            .unwrap();
    let key = domain::derive_session_key(
        CRYPTO.hkdf,
        &ports::SharedSecret::from_bytes(z),
        "S-000102030405060708090a0b0c0d0e0f",
        "NODE_CLIENT",
    )
    .unwrap();
    assert_eq!(
        key.expose().to_vec(),
        base64_decode("chrTmynfAw5zwu3wrw/xudpoWn3Hz3yAbSejyymhCuM=").unwrap()
    );
}

#[test]
fn wrapped_keys_unwrap_only_for_their_session_and_across_rotation() {
    use domain::keywrap::{KeyWrapper, UnwrapError, WRAPPED_KEY_LEN};
    let old = KeyWrapper::new(CRYPTO, [1; 32], vec![]).unwrap();
    let key = ports::SessionKey::from_bytes([0x5a; 32]);
    let keys = ports::SessionKeys::V1(key.clone());
    let v1 = ports::Protocol::V1;
    let w = old
        .wrap("S-000102030405060708090a0b0c0d0e0f", &keys)
        .unwrap();
    assert_eq!(w.bytes.len(), WRAPPED_KEY_LEN);
    assert!(
        !w.bytes.windows(32).any(|win| win == key.expose()),
        "no raw key inside"
    );
    assert_eq!(w.kek_id.len(), 16);
    assert_eq!(
        old.unwrap(
            "S-000102030405060708090a0b0c0d0e0f",
            &w.kek_id,
            v1,
            &w.bytes
        )
        .unwrap()
        .request()
        .expose(),
        key.expose()
    );
    // moved to another row
    assert_eq!(
        old.unwrap(
            "S-ffffffffffffffffffffffffffffffff",
            &w.kek_id,
            v1,
            &w.bytes
        )
        .unwrap_err(),
        UnwrapError::Authentication
    );
    // rotation: the new KEK wraps, the previous one still unwraps
    let rotated = KeyWrapper::new(CRYPTO, [2; 32], vec![[1; 32]]).unwrap();
    assert_ne!(rotated.current_id(), old.current_id());
    assert!(
        rotated
            .unwrap(
                "S-000102030405060708090a0b0c0d0e0f",
                &w.kek_id,
                v1,
                &w.bytes
            )
            .is_ok()
    );
    assert_eq!(
        rotated.wrap("S-1", &keys).unwrap().kek_id,
        rotated.current_id()
    );
    // a KEK that is gone
    let fresh = KeyWrapper::new(CRYPTO, [3; 32], vec![]).unwrap();
    assert!(matches!(
        fresh.unwrap(
            "S-000102030405060708090a0b0c0d0e0f",
            &w.kek_id,
            v1,
            &w.bytes
        ),
        Err(UnwrapError::UnknownKek(_))
    ));
}

#[test]
fn v2_keys_wrap_with_their_version_bound() {
    use domain::keywrap::{KeyWrapper, UnwrapError, wrapped_len};
    use ports::{Protocol, SessionKey, SessionKeys};
    let wrapper = KeyWrapper::new(CRYPTO, [1; 32], vec![]).unwrap();
    let id = "S-000102030405060708090a0b0c0d0e0f";
    let keys = SessionKeys::V2 {
        request: SessionKey::from_bytes([0x11; 32]),
        response: SessionKey::from_bytes([0x22; 32]),
    };
    let w = wrapper.wrap(id, &keys).unwrap();
    assert_eq!(w.bytes.len(), wrapped_len(Protocol::V2));
    for raw in [[0x11u8; 32], [0x22; 32]] {
        assert!(
            !w.bytes.windows(32).any(|win| win == raw),
            "no raw key inside"
        );
    }
    let back = wrapper
        .unwrap(id, &w.kek_id, Protocol::V2, &w.bytes)
        .unwrap();
    assert!(back.ct_eq(&keys));
    // A row whose protocol column was changed does not unwrap, either way.
    assert_eq!(
        wrapper
            .unwrap(id, &w.kek_id, Protocol::V1, &w.bytes)
            .unwrap_err(),
        UnwrapError::Authentication
    );
    let v1 = wrapper
        .wrap(id, &SessionKeys::V1(SessionKey::from_bytes([0x11; 32])))
        .unwrap();
    assert_eq!(
        wrapper
            .unwrap(id, &v1.kek_id, Protocol::V2, &v1.bytes)
            .unwrap_err(),
        UnwrapError::Authentication
    );
    // The same 92 bytes relabelled as v1 by truncation do not open either.
    assert_eq!(
        wrapper
            .unwrap(
                id,
                &w.kek_id,
                Protocol::V1,
                &w.bytes[..wrapped_len(Protocol::V1)]
            )
            .unwrap_err(),
        UnwrapError::Authentication
    );
}

#[test]
fn a_record_is_wrapped_once_and_a_wrap_is_reused_only_for_its_own_session() {
    use domain::keywrap::KeyWrapper;
    use ports::{Protocol, SessionKey, SessionKeys, SessionKind, SessionRecord};
    let wrapper = KeyWrapper::new(CRYPTO, [1; 32], vec![]).unwrap();
    let record = SessionRecord {
        id: "S-000102030405060708090a0b0c0d0e0f".into(),
        keys: SessionKeys::V1(SessionKey::from_bytes([0x11; 32])),
        kind: SessionKind::Anonymous,
        client_id: "C".into(),
        created_at_ms: 0,
        expires_at_ms: 1,
        at_rest: Default::default(),
    };
    // The cache entry and the durable row: one wrap (a second would draw a new IV).
    let first = wrapper.wrap_record(&record).unwrap();
    assert_eq!(wrapper.wrap_record(&record).unwrap(), first);
    assert_eq!(wrapper.wrap_record(&record.clone()).unwrap(), first);
    // A record whose id or version changed after its wrap, or another KEK, wraps anew
    // — and that wrap opens for its own id only.
    let mut moved = record.clone();
    moved.id = "S-ffffffffffffffffffffffffffffffff".into();
    let w = wrapper.wrap_record(&moved).unwrap();
    assert_ne!(w, first);
    assert!(
        wrapper
            .unwrap(&moved.id, &w.kek_id, Protocol::V1, &w.bytes)
            .is_ok()
    );
    let mut v2 = record.clone();
    v2.keys = SessionKeys::V2 {
        request: SessionKey::from_bytes([0x11; 32]),
        response: SessionKey::from_bytes([0x22; 32]),
    };
    let w = wrapper.wrap_record(&v2).unwrap();
    assert!(
        wrapper
            .unwrap(&v2.id, &w.kek_id, Protocol::V2, &w.bytes)
            .is_ok()
    );
    let rotated = KeyWrapper::new(CRYPTO, [2; 32], vec![[1; 32]]).unwrap();
    let w = rotated.wrap_record(&record).unwrap();
    assert_eq!(w.kek_id, rotated.current_id());
    assert_ne!(w.kek_id, first.kek_id);
}

#[test]
fn debug_output_redacts_keys_secrets_and_ids() {
    use domain::keywrap::KeyWrapper;
    let key_bytes = [0xa7u8; 32];
    let hex_key: String = key_bytes.iter().map(|b| format!("{b:02x}")).collect();
    let svc = service();
    let session = establish(&svc, "C", 1);
    let id = session.kid()[8..].to_owned();
    let record = run(svc.ports().sessions.get(&id)).unwrap().unwrap();
    let wrapper = KeyWrapper::new(CRYPTO, key_bytes, vec![key_bytes]).unwrap();
    let outputs = [
        format!("{:?}", ports::SessionKey::from_bytes(key_bytes)),
        format!("{:?}", ports::SharedSecret::from_bytes(key_bytes)),
        format!(
            "{:?}",
            ClientSession::from_key(CRYPTO, &id, "C", ports::SessionKey::from_bytes(key_bytes))
        ),
        format!("{wrapper:?}"),
        format!("{record:?}"),
        format!("{:?}", domain::SessionId::parse(&id).unwrap()),
    ];
    let record_key: String = record
        .keys
        .request()
        .expose()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    for out in &outputs {
        assert!(
            !out.contains(&hex_key) && !out.contains("167, 167"),
            "key bytes in {out}"
        );
        assert!(!out.contains(&record_key), "session key in {out}");
        assert!(!out.contains(&id), "whole session id in {out}");
    }
    assert!(outputs[0].contains("REDACTED") && outputs[1].contains("REDACTED"));
}

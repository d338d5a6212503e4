//! Which crypto backends this binary contains, and which one to use.

use std::sync::Arc;

use http_adapter::tls::TlsError;
use ports::CryptoProvider;

/// The providers compiled into this binary (by Cargo feature), in the list's order.
pub fn compiled() -> Vec<CryptoProvider> {
    crypto_backends::compiled()
}

fn names(v: &[CryptoProvider]) -> String {
    v.iter().map(|p| p.name).collect::<Vec<_>>().join(", ")
}

/// The rustls provider for TLS with `crypto`, and its name, as the backend list says
/// ([`crypto_backends::tls_provider`]).
///
/// # Errors
/// [`TlsError::NoProvider`] when this build has no rustls provider for the backend.
pub fn tls_provider(
    crypto: CryptoProvider,
) -> Result<(Arc<rustls::crypto::CryptoProvider>, &'static str), crate::Error> {
    crypto_backends::tls_provider(crypto.name).ok_or_else(|| {
        TlsError::NoProvider {
            backend: crypto.name.to_owned(),
            advice: crypto_backends::tls_advice(),
        }
        .into()
    })
}

/// Chooses the backend.
///
/// * `requested` (`CRYPTO_BACKEND` / `--backend`) wins and must be compiled in.
/// * Otherwise, one compiled backend is used implicitly. The first backend of the list
///   (aws-lc-rs) is the default feature, so with it and exactly one other backend
///   compiled in, the other one was asked for explicitly (`--features backend-ring`)
///   and is used.
/// * Anything else is ambiguous and refused with instructions.
///
/// # Errors
/// A message that says what to do.
pub fn select(requested: Option<&str>) -> Result<CryptoProvider, crate::Error> {
    select_from(&compiled(), requested)
}

fn select_from(
    compiled: &[CryptoProvider],
    requested: Option<&str>,
) -> Result<CryptoProvider, crate::Error> {
    if let Some(name) = requested.filter(|n| !n.is_empty()) {
        if crypto_backends::find(name).is_none() {
            return Err(crate::Error::Config(format!(
                "unknown CRYPTO_BACKEND {name:?}: expected one of {}",
                crypto_backends::names_text("", ", ")
            )));
        }
        return compiled
            .iter()
            .copied()
            .find(|p| p.name == name)
            .ok_or_else(|| {
                crate::Error::Config(format!(
                    "CRYPTO_BACKEND={name} is not compiled into this binary (compiled: {}); \
                 rebuild with `--features backend-{name}` or choose a compiled backend",
                    if compiled.is_empty() {
                        "none".into()
                    } else {
                        names(compiled)
                    }
                ))
            });
    }
    match compiled {
        [] => Err(crate::Error::Config(format!(
            "no crypto backend compiled in: build with --features {}",
            crypto_backends::names_text("backend-", " or ")
        ))),
        [only] => Ok(*only),
        // The first backend of the list is the default feature.
        [a, b] if Some(a.name) == crypto_backends::names().next() => Ok(*b),
        _ => Err(crate::Error::Config(format!(
            "several crypto backends are compiled in ({}); choose one with CRYPTO_BACKEND=<name> or --backend <name>",
            names(compiled)
        ))),
    }
}

/// A start-up self-test of the chosen backend: the docs/PROTOCOL.md §12 session-key and
/// request-envelope vectors, plus a fresh key agreement. It also warms the backend up
/// (first use of some libraries costs milliseconds), so the first client does not pay.
///
/// # Errors
/// A message naming the backend and the failed check.
pub fn self_test(crypto: CryptoProvider) -> Result<(), crate::Error> {
    use domain::envelope::{Aad, derive_session_key, open_envelope, seal_envelope_with_iv};
    let fail = |what: &str| {
        crate::Error::Runtime(format!(
            "crypto backend {} failed its self-test: {what}",
            crypto.name
        ))
    };
    let z = ports::SharedSecret::from_bytes(hex32(
        "ccfc261f58193c98ca4ad4a53bbac6f0ee29bc4d48438090446908622ca79af6",
    ));
    let key = derive_session_key(
        crypto.hkdf,
        &z,
        "S-000102030405060708090a0b0c0d0e0f",
        "NODE_CLIENT",
    )
    .map_err(|_| fail("hkdf"))?;
    let expected = hex32("721ad39b29df030e73c2edf0af0ff1b9da685a7dc7cf7c806d27a3cb29a10ae3");
    if !key.ct_eq(&ports::SessionKey::from_bytes(expected)) {
        return Err(fail("session key vector"));
    }
    let aad = Aad::new(
        "1706700000000",
        "123e4567-e89b-42d3-a456-426614174000",
        "session:S-000102030405060708090a0b0c0d0e0f",
        "NODE_CLIENT",
    );
    let iv = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11];
    let plain = br#"{"schemeCode":"AEF","amount":5000}"#;
    let mut envelope = seal_envelope_with_iv(crypto.aead, &key, &iv, &aad, plain.to_vec())
        .map_err(|_| fail("seal"))?;
    let expected = unhex(
        "000102030405060708090a0b8421d4e165d653e565ae6999037dce823c2bf60fdc44ecf84af810399c8d6fae7476ca\
         c34c137a1771a44cc8cfb9d9eeb9e6",
    );
    if envelope != expected {
        return Err(fail("request envelope vector"));
    }
    if open_envelope(crypto.aead, &key, &aad, &mut envelope).map_err(|_| fail("open"))? != plain {
        return Err(fail("open vector"));
    }
    let a = crypto
        .key_agreement
        .generate()
        .map_err(|_| fail("key generation"))?;
    let b = crypto
        .key_agreement
        .generate()
        .map_err(|_| fail("key generation"))?;
    let (pa, pb) = (a.public_key(), b.public_key());
    let za = a.agree(&pb).map_err(|_| fail("ecdh"))?;
    let zb = b.agree(&pa).map_err(|_| fail("ecdh"))?;
    if !za.ct_eq(&zb) {
        return Err(fail("ecdh agreement"));
    }
    Ok(())
}

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len() / 2)
        .map(|i| u8::from_str_radix(&s[2 * i..2 * i + 2], 16).unwrap_or(0))
        .collect()
}

fn hex32(s: &str) -> [u8; 32] {
    unhex(s).try_into().unwrap_or([0; 32])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fake(name: &'static str) -> CryptoProvider {
        CryptoProvider {
            name,
            ..compiled()[0]
        }
    }

    #[test]
    fn implicit_choice_follows_the_features() {
        let (aws, ring, rc) = (fake("aws-lc-rs"), fake("ring"), fake("rustcrypto"));
        assert_eq!(select_from(&[aws], None).unwrap().name, "aws-lc-rs");
        assert_eq!(select_from(&[rc], None).unwrap().name, "rustcrypto");
        assert_eq!(select_from(&[aws, ring], None).unwrap().name, "ring");
        assert_eq!(select_from(&[aws, rc], None).unwrap().name, "rustcrypto");
        let err = select_from(&[aws, ring, rc], None).unwrap_err().to_string();
        assert!(err.contains("CRYPTO_BACKEND"), "{err}");
        assert!(
            select_from(&[], None)
                .unwrap_err()
                .to_string()
                .contains("--features")
        );
    }

    #[test]
    fn every_compiled_backend_passes_the_self_test() {
        for p in compiled() {
            self_test(p).unwrap();
        }
    }

    #[test]
    fn explicit_choice_must_be_compiled() {
        let (aws, ring) = (fake("aws-lc-rs"), fake("ring"));
        assert_eq!(
            select_from(&[aws, ring], Some("aws-lc-rs")).unwrap().name,
            "aws-lc-rs"
        );
        let err = select_from(&[aws], Some("ring")).unwrap_err().to_string();
        assert!(err.contains("--features backend-ring"), "{err}");
        assert!(
            select_from(&[aws], Some("openssl"))
                .unwrap_err()
                .to_string()
                .contains("unknown")
        );
    }
}

//! Which crypto backends this binary contains, and which one to use.

use ports::CryptoProvider;

/// Backend names in the order users see them.
pub const ALL_NAMES: [&str; 3] = ["aws-lc-rs", "ring", "rustcrypto"];

/// The providers compiled into this binary (by Cargo feature).
pub fn compiled() -> Vec<CryptoProvider> {
    vec![
        #[cfg(feature = "backend-aws-lc-rs")]
        crypto_aws_lc_rs::PROVIDER,
        #[cfg(feature = "backend-ring")]
        crypto_ring::PROVIDER,
        #[cfg(feature = "backend-rustcrypto")]
        crypto_rustcrypto::PROVIDER,
    ]
}

fn names(v: &[CryptoProvider]) -> String {
    v.iter().map(|p| p.name).collect::<Vec<_>>().join(", ")
}

/// Chooses the backend.
///
/// * `requested` (`CRYPTO_BACKEND` / `--backend`) wins and must be compiled in.
/// * Otherwise, one compiled backend is used implicitly. aws-lc-rs is the default
///   feature, so with aws-lc-rs and exactly one other backend compiled in, the other
///   one was asked for explicitly (`--features backend-ring`) and is used.
/// * Anything else is ambiguous and refused with instructions.
///
/// # Errors
/// A message that says what to do.
pub fn select(requested: Option<&str>) -> Result<CryptoProvider, String> {
    select_from(&compiled(), requested)
}

fn select_from(
    compiled: &[CryptoProvider],
    requested: Option<&str>,
) -> Result<CryptoProvider, String> {
    if let Some(name) = requested.filter(|n| !n.is_empty()) {
        if !ALL_NAMES.contains(&name) {
            return Err(format!(
                "unknown CRYPTO_BACKEND {name:?}: expected one of aws-lc-rs, ring, rustcrypto"
            ));
        }
        return compiled
            .iter()
            .copied()
            .find(|p| p.name == name)
            .ok_or_else(|| {
                format!(
                    "CRYPTO_BACKEND={name} is not compiled into this binary (compiled: {}); \
                 rebuild with `--features backend-{name}` or choose a compiled backend",
                    if compiled.is_empty() {
                        "none".into()
                    } else {
                        names(compiled)
                    }
                )
            });
    }
    match compiled {
        [] => Err(
            "no crypto backend compiled in: build with --features backend-aws-lc-rs, backend-ring \
                   or backend-rustcrypto"
                .into(),
        ),
        [only] => Ok(*only),
        [a, b] if a.name == "aws-lc-rs" => Ok(*b),
        _ => Err(format!(
            "several crypto backends are compiled in ({}); choose one with CRYPTO_BACKEND=<name> or --backend <name>",
            names(compiled)
        )),
    }
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
        let err = select_from(&[aws, ring, rc], None).unwrap_err();
        assert!(err.contains("CRYPTO_BACKEND"), "{err}");
        assert!(select_from(&[], None).unwrap_err().contains("--features"));
    }

    #[test]
    fn explicit_choice_must_be_compiled() {
        let (aws, ring) = (fake("aws-lc-rs"), fake("ring"));
        assert_eq!(
            select_from(&[aws, ring], Some("aws-lc-rs")).unwrap().name,
            "aws-lc-rs"
        );
        let err = select_from(&[aws], Some("ring")).unwrap_err();
        assert!(err.contains("--features backend-ring"), "{err}");
        assert!(
            select_from(&[aws], Some("openssl"))
                .unwrap_err()
                .contains("unknown")
        );
    }
}

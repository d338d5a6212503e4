//! # crypto-backends — the one list of crypto backends
//!
//! Every place that needs "all the backends" reads [`backend_list!`]: the backend
//! choice of the binary, the conformance suite and the cross matrix, the Wycheproof
//! tests, the fuzz targets' cross-check, the benches and the rustls provider TLS uses
//! ([`tls_provider`]: the server, Redis over TLS and the client tools). Each
//! backend is compiled in by its feature (see `Cargo.toml`); the application's
//! `backend-<name>` features switch those on.
//!
//! Adding a backend: its crate, its lines in this crate's `Cargo.toml` (the optional
//! dependency, its feature, and its name in `all`), one line in [`backend_list!`], and
//! one `backend-<name>` feature line in `app/Cargo.toml` (CONTRIBUTING.md has the
//! steps). Everything else — `all-backends`, the TLS provider and what the tests expect
//! of it, the names in messages — follows from the list.
//!
//! A registry, not an adapter: it depends on `ports`, rustls (for the providers of the
//! backends that are rustls providers) and the backend crates only.

use std::sync::Arc;

use ports::CryptoProvider;

/// Calls `$callback! { … }` with the list of backends, one line each:
/// `module_name = "CRYPTO_BACKEND name" in crate_name if "feature", tls <rustls module>|any;`.
///
/// `tls aws_lc_rs` (a module of `rustls::crypto`): the backend is also that rustls
/// provider, which TLS uses when the backend is chosen (the backend's feature in
/// `Cargo.toml` switches it on in rustls).
/// `tls any`: TLS uses the first compiled backend's rustls provider, in the list's order.
/// The first line is the default backend (the binary's default feature).
#[macro_export]
macro_rules! backend_list {
    ($callback:ident) => {
        $callback! {
            aws_lc_rs = "aws-lc-rs" in crypto_aws_lc_rs if "aws-lc-rs", tls aws_lc_rs;
            ring = "ring" in crypto_ring if "ring", tls ring;
            rustcrypto = "rustcrypto" in crypto_rustcrypto if "rustcrypto", tls any;
        }
    };
}

/// How TLS picks its rustls provider for a backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tls {
    /// The backend is itself a rustls provider, and TLS uses it.
    Own,
    /// The first compiled backend's rustls provider, in the list's order.
    Any,
}

/// A function that builds a rustls provider.
pub type RustlsProvider = fn() -> rustls::crypto::CryptoProvider;

/// One backend of the list.
#[derive(Debug, Clone, Copy)]
pub struct Backend {
    /// Its `CRYPTO_BACKEND` name.
    pub name: &'static str,
    /// The provider, when this build compiled it in.
    pub provider: Option<CryptoProvider>,
    /// How TLS picks its rustls provider.
    pub tls: Tls,
    /// Its own rustls provider, when it is one and this build compiled it in.
    pub rustls: Option<RustlsProvider>,
}

macro_rules! registry {
    ($($module:ident = $name:literal in $krate:ident if $feature:literal, tls $tls:ident;)*) => {
        $(
            #[cfg(feature = $feature)]
            pub use $krate;
        )*
        $(
            // A module per backend holding its provider or `None`, so one constant
            // list can be written whatever the features.
            mod $module {
                #[cfg(feature = $feature)]
                pub(crate) const PROVIDER: Option<ports::CryptoProvider> =
                    Some(::$krate::PROVIDER);
                #[cfg(not(feature = $feature))]
                pub(crate) const PROVIDER: Option<ports::CryptoProvider> = None;
                registry!(@rustls $feature, $tls);
            }
        )*

        /// Every backend of the project, compiled in or not, in the list's order.
        pub const ALL: &[Backend] = &[$(
            Backend {
                name: $name,
                provider: $module::PROVIDER,
                tls: $module::TLS,
                rustls: $module::RUSTLS,
            },
        )*];
    };
    (@rustls $feature:literal, any) => {
        pub(crate) const TLS: super::Tls = super::Tls::Any;
        pub(crate) const RUSTLS: Option<super::RustlsProvider> = None;
    };
    (@rustls $feature:literal, $rustls:ident) => {
        pub(crate) const TLS: super::Tls = super::Tls::Own;
        #[cfg(feature = $feature)]
        pub(crate) const RUSTLS: Option<super::RustlsProvider> =
            Some(rustls::crypto::$rustls::default_provider);
        #[cfg(not(feature = $feature))]
        pub(crate) const RUSTLS: Option<super::RustlsProvider> = None;
    };
}

backend_list!(registry);

/// The providers compiled into this build, in the list's order.
pub fn compiled() -> Vec<CryptoProvider> {
    ALL.iter().filter_map(|b| b.provider).collect()
}

/// The names of every backend, compiled in or not.
pub fn names() -> impl Iterator<Item = &'static str> {
    ALL.iter().map(|b| b.name)
}

/// The list entry called `name`.
pub fn find(name: &str) -> Option<&'static Backend> {
    ALL.iter().find(|b| b.name == name)
}

/// What to do when this build has no rustls provider for a backend: which features bring
/// one (the backends of the list that are rustls providers).
pub fn tls_advice() -> String {
    let features: Vec<String> = ALL
        .iter()
        .filter(|b| b.tls == Tls::Own)
        .map(|b| format!("backend-{}", b.name))
        .collect();
    format!(
        "build with --features {}, or terminate TLS in front of the service",
        features.join(" or ")
    )
}

/// Every backend's name, compiled in or not, each after `prefix`, for help texts and
/// messages: `a, b<last>c` (`names_text("", " or ")` is `a, b or c`).
pub fn names_text(prefix: &str, last: &str) -> String {
    let names: Vec<String> = names().map(|n| format!("{prefix}{n}")).collect();
    match names.split_last() {
        Some((tail, [])) => tail.clone(),
        Some((tail, head)) => format!("{}{last}{tail}", head.join(", ")),
        None => String::new(),
    }
}

/// The rustls provider TLS uses with the backend `name`, and the name of the backend
/// it comes from: the backend's own when it is a rustls provider, else the first
/// compiled backend's that is one. `None` when this build has no fitting provider
/// (e.g. RustCrypto alone).
pub fn tls_provider(name: &str) -> Option<(Arc<rustls::crypto::CryptoProvider>, &'static str)> {
    let chosen = find(name)?;
    let from = match chosen.tls {
        Tls::Own => chosen,
        Tls::Any => ALL.iter().find(|b| b.rustls.is_some())?,
    };
    from.rustls.map(|make| (Arc::new(make()), from.name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_compiled_provider_carries_its_list_name() {
        for b in ALL {
            if let Some(p) = b.provider {
                assert_eq!(p.name, b.name);
            }
        }
        assert_eq!(
            compiled().len(),
            ALL.iter().filter(|b| b.provider.is_some()).count()
        );
    }

    #[test]
    fn tls_follows_the_list() {
        for b in ALL {
            let chosen = tls_provider(b.name).map(|(_, name)| name);
            match b.tls {
                Tls::Own => assert_eq!(chosen, b.rustls.map(|_| b.name)),
                Tls::Any => assert_eq!(
                    chosen,
                    ALL.iter().find(|o| o.rustls.is_some()).map(|o| o.name)
                ),
            }
        }
        assert!(tls_provider("no-such-backend").is_none());
    }

    #[test]
    fn the_advice_and_the_help_name_the_list() {
        assert_eq!(
            tls_advice(),
            "build with --features backend-aws-lc-rs or backend-ring, or terminate TLS in front of the service"
        );
        assert_eq!(names_text("", " or "), "aws-lc-rs, ring or rustcrypto");
        assert_eq!(
            names_text("backend-", ", "),
            "backend-aws-lc-rs, backend-ring, backend-rustcrypto"
        );
    }

    #[cfg(all(feature = "aws-lc-rs", feature = "rustcrypto"))]
    #[test]
    fn rustcrypto_borrows_the_first_rustls_provider() {
        assert_eq!(
            tls_provider("rustcrypto").map(|(_, n)| n),
            Some("aws-lc-rs")
        );
        assert_eq!(tls_provider("aws-lc-rs").map(|(_, n)| n), Some("aws-lc-rs"));
    }
}

//! # crypto-backends — the one list of crypto backends
//!
//! Every place that needs "all the backends" reads [`backend_list!`]: the backend
//! choice of the binary, the conformance suite and the cross matrix, the Wycheproof
//! tests, the fuzz targets' cross-check, the benches and the TLS provider choice. Each
//! backend is compiled in by its feature (see `Cargo.toml`); the application's
//! `backend-<name>` features switch those on.
//!
//! Adding a backend: its crate, its lines in this crate's `Cargo.toml` (the optional
//! dependency, its feature, and its name in `all`), one line in [`backend_list!`], and
//! one `backend-<name>` feature line in `app/Cargo.toml` (CONTRIBUTING.md has the
//! steps).
//!
//! A registry, not an adapter: it depends on `ports` and the backend crates only.

use ports::CryptoProvider;

/// Calls `$callback! { … }` with the list of backends, one line each:
/// `module_name = "CRYPTO_BACKEND name" in crate_name if "feature", tls own|any;`.
///
/// `tls own`: the backend is also a rustls provider, used for TLS when it is chosen.
/// `tls any`: TLS uses whichever rustls provider the build has.
/// The first line is the default backend (the binary's default feature).
#[macro_export]
macro_rules! backend_list {
    ($callback:ident) => {
        $callback! {
            aws_lc_rs = "aws-lc-rs" in crypto_aws_lc_rs if "aws-lc-rs", tls own;
            ring = "ring" in crypto_ring if "ring", tls own;
            rustcrypto = "rustcrypto" in crypto_rustcrypto if "rustcrypto", tls any;
        }
    };
}

/// How TLS picks its rustls provider for a backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tls {
    /// The rustls provider of the same name.
    Own,
    /// Whichever rustls provider the build has.
    Any,
}

/// One backend of the list.
#[derive(Debug, Clone, Copy)]
pub struct Backend {
    /// Its `CRYPTO_BACKEND` name.
    pub name: &'static str,
    /// The provider, when this build compiled it in.
    pub provider: Option<CryptoProvider>,
    /// How TLS picks its rustls provider.
    pub tls: Tls,
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
            }
        )*

        /// Every backend of the project, compiled in or not, in the list's order.
        pub const ALL: &[Backend] = &[$(
            Backend {
                name: $name,
                provider: $module::PROVIDER,
                tls: registry!(@tls $tls),
            },
        )*];
    };
    (@tls own) => { Tls::Own };
    (@tls any) => { Tls::Any };
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
}

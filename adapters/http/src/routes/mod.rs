//! One file per route: decoding the request, calling the domain, and mapping the
//! outcome to the answer, with the route's own wire shapes. No route knows the router.

pub(crate) mod assets;
pub(crate) mod exchange;
pub(crate) mod gateway;
pub(crate) mod health;
pub mod init;
pub mod purchase;
pub(crate) mod release_key;
pub(crate) mod revoke;
#[cfg(test)]
pub(crate) mod test_support;
pub(crate) mod well_known;

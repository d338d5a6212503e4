//! The server's signing identity (protocol v2): SERVER_SIGNING_KEY or
//! SERVER_SIGNING_KEY_FILE, and `session-crypto keygen --signing`.

use domain::ServerIdentity;
use domain::signing_key::{parse_signing_key, pkcs8_pem, public_key_pem};
use ports::CryptoProvider;
use zeroize::Zeroizing;

use crate::config::ServeArgs;

/// The signing identity, if one is configured.
///
/// # Errors
/// Both settings set, an unreadable file, or a key that is not P-256 — each message
/// naming the setting (never the key).
pub fn server_identity(
    args: &ServeArgs,
    crypto: CryptoProvider,
) -> Result<Option<ServerIdentity>, crate::Error> {
    let (name, bytes) = match (&args.server_signing_key, &args.server_signing_key_file) {
        (Some(_), Some(_)) => {
            return Err("set only one of SERVER_SIGNING_KEY and SERVER_SIGNING_KEY_FILE".into());
        }
        (Some(text), None) => {
            let text = text.trim();
            let bytes = if text.contains("-----BEGIN") {
                Zeroizing::new(text.as_bytes().to_vec())
            } else {
                // One line: base64 of the DER.
                Zeroizing::new(domain::encoding::base64_decode(text).ok_or(
                    "SERVER_SIGNING_KEY is neither PEM nor base64 DER \
                     (generate one with `session-crypto keygen --signing`)",
                )?)
            };
            ("SERVER_SIGNING_KEY", bytes)
        }
        (None, Some(path)) => {
            let bytes = std::fs::read(path)
                .map_err(|e| format!("SERVER_SIGNING_KEY_FILE {}: {e}", path.display()))?;
            ("SERVER_SIGNING_KEY_FILE", Zeroizing::new(bytes))
        }
        (None, None) => return Ok(None),
    };
    let scalar = parse_signing_key(&bytes).map_err(|e| format!("{name}: {e}"))?;
    ServerIdentity::from_scalar(crypto, &scalar)
        .map(Some)
        .map_err(|_| format!("{name}: the private key is not a valid P-256 scalar").into())
}

/// `keygen --signing`: a fresh P-256 key pair — the private key (PKCS#8 PEM, for
/// SERVER_SIGNING_KEY_FILE) and the public key (SPKI PEM, for clients to pin), with
/// its key id.
///
/// # Errors
/// The random number generator or the backend failed.
pub fn generate(crypto: CryptoProvider) -> Result<String, crate::Error> {
    let mut scalar = Zeroizing::new([0u8; 32]);
    // A uniformly random 256-bit string is below the group order but with probability
    // 2^-32; draw again in that case (the backend refuses it).
    for _ in 0..8 {
        crypto
            .random
            .fill(scalar.as_mut())
            .map_err(|_| crate::Error::Runtime("the random number generator failed".into()))?;
        if let Ok(identity) = ServerIdentity::from_scalar(crypto, &scalar) {
            let public = identity.public_key();
            return Ok(format!(
                "{}{}# key id {} (SERVER_SIGNING_KEY_FILE takes the private key; clients pin the public key)\n",
                pkcs8_pem(&scalar, &public).as_str(),
                public_key_pem(&public),
                identity.key_id()
            ));
        }
    }
    Err(crate::Error::Runtime(
        "cannot generate a signing key".into(),
    ))
}

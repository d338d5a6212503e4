//! The server's signing keys (protocol v2): the current one (SERVER_SIGNING_KEY or
//! SERVER_SIGNING_KEY_FILE) signs; during a rotation a next and a previous key are
//! published beside it (docs/operations.md); `session-crypto keygen --signing` makes
//! them.

use domain::signing_key::{parse_public_key, parse_signing_key, pkcs8_pem, public_key_pem};
use domain::{ServerIdentity, SigningKeys};
use ports::{CryptoProvider, P256PublicKey};
use zeroize::Zeroizing;

use crate::config::ServeArgs;

/// The settings of one key: the inline value's and the file's names and values.
struct KeySetting<'a> {
    name: &'static str,
    file_name: &'static str,
    inline: Option<&'a String>,
    file: Option<&'a std::path::PathBuf>,
}

/// A key's bytes and the name of the setting they came from.
type KeyBytes = (&'static str, Zeroizing<Vec<u8>>);

impl KeySetting<'_> {
    /// The bytes of the key and the name of the setting they came from.
    fn read(&self) -> Result<Option<KeyBytes>, crate::Error> {
        match (self.inline, self.file) {
            (Some(_), Some(_)) => {
                Err(format!("set only one of {} and {}", self.name, self.file_name).into())
            }
            (Some(text), None) => {
                let text = text.trim();
                let bytes = if text.contains("-----BEGIN") {
                    Zeroizing::new(text.as_bytes().to_vec())
                } else {
                    // One line: base64 of the DER (or, for a published key, of the point).
                    Zeroizing::new(domain::encoding::base64_decode(text).ok_or_else(|| {
                        format!(
                            "{} is neither PEM nor base64 (generate a key with \
                             `session-crypto keygen --signing`)",
                            self.name
                        )
                    })?)
                };
                Ok(Some((self.name, bytes)))
            }
            (None, Some(path)) => {
                let bytes = std::fs::read(path)
                    .map_err(|e| format!("{} {}: {e}", self.file_name, path.display()))?;
                Ok(Some((self.file_name, Zeroizing::new(bytes))))
            }
            (None, None) => Ok(None),
        }
    }
}

fn identity_from(
    crypto: CryptoProvider,
    name: &str,
    bytes: &[u8],
) -> Result<ServerIdentity, crate::Error> {
    let scalar = parse_signing_key(bytes).map_err(|e| format!("{name}: {e}"))?;
    ServerIdentity::from_scalar(crypto, &scalar)
        .map_err(|_| format!("{name}: the private key is not a valid P-256 scalar").into())
}

/// A key to publish: a public key (SPKI PEM, or the SEC1 point as base64 or raw), or
/// a private key whose public part is taken (so that the file `keygen --signing`
/// wrote serves both before and after the switch).
fn published_key(
    crypto: CryptoProvider,
    name: &str,
    bytes: &[u8],
) -> Result<P256PublicKey, crate::Error> {
    if let Ok(text) = std::str::from_utf8(bytes)
        && text.contains("-----BEGIN PUBLIC KEY-----")
    {
        return parse_public_key(text)
            .ok_or_else(|| format!("{name}: the public key is not a valid P-256 key").into());
    }
    if bytes.len() == 65 {
        return domain::p256::validate_public_key(bytes)
            .map_err(|_| format!("{name}: the public key is not a valid P-256 point").into());
    }
    match parse_signing_key(bytes) {
        Ok(_) => Ok(identity_from(crypto, name, bytes)?.public_key()),
        Err(domain::signing_key::SigningKeyError::Encrypted) => {
            Err(format!("{name}: an encrypted private key; give the public key instead").into())
        }
        Err(_) => Err(format!(
            "{name}: not a P-256 public key (SPKI PEM, or base64 of the point) nor a \
             P-256 private key"
        )
        .into()),
    }
}

/// The signing keys: none, or a current one with the next and previous keys.
///
/// # Errors
/// Two settings for one key, an unreadable file, a key that is not P-256, a
/// not-after time that is not RFC 3339 UTC, or a set clients could not follow — each
/// message naming the setting (never the key).
pub fn signing_keys(args: &ServeArgs, crypto: CryptoProvider) -> Result<SigningKeys, crate::Error> {
    let current = KeySetting {
        name: "SERVER_SIGNING_KEY",
        file_name: "SERVER_SIGNING_KEY_FILE",
        inline: args.server_signing_key.as_ref(),
        file: args.server_signing_key_file.as_ref(),
    };
    let next = KeySetting {
        name: "SERVER_SIGNING_KEY_NEXT",
        file_name: "SERVER_SIGNING_KEY_NEXT_FILE",
        inline: args.server_signing_key_next.as_ref(),
        file: args.server_signing_key_next_file.as_ref(),
    };
    let previous = KeySetting {
        name: "SERVER_SIGNING_KEY_PREVIOUS",
        file_name: "SERVER_SIGNING_KEY_PREVIOUS_FILE",
        inline: args.server_signing_key_previous.as_ref(),
        file: args.server_signing_key_previous_file.as_ref(),
    };
    let current = match current.read()? {
        Some((name, bytes)) => Some(identity_from(crypto, name, &bytes)?),
        None => None,
    };
    let publish = |setting: &KeySetting<'_>| -> Result<Option<P256PublicKey>, crate::Error> {
        match setting.read()? {
            Some((name, bytes)) => Ok(Some(published_key(crypto, name, &bytes)?)),
            None => Ok(None),
        }
    };
    let next = publish(&next)?;
    let previous = publish(&previous)?;
    let not_after = match &args.server_signing_key_previous_not_after {
        None => None,
        Some(_) if previous.is_none() => {
            return Err(
                "SERVER_SIGNING_KEY_PREVIOUS_NOT_AFTER is set but no previous key \
                        (SERVER_SIGNING_KEY_PREVIOUS_FILE)"
                    .into(),
            );
        }
        Some(text) => Some(
            domain::encoding::parse_utc_timestamp(text.trim()).ok_or_else(|| {
                format!(
                    "SERVER_SIGNING_KEY_PREVIOUS_NOT_AFTER {text:?}: expected an RFC 3339 UTC \
                     time such as 2026-12-31T12:00:00Z"
                )
            })?,
        ),
    };
    SigningKeys::new(crypto, current, next, previous.map(|p| (p, not_after)))
        .map_err(|e| crate::Error::Config(e.to_string()))
}

/// `keygen --signing`: a fresh P-256 key pair — the private key (PKCS#8 PEM, for
/// SERVER_SIGNING_KEY_FILE) and the public key (SPKI PEM, for clients to pin), with
/// its key id and the rotation steps.
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
                "{}{}# key id {}\n{KEYGEN_ADVICE}",
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

/// What `keygen --signing` adds after the key pair (comments: the output still serves
/// as SERVER_SIGNING_KEY_FILE and as a client's --server-key-file).
const KEYGEN_ADVICE: &str = "\
# First key: SERVER_SIGNING_KEY_FILE=<this file>; clients pin the public key.
# Rotation (docs/operations.md, \"Rotating the signing key\"):
#   1. SERVER_SIGNING_KEY_NEXT_FILE=<this file> on every instance; clients pin the
#      current and the next key (GET /.well-known/session-crypto lists both).
#   2. When every client pins it (at least 300 s after every instance publishes it):
#      SERVER_SIGNING_KEY_FILE=<this file>, SERVER_SIGNING_KEY_PREVIOUS_FILE=<the old
#      key's public PEM>, SERVER_SIGNING_KEY_PREVIOUS_NOT_AFTER=<end of the roll-out
#      + 300 s, RFC 3339 UTC>; destroy the old private key.
#   3. After that time: remove the previous key. `session-crypto check-config` shows
#      the stage.
";

/// What `check-config` prints and the server logs about the signing keys at `now`
/// (Unix seconds): one line a key, with the stage of a rotation and what to do next.
pub fn describe(keys: &SigningKeys, now: u64) -> Vec<String> {
    use domain::KeyStatus;
    let cache = http_adapter::WELL_KNOWN_MAX_AGE_SEC;
    let all = keys.all();
    if all.is_empty() {
        return vec!["v2 init responses are not signed (no SERVER_SIGNING_KEY)".into()];
    }
    all.iter()
        .map(|k| {
            let what = match (k.status, k.not_after) {
                (KeyStatus::Current, _) => "current: signs v2 init responses".to_owned(),
                (KeyStatus::Next, _) => format!(
                    "next: published for clients to pin; make it current once every client \
                     pins it (at least {cache} s after every instance publishes it)"
                ),
                (KeyStatus::Previous, None) => format!(
                    "previous: published with no end; set SERVER_SIGNING_KEY_PREVIOUS_NOT_AFTER \
                     to the end of the roll-out + {cache} s"
                ),
                (KeyStatus::Previous, Some(t)) if now < t => format!(
                    "previous: published until {} (in {} s), then dropped",
                    domain::encoding::utc_timestamp(t),
                    t - now
                ),
                (KeyStatus::Previous, Some(t)) => format!(
                    "previous: past its not-after time {}, no longer published; remove it",
                    domain::encoding::utc_timestamp(t)
                ),
            };
            format!("signing key {} {what}", k.key_id)
        })
        .collect()
}

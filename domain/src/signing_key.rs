//! The server's P-256 signing key in the files operators keep (`SERVER_SIGNING_KEY`):
//! PKCS#8 (`BEGIN PRIVATE KEY`, what `session-crypto keygen --signing` and
//! `openssl genpkey` write) or SEC1 (`BEGIN EC PRIVATE KEY`, `openssl ecparam -genkey`),
//! as PEM or DER. Only the private scalar is read; the public key is recomputed from it.

use ports::P256PublicKey;
use ports::crypto::KEY_LEN;
use zeroize::Zeroizing;

use crate::encoding::{base64_decode, base64_encode};

/// Why a signing key could not be read. No variant holds key material.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SigningKeyError {
    /// Neither PEM with a known label nor DER.
    #[error("not a PEM or DER private key")]
    Format,
    /// Encrypted PEM (the server cannot prompt for a passphrase).
    #[error(
        "encrypted private keys are not supported; store the key unencrypted in a file only the server can read"
    )]
    Encrypted,
    /// A private key, but not for P-256 (or malformed).
    #[error("not a P-256 (prime256v1) EC private key")]
    NotP256,
}

/// id-ecPublicKey (1.2.840.10045.2.1).
const OID_EC_PUBLIC_KEY: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01];
/// prime256v1 (1.2.840.10045.3.1.7).
const OID_P256: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];

/// One DER TLV: tag, contents, rest.
fn tlv(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = match first {
        0..=0x7f => (usize::from(first), rest),
        0x81 => (usize::from(*rest.first()?), &rest[1..]),
        0x82 => (
            usize::from(u16::from_be_bytes([*rest.first()?, *rest.get(1)?])),
            rest.get(2..)?,
        ),
        _ => return None,
    };
    (rest.len() >= len).then(|| (tag, &rest[..len], &rest[len..]))
}

fn expect(input: &[u8], tag: u8) -> Option<(&[u8], &[u8])> {
    let (t, contents, rest) = tlv(input)?;
    (t == tag).then_some((contents, rest))
}

/// SEC1 `ECPrivateKey`: version 1, the scalar, optionally `[0]` curve OID and `[1]`
/// public key. `curve_known` says whether an outer structure already named P-256.
fn sec1_scalar(der: &[u8], curve_known: bool) -> Option<[u8; KEY_LEN]> {
    let (seq, _) = expect(der, 0x30)?;
    let (version, rest) = expect(seq, 0x02)?;
    if version != [1] {
        return None;
    }
    let (scalar, mut rest) = expect(rest, 0x04)?;
    let mut p256 = curve_known;
    while let Some((tag, contents, more)) = tlv(rest) {
        if tag == 0xa0 {
            let (oid, _) = expect(contents, 0x06)?;
            if oid != OID_P256 {
                return None;
            }
            p256 = true;
        }
        rest = more;
    }
    (p256 && scalar.len() == KEY_LEN).then(|| scalar.try_into().ok())?
}

/// PKCS#8 `PrivateKeyInfo` with algorithm id-ecPublicKey / prime256v1.
fn pkcs8_scalar(der: &[u8]) -> Option<[u8; KEY_LEN]> {
    let (seq, _) = expect(der, 0x30)?;
    let (version, rest) = expect(seq, 0x02)?;
    if version != [0] && version != [1] {
        return None;
    }
    let (alg, rest) = expect(rest, 0x30)?;
    let (oid, params) = expect(alg, 0x06)?;
    let (curve, _) = expect(params, 0x06)?;
    if oid != OID_EC_PUBLIC_KEY || curve != OID_P256 {
        return None;
    }
    let (inner, _) = expect(rest, 0x04)?;
    sec1_scalar(inner, true)
}

/// The private scalar of a P-256 key in PKCS#8 or SEC1, PEM or DER.
///
/// # Errors
/// [`SigningKeyError`].
pub fn parse_signing_key(file: &[u8]) -> Result<Zeroizing<[u8; KEY_LEN]>, SigningKeyError> {
    let der = match std::str::from_utf8(file) {
        Ok(text) if text.contains("-----BEGIN") => pem_body(text)?,
        _ => Zeroizing::new(file.to_vec()),
    };
    pkcs8_scalar(&der)
        .or_else(|| sec1_scalar(&der, false))
        .map(Zeroizing::new)
        .ok_or(SigningKeyError::NotP256)
}

fn pem_body(text: &str) -> Result<Zeroizing<Vec<u8>>, SigningKeyError> {
    if text.contains("ENCRYPTED") {
        return Err(SigningKeyError::Encrypted);
    }
    for label in ["PRIVATE KEY", "EC PRIVATE KEY"] {
        let begin = format!("-----BEGIN {label}-----");
        let end = format!("-----END {label}-----");
        if let Some(start) = text.find(&begin) {
            let body = &text[start + begin.len()..];
            let stop = body.find(&end).ok_or(SigningKeyError::Format)?;
            let b64: Zeroizing<String> = Zeroizing::new(
                body[..stop]
                    .chars()
                    .filter(|c| !c.is_ascii_whitespace())
                    .collect(),
            );
            return base64_decode(&b64)
                .map(Zeroizing::new)
                .ok_or(SigningKeyError::Format);
        }
    }
    Err(SigningKeyError::Format)
}

fn pem(label: &str, der: &[u8]) -> String {
    let b64 = Zeroizing::new(base64_encode(der));
    let mut out = format!("-----BEGIN {label}-----\n");
    for line in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(line).unwrap_or_default());
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

/// PKCS#8 PEM of a P-256 key (with its public key), as `openssl genpkey` writes it.
pub fn pkcs8_pem(scalar: &[u8; KEY_LEN], public_key: &P256PublicKey) -> Zeroizing<String> {
    let mut der = Zeroizing::new(Vec::with_capacity(138));
    der.extend_from_slice(&[0x30, 0x81, 0x87, 0x02, 0x01, 0x00, 0x30, 0x13, 0x06, 0x07]);
    der.extend_from_slice(OID_EC_PUBLIC_KEY);
    der.extend_from_slice(&[0x06, 0x08]);
    der.extend_from_slice(OID_P256);
    der.extend_from_slice(&[0x04, 0x6d, 0x30, 0x6b, 0x02, 0x01, 0x01, 0x04, 0x20]);
    der.extend_from_slice(scalar);
    der.extend_from_slice(&[0xa1, 0x44, 0x03, 0x42, 0x00]);
    der.extend_from_slice(public_key.as_bytes());
    Zeroizing::new(pem("PRIVATE KEY", &der))
}

/// SubjectPublicKeyInfo PEM of a P-256 public key.
pub fn public_key_pem(public_key: &P256PublicKey) -> String {
    let mut der = vec![0x30, 0x59, 0x30, 0x13, 0x06, 0x07];
    der.extend_from_slice(OID_EC_PUBLIC_KEY);
    der.extend_from_slice(&[0x06, 0x08]);
    der.extend_from_slice(OID_P256);
    der.extend_from_slice(&[0x03, 0x42, 0x00]);
    der.extend_from_slice(public_key.as_bytes());
    pem("PUBLIC KEY", &der)
}

/// A server public key to pin, as `keygen --signing` prints it (SPKI PEM) or as
/// `GET /.well-known/session-crypto` publishes it (`publicKey`: base64 of the SEC1
/// point). The point is validated.
pub fn parse_public_key(text: &str) -> Option<P256PublicKey> {
    let text = text.trim();
    let bytes = if let Some(start) = text.find("-----BEGIN PUBLIC KEY-----") {
        let body = &text[start + "-----BEGIN PUBLIC KEY-----".len()..];
        let body = &body[..body.find("-----END PUBLIC KEY-----")?];
        let der = base64_decode(
            &body
                .chars()
                .filter(|c| !c.is_ascii_whitespace())
                .collect::<String>(),
        )?;
        let header = der.len().checked_sub(65)?;
        let mut expected = vec![0x30, 0x59, 0x30, 0x13, 0x06, 0x07];
        expected.extend_from_slice(OID_EC_PUBLIC_KEY);
        expected.extend_from_slice(&[0x06, 0x08]);
        expected.extend_from_slice(OID_P256);
        expected.extend_from_slice(&[0x03, 0x42, 0x00]);
        if der[..header] != expected[..] {
            return None;
        }
        der[header..].to_vec()
    } else {
        base64_decode(text)?
    };
    crate::p256::validate_public_key(&bytes).ok()
}

/// Every public key in `text`: PEM `PUBLIC KEY` blocks and lines of base64 (SEC1
/// points), in order; other lines (comments such as `keygen --signing`'s `# key id`)
/// are skipped. `None` if a block or a base64 line is not a valid key, or if there is
/// no key at all.
pub fn parse_public_keys(text: &str) -> Option<Vec<P256PublicKey>> {
    const END: &str = "-----END PUBLIC KEY-----";
    let mut keys = Vec::new();
    let mut rest = text;
    while !rest.trim().is_empty() {
        let line_end = rest.find('\n').map_or(rest.len(), |i| i + 1);
        let line = rest[..line_end].trim();
        if line.starts_with("-----BEGIN PUBLIC KEY-----") {
            let stop = rest.find(END)? + END.len();
            keys.push(parse_public_key(&rest[..stop])?);
            rest = &rest[stop..];
            continue;
        }
        if line.starts_with("-----BEGIN") {
            // A private key (or anything else) between the public keys: skip the block.
            let stop = rest[line_end..].find("-----END")? + line_end;
            let after = rest[stop..].find('\n').map_or(rest.len(), |i| stop + i + 1);
            rest = &rest[after..];
            continue;
        }
        if !line.is_empty() && !line.starts_with('#') {
            keys.push(parse_public_key(line)?);
        }
        rest = &rest[line_end..];
    }
    (!keys.is_empty()).then_some(keys)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SCALAR: [u8; 32] = [7; 32];

    fn public() -> P256PublicKey {
        P256PublicKey([4; 65])
    }

    #[test]
    fn pkcs8_round_trips() {
        let pem = pkcs8_pem(&SCALAR, &public());
        assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----\n"));
        assert_eq!(*parse_signing_key(pem.as_bytes()).unwrap(), SCALAR);
        // DER too.
        let der = base64_decode(
            &pem.lines()
                .filter(|l| !l.starts_with("-----"))
                .collect::<String>(),
        )
        .unwrap();
        assert_eq!(der.len(), 138);
        assert_eq!(*parse_signing_key(&der).unwrap(), SCALAR);
    }

    #[test]
    fn public_keys_parse_from_pem_and_base64() {
        // The generator point: a valid public key.
        let g = base64_decode(
            "BGsX0fLhLEJH+Lzm5WOkQPJ3A32BLeszoPShOUXYmMKWT+NC4v4af5uO5+tKfA+eFivOM1drMV7Oy7ZAaDe/UfU=",
        )
        .unwrap();
        let point = P256PublicKey(g.clone().try_into().unwrap());
        let pem = public_key_pem(&point);
        assert_eq!(parse_public_key(&pem), Some(point));
        assert_eq!(parse_public_key(&base64_encode(&g)), Some(point));
        let mut off = g;
        off[64] ^= 1;
        assert_eq!(
            parse_public_key(&base64_encode(&off)),
            None,
            "not on the curve"
        );
        assert_eq!(parse_public_key("garbage"), None);
    }

    #[test]
    fn a_set_of_public_keys_is_read_from_pem_blocks_and_base64_lines() {
        let g = "BGsX0fLhLEJH+Lzm5WOkQPJ3A32BLeszoPShOUXYmMKWT+NC4v4af5uO5+tKfA+eFivOM1drMV7Oy7ZAaDe/UfU=";
        let point = P256PublicKey(base64_decode(g).unwrap().try_into().unwrap());
        let private = pkcs8_pem(&SCALAR, &point);
        // keygen --signing output twice over, then a base64 line.
        let text = format!(
            "{}{}# key id 0123\n{}{}# key id 4567\n\n{g}\n",
            *private,
            public_key_pem(&point),
            *private,
            public_key_pem(&point)
        );
        assert_eq!(parse_public_keys(&text), Some(vec![point; 3]));
        assert_eq!(parse_public_keys("# nothing\n"), None);
        assert_eq!(parse_public_keys(&format!("{g}\nnot-a-key\n")), None);
        let mut off = base64_decode(g).unwrap();
        off[64] ^= 1;
        let bad = format!("{g}\n{}\n", base64_encode(&off));
        assert_eq!(parse_public_keys(&bad), None, "one bad key spoils the set");
    }

    #[test]
    fn sec1_from_openssl_ecparam_is_read() {
        // `openssl ecparam -name prime256v1 -genkey -noout` layout, scalar 0x07…07.
        let mut der = vec![0x30, 0x77, 0x02, 0x01, 0x01, 0x04, 0x20];
        der.extend_from_slice(&SCALAR);
        der.extend_from_slice(&[0xa0, 0x0a, 0x06, 0x08]);
        der.extend_from_slice(OID_P256);
        der.extend_from_slice(&[0xa1, 0x44, 0x03, 0x42, 0x00]);
        der.extend_from_slice(&[4; 65]);
        let pem = pem("EC PRIVATE KEY", &der);
        assert_eq!(*parse_signing_key(pem.as_bytes()).unwrap(), SCALAR);
    }

    #[test]
    fn other_curves_and_garbage_are_refused_by_name() {
        let mut der = vec![0x30, 0x77, 0x02, 0x01, 0x01, 0x04, 0x20];
        der.extend_from_slice(&SCALAR);
        // secp256k1 (1.3.132.0.10)
        der.extend_from_slice(&[0xa0, 0x07, 0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x0a]);
        assert_eq!(parse_signing_key(&der), Err(SigningKeyError::NotP256));
        assert_eq!(
            parse_signing_key(b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"),
            Err(SigningKeyError::Format)
        );
        assert_eq!(
            parse_signing_key(
                b"-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAA\n-----END ENCRYPTED PRIVATE KEY-----\n"
            ),
            Err(SigningKeyError::Encrypted)
        );
        assert_eq!(parse_signing_key(b"hello"), Err(SigningKeyError::NotP256));
        assert_eq!(parse_signing_key(&[]), Err(SigningKeyError::NotP256));
    }
}

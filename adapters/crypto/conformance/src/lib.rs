//! # crypto-conformance — one suite, every backend; the fuzz targets' bodies
//!
//! Test support (not linked into the service): known-answer checks that every
//! [`CryptoProvider`] must pass — the protocol vectors of docs/PROTOCOL.md §12 (kept in the
//! repository's `vectors/`), RFC 5869 HKDF-SHA256 and the GCM specification's AES-256
//! test case — plus behavioural checks. `tests/backends.rs` runs the suite once per
//! backend and adds the cross-backend matrix. [`fuzz`] holds the bodies of the
//! cargo-fuzz targets. A test-support crate: it may depend on every adapter, and
//! nothing in the service depends on it.

pub mod exchange_vectors;
pub mod fuzz;
pub mod v2_vectors;

use ports::crypto::IV_LEN;
use ports::{CryptoProvider, P256PublicKey, SessionKey, SharedSecret};
use serde_json::Value;

/// The reference vector file, embedded.
pub const REFERENCE_VECTORS: &str = include_str!("../../../../vectors/reference-v1.json");

/// Parsed reference vectors.
#[derive(Debug)]
pub struct Vectors(Value);

impl Vectors {
    /// Loads [`REFERENCE_VECTORS`].
    ///
    /// # Panics
    /// If the embedded file is not JSON (a build-time invariant).
    pub fn load() -> Self {
        Self(serde_json::from_str(REFERENCE_VECTORS).expect("vectors/reference-v1.json is JSON"))
    }

    /// A string field by JSON pointer, e.g. `/request/iv`.
    ///
    /// # Panics
    /// If the field is absent.
    pub fn text(&self, pointer: &str) -> &str {
        self.0
            .pointer(pointer)
            .and_then(Value::as_str)
            .unwrap_or_else(|| panic!("vector {pointer}"))
    }

    /// A hex field, decoded.
    ///
    /// # Panics
    /// If the field is absent or not hex.
    pub fn bytes(&self, pointer: &str) -> Vec<u8> {
        hex::decode(self.text(pointer)).expect("hex vector")
    }

    /// A base64 field, decoded.
    ///
    /// # Panics
    /// If the field is absent or not base64.
    pub fn b64(&self, pointer: &str) -> Vec<u8> {
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD
            .decode(self.text(pointer))
            .expect("base64 vector")
    }

    /// A 32-byte field.
    ///
    /// # Panics
    /// If the field is not 32 bytes of hex.
    pub fn array32(&self, pointer: &str) -> [u8; 32] {
        self.bytes(pointer).try_into().expect("32 bytes")
    }
}

/// Sealed with a fixed IV: the conformance suite needs deterministic output.
fn seal_with_iv(
    p: &CryptoProvider,
    key: &SessionKey,
    iv: &[u8],
    aad: &[u8],
    plain: &[u8],
) -> Vec<u8> {
    let iv: [u8; IV_LEN] = iv.try_into().expect("12-byte IV");
    let mut buf = plain.to_vec();
    p.aead.seal(key, &iv, aad, &mut buf).expect("seal");
    [iv.as_slice(), &buf].concat()
}

fn open(p: &CryptoProvider, key: &SessionKey, aad: &[u8], envelope: &[u8]) -> Option<Vec<u8>> {
    let iv: [u8; IV_LEN] = envelope.get(..IV_LEN)?.try_into().ok()?;
    let mut buf = envelope[IV_LEN..].to_vec();
    let len = p.aead.open(key, &iv, aad, &mut buf).ok()?;
    buf.truncate(len);
    Some(buf)
}

/// §3.5: fixed scalars give the vector public keys, and ECDH both ways gives `Z`.
pub fn reference_ecdh(p: &CryptoProvider) {
    let v = Vectors::load();
    let client = p
        .key_agreement
        .import_private_scalar(&v.array32("/client_private_scalar"))
        .unwrap();
    let server = p
        .key_agreement
        .import_private_scalar(&v.array32("/server_private_scalar"))
        .unwrap();
    assert_eq!(
        client.public_key().0.to_vec(),
        v.b64("/client_public_key_b64")
    );
    assert_eq!(
        server.public_key().0.to_vec(),
        v.b64("/server_public_key_b64")
    );
    let (cpub, spub) = (client.public_key(), server.public_key());
    let z1 = client.agree(&spub).unwrap();
    let z2 = server.agree(&cpub).unwrap();
    assert_eq!(z1.expose().to_vec(), v.bytes("/shared_secret"));
    assert_eq!(z2.expose(), z1.expose());
}

/// §3.5: HKDF(Z, sessionId, "SESSION|A256GCM|" + clientId) = session key.
pub fn reference_session_key(p: &CryptoProvider) {
    let v = Vectors::load();
    let mut okm = [0u8; 32];
    let z = SharedSecret::from_bytes(v.array32("/shared_secret"));
    p.hkdf
        .derive(
            v.text("/session_id_ascii").as_bytes(),
            z.expose(),
            &[v.text("/hkdf_info_ascii").as_bytes()],
            &mut okm,
        )
        .unwrap();
    assert_eq!(okm.to_vec(), v.bytes("/session_key"));
    assert_eq!(okm.to_vec(), v.b64("/session_key_b64"));
}

/// §3.5: the request and response envelopes, byte for byte, and back.
pub fn reference_envelopes(p: &CryptoProvider) {
    let v = Vectors::load();
    let key = SessionKey::from_bytes(v.array32("/session_key"));
    for dir in ["request", "response"] {
        let aad = v.text(&format!("/{dir}/aad_ascii")).as_bytes();
        let plain = v.text(&format!("/{dir}/plaintext_ascii")).as_bytes();
        let env = seal_with_iv(p, &key, &v.bytes(&format!("/{dir}/iv")), aad, plain);
        assert_eq!(
            hex::encode(&env),
            v.text(&format!("/{dir}/envelope")),
            "{dir} envelope"
        );
        assert_eq!(open(p, &key, aad, &env).as_deref(), Some(plain));
    }
}

/// RFC 5869 test cases 1–3 (SHA-256).
pub fn rfc5869(p: &CryptoProvider) {
    // (IKM, salt, info, OKM)
    type Case = (Vec<u8>, Vec<u8>, Vec<u8>, &'static str);
    let cases: [Case; 3] = [
        (
            vec![0x0b; 22],
            (0x00..=0x0c).collect(),
            (0xf0..=0xf9).collect(),
            "3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf34007208d5b887185865",
        ),
        (
            (0x00..=0x4f).collect(),
            (0x60..=0xaf).collect(),
            (0xb0..=0xff).collect(),
            "b11e398dc80327a1c8e7f78c596a49344f012eda2d4efad8a050cc4c19afa97c59045a99cac7827271cb41c65e590e09da3275600c2f09b8367793a9aca3db71cc30c58179ec3e87c14c01d5c1f3434f1d87",
        ),
        (
            vec![0x0b; 22],
            vec![],
            vec![],
            "8da4e775a563c18f715f802a063c5a31b8a11f5c5ee1879ec3454e5f3c738d2d9d201395faa4b61a96c8",
        ),
    ];
    for (i, (ikm, salt, info, okm)) in cases.iter().enumerate() {
        let mut out = vec![0u8; okm.len() / 2];
        p.hkdf.derive(salt, ikm, &[info], &mut out).unwrap();
        assert_eq!(hex::encode(&out), *okm, "RFC 5869 case {}", i + 1);
        // info given in two parts is the same as its concatenation
        let (a, b) = info.split_at(info.len() / 2);
        let mut split = vec![0u8; out.len()];
        p.hkdf.derive(salt, ikm, &[a, b], &mut split).unwrap();
        assert_eq!(split, out);
    }
    let mut empty = [0u8; 0];
    assert!(p.hkdf.derive(b"s", b"k", &[], &mut empty).is_err());
    let mut too_long = vec![0u8; 255 * 32 + 1];
    assert!(p.hkdf.derive(b"s", b"k", &[], &mut too_long).is_err());
}

/// The GCM specification's AES-256 test case 16 (with AAD), and tamper rejection.
pub fn aes_gcm_known_answer(p: &CryptoProvider) {
    let key = SessionKey::from_bytes(
        hex::decode("feffe9928665731c6d6a8f9467308308feffe9928665731c6d6a8f9467308308")
            .unwrap()
            .try_into()
            .unwrap(),
    );
    let iv = hex::decode("cafebabefacedbaddecaf888").unwrap();
    let plain = hex::decode("d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a721c3c0c95956809532fcf0e2449a6b525b16aedf5aa0de657ba637b39").unwrap();
    let aad = hex::decode("feedfacedeadbeeffeedfacedeadbeefabaddad2").unwrap();
    let env = seal_with_iv(p, &key, &iv, &aad, &plain);
    assert_eq!(
        hex::encode(&env[IV_LEN..]),
        "522dc1f099567d07f47f37a32a84427d643a8cdcbfe5c0c97598a2bd2555d1aa8cb08e48590dbb3da7b08b1056828838c5f61e6393ba7a0abcc9f66276fc6ece0f4e1768cddf8853bb2d551b"
    );
    for i in 0..env.len() {
        let mut t = env.clone();
        t[i] ^= 0x80;
        assert_eq!(open(p, &key, &aad, &t), None, "flipped byte {i}");
    }
    assert_eq!(open(p, &key, b"other aad", &env), None);
    assert_eq!(open(p, &key, &aad, &env[..IV_LEN + 15]), None);
}

/// Fresh key pairs agree both ways, public keys are 65-byte uncompressed points, and
/// two generated keys differ.
pub fn generated_keys_agree(p: &CryptoProvider) {
    let a = p.key_agreement.generate().unwrap();
    let b = p.key_agreement.generate().unwrap();
    let (pa, pb) = (a.public_key(), b.public_key());
    assert_eq!(pa.0[0], 0x04);
    assert_ne!(pa, pb);
    assert_eq!(
        a.agree(&pb).unwrap().expose(),
        b.agree(&pa).unwrap().expose()
    );
}

/// Invalid scalars are refused; an off-curve peer point makes agreement fail (the
/// domain validates first, this is defence in depth).
pub fn refuses_invalid_keys(p: &CryptoProvider) {
    assert!(p.key_agreement.import_private_scalar(&[0; 32]).is_err());
    assert!(p.key_agreement.import_private_scalar(&[0xff; 32]).is_err());
    let a = p.key_agreement.generate().unwrap();
    let mut off = a.public_key();
    off.0[64] ^= 1;
    let b = p.key_agreement.generate().unwrap();
    assert!(b.agree(&off).is_err());
    let b = p.key_agreement.generate().unwrap();
    assert!(b.agree(&P256PublicKey([0; 65])).is_err());
}

/// The RNG fills and does not repeat itself.
pub fn random_fills(p: &CryptoProvider) {
    let (mut a, mut b) = ([0u8; 32], [0u8; 32]);
    p.random.fill(&mut a).unwrap();
    p.random.fill(&mut b).unwrap();
    assert_ne!(a, b);
    assert_ne!(a, [0; 32]);
}

/// SHA-256 (FIPS 180-2 "abc") and HMAC-SHA256 (RFC 4231 test cases 1 and 2), with the
/// input split across parts as the protocol passes it.
pub fn digests_known_answer(p: &CryptoProvider) {
    assert_eq!(
        hex::encode(p.digests.sha256(&[b"a", b"bc"])),
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    );
    assert_eq!(
        hex::encode(p.digests.sha256(&[])),
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    );
    // RFC 4231 uses keys of other lengths; the port takes 32-byte keys, so these are
    // the RFC's messages under a 32-byte key, checked against Python's hmac module.
    let key = [0x0bu8; 32];
    assert_eq!(
        hex::encode(p.digests.hmac_sha256(&key, &[b"Hi ", b"There"])),
        "198a607eb44bfbc69903a0f1cf2bbdc5ba0aa3f3d9ae3c1c7a3b1696a0b68cf7"
    );
    let tag = p.digests.hmac_sha256(&key, &[b"Hi There"]);
    assert!(p.digests.hmac_sha256_verify(&key, &[b"Hi There"], &tag));
    let mut bad = tag;
    bad[31] ^= 1;
    assert!(!p.digests.hmac_sha256_verify(&key, &[b"Hi There"], &bad));
    assert!(
        !p.digests
            .hmac_sha256_verify(&key, &[b"Hi There"], &tag[..31])
    );
}

/// ECDSA P-256: a signature verifies, and no longer does for another message, key or
/// length; invalid scalars are refused.
pub fn ecdsa_round_trip(p: &CryptoProvider) {
    let key = p.ecdsa.signing_key(&[0x33; 32]).unwrap();
    let other = p.ecdsa.signing_key(&[0x44; 32]).unwrap();
    let sig = key.sign(b"transcript").unwrap();
    assert!(p.ecdsa.verify(&key.public_key(), b"transcript", &sig));
    assert!(!p.ecdsa.verify(&key.public_key(), b"transcripT", &sig));
    assert!(!p.ecdsa.verify(&other.public_key(), b"transcript", &sig));
    assert!(!p.ecdsa.verify(&key.public_key(), b"transcript", &sig[..63]));
    let mut flipped = sig;
    flipped[10] ^= 1;
    assert!(!p.ecdsa.verify(&key.public_key(), b"transcript", &flipped));
    // The public key is the one ECDH derives from the same scalar.
    let ecdh = p.key_agreement.import_private_scalar(&[0x33; 32]).unwrap();
    assert_eq!(key.public_key(), ecdh.public_key());
    assert!(p.ecdsa.signing_key(&[0; 32]).is_err());
    assert!(p.ecdsa.signing_key(&[0xff; 32]).is_err());
}

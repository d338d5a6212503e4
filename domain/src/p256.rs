//! Validation of a peer's P-256 public key (docs/PROTOCOL.md §3), done here — before any
//! key generation and identically for every backend — so an invalid point is always a
//! 400 and the three backends can never disagree on what is acceptable.
//!
//! The arithmetic is plain Montgomery multiplication over four 64-bit limbs. It works
//! on public data only, so it needs no constant-time care.

use ports::P256PublicKey;
use ports::crypto::P256_PUBLIC_KEY_LEN;

type Fe = [u64; 4]; // little-endian limbs

/// p = 2^256 − 2^224 + 2^192 + 2^96 − 1
const P: Fe = [
    0xffff_ffff_ffff_ffff,
    0x0000_0000_ffff_ffff,
    0x0000_0000_0000_0000,
    0xffff_ffff_0000_0001,
];
/// R² mod p with R = 2^256, to enter the Montgomery domain.
const R2: Fe = [
    0x0000_0000_0000_0003,
    0xffff_fffb_ffff_ffff,
    0xffff_ffff_ffff_fffe,
    0x0000_0004_ffff_fffd,
];
/// The curve coefficient b.
const B: Fe = [
    0x3bce_3c3e_27d2_604b,
    0x651d_06b0_cc53_b0f6,
    0xb3eb_bd55_7698_86bc,
    0x5ac6_35d8_aa3a_93e7,
];

/// Why a public key was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PublicKeyError {
    /// Not exactly 65 bytes.
    #[error("public key is not 65 bytes")]
    Length,
    /// First byte is not 0x04 (compressed and hybrid forms are refused).
    #[error("public key is not an uncompressed point")]
    NotUncompressed,
    /// A coordinate is not below the field prime.
    #[error("public key coordinate out of range")]
    CoordinateRange,
    /// The point does not satisfy the curve equation.
    #[error("public key is not on P-256")]
    NotOnCurve,
}

/// Checks the SEC1 encoding and that the point lies on P-256 (docs/PROTOCOL.md §3).
///
/// # Errors
/// [`PublicKeyError`] naming the first failed check, in the order of §3.1.
pub fn validate_public_key(bytes: &[u8]) -> Result<P256PublicKey, PublicKeyError> {
    let bytes: &[u8; P256_PUBLIC_KEY_LEN] = bytes.try_into().map_err(|_| PublicKeyError::Length)?;
    if bytes[0] != 0x04 {
        return Err(PublicKeyError::NotUncompressed);
    }
    let x = from_be(&bytes[1..33]);
    let y = from_be(&bytes[33..65]);
    if !less_than_p(&x) || !less_than_p(&y) {
        return Err(PublicKeyError::CoordinateRange);
    }
    // The identity has no affine encoding, and (0, 0) is not on the curve because b ≠ 0.
    let (x, y, b) = (to_mont(&x), to_mont(&y), to_mont(&B));
    let lhs = mont_mul(&y, &y);
    let x3 = mont_mul(&mont_mul(&x, &x), &x);
    let three_x = add_mod(&add_mod(&x, &x), &x);
    let rhs = add_mod(&sub_mod(&x3, &three_x), &b);
    if lhs != rhs {
        return Err(PublicKeyError::NotOnCurve);
    }
    Ok(P256PublicKey(*bytes))
}

fn from_be(bytes: &[u8]) -> Fe {
    let mut out = [0u64; 4];
    for (i, chunk) in bytes.chunks_exact(8).enumerate() {
        out[3 - i] = u64::from_be_bytes(chunk.try_into().unwrap_or([0; 8]));
    }
    out
}

fn less_than_p(a: &Fe) -> bool {
    for i in (0..4).rev() {
        if a[i] != P[i] {
            return a[i] < P[i];
        }
    }
    false
}

/// a − b over 256 bits, returning the borrow.
fn sub_raw(a: &Fe, b: &Fe) -> (Fe, bool) {
    let mut out = [0u64; 4];
    let mut borrow = false;
    for i in 0..4 {
        let (d1, b1) = a[i].overflowing_sub(b[i]);
        let (d2, b2) = d1.overflowing_sub(u64::from(borrow));
        out[i] = d2;
        borrow = b1 || b2;
    }
    (out, borrow)
}

fn add_raw(a: &Fe, b: &Fe) -> (Fe, bool) {
    let mut out = [0u64; 4];
    let mut carry = false;
    for i in 0..4 {
        let (s1, c1) = a[i].overflowing_add(b[i]);
        let (s2, c2) = s1.overflowing_add(u64::from(carry));
        out[i] = s2;
        carry = c1 || c2;
    }
    (out, carry)
}

fn add_mod(a: &Fe, b: &Fe) -> Fe {
    let (sum, carry) = add_raw(a, b);
    if carry || !less_than_p(&sum) {
        sub_raw(&sum, &P).0
    } else {
        sum
    }
}

fn sub_mod(a: &Fe, b: &Fe) -> Fe {
    let (diff, borrow) = sub_raw(a, b);
    if borrow { add_raw(&diff, &P).0 } else { diff }
}

/// Montgomery product a·b·R⁻¹ mod p (CIOS). For P-256, −p⁻¹ mod 2^64 = 1.
fn mont_mul(a: &Fe, b: &Fe) -> Fe {
    let mut t = [0u64; 6];
    for &bi in b {
        let mut carry: u128 = 0;
        for j in 0..4 {
            let s = u128::from(t[j]) + u128::from(a[j]) * u128::from(bi) + carry;
            t[j] = s as u64;
            carry = s >> 64;
        }
        let s = u128::from(t[4]) + carry;
        t[4] = s as u64;
        t[5] = (s >> 64) as u64;

        let m = t[0];
        let mut carry = (u128::from(t[0]) + u128::from(m) * u128::from(P[0])) >> 64;
        for j in 1..4 {
            let s = u128::from(t[j]) + u128::from(m) * u128::from(P[j]) + carry;
            t[j - 1] = s as u64;
            carry = s >> 64;
        }
        let s = u128::from(t[4]) + carry;
        t[3] = s as u64;
        t[4] = t[5] + (s >> 64) as u64;
    }
    let r = [t[0], t[1], t[2], t[3]];
    if t[4] != 0 || !less_than_p(&r) {
        sub_raw(&r, &P).0
    } else {
        r
    }
}

fn to_mont(a: &Fe) -> Fe {
    mont_mul(a, &R2)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(hex_str: &str) -> Vec<u8> {
        hex::decode(hex_str).unwrap()
    }

    // The generator G, and the two public keys of docs/PROTOCOL.md §12.
    const G: &str = "046b17d1f2e12c4247f8bce6e563a440f277037d812deb33a0f4a13945d898c2964fe342e2fe1a7f9b8ee7eb4a7c0f9e162bce33576b315ececbb6406837bf51f5";

    #[test]
    fn accepts_points_on_the_curve() {
        assert!(validate_public_key(&key(G)).is_ok());
        use base64_free::decode_std as d;
        for k in [
            "BAIX5hfwtkQ5KCePlpmeaaI6TywVK99tbN9m5bgCgtTtGUp968uXcS0t2jyoWqh2Wlb0X8dYWZZS8ol8ZTBuV5Q=",
            "BNZak5d8qj0bCBhS/1ennkZfFmBXcwS66tUF3TpIWJzzUBheiVNy32Ih6joTdVfkc/3bZ1XwW9UHw8Uz/OnJEoU=",
        ] {
            assert!(validate_public_key(&d(k)).is_ok());
        }
    }

    #[test]
    fn refuses_each_malformation_with_its_reason() {
        let g = key(G);
        assert_eq!(validate_public_key(&g[..64]), Err(PublicKeyError::Length));
        assert_eq!(validate_public_key(&[]), Err(PublicKeyError::Length));
        let mut compressed = g[..33].to_vec();
        compressed[0] = 0x03;
        assert_eq!(
            validate_public_key(&compressed),
            Err(PublicKeyError::Length)
        );
        let mut hybrid = g.clone();
        hybrid[0] = 0x06;
        assert_eq!(
            validate_public_key(&hybrid),
            Err(PublicKeyError::NotUncompressed)
        );
        let mut off = g.clone();
        off[64] ^= 1;
        assert_eq!(validate_public_key(&off), Err(PublicKeyError::NotOnCurve));
        let mut zero = vec![0u8; 65];
        zero[0] = 4;
        assert_eq!(validate_public_key(&zero), Err(PublicKeyError::NotOnCurve));
        let mut big_x = g.clone();
        big_x[1..33].copy_from_slice(&[0xff; 32]);
        assert_eq!(
            validate_public_key(&big_x),
            Err(PublicKeyError::CoordinateRange)
        );
    }

    #[test]
    fn x_equal_to_p_is_out_of_range() {
        // Encoding x + p for a valid x would pass a check that forgot the range test.
        let mut k = vec![4u8];
        k.extend_from_slice(
            &hex::decode("ffffffff00000001000000000000000000000000ffffffffffffffffffffffff")
                .unwrap(),
        );
        k.extend_from_slice(&[0u8; 32]);
        assert_eq!(
            validate_public_key(&k),
            Err(PublicKeyError::CoordinateRange)
        );
    }

    #[test]
    fn montgomery_round_trip_is_identity() {
        // mont_mul(aR, 1) = a
        let a: Fe = [5, 6, 7, 8];
        assert_eq!(mont_mul(&to_mont(&a), &[1, 0, 0, 0]), a);
    }

    mod base64_free {
        pub(super) fn decode_std(s: &str) -> Vec<u8> {
            crate::encoding::base64_decode(s).unwrap()
        }
    }
}

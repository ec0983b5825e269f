//! Identifiers: GTINs, marking codes shaped like DataMatrix content, account ids and the
//! account → partition hash.
//!
//! A code is never stored: it is a pure function of (product key, serial number), and the
//! product key is a hash of (seed, account, product). The generator's state therefore
//! holds ranges of serial numbers, and any code can be rendered again when a later event
//! names it.
//!
//! A code reads `01` GTIN(14) `21` serial(13) GS `91` key(4) GS `92` crypto tail(44): the
//! GS1 application identifiers of a Kazakh marking code, GS being U+001D. The serial is an
//! injective image of the serial number (11 base-64 digits of a bijective mix, 66 ≥ 64
//! bits, plus 2 check characters), so two serial numbers of one product never render to
//! the same code, and codes of different products differ in their GTIN.

use super::rng::mix64;
use markledger_operators::validate::{gs1_check_digit, GROUP_SEPARATOR};

/// Serial numbers from here up are never emitted: the generator names them on purpose
/// (`UNKNOWN_CODE`) knowing no emission can ever create them.
pub const UNEMITTED_SERIAL_BASE: u64 = 1 << 62;

/// Length of every generated code, in bytes.
pub const CODE_LEN: usize = 2 + 14 + 2 + 13 + 1 + 2 + 4 + 1 + 2 + 44;

/// The serial alphabet: 64 printable ASCII characters that need no JSON escaping.
const SERIAL_ALPHABET: &[u8; 64] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz!*";
/// The crypto tail's alphabet (base64).
const TAIL_ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
/// Verification-key digits.
const KEY_ALPHABET: &[u8; 16] = b"0123456789ABCDEF";

/// A GTIN-14 with its GS1 check digit: indicator `0`, a 3-digit GS1 country prefix, a
/// 6-digit company number (unique per account) and a 3-digit item reference.
pub fn gtin(prefix: u16, company: u32, item: u16) -> String {
    debug_assert!(prefix < 1_000 && company < 1_000_000 && item < 1_000);
    let mut digits = format!("0{prefix:03}{company:06}{item:03}");
    let check = gs1_check_digit(digits.as_bytes());
    digits.push(char::from(b'0' + check));
    digits
}

/// The key a product's codes are derived from.
pub fn product_key(seed: u64, account: u32, item: u16) -> u64 {
    mix64(mix64(seed ^ 0x6d61_726b_6c65_6467) ^ (u64::from(account) << 16) ^ u64::from(item))
}

/// Renders the code of serial number `serial` of a product into `out` (cleared first).
pub fn render_code(gtin: &str, key: u64, serial: u64, out: &mut String) {
    out.clear();
    out.reserve(CODE_LEN);
    out.push_str("01");
    out.push_str(gtin);
    out.push_str("21");
    // The serial: a bijection of the serial number, so distinct numbers give distinct text.
    let scrambled = mix64(serial ^ key);
    for digit in 0..11 {
        let index = (scrambled >> (digit * 6)) & 63;
        out.push(char::from(SERIAL_ALPHABET[index as usize]));
    }
    let check = mix64(scrambled ^ key.rotate_left(17));
    out.push(char::from(SERIAL_ALPHABET[(check & 63) as usize]));
    out.push(char::from(SERIAL_ALPHABET[((check >> 6) & 63) as usize]));
    out.push(GROUP_SEPARATOR);
    // The verification key id is per product (a producer's key pair).
    out.push_str("91");
    for digit in 0..4 {
        out.push(char::from(KEY_ALPHABET[((key >> (digit * 4 + 40)) & 15) as usize]));
    }
    out.push(GROUP_SEPARATOR);
    out.push_str("92");
    let mut tail = scrambled ^ check;
    for digit in 0..44 {
        if digit % 10 == 0 {
            tail = mix64(tail.wrapping_add(key).wrapping_add(digit));
        }
        out.push(char::from(TAIL_ALPHABET[((tail >> ((digit % 10) * 6)) & 63) as usize]));
    }
    debug_assert_eq!(out.len(), CODE_LEN);
}

/// The code of serial number `serial` of a product.
pub fn code(gtin: &str, key: u64, serial: u64) -> String {
    let mut out = String::with_capacity(CODE_LEN);
    render_code(gtin, key, serial, &mut out);
    out
}

/// The account id of the `index`-th account: `KZ-94` and 10 digits, like a 12-digit BIN.
pub fn account_id(index: u32) -> String {
    format!("KZ-94{:010}", u64::from(index) + 1)
}

/// Kafka's default partitioner for a keyed record: `murmur2(key) & 0x7fffffff mod n`. A
/// producer keying input events by account therefore lands each account on the same
/// partition number the generator's files use.
pub fn partition_of(account: &str, partitions: u32) -> u32 {
    debug_assert!(partitions > 0);
    (murmur2(account.as_bytes()) & 0x7fff_ffff) % partitions
}

/// Kafka's murmur2 (`org.apache.kafka.common.utils.Utils.murmur2`).
pub fn murmur2(data: &[u8]) -> u32 {
    const SEED: u32 = 0x9747_b28c;
    const M: u32 = 0x5bd1_e995;
    const R: u32 = 24;
    let length = data.len() as u32;
    let mut h = SEED ^ length;
    let mut chunks = data.chunks_exact(4);
    for chunk in &mut chunks {
        let mut k = u32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
        k = k.wrapping_mul(M);
        k ^= k >> R;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M);
        h ^= k;
    }
    let rest = chunks.remainder();
    if rest.len() >= 3 {
        h ^= u32::from(rest[2]) << 16;
    }
    if rest.len() >= 2 {
        h ^= u32::from(rest[1]) << 8;
    }
    if !rest.is_empty() {
        h ^= u32::from(rest[0]);
        h = h.wrapping_mul(M);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^= h >> 15;
    h
}

#[cfg(test)]
mod tests {
    use super::*;
    use markledger_operators::validate::{is_account, is_code, is_gtin};
    use std::collections::BTreeSet;

    #[test]
    fn gtins_carry_their_check_digit() {
        // Builds GTINs over prefixes, companies and items and checks each with is_gtin.
        for (prefix, company, item) in [(487, 0, 0), (460, 123_456, 999), (690, 999_999, 17)] {
            let text = gtin(prefix, company, item);
            assert_eq!(text.len(), 14);
            assert!(is_gtin(&text), "{text}");
        }
    }

    #[test]
    fn codes_are_valid_distinct_and_shaped_like_datamatrix() {
        // Renders 20,000 codes of two products (and unemitted serials) and checks the
        // alphabet, the group layout and that no two are equal.
        let gtin_a = gtin(487, 1, 1);
        let gtin_b = gtin(487, 1, 2);
        let mut seen = BTreeSet::new();
        for (gtin, key) in [(&gtin_a, product_key(1, 0, 1)), (&gtin_b, product_key(1, 0, 2))] {
            for serial in (0..9_000).chain(UNEMITTED_SERIAL_BASE..UNEMITTED_SERIAL_BASE + 1_000) {
                let text = code(gtin, key, serial);
                assert!(is_code(&text), "{text:?}");
                assert_eq!(text.len(), CODE_LEN);
                assert!(text.starts_with(&format!("01{gtin}21")));
                let groups: Vec<&str> = text.split(GROUP_SEPARATOR).collect();
                assert_eq!(groups.len(), 3);
                assert_eq!(groups[0].len(), 2 + 14 + 2 + 13);
                assert!(groups[1].starts_with("91") && groups[1].len() == 6);
                assert!(groups[2].starts_with("92") && groups[2].len() == 46);
                assert!(seen.insert(text));
            }
        }
    }

    #[test]
    fn murmur2_matches_kafka() {
        // Kafka's own test vectors (UtilsTest.testMurmur2) and an account id.
        assert_eq!(murmur2(b"21") as i32, -973_932_308);
        assert_eq!(murmur2(b"foobar") as i32, -790_332_482);
        assert_eq!(murmur2(b"a-little-bit-long-string") as i32, -985_981_536);
        assert_eq!(murmur2(b"a-little-bit-longer-string") as i32, -1_486_304_829);
        assert_eq!(
            murmur2(b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8") as i32,
            -58_897_971
        );
        assert!(is_account(&account_id(0)));
        assert_eq!(account_id(16), "KZ-940000000017");
        assert!(partition_of("KZ-940000000017", 4) < 4);
    }
}

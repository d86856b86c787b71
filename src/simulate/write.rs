//! Byte-level writers for the hot path: integers without allocation (itoa-style, two digits per
//! step) and JSON strings, appended to a reusable `Vec<u8>`.

const DIGIT_PAIRS: &[u8; 200] = b"0001020304050607080910111213141516171819\
2021222324252627282930313233343536373839\
4041424344454647484950515253545556575859\
6061626364656667686970717273747576777879\
8081828384858687888990919293949596979899";

/// Appends the decimal form of `v`.
#[inline]
pub fn push_u64(out: &mut Vec<u8>, mut v: u64) {
    let mut buf = [0u8; 20];
    let mut i = buf.len();
    while v >= 100 {
        let d = (v % 100) as usize * 2;
        v /= 100;
        i -= 2;
        buf[i] = DIGIT_PAIRS[d];
        buf[i + 1] = DIGIT_PAIRS[d + 1];
    }
    if v >= 10 {
        let d = v as usize * 2;
        i -= 2;
        buf[i] = DIGIT_PAIRS[d];
        buf[i + 1] = DIGIT_PAIRS[d + 1];
    } else {
        i -= 1;
        buf[i] = b'0' + v as u8;
    }
    out.extend_from_slice(&buf[i..]);
}

/// Appends the decimal form of a signed `v`.
#[inline]
pub fn push_i64(out: &mut Vec<u8>, v: i64) {
    if v < 0 {
        out.push(b'-');
    }
    push_u64(out, v.unsigned_abs());
}

/// Appends `s` as a JSON string literal (quotes included, escapes as needed).
pub fn push_json_str(out: &mut Vec<u8>, s: &str) {
    out.push(b'"');
    for &b in s.as_bytes() {
        match b {
            b'"' => out.extend_from_slice(b"\\\""),
            b'\\' => out.extend_from_slice(b"\\\\"),
            0..=0x1f => {
                out.extend_from_slice(b"\\u00");
                out.push(b"0123456789abcdef"[(b >> 4) as usize]);
                out.push(b"0123456789abcdef"[(b & 15) as usize]);
            }
            _ => out.push(b),
        }
    }
    out.push(b'"');
}

/// Appends `,"key":v`.
#[inline]
pub fn push_field_u64(out: &mut Vec<u8>, key_with_comma_and_colon: &[u8], v: u64) {
    out.extend_from_slice(key_with_comma_and_colon);
    push_u64(out, v);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integers_match_std_formatting() {
        for v in [
            0u64,
            7,
            9,
            10,
            99,
            100,
            101,
            999,
            1000,
            65535,
            1_748_822_400,
            u64::MAX,
        ] {
            let mut out = Vec::new();
            push_u64(&mut out, v);
            assert_eq!(String::from_utf8(out).unwrap(), v.to_string());
        }
        let mut out = Vec::new();
        push_i64(&mut out, -2);
        assert_eq!(out, b"-2");
    }

    #[test]
    fn strings_are_valid_json() {
        let mut out = Vec::new();
        push_json_str(&mut out, "a\"b\\c\n");
        let back: String = serde_json::from_slice(&out).unwrap();
        assert_eq!(back, "a\"b\\c\n");
    }
}

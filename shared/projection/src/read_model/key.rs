//! Order-preserving key encodings: a key's bytes sort the way the key does,
//! so range and prefix scans work on any backend that orders bytes
//! (redb, PostgreSQL `bytea`, an in-memory `BTreeMap`).
//!
//! Integers are big-endian (signed ones with the sign bit flipped). A string
//! that is the last part of a key is its UTF-8 bytes; a string followed by
//! other parts escapes `0x00` as `0x00 0x01` and ends with `0x00 0x00`, so
//! `("a", 9)` sorts before `("ab", 0)`.

use crate::error::ProjectionError;

/// A key part that can be encoded in order and decoded back.
pub trait KeyPart: Sized {
    /// Appends this part's bytes; `last` says whether anything follows.
    fn encode_part(&self, out: &mut Vec<u8>, last: bool);
    /// Reads this part from the front of `input`, returning the rest.
    fn decode_part(input: &[u8], last: bool) -> Result<(Self, &[u8]), ProjectionError>;
}

/// A whole key.
pub trait Key: Sized + Send + Sync {
    fn encode_key(&self) -> Vec<u8>;
    fn decode_key(bytes: &[u8]) -> Result<Self, ProjectionError>;
}

/// The encoding of `part` as the leading part of a longer key: scan with it
/// as a prefix to find every key that starts with this part.
pub fn leading<P: KeyPart>(part: &P) -> Vec<u8> {
    let mut out = Vec::new();
    part.encode_part(&mut out, false);
    out
}

fn short(what: &str) -> ProjectionError {
    ProjectionError::Decode {
        what: format!("a {what} key part"),
        reason: "the key is too short".into(),
    }
}

impl KeyPart for u64 {
    fn encode_part(&self, out: &mut Vec<u8>, _last: bool) {
        out.extend_from_slice(&self.to_be_bytes());
    }
    fn decode_part(input: &[u8], _last: bool) -> Result<(Self, &[u8]), ProjectionError> {
        let (head, rest) = input.split_at_checked(8).ok_or_else(|| short("u64"))?;
        let bytes = <[u8; 8]>::try_from(head).map_err(|_| short("u64"))?;
        Ok((u64::from_be_bytes(bytes), rest))
    }
}

impl KeyPart for u32 {
    fn encode_part(&self, out: &mut Vec<u8>, _last: bool) {
        out.extend_from_slice(&self.to_be_bytes());
    }
    fn decode_part(input: &[u8], _last: bool) -> Result<(Self, &[u8]), ProjectionError> {
        let (head, rest) = input.split_at_checked(4).ok_or_else(|| short("u32"))?;
        let bytes = <[u8; 4]>::try_from(head).map_err(|_| short("u32"))?;
        Ok((u32::from_be_bytes(bytes), rest))
    }
}

impl KeyPart for i64 {
    fn encode_part(&self, out: &mut Vec<u8>, last: bool) {
        ((*self as u64) ^ (1 << 63)).encode_part(out, last);
    }
    fn decode_part(input: &[u8], last: bool) -> Result<(Self, &[u8]), ProjectionError> {
        let (raw, rest) = u64::decode_part(input, last)?;
        Ok(((raw ^ (1 << 63)) as i64, rest))
    }
}

impl KeyPart for String {
    fn encode_part(&self, out: &mut Vec<u8>, last: bool) {
        if last {
            out.extend_from_slice(self.as_bytes());
            return;
        }
        for &b in self.as_bytes() {
            out.push(b);
            if b == 0 {
                out.push(1);
            }
        }
        out.extend_from_slice(&[0, 0]);
    }
    fn decode_part(input: &[u8], last: bool) -> Result<(Self, &[u8]), ProjectionError> {
        let bad = |reason: &str| ProjectionError::Decode {
            what: "a string key part".into(),
            reason: reason.into(),
        };
        if last {
            let s = std::str::from_utf8(input).map_err(|e| bad(&e.to_string()))?;
            return Ok((s.to_string(), &[]));
        }
        let mut bytes = Vec::new();
        let mut i = 0;
        loop {
            match (input.get(i), input.get(i + 1)) {
                (Some(0), Some(0)) => break,
                (Some(0), Some(1)) => {
                    bytes.push(0);
                    i += 2;
                }
                (Some(0), _) | (None, _) => return Err(bad("the string part is not terminated")),
                (Some(&b), _) => {
                    bytes.push(b);
                    i += 1;
                }
            }
        }
        let s = String::from_utf8(bytes).map_err(|e| bad(&e.to_string()))?;
        Ok((s, &input[i + 2..]))
    }
}

macro_rules! single_part_key {
    ($($t:ty),*) => {$(
        impl Key for $t {
            fn encode_key(&self) -> Vec<u8> {
                let mut out = Vec::new();
                self.encode_part(&mut out, true);
                out
            }
            fn decode_key(bytes: &[u8]) -> Result<Self, ProjectionError> {
                let (value, rest) = <$t>::decode_part(bytes, true)?;
                if !rest.is_empty() {
                    return Err(ProjectionError::Decode {
                        what: "a key".into(),
                        reason: "trailing bytes".into(),
                    });
                }
                Ok(value)
            }
        }
    )*};
}

single_part_key!(u64, u32, i64, String);

impl<A: KeyPart + Send + Sync, B: KeyPart + Send + Sync> Key for (A, B) {
    fn encode_key(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.0.encode_part(&mut out, false);
        self.1.encode_part(&mut out, true);
        out
    }
    fn decode_key(bytes: &[u8]) -> Result<Self, ProjectionError> {
        let (a, rest) = A::decode_part(bytes, false)?;
        let (b, _) = B::decode_part(rest, true)?;
        Ok((a, b))
    }
}

impl<A: KeyPart + Send + Sync, B: KeyPart + Send + Sync, C: KeyPart + Send + Sync> Key
    for (A, B, C)
{
    fn encode_key(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.0.encode_part(&mut out, false);
        self.1.encode_part(&mut out, false);
        self.2.encode_part(&mut out, true);
        out
    }
    fn decode_key(bytes: &[u8]) -> Result<Self, ProjectionError> {
        let (a, rest) = A::decode_part(bytes, false)?;
        let (b, rest) = B::decode_part(rest, false)?;
        let (c, _) = C::decode_part(rest, true)?;
        Ok((a, b, c))
    }
}

/// The smallest byte string greater than every string starting with
/// `prefix`, or `None` when there is none (empty or all `0xff`).
pub fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < u8::MAX {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn pairs_of_strings_and_numbers_sort_like_their_encodings(
            a in ".{0,6}", b in any::<u64>(), c in ".{0,6}", d in any::<u64>()
        ) {
            let x = (a.clone(), b);
            let y = (c.clone(), d);
            prop_assert_eq!(x.cmp(&y), x.encode_key().cmp(&y.encode_key()));
            prop_assert_eq!(<(String, u64)>::decode_key(&x.encode_key())?, x);
        }

        #[test]
        fn signed_numbers_sort_like_their_encodings(a in any::<i64>(), b in any::<i64>()) {
            prop_assert_eq!(a.cmp(&b), a.encode_key().cmp(&b.encode_key()));
            prop_assert_eq!(i64::decode_key(&a.encode_key())?, a);
        }

        #[test]
        fn strings_with_zero_bytes_round_trip_in_a_triple(
            a in "[a\\x00]{0,5}", b in "[b\\x00]{0,5}", n in any::<u32>()
        ) {
            let key = (a, b, n);
            prop_assert_eq!(<(String, String, u32)>::decode_key(&key.encode_key())?, key);
        }
    }

    #[test]
    fn the_end_of_a_prefix_skips_trailing_ff_bytes() {
        assert_eq!(prefix_end(b"ab"), Some(b"ac".to_vec()));
        assert_eq!(prefix_end(&[1, 0xff]), Some(vec![2]));
        assert_eq!(prefix_end(&[0xff]), None);
        assert_eq!(prefix_end(b""), None);
    }
}

//! Types shared by the packed-container parsers (ziplist, listpack, intset,
//! zipmap) and small bounds-checked readers they are built on.
//!
//! A packed container is an RDB string whose bytes hold many elements. Every
//! element of a ziplist or listpack is either a byte string or an integer:
//!
//! ```text
//! element ::= Str(bytes)   -- stored with a length prefix
//!           | Int(i64)     -- stored in a 1..9 byte integer encoding
//! ```
//!
//! Redis stores any string that is a *canonical* decimal `i64` (no sign `+`,
//! no leading zeros, no `-0`) as an integer, so consumers that need the
//! original bytes call [`Entry::to_vec`], which renders integers as decimal
//! text.
//!
//! Parsers never panic: every read goes through the checked helpers below
//! and a failure is reported as a [`ContainerError`] naming the byte offset inside the
//! container.

/// One element of a ziplist or listpack: a byte string or an integer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Entry<'a> {
    /// A byte string, borrowed from the container.
    Str(&'a [u8]),
    /// An integer stored in one of the integer encodings.
    Int(i64),
}

impl<'a> Entry<'a> {
    /// The element as bytes: strings as they are, integers as decimal text.
    #[cfg(any(test, feature = "test-util"))]
    pub fn to_vec(self) -> Vec<u8> {
        match self {
            Entry::Str(s) => s.to_vec(),
            Entry::Int(v) => v.to_string().into_bytes(),
        }
    }

    /// The element as an integer: an `Int`, or a `Str` holding a canonical
    /// decimal `i64` (the form Redis would have stored as an integer).
    pub fn as_int(&self) -> Option<i64> {
        match *self {
            Entry::Str(s) => parse_canonical_i64(s),
            Entry::Int(v) => Some(v),
        }
    }
}

/// Parse failure inside a packed container; `at` is the byte offset inside the container.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{container}: {what} at byte {at}")]
pub struct ContainerError {
    /// Container kind: `"ziplist"`, `"listpack"`, `"intset"` or `"zipmap"`.
    pub container: &'static str,
    /// Byte offset inside the container where the problem was found.
    pub at: usize,
    /// What was wrong.
    pub what: String,
}

impl ContainerError {
    /// Build an error for `container` at byte `at`.
    pub fn new(container: &'static str, at: usize, what: impl Into<String>) -> Self {
        ContainerError {
            container,
            at,
            what: what.into(),
        }
    }
}

/// Parse `s` as a canonical decimal `i64`, exactly as Redis' `string2ll`
/// accepts it: optional `-`, no leading zeros (except `"0"` itself), no
/// `"-0"`, no `+`, no spaces, no overflow.
pub fn parse_canonical_i64(s: &[u8]) -> Option<i64> {
    if s.is_empty() || s.len() > 20 {
        return None;
    }
    if s == b"0" {
        return Some(0);
    }
    let (negative, digits) = match s.split_first() {
        Some((b'-', rest)) => (true, rest),
        _ => (false, s),
    };
    match digits.first() {
        Some(b'1'..=b'9') => {}
        _ => return None,
    }
    // Accumulate as a negative number so that i64::MIN fits.
    let mut acc: i64 = 0;
    for &d in digits {
        if !d.is_ascii_digit() {
            return None;
        }
        acc = acc.checked_mul(10)?.checked_sub(i64::from(d - b'0'))?;
    }
    if negative {
        Some(acc)
    } else {
        acc.checked_neg()
    }
}

/// `N` bytes at `at`, or `None` when the read would run past the end.
pub(crate) fn read_array<const N: usize>(buf: &[u8], at: usize) -> Option<[u8; N]> {
    let end = at.checked_add(N)?;
    buf.get(at..end)?.try_into().ok()
}

/// Read a little-endian `u16` at `at`.
pub(crate) fn read_u16_le(buf: &[u8], at: usize) -> Option<u16> {
    read_array(buf, at).map(u16::from_le_bytes)
}

/// Read a little-endian `u32` at `at`.
pub(crate) fn read_u32_le(buf: &[u8], at: usize) -> Option<u32> {
    read_array(buf, at).map(u32::from_le_bytes)
}

/// Read a signed little-endian integer of `width` bytes (1..=8) at `at`,
/// sign-extending it to `i64`.
pub(crate) fn read_int_le(buf: &[u8], at: usize, width: usize) -> Option<i64> {
    if width == 0 || width > 8 {
        return None;
    }
    let bytes = buf.get(at..at.checked_add(width)?)?;
    let mut raw = [0u8; 8];
    raw.get_mut(8 - width..)?.copy_from_slice(bytes);
    // Place the value in the high bytes, then shift back arithmetically.
    Some(i64::from_le_bytes(raw) >> ((8 - width) * 8))
}

/// `buf[at..at + len]`, or `None` if it does not fit.
pub(crate) fn slice(buf: &[u8], at: usize, len: usize) -> Option<&[u8]> {
    buf.get(at..at.checked_add(len)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_ints() {
        assert_eq!(parse_canonical_i64(b"0"), Some(0));
        assert_eq!(parse_canonical_i64(b"-1"), Some(-1));
        assert_eq!(parse_canonical_i64(b"12"), Some(12));
        assert_eq!(parse_canonical_i64(b"9223372036854775807"), Some(i64::MAX));
        assert_eq!(parse_canonical_i64(b"-9223372036854775808"), Some(i64::MIN));
        for bad in [
            &b""[..],
            b"-",
            b"-0",
            b"01",
            b"+1",
            b" 1",
            b"1 ",
            b"1a",
            b"9223372036854775808",
            b"-9223372036854775809",
            b"00",
        ] {
            assert_eq!(parse_canonical_i64(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn entry_helpers() {
        assert_eq!(Entry::Int(-42).to_vec(), b"-42");
        assert_eq!(Entry::Str(b"x").to_vec(), b"x");
        assert_eq!(Entry::Str(b"17").as_int(), Some(17));
        assert_eq!(Entry::Str(b"017").as_int(), None);
        assert_eq!(Entry::Int(5).as_int(), Some(5));
    }

    #[test]
    fn int_reader_sign_extends() {
        assert_eq!(read_int_le(&[0xFF, 0xFF, 0xFF], 0, 3), Some(-1));
        assert_eq!(read_int_le(&[0xFF, 0xFF, 0x7F], 0, 3), Some(0x7F_FFFF));
        assert_eq!(read_int_le(&[0x80], 0, 1), Some(-128));
        assert_eq!(read_int_le(&[1, 2], 1, 2), None);
        assert_eq!(read_int_le(&[1, 2], usize::MAX, 2), None);
    }
}

//! The decoded form of any RESP2 or RESP3 frame.
//!
//! String payloads are [`Bytes`], so a value decoded with
//! [`decode_bytes`](crate::decode_bytes) shares the read buffer instead of
//! copying it.
//!
//! Mapping of wire types to variants:
//!
//! ```text
//! +  simple string   -> Simple          _  null (RESP3)     -> Null
//! -  simple error    -> Error           ,  double           -> Double
//! :  integer         -> Integer         #  boolean          -> Boolean
//! $  bulk string     -> Bulk            (  big number       -> BigNumber
//! $-1 null bulk      -> Null            =  verbatim string  -> Verbatim
//! *  array           -> Array           !  blob error       -> Error
//! *-1 null array     -> NullArray       %  map              -> Map
//! ~  set             -> Set             >  push             -> Push
//! |  attribute       -> decoded and discarded; the value it annotates is returned
//! ```
//!
//! RESP3 attributes carry out-of-band metadata (e.g. key popularity) that
//! ferry never requests, so the decoder validates and drops them rather than
//! giving every consumer a variant to ignore.

use bytes::Bytes;

/// One RESP value.
///
/// Equality is structural; `Double(NaN)` is not equal to itself (IEEE 754).
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// `+OK\r\n`: a status line. Never contains CR or LF.
    Simple(Bytes),
    /// `-ERR message\r\n` or RESP3 `!<len>\r\n<message>\r\n`: an error reply.
    Error(Bytes),
    /// `:<n>\r\n`: a signed 64-bit integer.
    Integer(i64),
    /// `$<len>\r\n<bytes>\r\n`: a binary-safe string.
    Bulk(Bytes),
    /// `$-1\r\n` (RESP2 null bulk) or `_\r\n` (RESP3 null).
    Null,
    /// `*<n>\r\n` followed by `n` values.
    Array(Vec<Value>),
    /// `*-1\r\n`: the RESP2 null array (e.g. a timed-out `BLPOP`).
    NullArray,
    /// RESP3 `,<float>\r\n`, including `inf`, `-inf` and `nan`.
    Double(f64),
    /// RESP3 `#t\r\n` / `#f\r\n`.
    Boolean(bool),
    /// RESP3 `(<digits>\r\n`: an integer of any size, kept as its ASCII digits
    /// (with an optional leading sign).
    BigNumber(Bytes),
    /// RESP3 `=<len>\r\n<fmt>:<text>\r\n`: a string with a 3-byte format hint
    /// such as `txt` or `mkd`.
    Verbatim {
        /// The 3-byte format, e.g. `*b"txt"`.
        format: [u8; 3],
        /// The text after `<fmt>:`.
        text: Bytes,
    },
    /// RESP3 `%<n>\r\n` followed by `n` key/value pairs, in wire order.
    Map(Vec<(Value, Value)>),
    /// RESP3 `~<n>\r\n` followed by `n` values, in wire order.
    Set(Vec<Value>),
    /// RESP3 `><n>\r\n` followed by `n` values: out-of-band data such as
    /// pub/sub messages or client-tracking invalidations.
    Push(Vec<Value>),
}

impl Value {
    /// A bulk string value.
    pub fn bulk(b: impl Into<Bytes>) -> Value {
        Value::Bulk(b.into())
    }

    /// A simple string value (`+...`).
    pub fn simple(b: impl Into<Bytes>) -> Value {
        Value::Simple(b.into())
    }

    /// The string payload of `Simple`, `Bulk` and `Verbatim` values.
    ///
    /// Errors are deliberately excluded (see [`Value::error_message`]) so that
    /// an error reply is never mistaken for data.
    pub fn as_bytes(&self) -> Option<&Bytes> {
        match self {
            Value::Simple(b) | Value::Bulk(b) => Some(b),
            Value::Verbatim { text, .. } => Some(text),
            _ => None,
        }
    }

    /// The value as an `i64`: `Integer` directly; `Simple`, `Bulk` and
    /// `BigNumber` when they hold a decimal integer that fits (Redis answers
    /// some numeric questions with strings, e.g. `CONFIG GET`).
    pub fn as_int(&self) -> Option<i64> {
        match self {
            Value::Integer(i) => Some(*i),
            Value::Simple(b) | Value::Bulk(b) | Value::BigNumber(b) => parse_i64(b),
            _ => None,
        }
    }

    /// The elements of an `Array`, `Set` or `Push`.
    pub fn as_array(&self) -> Option<&[Value]> {
        match self {
            Value::Array(v) | Value::Set(v) | Value::Push(v) => Some(v),
            _ => None,
        }
    }

    /// The pairs of a `Map`.
    pub fn as_map(&self) -> Option<&[(Value, Value)]> {
        match self {
            Value::Map(m) => Some(m),
            _ => None,
        }
    }

    /// Whether the value is `Null` or `NullArray`.
    pub fn is_null(&self) -> bool {
        matches!(self, Value::Null | Value::NullArray)
    }

    /// Whether the value is an error reply.
    pub fn is_error(&self) -> bool {
        matches!(self, Value::Error(_))
    }

    /// The full message of an error reply, e.g. `MOVED 3999 127.0.0.1:6381`.
    pub fn error_message(&self) -> Option<&Bytes> {
        match self {
            Value::Error(b) => Some(b),
            _ => None,
        }
    }

    /// The first word of an error reply: its error code by Redis convention
    /// (`ERR`, `MOVED`, `ASK`, `TRYAGAIN`, `CLUSTERDOWN`, `NOAUTH`,
    /// `WRONGPASS`, `OOM`, `LOADING`, ...). `None` if this is not an error.
    ///
    /// ```
    /// # use ferry_resp::Value;
    /// let v = Value::Error("MOVED 3999 127.0.0.1:6381".into());
    /// assert_eq!(v.error_kind(), Some(&b"MOVED"[..]));
    /// assert!(v.is_error_kind("moved"));
    /// ```
    pub fn error_kind(&self) -> Option<&[u8]> {
        let msg = self.error_message()?;
        let end = memchr::memchr(b' ', msg).unwrap_or(msg.len());
        Some(&msg[..end])
    }

    /// Whether this is an error reply whose first word is `kind`
    /// (ASCII case-insensitive).
    pub fn is_error_kind(&self, kind: &str) -> bool {
        self.error_kind()
            .is_some_and(|k| k.eq_ignore_ascii_case(kind.as_bytes()))
    }
}

/// Parses an optional `-`/`+` sign followed by 1–19 decimal digits into an `i64`.
fn parse_i64(b: &[u8]) -> Option<i64> {
    let (neg, digits) = match b.split_first()? {
        (b'-', rest) => (true, rest),
        (b'+', rest) => (false, rest),
        _ => (false, b),
    };
    if digits.is_empty() || digits.len() > 19 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let mag = digits
        .iter()
        .fold(0u64, |acc, d| acc * 10 + u64::from(d - b'0'));
    if neg {
        0i64.checked_sub_unsigned(mag)
    } else {
        i64::try_from(mag).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_kind_is_first_word() {
        let v = Value::Error(Bytes::from_static(b"ASK 3999 127.0.0.1:6381"));
        assert_eq!(v.error_kind(), Some(&b"ASK"[..]));
        assert!(v.is_error());
        assert!(v.is_error_kind("ASK"));
        assert!(!v.is_error_kind("MOVED"));
        let v = Value::Error(Bytes::from_static(b"NOAUTH"));
        assert_eq!(v.error_kind(), Some(&b"NOAUTH"[..]));
        let v = Value::Error(Bytes::new());
        assert_eq!(v.error_kind(), Some(&b""[..]));
        assert_eq!(Value::simple("OK").error_kind(), None);
    }

    #[test]
    fn helpers() {
        assert_eq!(Value::Integer(-3).as_int(), Some(-3));
        assert_eq!(Value::bulk("42").as_int(), Some(42));
        assert_eq!(Value::bulk("-9223372036854775808").as_int(), Some(i64::MIN));
        assert_eq!(Value::bulk("9223372036854775808").as_int(), None);
        assert_eq!(Value::bulk("4x").as_int(), None);
        assert_eq!(Value::bulk("").as_int(), None);
        assert_eq!(Value::bulk("-").as_int(), None);
        assert_eq!(
            Value::simple("OK").as_bytes().map(|b| &b[..]),
            Some(&b"OK"[..])
        );
        assert_eq!(Value::Error("ERR".into()).as_bytes(), None);
        assert!(Value::NullArray.is_null());
        assert_eq!(
            Value::Array(vec![Value::Null]).as_array().map(<[_]>::len),
            Some(1)
        );
    }
}

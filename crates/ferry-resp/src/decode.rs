//! Sans-IO RESP2/RESP3 decoding: bytes in, [`Value`]s out.
//!
//! Every entry point has the same shape:
//!
//! ```text
//! decode(buf) -> Ok(Some((value, consumed)))   one whole frame at buf[..consumed]
//!              | Ok(None)                      buf is a proper prefix of a frame: read more
//!              | Err(RespError)                buf can never become a valid frame
//! ```
//!
//! Invariants (checked by the property tests and the fuzzer in `fuzz/`):
//!
//! * no input panics, and `consumed <= buf.len()`;
//! * **prefix consistency**: if `decode(&b[..k])` returns `Some` or `Err`, then
//!   `decode(b)` returns the same thing. Decisions are taken strictly left to
//!   right, so feeding a stream in pieces of any size gives the same frames and
//!   the same error as feeding it whole; a truncated valid frame is `Ok(None)`;
//! * nothing is allocated in proportion to an announced length: aggregates
//!   preallocate at most [`PREALLOC_MAX`] slots, and no more than the bytes
//!   already present could fill (each element takes at least 3 bytes);
//! * lengths above [`Decoder::max_bulk_len`] / [`Decoder::max_array_len`] and
//!   nesting beyond [`Decoder::max_depth`] are errors, decided as soon as the
//!   offending digit or type byte is seen;
//! * the decoder is iterative (an explicit stack), so even a huge configured
//!   `max_depth` cannot overflow the call stack.
//!
//! Each call starts from the beginning of the frame; after `Ok(None)`, call
//! again once more bytes have arrived (re-scanning costs time linear in the
//! part of the frame already buffered, so read in large pieces).
//!
//! The grammar is strict where Redis is: lengths have no sign, no leading
//! zeros and no spaces (`-1` only for null bulk/array), every line ends in
//! CRLF, and simple lines contain neither CR nor LF. Integers (`:`) may carry
//! a `+` or `-` sign and at most 19 digits. RESP3 streamed strings and
//! aggregates (`$?`, `*?`) and inline commands are not supported.

use bytes::Bytes;

use crate::reply::{ok_reply, queued_reply};
use crate::scan::{
    LenKind, Step, check_big_number, expect_crlf, parse_bulk, parse_double, parse_int, parse_len,
    read_line, unexpected,
};
use crate::{RespError, Value};

/// Default [`Decoder::max_bulk_len`]: 512 MiB, Redis's `proto-max-bulk-len`.
pub const DEFAULT_MAX_BULK_LEN: usize = 512 * 1024 * 1024;
/// Default [`Decoder::max_array_len`]: `i32::MAX`, the largest multibulk
/// length Redis itself accepts.
pub const DEFAULT_MAX_ARRAY_LEN: usize = i32::MAX as usize;
/// Default [`Decoder::max_depth`].
pub const DEFAULT_MAX_DEPTH: usize = 32;
/// Upper bound on the capacity reserved up front for one aggregate; larger
/// aggregates grow as their elements actually arrive.
pub const PREALLOC_MAX: usize = 1024;

/// A RESP decoder with configurable limits. It holds no state between calls.
///
/// ```
/// use ferry_resp::{Decoder, Value};
/// let dec = Decoder { max_bulk_len: 1024, ..Decoder::new() };
/// assert_eq!(dec.decode(b"+OK\r\n+PONG"), Ok(Some((Value::simple("OK"), 5))));
/// assert_eq!(dec.decode(b"$5\r\nhel"), Ok(None));
/// assert!(dec.decode(b"$2048\r\n").is_err());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decoder {
    /// Largest accepted bulk, verbatim or blob-error payload, and longest
    /// accepted simple line, in bytes.
    pub max_bulk_len: usize,
    /// Largest accepted element count of an array, set or push, and pair
    /// count of a map or attribute.
    pub max_array_len: usize,
    /// Deepest accepted nesting of aggregates (attributes included); `1`
    /// allows a flat array, `0` allows no aggregate at all.
    pub max_depth: usize,
}

impl Default for Decoder {
    fn default() -> Self {
        Self::new()
    }
}

/// Decodes one frame from `buf`, copying string payloads out of it, with the
/// default limits. See the [module docs](self) for the contract.
pub fn decode(buf: &[u8]) -> Step<(Value, usize)> {
    Decoder::new().decode(buf)
}

/// Decodes one frame from `buf` with the default limits; string payloads are
/// slices of `buf` (no copy).
pub fn decode_bytes(buf: &Bytes) -> Step<(Value, usize)> {
    Decoder::new().decode_bytes(buf)
}

impl Decoder {
    /// A decoder with the default limits.
    pub const fn new() -> Self {
        Decoder {
            max_bulk_len: DEFAULT_MAX_BULK_LEN,
            max_array_len: DEFAULT_MAX_ARRAY_LEN,
            max_depth: DEFAULT_MAX_DEPTH,
        }
    }

    /// Decodes one frame from `buf`, copying string payloads out of it.
    pub fn decode(&self, buf: &[u8]) -> Step<(Value, usize)> {
        self.decode_from(&Copying(buf))
    }

    /// Decodes one frame from `buf`; string payloads are `buf.slice(..)`
    /// (reference-counted, no copy).
    pub fn decode_bytes(&self, buf: &Bytes) -> Step<(Value, usize)> {
        self.decode_from(&Sharing(buf))
    }

    fn decode_from<S: Source>(&self, src: &S) -> Step<(Value, usize)> {
        let buf = src.buf();
        let mut pos = 0;
        let mut stack: Vec<Frame> = Vec::new();
        loop {
            let header = pos;
            let Some((item, next)) = self.item(src, pos)? else {
                return Ok(None);
            };
            pos = next;
            let mut value = match item {
                Item::Value(v) => v,
                Item::Begin(kind, count) => {
                    if stack.len() >= self.max_depth {
                        return Err(RespError::TooDeep {
                            offset: header,
                            max: self.max_depth,
                        });
                    }
                    if count == 0 {
                        match finish(kind, Vec::new()) {
                            Some(v) => v,
                            None => continue,
                        }
                    } else {
                        let cap = count.min((buf.len() - pos) / 3).min(PREALLOC_MAX);
                        stack.push(Frame {
                            kind,
                            remaining: count,
                            items: Vec::with_capacity(cap),
                        });
                        continue;
                    }
                }
            };
            // Hand the finished value to its parent, completing parents as we go.
            loop {
                let Some(mut top) = stack.pop() else {
                    return Ok(Some((value, pos)));
                };
                top.items.push(value);
                top.remaining -= 1;
                if top.remaining > 0 {
                    stack.push(top);
                    break;
                }
                match finish(top.kind, top.items) {
                    Some(v) => value = v,
                    // A completed attribute annotates the next value: keep parsing.
                    None => break,
                }
            }
        }
    }

    /// Parses the item (a scalar, or an aggregate header) starting at `pos`.
    fn item<S: Source>(&self, src: &S, pos: usize) -> Step<(Item, usize)> {
        let buf = src.buf();
        let Some(&t) = buf.get(pos) else {
            return Ok(None);
        };
        let start = pos + 1;
        let (value, next) = match t {
            b'+' | b'-' | b'(' | b',' => {
                let Some((end, next)) = read_line(buf, pos, self.max_bulk_len)? else {
                    return Ok(None);
                };
                let v = match t {
                    // The replies a pipelined write gets, shared instead of
                    // allocated per reply.
                    b'+' => match &buf[start..end] {
                        b"OK" => ok_reply(),
                        b"QUEUED" => queued_reply(),
                        _ => Value::Simple(src.take(start, end)),
                    },
                    b'-' => Value::Error(src.take(start, end)),
                    b'(' => {
                        check_big_number(buf, start, end)?;
                        Value::BigNumber(src.take(start, end))
                    }
                    _ => match parse_double(&buf[start..end]) {
                        Some(d) => Value::Double(d),
                        None => return Err(RespError::InvalidDouble { offset: pos }),
                    },
                };
                (v, next)
            }
            b':' => {
                let Some((n, next)) = parse_int(buf, pos)? else {
                    return Ok(None);
                };
                (Value::Integer(n), next)
            }
            b'$' | b'=' | b'!' => {
                let Some((body, next)) = parse_bulk(buf, pos, t == b'$', self.max_bulk_len)? else {
                    return Ok(None);
                };
                let v = match body {
                    None => Value::Null,
                    Some((s, e)) => match t {
                        b'$' => Value::Bulk(src.take(s, e)),
                        b'!' => Value::Error(src.take(s, e)),
                        _ => match buf.get(s..e) {
                            Some([a, b, c, b':', ..]) => Value::Verbatim {
                                format: [*a, *b, *c],
                                text: src.take(s + 4, e),
                            },
                            _ => return Err(RespError::InvalidVerbatim { offset: pos }),
                        },
                    },
                };
                (v, next)
            }
            b'*' | b'~' | b'>' | b'%' | b'|' => {
                let Some((n, next)) =
                    parse_len(buf, pos, t == b'*', self.max_array_len, LenKind::Aggregate)?
                else {
                    return Ok(None);
                };
                let Some(n) = n else {
                    return Ok(Some((Item::Value(Value::NullArray), next)));
                };
                let (kind, count) = match t {
                    b'*' => (Agg::Array, Some(n)),
                    b'~' => (Agg::Set, Some(n)),
                    b'>' => (Agg::Push, Some(n)),
                    b'%' => (Agg::Map, n.checked_mul(2)),
                    _ => (Agg::Attribute, n.checked_mul(2)),
                };
                let Some(count) = count else {
                    return Err(RespError::ArrayTooLong {
                        offset: pos,
                        max: self.max_array_len,
                    });
                };
                return Ok(Some((Item::Begin(kind, count), next)));
            }
            b'_' => {
                let Some(next) = expect_crlf(buf, start)? else {
                    return Ok(None);
                };
                (Value::Null, next)
            }
            b'#' => {
                let v = match buf.get(start) {
                    None => return Ok(None),
                    Some(b't') => true,
                    Some(b'f') => false,
                    Some(&b) => return Err(unexpected(start, b, "'t' or 'f'")),
                };
                let Some(next) = expect_crlf(buf, start + 1)? else {
                    return Ok(None);
                };
                (Value::Boolean(v), next)
            }
            _ => {
                return Err(RespError::UnknownType {
                    offset: pos,
                    byte: t,
                });
            }
        };
        Ok(Some((Item::Value(value), next)))
    }
}

/// Where string payloads come from: copied out of a slice, or shared with a `Bytes`.
trait Source {
    fn buf(&self) -> &[u8];
    fn take(&self, start: usize, end: usize) -> Bytes;
}

struct Copying<'a>(&'a [u8]);

impl Source for Copying<'_> {
    fn buf(&self) -> &[u8] {
        self.0
    }
    fn take(&self, start: usize, end: usize) -> Bytes {
        Bytes::copy_from_slice(&self.0[start..end])
    }
}

struct Sharing<'a>(&'a Bytes);

impl Source for Sharing<'_> {
    fn buf(&self) -> &[u8] {
        self.0
    }
    fn take(&self, start: usize, end: usize) -> Bytes {
        self.0.slice(start..end)
    }
}

/// The kind of an aggregate under construction.
#[derive(Debug, Clone, Copy)]
enum Agg {
    Array,
    Set,
    Push,
    Map,
    Attribute,
}

/// An aggregate under construction. Maps and attributes hold keys and values
/// flat (`remaining` counts both).
struct Frame {
    kind: Agg,
    remaining: usize,
    items: Vec<Value>,
}

enum Item {
    Value(Value),
    /// An aggregate header with this many elements still to read.
    Begin(Agg, usize),
}

/// Builds the value of a completed aggregate; `None` for an attribute, which is discarded.
fn finish(kind: Agg, items: Vec<Value>) -> Option<Value> {
    Some(match kind {
        Agg::Array => Value::Array(items),
        Agg::Set => Value::Set(items),
        Agg::Push => Value::Push(items),
        Agg::Map => {
            let mut pairs = Vec::with_capacity(items.len() / 2);
            let mut it = items.into_iter();
            while let (Some(k), Some(v)) = (it.next(), it.next()) {
                pairs.push((k, v));
            }
            Value::Map(pairs)
        }
        Agg::Attribute => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(buf: &[u8]) -> (Value, usize) {
        decode(buf).expect("valid").expect("complete")
    }

    #[test]
    fn psync_replies() {
        let wire = b"+FULLRESYNC 3b5f6e2d1c0a9b8e7f6a5b4c3d2e1f0a9b8c7d6e 0\r\n$EOF:";
        let (v, n) = ok(wire);
        assert_eq!(
            v,
            Value::simple("FULLRESYNC 3b5f6e2d1c0a9b8e7f6a5b4c3d2e1f0a9b8c7d6e 0")
        );
        assert_eq!(&wire[n..], b"$EOF:");
        let (v, _) = ok(b"+CONTINUE 0123456789abcdef0123456789abcdef01234567\r\n");
        assert_eq!(
            v.as_bytes().map(|b| b.starts_with(b"CONTINUE ")),
            Some(true)
        );
    }

    #[test]
    fn ok_and_queued_are_shared_and_equal() {
        for (wire, text) in [
            (&b"+OK\r\n"[..], "OK"),
            (b"+QUEUED\r\n", "QUEUED"),
            (b"+OKAY\r\n", "OKAY"),
        ] {
            let (v, n) = ok(wire);
            assert_eq!((v, n), (Value::simple(text), wire.len()));
            let (v, _) = decode_bytes(&Bytes::copy_from_slice(wire))
                .expect("valid")
                .expect("complete");
            assert_eq!(v, Value::simple(text));
        }
        assert_eq!(decode(b"+OK\r"), Ok(None));
    }

    #[test]
    fn redirects_and_errors() {
        let (v, n) = ok(b"-MOVED 3999 127.0.0.1:6381\r\n");
        assert_eq!(n, 28);
        assert_eq!(v.error_kind(), Some(&b"MOVED"[..]));
        let (v, _) = ok(b"-NOAUTH Authentication required.\r\n");
        assert!(v.is_error_kind("NOAUTH"));
        let (v, _) = ok(b"!21\r\nSYNTAX invalid syntax\r\n");
        assert_eq!(v, Value::Error("SYNTAX invalid syntax".into()));
    }

    #[test]
    fn scalars() {
        assert_eq!(ok(b":1000\r\n"), (Value::Integer(1000), 7));
        assert_eq!(ok(b":-9223372036854775808\r\n").0, Value::Integer(i64::MIN));
        assert_eq!(ok(b":+5\r\n").0, Value::Integer(5));
        assert_eq!(ok(b"$-1\r\n"), (Value::Null, 5));
        assert_eq!(ok(b"_\r\n"), (Value::Null, 3));
        assert_eq!(ok(b"*-1\r\n"), (Value::NullArray, 5));
        assert_eq!(ok(b"$0\r\n\r\n"), (Value::bulk(""), 6));
        assert_eq!(ok(b"#t\r\n").0, Value::Boolean(true));
        assert_eq!(ok(b",1.5\r\n").0, Value::Double(1.5));
        assert_eq!(ok(b",-inf\r\n").0, Value::Double(f64::NEG_INFINITY));
        assert!(matches!(ok(b",nan\r\n").0, Value::Double(d) if d.is_nan()));
        assert_eq!(
            ok(b"(-3492890328409238509324850943850943825024385\r\n").0,
            Value::BigNumber("-3492890328409238509324850943850943825024385".into())
        );
        assert_eq!(
            ok(b"=15\r\ntxt:Some string\r\n").0,
            Value::Verbatim {
                format: *b"txt",
                text: "Some string".into()
            }
        );
    }

    #[test]
    fn resp3_aggregates_and_attributes() {
        let (v, _) = ok(b"%2\r\n+first\r\n:1\r\n+second\r\n:2\r\n");
        assert_eq!(
            v,
            Value::Map(vec![
                (Value::simple("first"), Value::Integer(1)),
                (Value::simple("second"), Value::Integer(2)),
            ])
        );
        let wire =
            b"|1\r\n+key-popularity\r\n%1\r\n$1\r\na\r\n,0.1923\r\n*2\r\n:2039123\r\n:9543892\r\n";
        let (v, n) = ok(wire);
        assert_eq!(n, wire.len());
        assert_eq!(
            v,
            Value::Array(vec![Value::Integer(2039123), Value::Integer(9543892)])
        );
        let (v, _) = ok(b"*2\r\n|0\r\n:1\r\n>1\r\n~0\r\n");
        assert_eq!(
            v,
            Value::Array(vec![
                Value::Integer(1),
                Value::Push(vec![Value::Set(vec![])])
            ])
        );
        assert_eq!(decode(b"|1\r\n+a\r\n+b\r\n"), Ok(None));
    }

    #[test]
    fn zero_copy_shares_the_buffer() {
        let buf = Bytes::from_static(b"*2\r\n$3\r\nfoo\r\n+bar\r\n");
        let (v, _) = decode_bytes(&buf).unwrap().unwrap();
        let Value::Array(items) = v else {
            panic!("not an array")
        };
        let Value::Bulk(foo) = &items[0] else {
            panic!("not bulk")
        };
        assert_eq!(foo.as_ptr(), buf[8..].as_ptr());
        let Value::Simple(bar) = &items[1] else {
            panic!("not simple")
        };
        assert_eq!(bar.as_ptr(), buf[14..].as_ptr());
    }

    #[test]
    fn errors_name_offset_and_byte() {
        assert_eq!(
            decode(b"?x"),
            Err(RespError::UnknownType {
                offset: 0,
                byte: b'?'
            })
        );
        assert_eq!(decode(b"$3\r\nfooX"), Err(unexpected(7, b'X', "CR")));
        assert_eq!(
            decode(b"$3\r\nfoo\rX"),
            Err(unexpected(8, b'X', "LF after CR"))
        );
        assert_eq!(decode(b"$03\r\n"), Err(unexpected(2, b'3', "CR")));
        assert_eq!(
            decode(b"$-2\r\n"),
            Err(unexpected(
                2,
                b'2',
                "'1' (only -1 is a valid negative length)"
            ))
        );
        assert_eq!(
            decode(b"%-1\r\n"),
            Err(unexpected(1, b'-', "a decimal digit"))
        );
        assert_eq!(
            decode(b"+a\nb\r\n"),
            Err(unexpected(2, b'\n', "CR before LF"))
        );
        assert_eq!(
            decode(b":99999999999999999999\r\n"),
            Err(RespError::IntegerOverflow { offset: 0 })
        );
        assert_eq!(
            decode(b":9223372036854775808\r\n"),
            Err(RespError::IntegerOverflow { offset: 0 })
        );
        assert_eq!(
            decode(b":-\r\n"),
            Err(unexpected(2, b'\r', "a decimal digit"))
        );
        assert_eq!(
            decode(b",1.2.3\r\n"),
            Err(RespError::InvalidDouble { offset: 0 })
        );
        assert_eq!(
            decode(b",infinity\r\n"),
            Err(RespError::InvalidDouble { offset: 0 })
        );
        assert_eq!(
            decode(b"(\r\n"),
            Err(unexpected(1, b'\r', "a decimal digit"))
        );
        assert_eq!(
            decode(b"(12a\r\n"),
            Err(unexpected(3, b'a', "a decimal digit"))
        );
        assert_eq!(
            decode(b"=3\r\ntxt\r\n"),
            Err(RespError::InvalidVerbatim { offset: 0 })
        );
        assert_eq!(
            decode(b"=4\r\ntxt;\r\n"),
            Err(RespError::InvalidVerbatim { offset: 0 })
        );
        assert_eq!(decode(b"#x\r\n"), Err(unexpected(1, b'x', "'t' or 'f'")));
        assert_eq!(
            decode(b"$?\r\n"),
            Err(unexpected(1, b'?', "a decimal digit"))
        );
    }

    #[test]
    fn limits() {
        assert_eq!(
            decode(b"$536870913\r\n"),
            Err(RespError::BulkTooLong {
                offset: 0,
                max: DEFAULT_MAX_BULK_LEN
            })
        );
        assert_eq!(decode(b"$536870912\r\n"), Ok(None));
        // Decided at the digit that crosses the limit, without waiting for CRLF.
        assert_eq!(
            decode(b"*99999999999"),
            Err(RespError::ArrayTooLong {
                offset: 0,
                max: DEFAULT_MAX_ARRAY_LEN
            })
        );
        // Redis's own maximum is accepted as a header but reserves nothing up front.
        assert_eq!(decode(b"*2147483647\r\n"), Ok(None));
        assert_eq!(decode(b"*2147483647\r\n:1\r\n"), Ok(None));
        assert_eq!(decode(b"%2147483647\r\n"), Ok(None));
        let small = Decoder {
            max_bulk_len: 4,
            max_array_len: 2,
            max_depth: 2,
        };
        assert_eq!(
            small.decode(b"+abcd\r\n"),
            Ok(Some((Value::simple("abcd"), 7)))
        );
        assert_eq!(small.decode(b"+abcd"), Ok(None));
        assert_eq!(
            small.decode(b"+abcde"),
            Err(RespError::LineTooLong { offset: 0, max: 4 })
        );
        assert_eq!(
            small.decode(b"*3\r\n"),
            Err(RespError::ArrayTooLong { offset: 0, max: 2 })
        );
        assert_eq!(
            small
                .decode(b"*1\r\n*1\r\n:1\r\n")
                .map(|o| o.map(|(_, n)| n)),
            Ok(Some(12))
        );
        assert_eq!(
            small.decode(b"*1\r\n*1\r\n*0\r\n"),
            Err(RespError::TooDeep { offset: 8, max: 2 })
        );
        let flat = Decoder {
            max_depth: 0,
            ..Decoder::new()
        };
        assert_eq!(
            flat.decode(b"*0\r\n"),
            Err(RespError::TooDeep { offset: 0, max: 0 })
        );
        assert_eq!(flat.decode(b"*-1\r\n"), Ok(Some((Value::NullArray, 5))));
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_stack_overflow() {
        let deep = b"*1\r\n".repeat(100_000);
        assert_eq!(
            decode(&deep),
            Err(RespError::TooDeep {
                offset: 32 * 4,
                max: 32
            })
        );
        let unbounded = Decoder {
            max_depth: usize::MAX,
            ..Decoder::new()
        };
        assert_eq!(unbounded.decode(&deep), Ok(None));
        let mut full = deep.clone();
        full.extend_from_slice(b":1\r\n");
        let (v, n) = unbounded.decode(&full).unwrap().unwrap();
        assert_eq!(n, full.len());
        // Drop iteratively too: unwrap the nesting by hand.
        let mut v = v;
        while let Value::Array(mut items) = v {
            v = items.pop().unwrap_or(Value::Null);
        }
        assert_eq!(v, Value::Integer(1));
    }
}

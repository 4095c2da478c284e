//! RESP encoding: commands (arrays of bulk strings) and arbitrary [`Value`]s.
//!
//! ```text
//! write_command(out, ["SET", "k", "v"])  =>  *3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\nv\r\n
//! ```
//!
//! [`command_len`] is the exact encoded length, so a writer can reserve once
//! and a replica can predict offsets. Lengths are formatted with `itoa`.
//!
//! [`write_value`] emits the RESP2 form where one exists (`Null` as `$-1`,
//! `NullArray` as `*-1`) and the RESP3 form otherwise. Simple strings cannot
//! hold CR or LF: in a `Simple` (and a `BigNumber`) those bytes are replaced
//! by spaces, as Redis does for status replies; an `Error` containing them
//! is written as a RESP3 blob error (`!<len>`) so that it survives intact.
//! For every value the decoder can produce, `decode(write_value(v)) == v`.

use bytes::{BufMut, BytesMut};

use crate::Value;

/// Byte sinks the encoder writes to.
trait Sink {
    fn put(&mut self, b: &[u8]);
    /// Grows by `n` zero bytes and returns them (one capacity check for a
    /// whole command instead of one per part).
    fn grow(&mut self, n: usize) -> &mut [u8];
    fn truncate_to(&mut self, len: usize);
    fn len_now(&self) -> usize;
}

/// `Sink` for a growable byte buffer whose append method is `$put`.
macro_rules! byte_sink {
    ($t:ty, $put:ident) => {
        impl Sink for $t {
            #[inline]
            fn put(&mut self, b: &[u8]) {
                self.$put(b);
            }
            #[inline]
            fn grow(&mut self, n: usize) -> &mut [u8] {
                let start = self.len();
                self.resize(start + n, 0);
                &mut self[start..]
            }
            #[inline]
            fn truncate_to(&mut self, len: usize) {
                self.truncate(len);
            }
            #[inline]
            fn len_now(&self) -> usize {
                self.len()
            }
        }
    };
}

byte_sink!(Vec<u8>, extend_from_slice);
byte_sink!(BytesMut, put_slice);

/// Number of decimal digits in `n` (comparisons for the usual small
/// lengths: `ilog10` cost more than the rest of a short command's header).
#[inline]
fn digits(n: usize) -> usize {
    if n < 10 {
        1
    } else if n < 100 {
        2
    } else if n < 1000 {
        3
    } else if n < 10_000 {
        4
    } else {
        n.checked_ilog10().map_or(1, |d| d as usize + 1)
    }
}

/// The exact number of bytes [`write_command`] produces for `args`.
pub fn command_len<A: AsRef<[u8]>>(args: &[A]) -> usize {
    let body: usize = args
        .iter()
        .map(|a| {
            let n = a.as_ref().len();
            1 + digits(n) + 2 + n + 2
        })
        .sum();
    1 + digits(args.len()) + 2 + body
}

/// Appends `args` to `out` as an array of bulk strings.
pub fn write_command<A: AsRef<[u8]>>(out: &mut Vec<u8>, args: &[A]) {
    put_command_into(out, args, command_len(args));
}

/// Appends `args` to `out` as an array of bulk strings.
pub fn put_command<A: AsRef<[u8]>>(out: &mut BytesMut, args: &[A]) {
    put_command_into(out, args, command_len(args));
}

/// [`put_command`] for a caller that has measured the command already:
/// `len` must be [`command_len`]`(args)`. A wrong `len` costs a second
/// encoding, never wrong bytes or a panic.
pub fn put_command_sized<A: AsRef<[u8]>>(out: &mut BytesMut, args: &[A], len: usize) {
    put_command_into(out, args, len);
}

/// Encodes into `len` bytes grown once; falls back to part-by-part writes
/// if `len` was not the exact length.
fn put_command_into<S: Sink, A: AsRef<[u8]>>(out: &mut S, args: &[A], len: usize) {
    let start = out.len_now();
    if fill(out.grow(len), args) != Some(len) {
        out.truncate_to(start);
        header(out, b'*', args.len());
        for a in args {
            bulk(out, b'$', a.as_ref());
        }
    }
}

/// Writes the command into `buf`; the bytes written, `None` if `buf` is
/// too short.
#[inline]
fn fill<A: AsRef<[u8]>>(buf: &mut [u8], args: &[A]) -> Option<usize> {
    let mut pos = put_header(buf, 0, b'*', args.len())?;
    for a in args {
        let a = a.as_ref();
        pos = put_header(buf, pos, b'$', a.len())?;
        let end = pos + a.len();
        buf.get_mut(pos..end)?.copy_from_slice(a);
        *buf.get_mut(end)? = b'\r';
        *buf.get_mut(end + 1)? = b'\n';
        pos = end + 2;
    }
    Some(pos)
}

/// `<t><n>\r\n` at `pos`; the position after it. Lengths below 1000 (the
/// command's argument count, names, keys, small values) are written as one
/// fixed-size store each.
#[inline]
fn put_header(buf: &mut [u8], pos: usize, t: u8, n: usize) -> Option<usize> {
    // Digits of `n` (< 1000 where used), by value: `b'0' + n % 10` etc.
    let d = |k: usize| b'0' + (n / k % 10) as u8;
    match n {
        0..=9 => {
            let h: &mut [u8; 4] = buf.get_mut(pos..pos + 4)?.try_into().ok()?;
            *h = [t, d(1), b'\r', b'\n'];
            Some(pos + 4)
        }
        10..=99 => {
            let h: &mut [u8; 5] = buf.get_mut(pos..pos + 5)?.try_into().ok()?;
            *h = [t, d(10), d(1), b'\r', b'\n'];
            Some(pos + 5)
        }
        100..=999 => {
            let h: &mut [u8; 6] = buf.get_mut(pos..pos + 6)?.try_into().ok()?;
            *h = [t, d(100), d(10), d(1), b'\r', b'\n'];
            Some(pos + 6)
        }
        _ => {
            let mut text = itoa::Buffer::new();
            let text = text.format(n).as_bytes();
            let end = pos + 1 + text.len();
            *buf.get_mut(pos)? = t;
            buf.get_mut(pos + 1..end)?.copy_from_slice(text);
            buf.get_mut(end..end + 2)?.copy_from_slice(b"\r\n");
            Some(end + 2)
        }
    }
}

/// Appends the encoding of `v` to `out`.
pub fn write_value(out: &mut Vec<u8>, v: &Value) {
    value(out, v);
}

/// Appends the encoding of `v` to `out`.
pub fn put_value(out: &mut BytesMut, v: &Value) {
    value(out, v);
}

#[inline]
fn header<S: Sink>(out: &mut S, t: u8, n: usize) {
    let mut buf = itoa::Buffer::new();
    out.put(&[t]);
    out.put(buf.format(n).as_bytes());
    out.put(b"\r\n");
}

#[inline]
fn bulk<S: Sink>(out: &mut S, t: u8, b: &[u8]) {
    header(out, t, b.len());
    out.put(b);
    out.put(b"\r\n");
}

/// Writes `t`, then `b` with CR and LF replaced by spaces, then CRLF.
fn line<S: Sink>(out: &mut S, t: u8, b: &[u8]) {
    out.put(&[t]);
    let mut rest = b;
    while let Some(i) = memchr::memchr2(b'\r', b'\n', rest) {
        out.put(&rest[..i]);
        out.put(b" ");
        rest = &rest[i + 1..];
    }
    out.put(rest);
    out.put(b"\r\n");
}

fn value<S: Sink>(out: &mut S, v: &Value) {
    match v {
        Value::Simple(b) => line(out, b'+', b),
        Value::Error(b) if memchr::memchr2(b'\r', b'\n', b).is_some() => bulk(out, b'!', b),
        Value::Error(b) => line(out, b'-', b),
        Value::Integer(i) => {
            let mut buf = itoa::Buffer::new();
            out.put(b":");
            out.put(buf.format(*i).as_bytes());
            out.put(b"\r\n");
        }
        Value::Bulk(b) => bulk(out, b'$', b),
        Value::Null => out.put(b"$-1\r\n"),
        Value::NullArray => out.put(b"*-1\r\n"),
        Value::Array(items) => aggregate(out, b'*', items),
        Value::Set(items) => aggregate(out, b'~', items),
        Value::Push(items) => aggregate(out, b'>', items),
        Value::Map(pairs) => {
            header(out, b'%', pairs.len());
            for (k, v) in pairs {
                value(out, k);
                value(out, v);
            }
        }
        Value::Double(d) => {
            let text = if d.is_nan() {
                "nan".to_owned()
            } else if d.is_infinite() {
                if *d > 0.0 { "inf" } else { "-inf" }.to_owned()
            } else {
                // `{:?}` is the shortest text that parses back to the same f64.
                format!("{d:?}")
            };
            line(out, b',', text.as_bytes());
        }
        Value::Boolean(b) => out.put(if *b { b"#t\r\n" } else { b"#f\r\n" }),
        Value::BigNumber(b) => line(out, b'(', b),
        Value::Verbatim { format, text } => {
            header(out, b'=', text.len() + 4);
            out.put(format);
            out.put(b":");
            out.put(text);
            out.put(b"\r\n");
        }
    }
}

fn aggregate<S: Sink>(out: &mut S, t: u8, items: &[Value]) {
    header(out, t, items.len());
    for v in items {
        value(out, v);
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;

    #[test]
    fn length_headers_of_every_width() {
        for len in [
            0usize, 1, 9, 10, 99, 100, 999, 1000, 9999, 12_345, 1_000_000,
        ] {
            let arg = vec![b'x'; len];
            let mut out = Vec::new();
            write_command(&mut out, &[&b"SET"[..], &arg]);
            let mut want = format!("*2\r\n$3\r\nSET\r\n${len}\r\n").into_bytes();
            want.extend_from_slice(&arg);
            want.extend_from_slice(b"\r\n");
            assert_eq!(out, want, "length {len}");
            assert_eq!(command_len(&[&b"SET"[..], &arg]), want.len());
        }
        let mut out = Vec::new();
        header(&mut out, b'*', usize::MAX);
        assert_eq!(out, format!("*{}\r\n", usize::MAX).into_bytes());
    }

    fn enc(v: &Value) -> Vec<u8> {
        let mut out = Vec::new();
        write_value(&mut out, v);
        out
    }

    #[test]
    fn commands() {
        let mut out = Vec::new();
        write_command(&mut out, &["PSYNC", "?", "-1"]);
        assert_eq!(out, b"*3\r\n$5\r\nPSYNC\r\n$1\r\n?\r\n$2\r\n-1\r\n");
        assert_eq!(command_len(&["PSYNC", "?", "-1"]), out.len());
        let mut bm = BytesMut::new();
        put_command(&mut bm, &[Bytes::from_static(b"PING")]);
        assert_eq!(&bm[..], b"*1\r\n$4\r\nPING\r\n");
        let big = vec![b'x'; 12345];
        let args: [&[u8]; 2] = [b"SET", &big];
        out.clear();
        write_command(&mut out, &args);
        assert_eq!(out.len(), command_len(&args));
        assert_eq!(command_len::<&[u8]>(&[]), 4);
        assert_eq!(digits(0), 1);
        assert_eq!(digits(9), 1);
        assert_eq!(digits(10), 2);
        assert_eq!(digits(usize::MAX), 20);
        for n in [99usize, 100, 999, 1000, 9999, 10_000, 99_999, 100_000] {
            assert_eq!(digits(n), n.to_string().len(), "{n}");
        }
    }

    #[test]
    fn sized_encoding_matches_and_survives_a_wrong_length() {
        let big = vec![b'y'; 10_000];
        let cases: [&[&[u8]]; 4] = [&[], &[b"PING"], &[b"SET", b"k:1", &big], &[&b""[..]; 12]];
        for args in cases {
            let mut want = Vec::new();
            write_command(&mut want, args);
            let len = command_len(args);
            assert_eq!(want.len(), len);
            for given in [len, 0, len - 1, len + 1, len + 100] {
                let mut out = BytesMut::from(&b"xx"[..]);
                put_command_sized(&mut out, args, given);
                assert_eq!(&out[2..], &want[..], "len {len} given {given}");
            }
        }
    }

    #[test]
    fn values() {
        assert_eq!(enc(&Value::simple("OK")), b"+OK\r\n");
        assert_eq!(enc(&Value::simple("a\r\nb")), b"+a  b\r\n");
        assert_eq!(
            enc(&Value::Error("MOVED 1 h:1".into())),
            b"-MOVED 1 h:1\r\n"
        );
        assert_eq!(enc(&Value::Error("x\ny".into())), b"!3\r\nx\ny\r\n");
        assert_eq!(enc(&Value::Integer(i64::MIN)), b":-9223372036854775808\r\n");
        assert_eq!(enc(&Value::Null), b"$-1\r\n");
        assert_eq!(enc(&Value::NullArray), b"*-1\r\n");
        assert_eq!(enc(&Value::Double(1.5)), b",1.5\r\n");
        assert_eq!(enc(&Value::Double(-0.0)), b",-0.0\r\n");
        assert_eq!(enc(&Value::Double(1e300)), b",1e300\r\n");
        assert_eq!(enc(&Value::Double(f64::NEG_INFINITY)), b",-inf\r\n");
        assert_eq!(enc(&Value::Double(f64::NAN)), b",nan\r\n");
        assert_eq!(enc(&Value::Boolean(false)), b"#f\r\n");
        assert_eq!(
            enc(&Value::Verbatim {
                format: *b"txt",
                text: "hi".into()
            }),
            b"=6\r\ntxt:hi\r\n"
        );
        let m = Value::Map(vec![(
            Value::simple("k"),
            Value::Set(vec![Value::Boolean(true)]),
        )]);
        assert_eq!(enc(&m), b"%1\r\n+k\r\n~1\r\n#t\r\n");
        assert_eq!(enc(&Value::Push(vec![])), b">0\r\n");
        let mut bm = BytesMut::new();
        put_value(&mut bm, &m);
        assert_eq!(&bm[..], enc(&m));
    }
}

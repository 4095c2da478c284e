//! Replies as a pipelining writer reads them, many at a time: every
//! complete frame of a read buffer, with the shapes a write gets back
//! (`+OK`, `+QUEUED`, an `EXEC` array of `+OK` and integers) recognised by
//! their bytes before the general decoder runs.
//!
//! * [`decode_all`]: into [`Value`]s.
//! * [`decode_replies_up_to`]: into [`Reply`]s, where those shapes carry
//!   no `Value` at all (an `EXEC` array of *n* such items is `Plain(n)`:
//!   no allocation, nothing to drop).

use bytes::Bytes;

use crate::decode::Decoder;
use crate::scan::parse_int;
use crate::{RespError, Value};

/// One reply of a pipeline: the common write replies without a [`Value`].
#[derive(Debug, Clone, PartialEq)]
pub enum Reply {
    /// `+OK`.
    Ok,
    /// `+QUEUED`.
    Queued,
    /// An array of this many items (at least 1, at most 1024), each `+OK`
    /// or an integer: what `EXEC` answers when no command inside failed.
    Plain(u32),
    /// Anything else, decoded.
    Value(Value),
}

impl Reply {
    /// The message of an error reply.
    pub fn error(&self) -> Option<&Bytes> {
        match self {
            Reply::Value(Value::Error(m)) => Some(m),
            _ => None,
        }
    }

    /// The reply as a [`Value`]; `None` for [`Reply::Plain`], whose items
    /// are not kept.
    pub fn into_value(self) -> Option<Value> {
        match self {
            Reply::Ok => Some(ok_reply()),
            Reply::Queued => Some(queued_reply()),
            Reply::Plain(_) => None,
            Reply::Value(v) => Some(v),
        }
    }
}

/// Decodes every complete frame at the start of `buf` into `out` (the
/// default limits, payloads copied) and returns the bytes they used; a
/// trailing partial frame is left for later. `+OK`, `+QUEUED` and arrays of
/// only `+OK` and integers (what `EXEC` answers for a transaction of
/// ordinary writes) are recognised by their bytes; the values are the ones
/// the general decoder gives.
///
/// # Errors
/// As [`crate::decode()`]; the frames decoded before the bad one are in `out`.
pub fn decode_all(buf: &[u8], out: &mut Vec<Value>) -> Result<usize, RespError> {
    frames(buf, out, usize::MAX, |rest| {
        if rest.starts_with(OK) {
            Some((ok_reply(), OK.len()))
        } else if rest.starts_with(QUEUED) {
            Some((queued_reply(), QUEUED.len()))
        } else {
            let mut items = Vec::new();
            let (n, used) = plain_array(rest, |v| items.push(v))?;
            debug_assert_eq!(items.len(), n);
            Some((Value::Array(items), used))
        }
    })
}

/// [`decode_all`] into [`Reply`]s, stopping once `out` holds `max` of them
/// (the rest stays for the next call: a reader hands on bounded batches):
/// `+OK`, `+QUEUED` and plain arrays become [`Reply::Ok`], [`Reply::Queued`]
/// and [`Reply::Plain`], anything else [`Reply::Value`].
///
/// # Errors
/// As [`decode_all`].
pub fn decode_replies_up_to(
    buf: &[u8],
    out: &mut Vec<Reply>,
    max: usize,
) -> Result<usize, RespError> {
    frames(buf, out, max, |rest| {
        if rest.starts_with(OK) {
            Some((Reply::Ok, OK.len()))
        } else if rest.starts_with(QUEUED) {
            Some((Reply::Queued, QUEUED.len()))
        } else {
            let (n, used) = plain_array(rest, drop)?;
            // n ≤ PLAIN_ARRAY_MAX.
            Some((Reply::Plain(u32::try_from(n).ok()?), used))
        }
    })
}

/// The loop of the decoders above: `fast` first, then the general decoder.
fn frames<T: From<Value>>(
    buf: &[u8],
    out: &mut Vec<T>,
    max: usize,
    fast: impl Fn(&[u8]) -> Option<(T, usize)>,
) -> Result<usize, RespError> {
    let decoder = Decoder::new();
    let mut used = 0;
    while let Some(rest) = buf.get(used..).filter(|r| !r.is_empty() && out.len() < max) {
        let (v, n) = match fast(rest) {
            Some(got) => got,
            None => match decoder.decode(rest)? {
                Some((v, n)) => (T::from(v), n),
                None => break,
            },
        };
        out.push(v);
        used += n;
    }
    Ok(used)
}

impl From<Value> for Reply {
    fn from(v: Value) -> Self {
        Reply::Value(v)
    }
}

const OK: &[u8] = b"+OK\r\n";
const QUEUED: &[u8] = b"+QUEUED\r\n";

/// `+OK`, sharing static bytes (the reply every write gets: no allocation).
pub(crate) fn ok_reply() -> Value {
    Value::Simple(Bytes::from_static(b"OK"))
}

/// `+QUEUED`, sharing static bytes.
pub(crate) fn queued_reply() -> Value {
    Value::Simple(Bytes::from_static(b"QUEUED"))
}

/// Longest array [`plain_array`] takes; longer ones go to the general decoder.
const PLAIN_ARRAY_MAX: usize = 1024;

/// A complete `*<n>` array (1 ≤ n ≤ [`PLAIN_ARRAY_MAX`]) of only `+OK` and
/// `:<integer>` items at the start of `buf`, read without the general
/// decoder's frame stack: each item goes to `item` (the value the general
/// decoder gives), and the count and the bytes used are returned. `None`
/// for anything else (another shape, a bad or partial frame), which the
/// general decoder then decodes or reports; `item` may have been called
/// for the items before it.
fn plain_array(buf: &[u8], mut item: impl FnMut(Value)) -> Option<(usize, usize)> {
    if buf.first() != Some(&b'*') {
        return None;
    }
    let mut pos = 1;
    let mut n = 0usize;
    while let Some(&b) = buf.get(pos).filter(|b| b.is_ascii_digit()) {
        n = n * 10 + usize::from(b - b'0');
        pos += 1;
        if pos > 5 {
            return None;
        }
    }
    if n == 0 || n > PLAIN_ARRAY_MAX || buf.get(pos..pos + 2) != Some(b"\r\n") || buf[1] == b'0' {
        return None;
    }
    pos += 2;
    for _ in 0..n {
        let rest = buf.get(pos..)?;
        if rest.starts_with(OK) {
            item(ok_reply());
            pos += OK.len();
        } else if rest.first() == Some(&b':') {
            let (v, next) = parse_int(buf, pos).ok()??;
            item(Value::Integer(v));
            pos = next;
        } else {
            return None;
        }
    }
    Some((n, pos))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode;

    #[test]
    fn decode_all_takes_every_complete_frame() {
        let wire = b"+OK\r\n+QUEUED\r\n-MOVED 1 h:1\r\n+OK\r\n*2\r\n:1\r\n+OK\r\n+OKAY\r\n+OK\r";
        let mut out = Vec::new();
        let used = decode_all(wire, &mut out).expect("valid");
        assert_eq!(&wire[used..], b"+OK\r");
        let mut want = Vec::new();
        let mut pos = 0;
        while let Ok(Some((v, n))) = decode(&wire[pos..]) {
            want.push(v);
            pos += n;
        }
        assert_eq!((out, used), (want, pos));
        let mut out = Vec::new();
        assert_eq!(decode_all(b"", &mut out), Ok(0));
        assert!(decode_all(b"+OK\r\n?x\r\n", &mut out).is_err());
        assert_eq!(out, [Value::simple("OK")]);
    }

    #[test]
    fn plain_arrays_decode_as_the_general_decoder_does() {
        let frames: [&[u8]; 14] = [
            b"*3\r\n+OK\r\n:12\r\n+OK\r\n",
            b"*1\r\n:-9223372036854775808\r\n",
            b"*2\r\n:+7\r\n:0\r\n",
            b"*1\r\n:99999999999999999999\r\n",
            b"*2\r\n+OK\r\n-ERR no\r\n",
            b"*2\r\n+OK\r\n$1\r\nx\r\n",
            b"*0\r\n",
            b"*01\r\n+OK\r\n",
            b"*-1\r\n",
            b"*2\r\n+OK\r\n",
            b"*2\r\n+OK\r\n:1",
            b"*1\r\n:x\r\n",
            b"*1\n+OK\r\n",
            b"*10000\r\n+OK\r\n",
        ];
        for frame in frames {
            let mut out = Vec::new();
            let got = decode_all(frame, &mut out);
            let want = decode(frame);
            match want {
                Ok(Some((v, n))) => assert_eq!((got, out), (Ok(n), vec![v]), "{frame:?}"),
                Ok(None) => assert_eq!((got, out), (Ok(0), vec![]), "{frame:?}"),
                Err(e) => assert_eq!(got, Err(e), "{frame:?}"),
            }
        }
        let mut many = b"*1025\r\n".to_vec();
        for _ in 0..1025 {
            many.extend_from_slice(b"+OK\r\n");
        }
        let mut out = Vec::new();
        assert_eq!(decode_all(&many, &mut out), Ok(many.len()));
        assert_eq!(out, vec![decode(&many).expect("valid").expect("whole").0]);
    }
    #[test]
    fn decode_replies_up_to_stops_at_max_and_resumes() {
        let wire = b"+OK\r\n:1\r\n+QUEUED\r\n*1\r\n+OK\r\n$1\r\nx\r\n$3\r\nab";
        let mut out = Vec::new();
        let used = decode_replies_up_to(wire, &mut out, 2).expect("valid");
        assert_eq!(used, 9);
        assert_eq!(out.len(), 2);
        let mut rest = Vec::new();
        let more = decode_replies_up_to(&wire[used..], &mut rest, 2).expect("valid");
        let mut tail = Vec::new();
        let last = decode_replies_up_to(&wire[used + more..], &mut tail, 2).expect("valid");
        // The same replies as one call, in order; the partial frame stays.
        let mut all = Vec::new();
        assert_eq!(
            decode_replies_up_to(wire, &mut all, usize::MAX),
            Ok(used + more + last)
        );
        out.extend(rest);
        out.extend(tail);
        assert_eq!(out, all);
        assert_eq!(all.len(), 5);
        assert_eq!(decode_replies_up_to(wire, &mut Vec::new(), 0), Ok(0));
    }

    #[test]
    fn replies_are_the_values_without_building_them() {
        let wire: &[u8] = b"+OK\r\n+QUEUED\r\n*3\r\n+OK\r\n:7\r\n:-2\r\n*2\r\n+OK\r\n-ERR x\r\n$1\r\nv\r\n-MOVED 1 h:1\r\n*1\r\n+OK\r";
        let mut values = Vec::new();
        let used = decode_all(wire, &mut values).expect("valid");
        let mut replies = Vec::new();
        assert_eq!(
            decode_replies_up_to(wire, &mut replies, usize::MAX),
            Ok(used)
        );
        assert_eq!(
            replies,
            [
                Reply::Ok,
                Reply::Queued,
                Reply::Plain(3),
                Reply::Value(values[3].clone()),
                Reply::Value(Value::Bulk(Bytes::from_static(b"v"))),
                Reply::Value(values[5].clone()),
            ]
        );
        // Every reply but a plain array gives its value back.
        for (r, v) in replies.iter().zip(&values) {
            match r {
                Reply::Plain(n) => {
                    assert!(matches!(v, Value::Array(items) if items.len() == *n as usize));
                }
                r => assert_eq!(r.clone().into_value().as_ref(), Some(v)),
            }
        }
        assert_eq!(
            replies[5].error().map(|m| &m[..]),
            Some(&b"MOVED 1 h:1"[..])
        );
        assert_eq!(replies[0].error(), None);
        // Bounded by `max`.
        let mut two = Vec::new();
        assert_eq!(decode_replies_up_to(wire, &mut two, 2), Ok(14));
        assert_eq!(two, [Reply::Ok, Reply::Queued]);
    }
}

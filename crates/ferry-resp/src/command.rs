//! The fast path for the replication stream: arrays of bulk strings only.
//!
//! After the snapshot, a master sends nothing but commands framed as
//!
//! ```text
//! *<argc>\r\n  then argc times  $<len>\r\n<len bytes>\r\n
//! ```
//!
//! [`Decoder::decode_command`] parses exactly that, with no intermediate
//! [`Value`]: the arguments are `Bytes` slices of the input (one reference
//! count increment each, no copy) and [`Command::wire_len`] is the exact
//! number of bytes the frame occupied, which is what the replication offset
//! advances by. It follows the same rules and limits as
//! [`Decoder::decode`], so on any input where `decode` yields an array of
//! bulk strings, `decode_command` yields the same arguments and length (and
//! vice versa), with one exception: `decode` skips RESP3 attributes (`|`),
//! which a master never sends, while `decode_command` rejects them. Anything
//! else (`*-1`, a `$-1` or non-bulk element, a non-array frame) is
//! [`RespError::NotCommand`] or [`RespError::UnexpectedByte`].
//!
//! Because lengths never have leading zeros or signs, every accepted frame is
//! the canonical encoding of its arguments: `wire_len ==
//! command_len(&args)`.
//!
//! Lengths are parsed digit by digit and payloads are skipped by length, so
//! nothing is searched for CRLF at all.

use bytes::{Bytes, BytesMut};
use smallvec::SmallVec;

use crate::decode::PREALLOC_MAX;
use crate::scan::{LenKind, Step, expect_crlf, parse_count};
use crate::{Decoder, RespError, Value};

/// A command's arguments with the first few held inline: `SET key value`,
/// `INCR key`, `SADD key member` need no allocation of their own, more
/// spill to the heap. The replication stream's commands are decoded on one
/// thread and consumed on another, where a heap `Vec` per command is a
/// cross-thread allocation and free each time; this type goes from
/// [`Decoder::split_args`] into the op the command becomes as it is.
pub type Args = SmallVec<[Bytes; 3]>;

/// One command from the replication stream (or any client request): its
/// arguments in `A` (a `Vec` by default; [`Args`] from
/// [`Decoder::split_args`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Command<A = Vec<Bytes>> {
    /// The arguments, name first. Empty only for the degenerate frame
    /// `*0\r\n`, which Redis accepts and ignores.
    pub args: A,
    /// Bytes the frame occupied on the wire.
    pub wire_len: usize,
}

/// A [`Command`] with its first arguments inline (see [`Args`]).
pub type InlineCommand = Command<Args>;

/// Decodes one command from `buf` with the default limits. See
/// [`Decoder::decode_command`].
pub fn decode_command(buf: &Bytes) -> Step<Command> {
    Decoder::new().decode_command(buf)
}

/// Decodes one command from the front of `buf` and removes its bytes, with
/// the default limits. See [`Decoder::split_command`].
pub fn split_command(buf: &mut BytesMut) -> Step<Command> {
    Decoder::new().split_command(buf)
}

impl Decoder {
    /// Decodes one command (an array of bulk strings) from the start of
    /// `buf`. The arguments are slices of `buf`. `Ok(None)` means `buf` is a
    /// proper prefix of a command.
    ///
    /// ```
    /// use bytes::Bytes;
    /// let buf = Bytes::from_static(b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\nv\r\n*1\r\n");
    /// let cmd = ferry_resp::decode_command(&buf).unwrap().unwrap();
    /// assert!(cmd.is("set"));
    /// assert_eq!(cmd.args[1], "k");
    /// assert_eq!(cmd.wire_len, 27);
    /// ```
    pub fn decode_command(&self, buf: &Bytes) -> Step<Command> {
        let mut sink = Collect {
            buf,
            args: Vec::new(),
        };
        Ok(self.scan_command(buf, &mut sink)?.map(|wire_len| Command {
            args: sink.args,
            wire_len,
        }))
    }

    /// Like [`decode_command`](Self::decode_command), for a read buffer: on
    /// success the command's bytes are split off the front of `buf` (no copy;
    /// the arguments share them) and the rest stays in `buf`. On `Ok(None)`
    /// or an error `buf` is unchanged.
    pub fn split_command(&self, buf: &mut BytesMut) -> Step<Command> {
        self.split_into(buf)
    }

    /// [`split_command`](Self::split_command) with the arguments in
    /// [`Args`]: a command of up to three arguments takes no allocation.
    ///
    /// ```
    /// use bytes::BytesMut;
    /// let mut buf = BytesMut::from(&b"*2\r\n$4\r\nINCR\r\n$1\r\nk\r\n*1"[..]);
    /// let cmd = ferry_resp::Decoder::new().split_args(&mut buf).unwrap().unwrap();
    /// assert!(cmd.is("incr") && !cmd.args.spilled());
    /// assert_eq!((cmd.wire_len, &buf[..]), (21, &b"*1"[..]));
    /// ```
    pub fn split_args(&self, buf: &mut BytesMut) -> Step<InlineCommand> {
        self.split_into(buf)
    }

    /// The body of [`split_command`](Self::split_command) for either
    /// argument container.
    #[inline]
    fn split_into<A: ArgList>(&self, buf: &mut BytesMut) -> Step<Command<A>> {
        let mut ranges = Ranges::default();
        let Some(wire_len) = self.scan_command(buf, &mut ranges)? else {
            return Ok(None);
        };
        // The frame leaves the buffer in one piece; each argument is a
        // slice of it (one reference-count increment each).
        let frame = buf.split_to(wire_len).freeze();
        let args = A::collect(&frame, &ranges);
        Ok(Some(Command { args, wire_len }))
    }

    /// Validates one command frame, reporting each argument's range to `sink`.
    /// Returns the frame length.
    #[inline]
    fn scan_command<S: ArgSink>(&self, buf: &[u8], sink: &mut S) -> Step<usize> {
        let Some(&t) = buf.first() else {
            return Ok(None);
        };
        if t != b'*' {
            return Err(RespError::NotCommand {
                offset: 0,
                byte: t,
                expected: "'*' (an array)",
            });
        }
        let Some((argc, mut pos)) = parse_count(buf, 0, self.max_array_len, LenKind::Aggregate)?
        else {
            return Ok(None);
        };
        if self.max_depth == 0 {
            return Err(RespError::TooDeep { offset: 0, max: 0 });
        }
        // Each argument takes at least 6 bytes (`$0\r\n\r\n`).
        sink.begin(argc.min((buf.len() - pos) / 6 + 1).min(PREALLOC_MAX));
        for _ in 0..argc {
            if let Some((data, end, next)) = short_bulk(buf, pos, self.max_bulk_len) {
                sink.arg(data, end);
                pos = next;
                continue;
            }
            // Everything else (longer lengths, a frame cut short, bad
            // input): the general path below decides.
            match buf.get(pos) {
                None => return Ok(None),
                Some(b'$') => {}
                Some(&b) => {
                    return Err(RespError::NotCommand {
                        offset: pos,
                        byte: b,
                        expected: "'$' (a bulk string)",
                    });
                }
            }
            let Some((len, data)) = parse_count(buf, pos, self.max_bulk_len, LenKind::Bulk)? else {
                return Ok(None);
            };
            let end = data.saturating_add(len);
            if buf.len() < end {
                return Ok(None);
            }
            let Some(next) = expect_crlf(buf, end)? else {
                return Ok(None);
            };
            sink.arg(data, end);
            pos = next;
        }
        Ok(Some(pos))
    }
}

/// The common argument, whole in `buf` at `at`: `$` and a length of one
/// to three digits (no leading zero) up to `max`, CRLF, the payload, CRLF.
/// Returns `(payload start, payload end, offset after it)`; `None` for
/// anything else, which the general path then reads (so errors and
/// "read more" come from one place only).
#[inline(always)]
fn short_bulk(buf: &[u8], at: usize, max: usize) -> Option<(usize, usize, usize)> {
    let h = buf.get(at..at.checked_add(4)?)?;
    if h[0] != b'$' {
        return None;
    }
    let digit = |b: u8| {
        let d = b.wrapping_sub(b'0');
        (d <= 9).then_some(usize::from(d))
    };
    let d1 = digit(h[1])?;
    let (len, data) = if h[2] == b'\r' {
        if h[3] != b'\n' {
            return None;
        }
        (d1, at + 4)
    } else if d1 == 0 {
        return None;
    } else {
        let d2 = digit(h[2])?;
        if h[3] == b'\r' {
            if buf.get(at + 4) != Some(&b'\n') {
                return None;
            }
            (d1 * 10 + d2, at + 5)
        } else {
            let d3 = digit(h[3])?;
            if buf.get(at + 4..at + 6) != Some(&b"\r\n"[..]) {
                return None;
            }
            (d1 * 100 + d2 * 10 + d3, at + 6)
        }
    };
    if len > max {
        return None;
    }
    let end = data + len;
    if buf.get(end..end + 2) != Some(&b"\r\n"[..]) {
        return None;
    }
    Some((data, end, end + 2))
}

/// Receives argument ranges from [`Decoder::scan_command`].
trait ArgSink {
    fn begin(&mut self, capacity: usize);
    fn arg(&mut self, start: usize, end: usize);
}

/// Argument ranges: the first [`INLINE_ARGS`] on the stack, the rest in a `Vec`.
#[derive(Default)]
struct Ranges {
    inline: [(usize, usize); INLINE_ARGS],
    len: usize,
    spill: Vec<(usize, usize)>,
}

/// Enough for every common replicated command (`SET k v PXAT ms` has 5).
const INLINE_ARGS: usize = 8;

impl Ranges {
    fn iter(&self) -> impl Iterator<Item = (usize, usize)> + '_ {
        self.inline[..self.len.min(INLINE_ARGS)]
            .iter()
            .chain(&self.spill)
            .copied()
    }
}

impl ArgSink for Ranges {
    #[inline]
    fn begin(&mut self, capacity: usize) {
        self.spill
            .reserve_exact(capacity.saturating_sub(INLINE_ARGS));
    }
    #[inline]
    fn arg(&mut self, start: usize, end: usize) {
        match self.inline.get_mut(self.len) {
            Some(slot) => *slot = (start, end),
            None => self.spill.push((start, end)),
        }
        self.len += 1;
    }
}

/// Collects zero-copy slices of `buf`.
struct Collect<'a> {
    buf: &'a Bytes,
    args: Vec<Bytes>,
}

impl ArgSink for Collect<'_> {
    #[inline]
    fn begin(&mut self, capacity: usize) {
        self.args.reserve_exact(capacity);
    }
    #[inline]
    fn arg(&mut self, start: usize, end: usize) {
        self.args.push(self.buf.slice(start..end));
    }
}

/// A container [`Decoder::split_into`] fills.
trait ArgList {
    /// The arguments at `ranges` of `frame`.
    fn collect(frame: &Bytes, ranges: &Ranges) -> Self;
}

impl ArgList for Vec<Bytes> {
    #[inline]
    fn collect(frame: &Bytes, ranges: &Ranges) -> Self {
        let mut v = Vec::with_capacity(ranges.len);
        v.extend(ranges.iter().map(|(s, e)| frame.slice(s..e)));
        v
    }
}

impl ArgList for Args {
    #[inline]
    fn collect(frame: &Bytes, ranges: &Ranges) -> Self {
        let inline = Args::new().inline_size().min(INLINE_ARGS);
        if ranges.len <= inline {
            // Most commands: pushed straight into the inline array (a
            // `SmallVec::extend` over the chained ranges cost more than
            // the slicing).
            let mut v = Args::new();
            for &(s, e) in &ranges.inline[..ranges.len] {
                v.push(frame.slice(s..e));
            }
            v
        } else {
            // A heap `Vec` of the exact size becomes the `SmallVec`'s
            // buffer as it is.
            Args::from_vec(<Vec<Bytes> as ArgList>::collect(frame, ranges))
        }
    }
}

impl<A: AsRef<[Bytes]>> Command<A> {
    /// The command name (first argument), as sent.
    pub fn name(&self) -> Option<&Bytes> {
        self.args.as_ref().first()
    }

    /// The command name in ASCII upper case (empty for an empty command).
    /// Allocates only if the name has lower-case letters.
    pub fn name_upper(&self) -> Bytes {
        match self.args.as_ref().first() {
            None => Bytes::new(),
            Some(n) if !n.iter().any(u8::is_ascii_lowercase) => n.clone(),
            Some(n) => Bytes::from(n.to_ascii_uppercase()),
        }
    }

    /// Whether the command name is `name`, ASCII case-insensitively.
    pub fn is(&self, name: &str) -> bool {
        self.arg_is(0, name)
    }

    /// Whether argument `i` (0 = the name) is `s`, ASCII case-insensitively.
    /// Handy for subcommands: `cmd.is("REPLCONF") && cmd.arg_is(1, "GETACK")`.
    pub fn arg_is(&self, i: usize, s: &str) -> bool {
        self.args
            .as_ref()
            .get(i)
            .is_some_and(|a| a.eq_ignore_ascii_case(s.as_bytes()))
    }

    /// The command as a [`Value::Array`] of [`Value::Bulk`]s.
    pub fn to_value(&self) -> Value {
        Value::Array(
            self.args
                .as_ref()
                .iter()
                .cloned()
                .map(Value::Bulk)
                .collect(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scan::unexpected;

    fn cmd(wire: &'static [u8]) -> Command {
        decode_command(&Bytes::from_static(wire))
            .expect("valid")
            .expect("complete")
    }

    #[test]
    fn replication_stream_samples() {
        let ping = cmd(b"*1\r\n$4\r\nPING\r\n");
        assert_eq!((ping.wire_len, ping.is("ping")), (14, true));
        let getack = cmd(b"*3\r\n$8\r\nREPLCONF\r\n$6\r\nGETACK\r\n$1\r\n*\r\n");
        assert_eq!(getack.wire_len, 37);
        assert!(getack.is("REPLCONF") && getack.arg_is(1, "getack") && getack.arg_is(2, "*"));
        let select = cmd(b"*2\r\n$6\r\nSELECT\r\n$1\r\n0\r\n");
        assert_eq!(select.args, [&b"SELECT"[..], b"0"]);
        let set = cmd(
            b"*5\r\n$3\r\nset\r\n$3\r\nkey\r\n$0\r\n\r\n$4\r\nPXAT\r\n$13\r\n1700000000000\r\n",
        );
        assert_eq!(set.name_upper(), "SET");
        assert_eq!(set.args[2], "");
        assert_eq!(set.wire_len, crate::command_len(&set.args));
        assert_eq!(
            set.to_value(),
            crate::decode(
                b"*5\r\n$3\r\nset\r\n$3\r\nkey\r\n$0\r\n\r\n$4\r\nPXAT\r\n$13\r\n1700000000000\r\n"
            )
            .unwrap()
            .unwrap()
            .0
        );
        let empty = cmd(b"*0\r\n");
        assert_eq!(
            (empty.args.len(), empty.wire_len, empty.is("")),
            (0, 4, false)
        );
        assert_eq!(empty.name_upper(), "");
    }

    #[test]
    fn incomplete_and_invalid() {
        let full = b"*2\r\n$6\r\nSELECT\r\n$1\r\n0\r\n";
        for k in 0..full.len() {
            assert_eq!(
                decode_command(&Bytes::copy_from_slice(&full[..k])),
                Ok(None),
                "prefix {k}"
            );
        }
        let err = |w: &'static [u8]| decode_command(&Bytes::from_static(w)).unwrap_err();
        assert_eq!(
            err(b"+OK\r\n"),
            RespError::NotCommand {
                offset: 0,
                byte: b'+',
                expected: "'*' (an array)"
            }
        );
        assert_eq!(
            err(b"*1\r\n:1\r\n"),
            RespError::NotCommand {
                offset: 4,
                byte: b':',
                expected: "'$' (a bulk string)"
            }
        );
        assert_eq!(err(b"*-1\r\n"), unexpected(1, b'-', "a decimal digit"));
        assert_eq!(
            err(b"*1\r\n$-1\r\n"),
            unexpected(5, b'-', "a decimal digit")
        );
        assert_eq!(err(b"*1\r\n$1\r\nab\r\n"), unexpected(9, b'b', "CR"));
        assert_eq!(
            err(b"*3000000000\r\n"),
            RespError::ArrayTooLong {
                offset: 0,
                max: crate::DEFAULT_MAX_ARRAY_LEN
            }
        );
        assert_eq!(
            err(b"*1\r\n$999999999\r\n"),
            RespError::BulkTooLong {
                offset: 4,
                max: crate::DEFAULT_MAX_BULK_LEN
            }
        );
    }

    #[test]
    fn split_command_takes_one_frame() {
        let mut buf = BytesMut::from(&b"*1\r\n$4\r\nPING\r\n*2\r\n$6\r\nSEL"[..]);
        let c = split_command(&mut buf).unwrap().unwrap();
        assert_eq!((c.wire_len, &buf[..]), (14, &b"*2\r\n$6\r\nSEL"[..]));
        assert_eq!(split_command(&mut buf), Ok(None));
        assert_eq!(buf.len(), 11);
        buf.extend_from_slice(b"ECT\r\n$1\r\n9\r\n");
        let c = split_command(&mut buf).unwrap().unwrap();
        assert_eq!(c.args, [&b"SELECT"[..], b"9"]);
        assert!(buf.is_empty());
    }

    /// Moved from the decoder into its stream event: past 128 bytes each
    /// move is a `memcpy` call (see `ferry_ops::Op`'s size guard).
    #[test]
    fn an_inline_command_stays_small() {
        if size_of::<usize>() == 8 {
            assert_eq!(size_of::<Args>(), 104);
            assert!(size_of::<InlineCommand>() <= 112);
        }
    }

    #[test]
    fn the_short_bulk_path_reads_what_the_general_path_reads() {
        let dec = Decoder::new();
        for len in [0usize, 1, 9, 10, 99, 100, 999, 1000, 12345] {
            let payload = vec![b'x'; len];
            let mut wire = format!("*2\r\n$3\r\nSET\r\n${len}\r\n").into_bytes();
            wire.extend_from_slice(&payload);
            wire.extend_from_slice(b"\r\n");
            let cmd = dec
                .split_args(&mut BytesMut::from(&wire[..]))
                .unwrap()
                .unwrap();
            assert_eq!((cmd.wire_len, &cmd.args[1][..]), (wire.len(), &payload[..]));
            // Every prefix: read more.
            for k in 0..wire.len() {
                assert_eq!(dec.split_args(&mut BytesMut::from(&wire[..k])), Ok(None));
            }
        }
        // A leading zero, a missing LF, payloads of the wrong length: the
        // general path's errors.
        for (wire, offset) in [
            (&b"*1\r\n$01\r\nx\r\n"[..], 6),
            (b"*1\r\n$1\rxx\r\n", 7),
            (b"*1\r\n$2\r\nx\r\n\r\n", 10),
            (b"*1\r\n$1\r\nxy\r\n", 9),
        ] {
            let err = dec.split_args(&mut BytesMut::from(wire)).unwrap_err();
            assert!(
                matches!(err, RespError::UnexpectedByte { offset: o, .. } if o == offset),
                "{err:?}"
            );
        }
        // A length past the limit is the limit's error.
        let strict = Decoder {
            max_bulk_len: 9,
            ..Decoder::new()
        };
        assert_eq!(
            strict.split_args(&mut BytesMut::from(&b"*1\r\n$10\r\n0123456789\r\n"[..])),
            Err(RespError::BulkTooLong { offset: 4, max: 9 })
        );
    }

    #[test]
    fn split_args_holds_three_inline() {
        let wire = b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\nv\r\n\
                     *4\r\n$4\r\nHSET\r\n$1\r\nh\r\n$1\r\nf\r\n$1\r\nv\r\n*0\r\n*1\r\n$1";
        let mut buf = BytesMut::from(&wire[..]);
        let dec = Decoder::new();
        let set = dec.split_args(&mut buf).unwrap().unwrap();
        assert_eq!((set.wire_len, set.args.spilled()), (27, false));
        assert!(set.is("SET") && set.args[1] == "k" && set.args[2] == "v");
        let hset = dec.split_args(&mut buf).unwrap().unwrap();
        assert_eq!((hset.wire_len, hset.args.spilled()), (35, true));
        assert_eq!(hset.args[..], [&b"HSET"[..], b"h", b"f", b"v"]);
        let empty = dec.split_args(&mut buf).unwrap().unwrap();
        assert_eq!((empty.wire_len, empty.args.len()), (4, 0));
        assert_eq!(dec.split_args(&mut buf), Ok(None));
        assert_eq!(&buf[..], b"*1\r\n$1");
        assert!(
            dec.split_args(&mut BytesMut::from(&b"+OK\r\n"[..]))
                .is_err()
        );
    }
}

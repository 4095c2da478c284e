//! A read cursor over the decoder's pending bytes: RDB lengths, strings and
//! fixed-width numbers, each either complete, "need more bytes", or an error.
//!
//! ```text
//! length:  00xxxxxx                 6-bit
//!          01xxxxxx yyyyyyyy        14-bit, big-endian
//!          10000000 + 4 bytes       32-bit, big-endian
//!          10000001 + 8 bytes       64-bit, big-endian
//!          11xxxxxx                 special string encoding xxxxxx:
//!                                   0 int8, 1 int16 LE, 2 int32 LE, 3 LZF
//! ```
//! Strings are returned as [`S`]: a range of the pending buffer (no copy) or
//! owned bytes (integers turned into text, decompressed LZF).

use bytes::Bytes;

use crate::error::RdbError;
use crate::lzf;

/// Why a read stopped.
#[derive(Debug)]
pub(crate) enum Stop {
    /// Not enough bytes yet; nothing was consumed.
    Incomplete,
    /// The input is invalid.
    Fail(RdbError),
}

impl From<RdbError> for Stop {
    fn from(e: RdbError) -> Self {
        Stop::Fail(e)
    }
}

/// Result of a cursor read.
pub(crate) type R<T> = Result<T, Stop>;

/// A string read from the buffer.
#[derive(Debug, Clone)]
pub(crate) enum S {
    /// `start..end` of the pending buffer.
    R(usize, usize),
    /// Bytes that are not a plain slice of the input.
    O(Bytes),
}

impl S {
    /// Turn into `Bytes`, given the consumed chunk that starts where the buffer started.
    pub(crate) fn mat(self, chunk: &Bytes) -> Bytes {
        match self {
            S::R(a, b) => chunk.slice(a..b),
            S::O(b) => b,
        }
    }
    /// Integer as text.
    pub(crate) fn int(v: i64) -> S {
        let mut buf = itoa::Buffer::new();
        S::O(Bytes::copy_from_slice(buf.format(v).as_bytes()))
    }
}

/// Limits applied while reading.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    /// Largest string accepted.
    pub max_string: u64,
}

/// A length or a special string encoding.
enum Len {
    Num(u64),
    Enc(u8),
}

/// Cursor over `buf[pos..]`; `base` is the file offset of `buf[0]`.
pub(crate) struct Cur<'a> {
    pub buf: &'a [u8],
    pub pos: usize,
    pub base: u64,
    pub limits: Limits,
}

impl<'a> Cur<'a> {
    /// File offset of the next byte.
    pub(crate) fn offset(&self) -> u64 {
        self.base + self.pos as u64
    }

    pub(crate) fn corrupt(&self, what: impl Into<String>) -> Stop {
        Stop::Fail(RdbError::Corrupt {
            offset: self.offset(),
            what: what.into(),
        })
    }

    /// Take `n` bytes, returning their start position.
    pub(crate) fn take(&mut self, n: usize) -> R<&'a [u8]> {
        let end = self.pos.checked_add(n).ok_or(Stop::Incomplete)?;
        let s = self.buf.get(self.pos..end).ok_or(Stop::Incomplete)?;
        self.pos = end;
        Ok(s)
    }

    pub(crate) fn u8(&mut self) -> R<u8> {
        Ok(self.take(1)?[0])
    }

    pub(crate) fn array<const N: usize>(&mut self) -> R<[u8; N]> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N)?);
        Ok(a)
    }

    pub(crate) fn u64_le(&mut self) -> R<u64> {
        Ok(u64::from_le_bytes(self.array()?))
    }

    pub(crate) fn i64_le(&mut self) -> R<i64> {
        Ok(i64::from_le_bytes(self.array()?))
    }

    fn len_enc(&mut self) -> R<Len> {
        let b = self.u8()?;
        Ok(match b >> 6 {
            0 => Len::Num(u64::from(b & 0x3F)),
            1 => Len::Num((u64::from(b & 0x3F) << 8) | u64::from(self.u8()?)),
            2 => match b {
                0x80 => Len::Num(u64::from(u32::from_be_bytes(self.array()?))),
                0x81 => Len::Num(u64::from_be_bytes(self.array()?)),
                _ => {
                    self.pos -= 1;
                    return Err(self.corrupt(format!("invalid length byte 0x{b:02x}")));
                }
            },
            _ => Len::Enc(b & 0x3F),
        })
    }

    /// A plain length (special encodings are an error).
    pub(crate) fn len(&mut self) -> R<u64> {
        let at = self.pos;
        match self.len_enc()? {
            Len::Num(n) => Ok(n),
            Len::Enc(e) => {
                self.pos = at;
                Err(self.corrupt(format!("expected a length, found string encoding {e}")))
            }
        }
    }

    /// A length used as an in-memory size, bounded by `limit`.
    fn size(&mut self, what: &'static str, limit: u64) -> R<usize> {
        let at = self.offset();
        let n = self.len()?;
        if n > limit {
            return Err(Stop::Fail(RdbError::TooLarge {
                offset: at,
                what,
                len: n,
                limit,
            }));
        }
        usize::try_from(n).map_err(|_| {
            Stop::Fail(RdbError::TooLarge {
                offset: at,
                what,
                len: n,
                limit: usize::MAX as u64,
            })
        })
    }

    /// An RDB string.
    pub(crate) fn string(&mut self) -> R<S> {
        // Fast path: a plain string under 16 KiB (a 6- or 14-bit length),
        // whole in the buffer: most keys and small values.
        let short = match self.buf.get(self.pos..) {
            Some(&[b, ..]) if b < 0x40 => Some((1, usize::from(b))),
            Some(&[b, c, ..]) if b < 0x80 => Some((2, usize::from(b & 0x3F) << 8 | usize::from(c))),
            _ => None,
        };
        if let Some((head, n)) = short {
            let a = self.pos + head;
            if n as u64 <= self.limits.max_string && a + n <= self.buf.len() {
                self.pos = a + n;
                return Ok(S::R(a, a + n));
            }
        }
        let start = self.pos;
        let at = self.offset();
        match self.len_enc()? {
            Len::Num(n) => {
                if n > self.limits.max_string {
                    return Err(Stop::Fail(RdbError::TooLarge {
                        offset: at,
                        what: "string length",
                        len: n,
                        limit: self.limits.max_string,
                    }));
                }
                let n = usize::try_from(n).map_err(|_| Stop::Incomplete)?;
                let a = self.pos;
                self.take(n)?;
                Ok(S::R(a, self.pos))
            }
            Len::Enc(0) => Ok(S::int(i64::from(self.u8()? as i8))),
            Len::Enc(1) => Ok(S::int(i64::from(i16::from_le_bytes(self.array()?)))),
            Len::Enc(2) => Ok(S::int(i64::from(i32::from_le_bytes(self.array()?)))),
            Len::Enc(3) => {
                let max = self.limits.max_string;
                let clen = self.size("compressed string length", max)?;
                let ulen = self.size("uncompressed string length", max)?;
                // LZF expands at most ~132x; refuse lengths the input cannot produce.
                if ulen as u64 > (clen as u64).saturating_mul(140).saturating_add(64) {
                    self.pos = start;
                    return Err(self.corrupt(format!(
                        "LZF string claims {ulen} bytes from {clen} compressed bytes"
                    )));
                }
                let data = self.take(clen)?;
                let out = lzf::decompress(data, ulen)
                    .map_err(|source| Stop::Fail(RdbError::Lzf { offset: at, source }))?;
                Ok(S::O(Bytes::from(out)))
            }
            Len::Enc(e) => {
                self.pos = start;
                Err(self.corrupt(format!("unknown string encoding {e}")))
            }
        }
    }

    /// The bytes of a string read by this cursor.
    pub(crate) fn bytes_of<'s>(&self, s: &'s S) -> &'s [u8]
    where
        'a: 's,
    {
        match s {
            S::R(a, b) => &self.buf[*a..*b],
            S::O(b) => b,
        }
    }

    /// A string as an owned copy (for small metadata such as names).
    pub(crate) fn string_bytes(&mut self) -> R<Bytes> {
        let s = self.string()?;
        Ok(match s {
            S::R(a, b) => Bytes::copy_from_slice(&self.buf[a..b]),
            S::O(b) => b,
        })
    }

    /// Express `piece`, a sub-slice of the string `parent`, as an [`S`].
    pub(crate) fn sub(&self, parent: &S, piece: &[u8]) -> S {
        match parent {
            S::R(a, _) => {
                let bytes = self.bytes_of(parent);
                let start = piece.as_ptr() as usize - bytes.as_ptr() as usize;
                S::R(a + start, a + start + piece.len())
            }
            S::O(b) => S::O(b.slice_ref(piece)),
        }
    }

    /// A type-3 zset score: length-prefixed text, or 253/254/255 for nan/+inf/-inf.
    pub(crate) fn double_str(&mut self) -> R<f64> {
        let n = self.u8()?;
        Ok(match n {
            253 => f64::NAN,
            254 => f64::INFINITY,
            255 => f64::NEG_INFINITY,
            _ => {
                let at = self.pos;
                let t = self.take(usize::from(n))?;
                match std::str::from_utf8(t).ok().and_then(|s| s.parse().ok()) {
                    Some(v) => v,
                    None => {
                        self.pos = at;
                        return Err(self.corrupt("invalid score text"));
                    }
                }
            }
        })
    }

    /// An 8-byte little-endian IEEE double.
    pub(crate) fn f64_le(&mut self) -> R<f64> {
        Ok(f64::from_le_bytes(self.array()?))
    }

    /// A 16-byte big-endian stream id.
    pub(crate) fn raw_id(&mut self) -> R<crate::StreamId> {
        Ok(crate::StreamId::from_be_bytes(&self.array()?))
    }

    /// A stream id as two lengths.
    pub(crate) fn len_id(&mut self) -> R<crate::StreamId> {
        Ok(crate::StreamId {
            ms: self.len()?,
            seq: self.len()?,
        })
    }

    /// Skip a module opcode-framed value sequence up to and including its EOF opcode.
    pub(crate) fn skip_module_values(&mut self) -> R<()> {
        while !self.module_value()? {}
        Ok(())
    }

    /// Skip one opcode-framed module value; true if it was the EOF opcode.
    pub(crate) fn module_value(&mut self) -> R<bool> {
        let at = self.pos;
        match self.len()? {
            0 => return Ok(true),
            1 | 2 => {
                self.len()?;
            }
            3 => {
                self.take(4)?;
            }
            4 => {
                self.take(8)?;
            }
            5 => {
                self.string()?;
            }
            op => {
                self.pos = at;
                return Err(self.corrupt(format!("unknown module value opcode {op}")));
            }
        }
        Ok(false)
    }
}

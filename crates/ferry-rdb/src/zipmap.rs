//! Zipmap: the packed hash of Redis ≤ 2.4, RDB type 9 (`HASH_ZIPMAP`).
//!
//! ```text
//! +-------+-----+-------+-----+------+-------+-------------+-----+------+
//! | zmlen | len | field | len | free | value | free × byte | ... | 0xFF |
//! +-------+-----+-------+-----+------+-------+-------------+-----+------+
//!   1 byte: pair count if < 254, else 254 = walk to count
//!
//! len  = 1 byte (0..=253), or 254 followed by a u32 LE length
//!        (a field length byte of 255 is the terminator)
//! free = 1 byte: unused bytes after the value, skipped
//! ```
//!
//! The iterator checks that every pair lies inside the buffer, that the
//! terminator is the last byte and that `zmlen` (unless 254) matches the
//! number of pairs.

use crate::container::{ContainerError, read_u32_le, slice};

const NAME: &str = "zipmap";
/// Length byte announcing a 4-byte length (and the "unknown" zmlen).
const BIGLEN: u8 = 254;
const END: u8 = 0xFF;

/// Item yielded by [`Zipmap`]: a `(field, value)` pair or the corruption met.
pub type ZipmapItem<'a> = Result<(&'a [u8], &'a [u8]), ContainerError>;

/// A zipmap, iterated as `(field, value)` pairs.
///
/// Iteration yields `Err` once when it meets corruption, then `None`.
#[derive(Debug, Clone)]
pub struct Zipmap<'a> {
    buf: &'a [u8],
    pos: usize,
    seen: usize,
    done: bool,
}

impl<'a> Zipmap<'a> {
    /// Check the minimal shape: at least the count byte and a `0xFF` last byte.
    pub fn new(buf: &'a [u8]) -> Result<Self, ContainerError> {
        if buf.len() < 2 {
            return Err(ContainerError::new(
                NAME,
                0,
                format!("{} bytes is shorter than the 2-byte minimum", buf.len()),
            ));
        }
        if buf.last() != Some(&END) {
            return Err(ContainerError::new(
                NAME,
                buf.len() - 1,
                "missing 0xFF terminator",
            ));
        }
        Ok(Zipmap {
            buf,
            pos: 1,
            seen: 0,
            done: false,
        })
    }

    /// Pair count from the header, or `None` when it says 254 ("unknown").
    pub fn count_hint(&self) -> Option<usize> {
        match self.buf.first() {
            Some(&n) if n < BIGLEN => Some(usize::from(n)),
            _ => None,
        }
    }

    fn err(&mut self, at: usize, what: impl Into<String>) -> Option<ZipmapItem<'a>> {
        self.done = true;
        Some(Err(ContainerError::new(NAME, at, what)))
    }

    /// Read a length at `at`: returns (length, offset after it).
    fn read_len(&self, at: usize) -> Option<(usize, usize)> {
        let &b = self.buf.get(at)?;
        if b < BIGLEN {
            Some((usize::from(b), at + 1))
        } else {
            read_u32_le(self.buf, at + 1).map(|n| (n as usize, at + 5))
        }
    }

    /// `len` bytes at `at`, ending before the terminator; returns the slice and its end.
    fn span(&self, at: usize, len: usize) -> Option<(&'a [u8], usize)> {
        let end = at.checked_add(len)?;
        if end > self.buf.len() - 1 {
            return None;
        }
        Some((slice(self.buf, at, len)?, end))
    }
}

impl<'a> Iterator for Zipmap<'a> {
    type Item = ZipmapItem<'a>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        let start = self.pos;
        let Some(&first) = self.buf.get(start) else {
            return self.err(start, "entry starts past the end");
        };
        if first == END {
            if start != self.buf.len() - 1 {
                return self.err(start, "0xFF terminator before the end of the buffer");
            }
            if let Some(n) = self.count_hint()
                && n != self.seen
            {
                let what = format!("zmlen {n} but {} pairs", self.seen);
                return self.err(0, what);
            }
            self.done = true;
            return None;
        }
        let Some((flen, at)) = self.read_len(start) else {
            return self.err(start, "truncated field length");
        };
        let Some((field, at)) = self.span(at, flen) else {
            return self.err(start, format!("field of {flen} bytes runs past the end"));
        };
        let Some((vlen, at)) = self.read_len(at) else {
            return self.err(at, "truncated value length");
        };
        let Some(&free) = self.buf.get(at) else {
            return self.err(at, "missing free byte");
        };
        let value_at = at + 1;
        let Some((value, at)) = self.span(value_at, vlen) else {
            return self.err(value_at, format!("value of {vlen} bytes runs past the end"));
        };
        let Some((_, end)) = self.span(at, usize::from(free)) else {
            return self.err(at, format!("{free} free bytes run past the end"));
        };
        self.pos = end;
        self.seen += 1;
        Some(Ok((field, value)))
    }
}

/// Once it has returned `None` (or an error), it keeps returning `None`.
impl std::iter::FusedIterator for Zipmap<'_> {}

#[cfg(test)]
mod tests {
    use super::*;

    type Pairs<'a> = Vec<(&'a [u8], &'a [u8])>;

    fn collect(buf: &[u8]) -> Result<Pairs<'_>, ContainerError> {
        Zipmap::new(buf)?.collect()
    }

    #[test]
    fn hand_written() {
        // {"foo" => "bar", "k" => "v" with 2 free bytes}
        #[rustfmt::skip]
        let buf = [
            2,
            3, b'f', b'o', b'o', 3, 0, b'b', b'a', b'r',
            1, b'k', 1, 2, b'v', 0xAA, 0xBB,
            0xFF,
        ];
        assert_eq!(
            collect(&buf).unwrap(),
            vec![(&b"foo"[..], &b"bar"[..]), (&b"k"[..], &b"v"[..])]
        );
        assert_eq!(Zipmap::new(&buf).unwrap().count_hint(), Some(2));
    }

    #[test]
    fn big_lengths() {
        let mut buf = vec![1, 254, 0, 1, 0, 0];
        buf.extend([b'f'; 256]);
        buf.extend([0, 0, 0xFF]);
        let pairs = collect(&buf).unwrap();
        assert_eq!(pairs.len(), 1);
        assert_eq!(pairs[0].0.len(), 256);
        assert_eq!(pairs[0].1, b"");
    }

    #[test]
    fn corruption_is_reported() {
        let good = [1, 1, b'k', 1, 0, b'v', 0xFF];
        assert!(collect(&good).is_ok());
        let mut b = good;
        b[0] = 2;
        assert_eq!(collect(&b).unwrap_err().at, 0);
        let mut b = good;
        b[0] = 254; // unknown count
        assert!(collect(&b).is_ok());
        let mut b = good;
        b[4] = 1; // free byte eats the terminator
        assert!(collect(&b).is_err());
        let mut b = good;
        b[3] = 9;
        assert!(collect(&b).is_err());
        assert!(Zipmap::new(&[0]).is_err());
        assert!(Zipmap::new(&[0, 0]).is_err());
        assert!(collect(&[0, 0xFF]).unwrap().is_empty());
        assert!(collect(&[0, 0xFF, 0xFF]).is_err());
    }
}

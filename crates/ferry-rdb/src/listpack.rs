//! Listpack: the packed list behind RDB types 16–21, 23, 25 and the nodes of
//! quicklists (type 18) and streams. Written by Redis 7.0+ and Valkey.
//!
//! ```text
//! +-----------------+-------------+-------+-----+-------+------+
//! | total bytes u32 | count u16   | entry | ... | entry | 0xFF |
//! +-----------------+-------------+-------+-----+-------+------+
//!   == buffer size    65535 = unknown
//!
//! entry = encoding+data, then backlen (size of encoding+data, 1..=5 bytes)
//!   0xxxxxxx                 uint 0..=127
//!   10xxxxxx + len bytes     string, 6-bit length
//!   110xxxxx yyyyyyyy        int13 (two's complement over 13 bits)
//!   1110xxxx yyyyyyyy + len  string, 12-bit length ((x << 8) | y)
//!   0xF0 + u32 LE + len      string, 32-bit length
//!   0xF1 / F2 / F3 / F4      int16 / int24 / int32 / int64 LE
//!   0xF5..=0xFE              invalid;  0xFF terminator
//!
//! backlen (read right to left, 7 bits per byte, high bit = "more bytes"):
//!   l <= 127 -> 1 byte, < 16383 -> 2, < 2097151 -> 3, < 268435455 -> 4, else 5
//! ```
//!
//! The iterator checks that every entry lies inside the buffer, that its
//! backlen bytes are exactly what Redis writes for its size, that the
//! terminator is the last byte and that the header count (unless 65535)
//! matches.

use crate::container::{ContainerError, Entry, read_int_le, read_u16_le, read_u32_le, slice};

const NAME: &str = "listpack";
/// total bytes + count.
const HEADER: usize = 6;
const END: u8 = 0xFF;
/// Header count meaning "not known, walk to count".
const UNKNOWN_COUNT: u16 = u16::MAX;

/// Number of bytes Redis uses for the backlen of an entry of `l` bytes.
pub fn backlen_size(l: u64) -> usize {
    match l {
        0..=127 => 1,
        128..16383 => 2,
        16383..2097151 => 3,
        2097151..268435455 => 4,
        _ => 5,
    }
}

/// Write the backlen of an entry of `l` bytes (encoding + data) into `out`,
/// exactly as Redis' `lpEncodeBacklen` does. Returns the number of bytes.
pub fn encode_backlen(l: u64, out: &mut [u8; 5]) -> usize {
    let n = backlen_size(l);
    // Byte 0 holds the most significant group; the others carry the 0x80 flag.
    for (i, slot) in out.iter_mut().take(n).enumerate() {
        let shift = 7 * (n - 1 - i);
        let group = (l >> shift) as u8;
        *slot = if i == 0 { group } else { (group & 0x7F) | 0x80 };
    }
    n
}

/// A listpack with a validated header, iterated entry by entry.
///
/// Iteration yields `Err` once when it meets corruption, then `None`.
#[derive(Debug, Clone)]
pub struct Listpack<'a> {
    buf: &'a [u8],
    header_count: u16,
    pos: usize,
    seen: usize,
    done: bool,
}

impl<'a> Listpack<'a> {
    /// Validate the header: total bytes `== buf.len()` and last byte `0xFF`.
    pub fn new(buf: &'a [u8]) -> Result<Self, ContainerError> {
        if buf.len() < HEADER + 1 {
            return Err(ContainerError::new(
                NAME,
                0,
                format!("{} bytes is shorter than the 7-byte minimum", buf.len()),
            ));
        }
        let total = read_u32_le(buf, 0).unwrap_or_default() as usize;
        if total != buf.len() {
            return Err(ContainerError::new(
                NAME,
                0,
                format!("total bytes {total} but the buffer has {} bytes", buf.len()),
            ));
        }
        if buf.last() != Some(&END) {
            return Err(ContainerError::new(
                NAME,
                buf.len() - 1,
                "missing 0xFF terminator",
            ));
        }
        Ok(Listpack {
            buf,
            header_count: read_u16_le(buf, 4).unwrap_or_default(),
            pos: HEADER,
            seen: 0,
            done: false,
        })
    }

    /// Entry count from the header, or `None` when it says 65535 ("unknown").
    #[cfg(any(test, feature = "test-util"))]
    pub fn count_hint(&self) -> Option<usize> {
        (self.header_count != UNKNOWN_COUNT).then_some(usize::from(self.header_count))
    }

    fn err(
        &mut self,
        at: usize,
        what: impl Into<String>,
    ) -> Option<Result<Entry<'a>, ContainerError>> {
        self.done = true;
        Some(Err(ContainerError::new(NAME, at, what)))
    }

    fn finish(&mut self) -> Option<Result<Entry<'a>, ContainerError>> {
        if self.pos != self.buf.len() - 1 {
            return self.err(self.pos, "0xFF terminator before the end of the buffer");
        }
        if self.header_count != UNKNOWN_COUNT && usize::from(self.header_count) != self.seen {
            let what = format!(
                "header count {} but {} entries",
                self.header_count, self.seen
            );
            return self.err(4, what);
        }
        self.done = true;
        None
    }
}

impl<'a> Iterator for Listpack<'a> {
    type Item = Result<Entry<'a>, ContainerError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        let start = self.pos;
        let buf = self.buf;
        let Some(&b) = buf.get(start) else {
            return self.err(start, "entry starts past the end");
        };
        if b == END {
            return self.finish();
        }
        // (header size, data size, entry) where header+data = the encoded size.
        let parsed: Option<(usize, usize, Option<i64>)> = match b {
            0x00..=0x7F => Some((1, 0, Some(i64::from(b)))),
            0x80..=0xBF => Some((1, usize::from(b & 0x3F), None)),
            0xC0..=0xDF => buf.get(start + 1).map(|&lo| {
                let u = (i64::from(b & 0x1F) << 8) | i64::from(lo);
                let v = if u >= 1 << 12 { u - (1 << 13) } else { u };
                (2, 0, Some(v))
            }),
            0xE0..=0xEF => buf
                .get(start + 1)
                .map(|&lo| (2, (usize::from(b & 0x0F) << 8) | usize::from(lo), None)),
            0xF0 => read_u32_le(buf, start + 1).map(|n| (5, n as usize, None)),
            0xF1..=0xF4 => {
                let width = match b {
                    0xF1 => 2,
                    0xF2 => 3,
                    0xF3 => 4,
                    _ => 8,
                };
                read_int_le(buf, start + 1, width).map(|v| (1 + width, 0, Some(v)))
            }
            _ => return self.err(start, format!("invalid encoding byte {b:#04x}")),
        };
        let Some((head, data_len, int)) = parsed else {
            return self.err(start, "truncated entry header");
        };
        let last = buf.len() - 1;
        let encoded = head.checked_add(data_len);
        let bl = encoded.map(|l| backlen_size(l as u64));
        let end = encoded
            .zip(bl)
            .and_then(|(l, bl)| start.checked_add(l)?.checked_add(bl));
        let (Some(encoded), Some(bl), Some(end)) = (encoded, bl, end) else {
            return self.err(start, "entry size overflows");
        };
        if end > last {
            let what = format!("entry of {encoded} bytes runs past the end");
            return self.err(start, what);
        }
        let mut want = [0u8; 5];
        let n = encode_backlen(encoded as u64, &mut want);
        let back_at = start + encoded;
        if slice(buf, back_at, bl) != want.get(..n) {
            let what = format!("backlen does not match the entry size {encoded}");
            return self.err(back_at, what);
        }
        let entry = match int {
            Some(v) => Entry::Int(v),
            None => Entry::Str(slice(buf, start + head, data_len).unwrap_or_default()),
        };
        self.pos = end;
        self.seen += 1;
        Some(Ok(entry))
    }
}

/// Once it has returned `None` (or an error), it keeps returning `None`.
impl std::iter::FusedIterator for Listpack<'_> {}

#[cfg(test)]
mod tests {
    use super::*;

    fn collect(buf: &[u8]) -> Result<Vec<Entry<'_>>, ContainerError> {
        Listpack::new(buf)?.collect()
    }

    #[test]
    fn backlen_matches_redis_thresholds() {
        let mut b = [0u8; 5];
        assert_eq!(encode_backlen(5, &mut b), 1);
        assert_eq!(b[0], 5);
        assert_eq!(encode_backlen(127, &mut b), 1);
        assert_eq!(encode_backlen(128, &mut b), 2);
        assert_eq!(&b[..2], &[1, 0x80]);
        assert_eq!(encode_backlen(16382, &mut b), 2);
        assert_eq!(encode_backlen(16383, &mut b), 3);
        assert_eq!(&b[..3], &[0, 0xFF, 0xFF]);
        assert_eq!(encode_backlen(2097151, &mut b), 4);
        assert_eq!(encode_backlen(268435455, &mut b), 5);
        assert_eq!(encode_backlen(u32::MAX as u64, &mut b), 5);
        assert_eq!(&b, &[0x0F, 0xFF, 0xFF, 0xFF, 0xFF]);
    }

    #[test]
    fn hand_written_entries() {
        // ["a", 1, -1, 4096, 1 << 40] written from the format description.
        #[rustfmt::skip]
        let buf = [
            29, 0, 0, 0,    // total bytes
            5, 0,           // count
            0x81, b'a', 2,  // 6-bit string "a", backlen 2
            0x01, 1,        // uint7 1, backlen 1
            0xDF, 0xFF, 2,  // int13 -1 (8191 - 8192), backlen 2
            0xF1, 0x00, 0x10, 3, // int16 4096, backlen 3
            0xF4, 0, 0, 0, 0, 0, 1, 0, 0, 9, // int64 1<<40, backlen 9
            0xFF,
        ];
        assert_eq!(
            collect(&buf).unwrap(),
            vec![
                Entry::Str(b"a"),
                Entry::Int(1),
                Entry::Int(-1),
                Entry::Int(4096),
                Entry::Int(1 << 40)
            ]
        );
        assert_eq!(Listpack::new(&buf).unwrap().count_hint(), Some(5));
    }

    #[test]
    fn other_encodings() {
        // 12-bit string of 64 bytes, int24, int32, 32-bit string of 2 bytes.
        let mut buf = vec![0, 0, 0, 0, 4, 0];
        buf.extend([0xE0, 64]);
        buf.extend([b'x'; 64]);
        buf.push(66); // backlen: 2 + 64 bytes
        buf.extend([0xF2, 0xFF, 0xFF, 0x7F, 4]);
        buf.extend([0xF3, 0x00, 0x00, 0x00, 0x80, 5]);
        buf.extend([0xF0, 2, 0, 0, 0, b'h', b'i', 7]);
        buf.push(0xFF);
        let n = buf.len() as u32;
        buf[..4].copy_from_slice(&n.to_le_bytes());
        let x64 = [b'x'; 64];
        assert_eq!(
            collect(&buf).unwrap(),
            vec![
                Entry::Str(&x64),
                Entry::Int(0x7F_FFFF),
                Entry::Int(i64::from(i32::MIN)),
                Entry::Str(b"hi"),
            ]
        );
    }

    #[test]
    fn corruption_is_reported() {
        let good = [10, 0, 0, 0, 1, 0, 0x81, b'a', 2, 0xFF];
        assert_eq!(collect(&good).unwrap(), vec![Entry::Str(b"a")]);
        let mut b = good;
        b[8] = 3; // backlen
        assert_eq!(collect(&b).unwrap_err().at, 8);
        let mut b = good;
        b[4] = 2; // count
        assert_eq!(collect(&b).unwrap_err().at, 4);
        let mut b = good;
        b[4] = 0xFF;
        b[5] = 0xFF; // unknown count is fine
        assert!(collect(&b).is_ok());
        let mut b = good;
        b[6] = 0x82; // string longer than the buffer
        assert!(collect(&b).is_err());
        let mut b = good;
        b[6] = 0xF5; // invalid encoding
        assert!(collect(&b).is_err());
        let mut b = good;
        b[0] = 11;
        assert!(Listpack::new(&b).is_err());
        assert!(Listpack::new(&[7, 0, 0, 0, 0, 0, 0]).is_err());
        assert!(collect(&[7, 0, 0, 0, 0, 0, 0xFF]).unwrap().is_empty());
        // 0xFF before the end
        let b = [8, 0, 0, 0, 0, 0, 0xFF, 0xFF];
        assert!(collect(&b).is_err());
    }
}

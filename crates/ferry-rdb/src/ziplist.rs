//! Ziplist: the packed list used by RDB types 10, 12, 13 and by the nodes of
//! type 14 (`LIST_QUICKLIST`). Written by Redis up to 6.2.
//!
//! ```text
//! +-------------+------------+-----------+-------+-----+-------+------+
//! | zlbytes u32 | zltail u32 | zllen u16 | entry | ... | entry | 0xFF |
//! +-------------+------------+-----------+-------+-----+-------+------+
//!   total size    offset of    count, or
//!   (== buffer)   last entry   65535 = walk to count
//!
//! entry = prevlen, encoding, data
//!   prevlen:  1 byte (< 254), or 0xFE + u32 LE      size of the previous entry
//!   encoding: 00pppppp                              string, 6-bit length
//!             01pppppp qqqqqqqq                     string, 14-bit length (BE)
//!             10000000 + u32 BE                     string, 32-bit length
//!             0xC0 / 0xD0 / 0xE0                    int16 / int32 / int64 LE
//!             0xF0                                  int24 LE
//!             0xFE                                  int8
//!             0xF1..=0xFD                           immediate 0..=12 (no data)
//! ```
//!
//! All header integers are little-endian. Besides the header, the iterator
//! checks what Redis' integrity check does: each `prevlen` equals the size of
//! the entry before it, no entry runs into the terminator, the terminator is
//! the last byte, `zllen` (unless 65535) equals the number of entries and
//! `zltail` points at the last entry.

use crate::container::{
    ContainerError, Entry, read_array, read_int_le, read_u16_le, read_u32_le, slice,
};

const NAME: &str = "ziplist";
/// zlbytes + zltail + zllen.
const HEADER: usize = 10;
const END: u8 = 0xFF;
/// `zllen` value meaning "too many to count in 16 bits".
const UNKNOWN_COUNT: u16 = u16::MAX;

/// A ziplist with a validated header, iterated entry by entry.
///
/// Iteration yields `Err` once when it meets corruption, then `None`.
#[derive(Debug, Clone)]
pub struct Ziplist<'a> {
    buf: &'a [u8],
    header_count: u16,
    tail: usize,
    /// Offset of the next entry.
    pos: usize,
    /// Size of the previous entry (what the next `prevlen` must say).
    prev_size: usize,
    /// Offset of the previous entry, if any.
    prev_start: Option<usize>,
    seen: usize,
    done: bool,
}

impl<'a> Ziplist<'a> {
    /// Validate the header: `zlbytes == buf.len()`, `zltail` inside the
    /// buffer, last byte `0xFF`.
    pub fn new(buf: &'a [u8]) -> Result<Self, ContainerError> {
        if buf.len() < HEADER + 1 {
            return Err(ContainerError::new(
                NAME,
                0,
                format!("{} bytes is shorter than the 11-byte minimum", buf.len()),
            ));
        }
        let zlbytes = read_u32_le(buf, 0).unwrap_or_default() as usize;
        if zlbytes != buf.len() {
            return Err(ContainerError::new(
                NAME,
                0,
                format!("zlbytes {zlbytes} but the buffer has {} bytes", buf.len()),
            ));
        }
        let tail = read_u32_le(buf, 4).unwrap_or_default() as usize;
        if tail < HEADER || tail >= buf.len() {
            return Err(ContainerError::new(
                NAME,
                4,
                format!("zltail {tail} outside the entries"),
            ));
        }
        if buf.last() != Some(&END) {
            return Err(ContainerError::new(
                NAME,
                buf.len() - 1,
                "missing 0xFF terminator",
            ));
        }
        Ok(Ziplist {
            buf,
            header_count: read_u16_le(buf, 8).unwrap_or_default(),
            tail,
            pos: HEADER,
            prev_size: 0,
            prev_start: None,
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

    /// Checks made when the terminator is reached.
    fn finish(&mut self) -> Option<Result<Entry<'a>, ContainerError>> {
        let last = self.buf.len() - 1;
        if self.pos != last {
            return self.err(self.pos, "0xFF terminator before the end of the buffer");
        }
        if self.header_count != UNKNOWN_COUNT && usize::from(self.header_count) != self.seen {
            let what = format!("zllen {} but {} entries", self.header_count, self.seen);
            return self.err(8, what);
        }
        if let Some(prev) = self.prev_start
            && prev != self.tail
        {
            let what = format!("zltail {} but the last entry is at {prev}", self.tail);
            return self.err(4, what);
        }
        self.done = true;
        None
    }
}

impl<'a> Iterator for Ziplist<'a> {
    type Item = Result<Entry<'a>, ContainerError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        let start = self.pos;
        let Some(&first) = self.buf.get(start) else {
            return self.err(start, "entry starts past the end");
        };
        if first == END {
            return self.finish();
        }
        // prevlen
        let (prevlen, enc_at) = if first < 0xFE {
            (usize::from(first), start + 1)
        } else {
            match read_u32_le(self.buf, start + 1) {
                Some(v) => (v as usize, start + 5),
                None => return self.err(start, "truncated 5-byte prevlen"),
            }
        };
        if prevlen != self.prev_size {
            let what = format!(
                "prevlen {prevlen} but the previous entry is {} bytes",
                self.prev_size
            );
            return self.err(start, what);
        }
        let Some(&enc) = self.buf.get(enc_at) else {
            return self.err(enc_at, "truncated entry encoding");
        };
        // (data offset, data length, integer value if an integer encoding)
        let decoded: Option<(usize, usize, Option<i64>)> = match enc >> 6 {
            0 => Some((enc_at + 1, usize::from(enc & 0x3F), None)),
            1 => self.buf.get(enc_at + 1).map(|&b| {
                (
                    enc_at + 2,
                    (usize::from(enc & 0x3F) << 8) | usize::from(b),
                    None,
                )
            }),
            2 if enc == 0x80 => read_array::<4>(self.buf, enc_at + 1)
                .map(|b| (enc_at + 5, u32::from_be_bytes(b) as usize, None)),
            2 => return self.err(enc_at, format!("invalid string encoding byte {enc:#04x}")),
            _ => {
                let width = match enc {
                    0xC0 => 2,
                    0xD0 => 4,
                    0xE0 => 8,
                    0xF0 => 3,
                    0xFE => 1,
                    0xF1..=0xFD => 0,
                    _ => {
                        return self.err(enc_at, format!("invalid encoding byte {enc:#04x}"));
                    }
                };
                let data_at = enc_at + 1;
                let value = if width == 0 {
                    Some(i64::from(enc & 0x0F) - 1)
                } else {
                    read_int_le(self.buf, data_at, width)
                };
                value.map(|v| (data_at, width, Some(v)))
            }
        };
        let Some((data_at, data_len, int)) = decoded else {
            return self.err(enc_at, "truncated entry header");
        };
        let last = self.buf.len() - 1;
        let end = match data_at.checked_add(data_len) {
            Some(end) if end <= last => end,
            _ => {
                let what = format!("entry of {data_len} bytes runs past the end");
                return self.err(start, what);
            }
        };
        let entry = match int {
            Some(v) => Entry::Int(v),
            None => Entry::Str(slice(self.buf, data_at, data_len).unwrap_or_default()),
        };
        self.prev_size = end - start;
        self.prev_start = Some(start);
        self.pos = end;
        self.seen += 1;
        Some(Ok(entry))
    }
}

/// Once it has returned `None` (or an error), it keeps returning `None`.
impl std::iter::FusedIterator for Ziplist<'_> {}

#[cfg(test)]
mod tests {
    use super::*;

    fn collect(buf: &[u8]) -> Result<Vec<Entry<'_>>, ContainerError> {
        Ziplist::new(buf)?.collect()
    }

    #[test]
    fn empty() {
        let buf = [11, 0, 0, 0, 10, 0, 0, 0, 0, 0, 0xFF];
        assert_eq!(collect(&buf).unwrap(), vec![]);
        assert_eq!(Ziplist::new(&buf).unwrap().count_hint(), Some(0));
    }

    #[test]
    fn hand_written_entries() {
        // ["ab", 7, -2, 300] written from the format description.
        #[rustfmt::skip]
        let buf = [
            24, 0, 0, 0,             // zlbytes
            19, 0, 0, 0,             // zltail: offset of the last entry
            4, 0,                    // zllen
            0x00, 0x02, b'a', b'b',  // @10 prevlen 0, 6-bit string of 2
            0x04, 0xF8,              // @14 prevlen 4, immediate 7
            0x02, 0xFE, 0xFE,        // @16 prevlen 2, int8 -2
            0x03, 0xC0, 0x2C, 0x01,  // @19 prevlen 3, int16 300
            0xFF,
        ];
        assert_eq!(
            collect(&buf).unwrap(),
            vec![
                Entry::Str(b"ab"),
                Entry::Int(7),
                Entry::Int(-2),
                Entry::Int(300)
            ]
        );
    }

    #[test]
    fn corruption_is_reported() {
        let good = [15, 0, 0, 0, 10, 0, 0, 0, 1, 0, 0, 0x02, b'a', b'b', 0xFF];
        assert_eq!(collect(&good).unwrap(), vec![Entry::Str(b"ab")]);
        // zlbytes mismatch
        let mut b = good;
        b[0] = 16;
        assert!(Ziplist::new(&b).is_err());
        // wrong count
        let mut b = good;
        b[8] = 2;
        assert_eq!(collect(&b).unwrap_err().at, 8);
        // unknown count is fine
        let mut b = good;
        b[8] = 0xFF;
        b[9] = 0xFF;
        assert!(collect(&b).is_ok());
        // string longer than the buffer
        let mut b = good;
        b[11] = 0x03;
        assert!(collect(&b).is_err());
        // bad prevlen
        let mut b = good;
        b[10] = 1;
        assert_eq!(collect(&b).unwrap_err().at, 10);
        // bad encoding byte
        let mut b = good;
        b[11] = 0xC1;
        assert!(collect(&b).is_err());
        // iteration stops after the error
        let mut it = Ziplist::new(&b).unwrap();
        assert!(it.next().unwrap().is_err());
        assert!(it.next().is_none());
    }
}

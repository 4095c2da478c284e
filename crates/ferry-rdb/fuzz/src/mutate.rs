//! The PRNG and the mutations.
//!
//! ```text
//! byte level    bit flip, set to an interesting byte, add/sub, random bytes
//!               inserted, range deleted or duplicated, truncation
//! RDB level     huge length (0x81 + FFx8, 0x80 + u32::MAX, ...) written over or
//!               inserted; mutations aimed at record starts (type bytes, key and
//!               value lengths); whole records deleted, duplicated, or copied
//!               from another input; type byte replaced; header version changed
//! corpus        splice a range of another input, insert or overwrite
//! trailer       afterwards, half the time the CRC64 is recomputed so mutants
//!               get past the checksum (sometimes zeroed = "not computed")
//! ```

use ferry_rdb::crc64::crc64;

/// SplitMix64: small, fast, and good enough to drive mutations.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    /// Uniform in `0..n` (`n > 0`).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    pub fn chance(&mut self, one_in: usize) -> bool {
        self.below(one_in) == 0
    }
    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
    /// Log-uniform in `1..=max`: small values as likely as large ones.
    pub fn log_size(&mut self, max: usize) -> usize {
        let max = max.max(1);
        let bits = usize::BITS - max.leading_zeros();
        let top = 1usize << self.below(bits as usize);
        (top + self.below(top)).clamp(1, max)
    }
}

/// A corpus input and the file offsets where its records start (from a decode).
pub struct Input {
    pub data: Vec<u8>,
    pub bounds: Vec<usize>,
}

/// Length/encoding bytes that steer the decoder into its special cases.
const INTERESTING: &[u8] = &[
    0x00, 0xFF, 0x80, 0x81, 0xC3, 0x3F, 0x40, 0x7F, 0xC0, 0xC1, 0xC2, 0xC4, 0x01, 0x02, 0x05, 0xFE,
    0xFD, 0xFC, 0xFA, 0xF3, 0xF5, 0xF7, 0xF0, 0xF1, 0xF4, 0xE0, 0x0E, 0xFB,
];

/// Huge or boundary RDB lengths, as encoded bytes.
const HUGE: &[&[u8]] = &[
    &[0x81, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF],
    &[0x81, 0x7F, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF],
    &[0x81, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00],
    &[0x81, 0x00, 0x00, 0x00, 0x00, 0xFF, 0xFF, 0xFF, 0xFF],
    &[0x80, 0xFF, 0xFF, 0xFF, 0xFF],
    &[0x80, 0x7F, 0xFF, 0xFF, 0xFF],
    &[0x80, 0x00, 0x10, 0x00, 0x00],
    &[0x80, 0x00, 0x00, 0x00, 0x00],
    &[0x7F, 0xFF],
    &[0x40, 0x00],
    &[0x3F],
    // LZF string claiming a big output from a few bytes.
    &[0xC3, 0x04, 0x80, 0x00, 0x00, 0xFF, 0xFF],
    &[
        0xC3, 0x80, 0xFF, 0xFF, 0xFF, 0xFF, 0x81, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF,
    ],
];

const HEADERS: &[&[u8; 9]] = &[
    b"REDIS0001",
    b"REDIS0004",
    b"REDIS0005",
    b"REDIS0006",
    b"REDIS0009",
    b"REDIS0010",
    b"REDIS0011",
    b"REDIS0012",
    b"REDIS0013",
    b"REDIS0014",
    b"REDIS0015",
    b"VALKEY080",
    b"VALKEY081",
    b"VALKEY011",
];

/// Type bytes and opcodes a record can start with.
const RECORD_STARTS: &[u8] = &[
    0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25,
    26, 27, 28, 0xF3, 0xF4, 0xF5, 0xF6, 0xF7, 0xF8, 0xF9, 0xFA, 0xFB, 0xFC, 0xFD, 0xFE, 0xFF,
];

fn byte_value(rng: &mut Rng) -> u8 {
    if rng.chance(2) {
        *rng.pick(INTERESTING)
    } else {
        rng.next() as u8
    }
}

/// A position near a record start (falls back to anywhere).
fn near_record(rng: &mut Rng, bounds: &[usize], len: usize) -> usize {
    if bounds.is_empty() || len == 0 {
        return rng.below(len + 1);
    }
    let b = *rng.pick(bounds);
    (b + rng.below(24)).min(len)
}

/// The record `[start, end)` around a random record boundary, if any.
fn record(rng: &mut Rng, bounds: &[usize], len: usize) -> Option<(usize, usize)> {
    if bounds.len() < 2 {
        return None;
    }
    let i = rng.below(bounds.len() - 1);
    let (a, b) = (bounds[i], bounds[i + 1]);
    (a < b && b <= len).then_some((a, b))
}

/// Write `bytes` at `at`: over the existing bytes or inserted.
fn put(rng: &mut Rng, buf: &mut Vec<u8>, at: usize, bytes: &[u8]) {
    let at = at.min(buf.len());
    if rng.chance(2) {
        buf.splice(at..at, bytes.iter().copied());
    } else {
        let end = (at + bytes.len()).min(buf.len());
        buf.splice(at..end, bytes.iter().copied());
    }
}

/// Applies one random mutation to `buf` (`bounds`: record starts of the original).
pub fn mutate_once(rng: &mut Rng, buf: &mut Vec<u8>, bounds: &[usize], corpus: &[Input]) {
    let len = buf.len();
    match rng.below(16) {
        0 if len > 0 => {
            let i = rng.below(len);
            buf[i] ^= 1 << rng.below(8);
        }
        1 if len > 0 => {
            let i = rng.below(len);
            buf[i] = byte_value(rng);
        }
        2 if len > 0 => {
            let i = rng.below(len);
            let d = 1 + rng.below(16) as u8;
            buf[i] = if rng.chance(2) {
                buf[i].wrapping_add(d)
            } else {
                buf[i].wrapping_sub(d)
            };
        }
        3 => {
            let i = rng.below(len + 1);
            let n = 1 + rng.below(8);
            let bytes: Vec<u8> = (0..n).map(|_| byte_value(rng)).collect();
            buf.splice(i..i, bytes);
        }
        4 if len > 0 => {
            let i = rng.below(len);
            let n = rng.log_size((len - i).min(4096));
            buf.drain(i..i + n);
        }
        5 => {
            // Splice: a piece of another input, inserted or overwriting.
            let other = &rng.pick(corpus).data;
            if !other.is_empty() {
                let s = rng.below(other.len());
                let n = rng.log_size(other.len() - s);
                let piece = other[s..s + n].to_vec();
                let at = rng.below(len + 1);
                put(rng, buf, at, &piece);
            }
        }
        6 if len > 0 => {
            // Duplicate a range in place.
            let s = rng.below(len);
            let n = rng.log_size((len - s).min(4096));
            let piece = buf[s..s + n].to_vec();
            let at = if rng.chance(2) {
                s + n
            } else {
                rng.below(len + 1)
            };
            buf.splice(at..at, piece);
        }
        7 => {
            // A huge length anywhere.
            let at = rng.below(len + 1);
            let h = *rng.pick(HUGE);
            put(rng, buf, at, h);
        }
        8 if len > 0 => buf.truncate(rng.below(len)),
        9 => {
            // Aimed at a record start: type byte, key length, value length.
            let at = near_record(rng, bounds, len);
            match rng.below(4) {
                0 => {
                    let h = *rng.pick(HUGE);
                    put(rng, buf, at, h);
                }
                1 if at < len => buf[at] ^= 1 << rng.below(8),
                2 if at < len => buf[at] = byte_value(rng),
                _ if at < len => buf[at] = rng.next() as u8,
                _ => {}
            }
        }
        10 => {
            // Delete or duplicate a whole record.
            if let Some((a, b)) = record(rng, bounds, len) {
                if rng.chance(2) {
                    buf.drain(a..b);
                } else {
                    let piece = buf[a..b].to_vec();
                    buf.splice(b..b, piece);
                }
            }
        }
        11 => {
            // A record of another input, inserted at a record start here.
            let other = rng.pick(corpus);
            if let Some((a, b)) = record(rng, &other.bounds, other.data.len()) {
                let piece = other.data[a..b].to_vec();
                let at = if bounds.is_empty() {
                    rng.below(len + 1)
                } else {
                    (*rng.pick(bounds)).min(len)
                };
                buf.splice(at..at, piece);
            }
        }
        12 => {
            // Replace a record's type byte / opcode.
            if !bounds.is_empty() {
                let at = *rng.pick(bounds);
                if at < len {
                    buf[at] = *rng.pick(RECORD_STARTS);
                }
            }
        }
        13 if len >= 9 => {
            buf[..9].copy_from_slice(*rng.pick(HEADERS));
        }
        14 if len > 0 => {
            // Overwrite a range with one repeated interesting byte.
            let s = rng.below(len);
            let n = rng.log_size((len - s).min(64));
            let v = byte_value(rng);
            buf[s..s + n].fill(v);
        }
        _ => {
            // Append another input (trailing data) or a piece of one.
            let other = &rng.pick(corpus).data;
            let n = rng.log_size(other.len().max(1)).min(other.len());
            buf.extend_from_slice(&other[..n]);
        }
    }
}

/// A fresh mutant of `base`: 1–8 mutations, capped at `max_len`, then the
/// CRC64 trailer recomputed half the time.
pub fn mutant(rng: &mut Rng, base: &Input, corpus: &[Input], max_len: usize) -> Vec<u8> {
    let mut buf = base.data.clone();
    for _ in 0..rng.log_size(8) {
        mutate_once(rng, &mut buf, &base.bounds, corpus);
    }
    buf.truncate(max_len);
    fix_crc(rng, &mut buf);
    buf
}

/// Half the time: write the CRC64 of everything before the last 8 bytes into
/// them (an eighth of those times: zeros, "checksum not computed").
pub fn fix_crc(rng: &mut Rng, buf: &mut [u8]) {
    let len = buf.len();
    if len < 18 || rng.chance(2) {
        return;
    }
    let crc = if rng.chance(8) {
        0
    } else {
        crc64(&buf[..len - 8])
    };
    buf[len - 8..].copy_from_slice(&crc.to_le_bytes());
}

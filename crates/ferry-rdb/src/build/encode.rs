//! Encoders for the packed containers, the inverse of the parsers in
//! [`crate::listpack`], [`crate::ziplist`], [`crate::intset`] and
//! [`crate::zipmap`]. Each picks the smallest encoding per element, the way
//! Redis does, so the bytes match what a server would store:
//!
//! ```text
//! listpack int: 0..=127 → 1 byte, ±4096 → int13, then int16/24/32/64
//! ziplist  int: 0..=12 → immediate, then int8/16/24/32/64
//! strings that are canonical decimal i64s are stored as integers
//! ```
//!
//! The `*_verbatim` variants keep `Str` entries as strings, to craft
//! containers no Redis writes but every reader must accept.
//!
//! These are test helpers: they panic if a container would exceed the
//! 4 GiB its 32-bit header can describe.

use crate::container::{Entry, parse_canonical_i64};
use crate::listpack::encode_backlen;

/// Resolve how an entry is stored: as an integer or as bytes.
fn resolve<'a>(e: &Entry<'a>, verbatim: bool) -> Entry<'a> {
    match *e {
        Entry::Str(s) if !verbatim => parse_canonical_i64(s).map_or(Entry::Str(s), Entry::Int),
        other => other,
    }
}

fn header_u32(n: usize) -> [u8; 4] {
    u32::try_from(n)
        .expect("container larger than 4 GiB")
        .to_le_bytes()
}

/// Listpack of `entries`, each in its smallest encoding, exactly as Redis
/// writes it: `Int`s, and `Str`s holding a canonical decimal `i64`, use the
/// integer encodings. The header count saturates at 65535 ("unknown").
pub fn listpack(entries: &[Entry]) -> Vec<u8> {
    build_listpack(entries, false)
}

/// Like [`listpack`], but `Str` entries stay strings even when they look
/// like integers.
pub fn listpack_verbatim(entries: &[Entry]) -> Vec<u8> {
    build_listpack(entries, true)
}

fn build_listpack(entries: &[Entry], verbatim: bool) -> Vec<u8> {
    let mut out = vec![0u8; 6];
    for e in entries {
        let start = out.len();
        match resolve(e, verbatim) {
            Entry::Int(v) => listpack_int(&mut out, v),
            Entry::Str(s) => listpack_str(&mut out, s),
        }
        let mut back = [0u8; 5];
        let n = encode_backlen((out.len() - start) as u64, &mut back);
        out.extend_from_slice(&back[..n]);
    }
    out.push(0xFF);
    let total = header_u32(out.len());
    out[..4].copy_from_slice(&total);
    let count = u16::try_from(entries.len()).unwrap_or(u16::MAX);
    out[4..6].copy_from_slice(&count.to_le_bytes());
    out
}

fn listpack_int(out: &mut Vec<u8>, v: i64) {
    let b = v.to_le_bytes();
    match v {
        0..=127 => out.push(v as u8),
        -4096..=4095 => {
            let u = (v & 0x1FFF) as u16;
            out.extend_from_slice(&[0xC0 | (u >> 8) as u8, u as u8]);
        }
        -32768..=32767 => {
            out.push(0xF1);
            out.extend_from_slice(&b[..2]);
        }
        -8_388_608..=8_388_607 => {
            out.push(0xF2);
            out.extend_from_slice(&b[..3]);
        }
        -2_147_483_648..=2_147_483_647 => {
            out.push(0xF3);
            out.extend_from_slice(&b[..4]);
        }
        _ => {
            out.push(0xF4);
            out.extend_from_slice(&b);
        }
    }
}

fn listpack_str(out: &mut Vec<u8>, s: &[u8]) {
    let n = s.len();
    if n < 64 {
        out.push(0x80 | n as u8);
    } else if n < 4096 {
        out.extend_from_slice(&[0xE0 | (n >> 8) as u8, n as u8]);
    } else {
        out.push(0xF0);
        out.extend_from_slice(&header_u32(n));
    }
    out.extend_from_slice(s);
}

/// Ziplist of `entries`, each in its smallest encoding, exactly as Redis
/// writes it (canonical integer strings become integer encodings). The
/// header count saturates at 65535 ("unknown").
pub fn ziplist(entries: &[Entry]) -> Vec<u8> {
    build_ziplist(entries, false)
}

/// Like [`ziplist`], but `Str` entries stay strings even when they look
/// like integers.
pub fn ziplist_verbatim(entries: &[Entry]) -> Vec<u8> {
    build_ziplist(entries, true)
}

fn build_ziplist(entries: &[Entry], verbatim: bool) -> Vec<u8> {
    let mut out = vec![0u8; 10];
    let mut prev_size = 0usize;
    let mut tail = 10usize;
    for e in entries {
        let start = out.len();
        tail = start;
        if prev_size < 254 {
            out.push(prev_size as u8);
        } else {
            out.push(0xFE);
            out.extend_from_slice(&header_u32(prev_size));
        }
        match resolve(e, verbatim) {
            Entry::Int(v) => ziplist_int(&mut out, v),
            Entry::Str(s) => ziplist_str(&mut out, s),
        }
        prev_size = out.len() - start;
    }
    out.push(0xFF);
    let total = header_u32(out.len());
    out[..4].copy_from_slice(&total);
    out[4..8].copy_from_slice(&header_u32(tail));
    let count = u16::try_from(entries.len()).unwrap_or(u16::MAX);
    out[8..10].copy_from_slice(&count.to_le_bytes());
    out
}

fn ziplist_int(out: &mut Vec<u8>, v: i64) {
    let b = v.to_le_bytes();
    let (enc, width) = match v {
        0..=12 => (0xF1 + v as u8, 0),
        -128..=127 => (0xFE, 1),
        -32768..=32767 => (0xC0, 2),
        -8_388_608..=8_388_607 => (0xF0, 3),
        -2_147_483_648..=2_147_483_647 => (0xD0, 4),
        _ => (0xE0, 8),
    };
    out.push(enc);
    out.extend_from_slice(&b[..width]);
}

fn ziplist_str(out: &mut Vec<u8>, s: &[u8]) {
    let n = s.len();
    if n <= 0x3F {
        out.push(n as u8);
    } else if n <= 0x3FFF {
        out.extend_from_slice(&[0x40 | (n >> 8) as u8, n as u8]);
    } else {
        out.push(0x80);
        out.extend_from_slice(
            &u32::try_from(n)
                .expect("ziplist string larger than 4 GiB")
                .to_be_bytes(),
        );
    }
    out.extend_from_slice(s);
}

/// Intset of `values`: sorted, duplicates removed, in the smallest element
/// width (2, 4 or 8 bytes) that fits all of them.
pub fn intset(values: &[i64]) -> Vec<u8> {
    let mut sorted = values.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    let fits = |lo: i64, hi: i64| sorted.iter().all(|v| (lo..=hi).contains(v));
    let width: usize = if fits(i16::MIN.into(), i16::MAX.into()) {
        2
    } else if fits(i32::MIN.into(), i32::MAX.into()) {
        4
    } else {
        8
    };
    let mut out = Vec::with_capacity(8 + sorted.len() * width);
    out.extend_from_slice(&(width as u32).to_le_bytes());
    out.extend_from_slice(&header_u32(sorted.len()));
    for v in sorted {
        out.extend_from_slice(&v.to_le_bytes()[..width]);
    }
    out
}

/// Zipmap of `(field, value)` pairs with no free bytes. `zmlen` saturates
/// at 254 ("unknown").
pub fn zipmap(pairs: &[(&[u8], &[u8])]) -> Vec<u8> {
    let with_free: Vec<(&[u8], &[u8], u8)> = pairs.iter().map(|&(f, v)| (f, v, 0)).collect();
    zipmap_with_free(&with_free)
}

/// Zipmap of `(field, value, free)` triples: each value is followed by
/// `free` unused bytes (filled with `0`), as left behind by in-place updates.
pub fn zipmap_with_free(pairs: &[(&[u8], &[u8], u8)]) -> Vec<u8> {
    let mut out = vec![u8::try_from(pairs.len()).unwrap_or(254).min(254)];
    for &(field, value, free) in pairs {
        zipmap_len(&mut out, field.len());
        out.extend_from_slice(field);
        zipmap_len(&mut out, value.len());
        out.push(free);
        out.extend_from_slice(value);
        out.extend(std::iter::repeat_n(0u8, usize::from(free)));
    }
    out.push(0xFF);
    out
}

fn zipmap_len(out: &mut Vec<u8>, n: usize) {
    if n < 254 {
        out.push(n as u8);
    } else {
        out.push(254);
        out.extend_from_slice(&header_u32(n));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listpack_bytes_by_hand() {
        let lp = listpack(&[
            Entry::Str(b"a"),
            Entry::Int(1),
            Entry::Int(-1),
            Entry::Int(4096),
            Entry::Int(1 << 40),
        ]);
        #[rustfmt::skip]
        let want = [
            29, 0, 0, 0, 5, 0,
            0x81, b'a', 2,
            0x01, 1,
            0xDF, 0xFF, 2,
            0xF1, 0x00, 0x10, 3,
            0xF4, 0, 0, 0, 0, 0, 1, 0, 0, 9,
            0xFF,
        ];
        assert_eq!(lp, want);
        // A canonical integer string is stored as an integer, unless verbatim.
        assert_eq!(
            listpack(&[Entry::Str(b"7")]),
            [9, 0, 0, 0, 1, 0, 7, 1, 0xFF]
        );
        assert_eq!(
            listpack_verbatim(&[Entry::Str(b"7")]),
            [10, 0, 0, 0, 1, 0, 0x81, b'7', 2, 0xFF]
        );
    }

    #[test]
    fn ziplist_bytes_by_hand() {
        let zl = ziplist(&[
            Entry::Str(b"ab"),
            Entry::Int(7),
            Entry::Int(-2),
            Entry::Int(300),
        ]);
        #[rustfmt::skip]
        let want = [
            24, 0, 0, 0, 19, 0, 0, 0, 4, 0,
            0x00, 0x02, b'a', b'b',
            0x04, 0xF8,
            0x02, 0xFE, 0xFE,
            0x03, 0xC0, 0x2C, 0x01,
            0xFF,
        ];
        assert_eq!(zl, want);
        assert_eq!(ziplist(&[]), [11, 0, 0, 0, 10, 0, 0, 0, 0, 0, 0xFF]);
    }

    #[test]
    fn intset_widths() {
        assert_eq!(intset(&[3, 1, 3]), [2, 0, 0, 0, 2, 0, 0, 0, 1, 0, 3, 0]);
        assert_eq!(intset(&[70000])[0], 4);
        assert_eq!(intset(&[-1, i64::MAX])[0], 8);
        assert_eq!(intset(&[]), [2, 0, 0, 0, 0, 0, 0, 0]);
    }

    #[test]
    fn zipmap_bytes() {
        assert_eq!(
            zipmap(&[(b"k", b"vv")]),
            [1, 1, b'k', 2, 0, b'v', b'v', 0xFF]
        );
        assert_eq!(
            zipmap_with_free(&[(b"k", b"v", 2)]),
            [1, 1, b'k', 1, 2, b'v', 0, 0, 0xFF]
        );
    }
}

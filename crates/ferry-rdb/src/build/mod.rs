//! RDB writer for tests, benchmarks and fuzz seeds.
//!
//! [`RdbWriter`] appends the primitives of the format one call at a time, so
//! a test can craft any record, including ones no server here writes and
//! deliberately broken ones:
//!
//! ```text
//! "REDIS0011" | aux… | SELECTDB | RESIZEDB | [EXPIRE] type key value | … | 0xFF crc64-LE
//!  new()        aux()  select_db  resize_db  expire_ms  key()  (value)    finish()
//! ```
//!
//! Lengths use the shortest form (`00xxxxxx`, `01xxxxxx+1`, `0x80`+u32 BE,
//! `0x81`+u64 BE). Strings come plain ([`RdbWriter::string`]), integer-encoded
//! (`0xC0..0xC2`), LZF-compressed (`0xC3`) or chosen the way Redis chooses
//! ([`RdbWriter::string_auto`]). Whole values of every type have helpers
//! (see `values.rs`); the container encoders ([`listpack`], [`ziplist`],
//! [`intset`], [`zipmap`]) produce the bytes Redis would.
//!
//! This is test code: methods panic on impossible requests (an integer that
//! does not fit the asked-for encoding, a container over 4 GiB); each says so.

mod encode;
mod float;
pub mod samples;
mod values;

pub use encode::{
    intset, listpack, listpack_verbatim, ziplist, ziplist_verbatim, zipmap, zipmap_with_free,
};
pub use float::{format_g17, format_score};
pub use values::{QuicklistNode, StreamNodeEntry, module_id, stream_id, stream_node_listpack};

use crate::container::parse_canonical_i64;
use crate::crc64::crc64;
use crate::lzf;

/// Appends RDB primitives to a byte buffer; see the module docs.
#[derive(Debug, Clone, Default)]
pub struct RdbWriter {
    buf: Vec<u8>,
}

impl RdbWriter {
    /// Start a file with the 9-byte header: `magic` then the version padded
    /// with zeros to 9 bytes in total, so `("REDIS", 11)` writes `REDIS0011`
    /// and `("VALKEY", 80)` writes `VALKEY080`.
    pub fn new(magic: &str, version: u16) -> Self {
        let width = 9usize.saturating_sub(magic.len());
        RdbWriter {
            buf: format!("{magic}{version:0width$}").into_bytes(),
        }
    }

    /// A writer with no header, for building a bare value (for example the
    /// body of a `DUMP` payload, see [`dump_payload`]).
    pub fn bare() -> Self {
        RdbWriter { buf: Vec::new() }
    }

    /// Bytes written so far.
    pub fn as_bytes(&self) -> &[u8] {
        &self.buf
    }

    /// The bytes written, with no trailer added.
    pub fn into_bytes(self) -> Vec<u8> {
        self.buf
    }

    /// Append bytes as they are.
    pub fn raw(&mut self, bytes: &[u8]) -> &mut Self {
        self.buf.extend_from_slice(bytes);
        self
    }

    /// Append one byte (a type byte or an opcode).
    pub fn byte(&mut self, b: u8) -> &mut Self {
        self.buf.push(b);
        self
    }

    /// Append a length in its shortest RDB encoding (6, 14, 32 or 64 bits).
    pub fn len(&mut self, n: u64) -> &mut Self {
        if n < 1 << 6 {
            self.buf.push(n as u8);
        } else if n < 1 << 14 {
            self.buf
                .extend_from_slice(&[0x40 | (n >> 8) as u8, n as u8]);
        } else if let Ok(n32) = u32::try_from(n) {
            self.buf.push(0x80);
            self.buf.extend_from_slice(&n32.to_be_bytes());
        } else {
            self.buf.push(0x81);
            self.buf.extend_from_slice(&n.to_be_bytes());
        }
        self
    }

    /// Append a plain length-prefixed string.
    pub fn string(&mut self, s: &[u8]) -> &mut Self {
        self.len(s.len() as u64);
        self.raw(s)
    }

    /// Append an integer-encoded string: `0xC0` + i8, `0xC1` + i16 LE or
    /// `0xC2` + i32 LE, the smallest that fits.
    ///
    /// # Panics
    /// If `v` does not fit in an `i32` (RDB has no wider string-int form).
    pub fn string_int(&mut self, v: i64) -> &mut Self {
        if let Ok(b) = i8::try_from(v) {
            self.byte(0xC0).raw(&b.to_le_bytes())
        } else if let Ok(h) = i16::try_from(v) {
            self.byte(0xC1).raw(&h.to_le_bytes())
        } else {
            let w = i32::try_from(v).expect("string_int: value does not fit in i32");
            self.byte(0xC2).raw(&w.to_le_bytes())
        }
    }

    /// Append an LZF-compressed string (`0xC3`, compressed length,
    /// uncompressed length, data); a plain string if compression does not
    /// shrink `s`.
    pub fn string_lzf(&mut self, s: &[u8]) -> &mut Self {
        match lzf::compress(s) {
            Some(c) => self.write_lzf(&c, s.len()),
            None => self.string(s),
        }
    }

    fn write_lzf(&mut self, compressed: &[u8], original_len: usize) -> &mut Self {
        self.byte(0xC3)
            .len(compressed.len() as u64)
            .len(original_len as u64)
            .raw(compressed)
    }

    /// Append a string the way Redis' `rdbSaveRawString` chooses: integer
    /// form if `s` (at most 11 bytes) is a canonical integer fitting `i32`,
    /// LZF if longer than 20 bytes and compression saves at least 4 bytes,
    /// plain otherwise.
    pub fn string_auto(&mut self, s: &[u8]) -> &mut Self {
        if s.len() <= 11
            && let Some(v) = parse_canonical_i64(s)
            && i32::try_from(v).is_ok()
        {
            return self.string_int(v);
        }
        if s.len() > 20
            && let Some(c) = lzf::compress(s)
            && c.len() + 4 <= s.len()
        {
            return self.write_lzf(&c, s.len());
        }
        self.string(s)
    }

    /// Append a `u64`, little-endian.
    pub fn u64_le(&mut self, v: u64) -> &mut Self {
        self.raw(&v.to_le_bytes())
    }

    /// Append an `i64`, little-endian (millisecond times).
    pub fn i64_le(&mut self, v: i64) -> &mut Self {
        self.raw(&v.to_le_bytes())
    }

    /// Append an IEEE-754 double, little-endian (ZSET_2 scores, module doubles).
    pub fn f64_le(&mut self, v: f64) -> &mut Self {
        self.raw(&v.to_le_bytes())
    }

    /// Append an IEEE-754 float, little-endian (module floats).
    pub fn f32_le(&mut self, v: f32) -> &mut Self {
        self.raw(&v.to_le_bytes())
    }

    /// Append a `u32`, little-endian.
    pub fn u32_le(&mut self, v: u32) -> &mut Self {
        self.raw(&v.to_le_bytes())
    }

    /// Append a double in the type-3 (old ZSET) text form: 253 = NaN,
    /// 254 = +inf, 255 = −inf, else a 1-byte length and `%.17g` text.
    pub fn double_str(&mut self, v: f64) -> &mut Self {
        if v.is_nan() {
            self.byte(253)
        } else if v == f64::INFINITY {
            self.byte(254)
        } else if v == f64::NEG_INFINITY {
            self.byte(255)
        } else {
            let text = format_g17(v);
            // At most 24 characters ("-2.2250738585072014e-308").
            self.byte(text.len() as u8).raw(text.as_bytes())
        }
    }

    /// Append an AUX field (opcode 250): key and value as [`Self::string_auto`]
    /// writes them, so `redis-bits` `64` comes out integer-encoded as in real files.
    pub fn aux(&mut self, k: &[u8], v: &[u8]) -> &mut Self {
        self.byte(0xFA).string_auto(k).string_auto(v)
    }

    /// Append SELECTDB (opcode 254) with the database number.
    pub fn select_db(&mut self, db: u64) -> &mut Self {
        self.byte(0xFE).len(db)
    }

    /// Append RESIZEDB (opcode 251) with the key and expire counts.
    pub fn resize_db(&mut self, a: u64, b: u64) -> &mut Self {
        self.byte(0xFB).len(a).len(b)
    }

    /// Append EXPIRETIME_MS (opcode 252): unix milliseconds, i64 LE.
    pub fn expire_ms(&mut self, ms: i64) -> &mut Self {
        self.byte(0xFC).i64_le(ms)
    }

    /// Append EXPIRETIME (opcode 253): unix seconds, u32 LE.
    pub fn expire_s(&mut self, s: u32) -> &mut Self {
        self.byte(0xFD).u32_le(s)
    }

    /// Append IDLE (opcode 248): LRU idle seconds as a length.
    pub fn idle(&mut self, secs: u64) -> &mut Self {
        self.byte(0xF8).len(secs)
    }

    /// Append FREQ (opcode 249): one LFU counter byte.
    pub fn freq(&mut self, f: u8) -> &mut Self {
        self.byte(0xF9).byte(f)
    }

    /// Append a key record header: the type byte, then the key as
    /// [`Self::string_auto`] writes it (Redis stores keys such as `"123"`
    /// integer-encoded). Use `.byte(t).string(k)` for a plain key.
    pub fn key(&mut self, type_byte: u8, key: &[u8]) -> &mut Self {
        self.byte(type_byte).string_auto(key)
    }

    /// Append FUNCTION2 (opcode 245): one library's source code.
    pub fn function2(&mut self, code: &[u8]) -> &mut Self {
        self.byte(0xF5).string_auto(code)
    }

    /// Append SLOT_INFO (opcode 244): slot, keys in slot, expires in slot.
    pub fn slot_info(&mut self, slot: u64, keys: u64, expires: u64) -> &mut Self {
        self.byte(0xF4).len(slot).len(keys).len(expires)
    }

    /// End the file: `0xFF`, then the CRC-64 (LE) of every byte including it.
    pub fn finish(mut self) -> Vec<u8> {
        self.buf.push(0xFF);
        let crc = crc64(&self.buf);
        self.buf.extend_from_slice(&crc.to_le_bytes());
        self.buf
    }

    /// End the file as `rdbchecksum no` does: `0xFF`, then 8 zero bytes.
    pub fn finish_without_checksum(mut self) -> Vec<u8> {
        self.buf.push(0xFF);
        self.buf.extend_from_slice(&[0; 8]);
        self.buf
    }
}

/// A `DUMP`/`RESTORE` payload: type byte, value bytes, RDB version (u16 LE),
/// then the CRC-64 (LE) of all of that.
pub fn dump_payload(type_byte: u8, value: &[u8], rdb_version: u16) -> Vec<u8> {
    let mut out = Vec::with_capacity(value.len() + 11);
    out.push(type_byte);
    out.extend_from_slice(value);
    out.extend_from_slice(&rdb_version.to_le_bytes());
    let crc = crc64(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers() {
        assert_eq!(RdbWriter::new("REDIS", 11).as_bytes(), b"REDIS0011");
        assert_eq!(RdbWriter::new("VALKEY", 80).as_bytes(), b"VALKEY080");
        assert_eq!(RdbWriter::new("REDIS", 9).as_bytes(), b"REDIS0009");
    }

    #[test]
    fn lengths() {
        let enc = |n| RdbWriter::bare().len(n).as_bytes().to_vec();
        assert_eq!(enc(0), [0]);
        assert_eq!(enc(63), [63]);
        assert_eq!(enc(64), [0x40, 64]);
        assert_eq!(enc(16383), [0x7F, 0xFF]);
        assert_eq!(enc(16384), [0x80, 0, 0, 0x40, 0]);
        assert_eq!(enc(u64::from(u32::MAX)), [0x80, 0xFF, 0xFF, 0xFF, 0xFF]);
        assert_eq!(enc(1 << 32), [0x81, 0, 0, 0, 1, 0, 0, 0, 0]);
    }

    #[test]
    fn strings() {
        let b = |w: &mut RdbWriter| w.as_bytes().to_vec();
        assert_eq!(b(RdbWriter::bare().string(b"hi")), [2, b'h', b'i']);
        assert_eq!(b(RdbWriter::bare().string_int(-1)), [0xC0, 0xFF]);
        assert_eq!(b(RdbWriter::bare().string_int(300)), [0xC1, 0x2C, 0x01]);
        assert_eq!(
            b(RdbWriter::bare().string_int(-70000)),
            [0xC2, 0x90, 0xEE, 0xFE, 0xFF]
        );
        assert_eq!(b(RdbWriter::bare().string_auto(b"64")), [0xC0, 64]);
        // Not canonical, or too wide for i32: plain.
        assert_eq!(
            b(RdbWriter::bare().string_auto(b"064")),
            [3, b'0', b'6', b'4']
        );
        assert_eq!(b(RdbWriter::bare().string_auto(b"4294967296"))[0], 10);
        let long = b"abcabcabcabcabcabcabcabcabcabcabc";
        let out = b(RdbWriter::bare().string_auto(long));
        assert_eq!(out[0], 0xC3);
        assert_eq!(out[2], long.len() as u8);
        assert_eq!(lzf::decompress(&out[3..], long.len()).unwrap(), long);
        // Too short for LZF even though compressible.
        assert_eq!(b(RdbWriter::bare().string_auto(&[b'a'; 20]))[0], 20);
    }

    #[test]
    fn doubles() {
        let d = |v| RdbWriter::bare().double_str(v).as_bytes().to_vec();
        assert_eq!(d(f64::NAN), [253]);
        assert_eq!(d(f64::INFINITY), [254]);
        assert_eq!(d(f64::NEG_INFINITY), [255]);
        assert_eq!(d(1.5), [3, b'1', b'.', b'5']);
        assert_eq!(d(-2.2250738585072014e-308)[0], 24);
    }

    #[test]
    fn trailer() {
        let mut w = RdbWriter::new("REDIS", 11);
        w.aux(b"redis-bits", b"64").select_db(0).resize_db(1, 0);
        w.key(0, b"k").string(b"v");
        let file = w.clone().finish();
        let body = &file[..file.len() - 8];
        assert_eq!(body.last(), Some(&0xFF));
        assert_eq!(&file[file.len() - 8..], &crc64(body).to_le_bytes());
        let plain = w.finish_without_checksum();
        assert_eq!(&plain[plain.len() - 9..], &[0xFF, 0, 0, 0, 0, 0, 0, 0, 0]);
    }

    #[test]
    fn dump() {
        let p = dump_payload(0, &[1, b'x'], 11);
        assert_eq!(&p[..4], &[0, 1, b'x', 11]);
        assert_eq!(p.len(), 13);
        assert_eq!(&p[5..], &crc64(&p[..5]).to_le_bytes());
    }
}

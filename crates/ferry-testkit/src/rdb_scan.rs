//! A deliberately small RDB walker that lists what a dump contains: per key
//! its db, name, type byte, expire and a few encoding details. It exists to
//! verify the fixtures (which type bytes each server really wrote); it is not
//! ferry's decoder (`ferry-rdb` is) and decodes no container contents.
//!
//! ```text
//! magic+version(9) { opcode | [expire|idle|freq] type key value }* 0xFF crc64(8)
//! ```
//!
//! It knows RDB 9 to 12 and Valkey's RDB 80 (type 22 = HASH_2 there), as laid
//! out in `docs/protocol.md` §3.

use std::fmt;

/// How a string value was stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StrEnc {
    /// Length-prefixed bytes.
    Raw,
    /// `0xC0`/`0xC1`/`0xC2`: an 8/16/32-bit integer.
    Int,
    /// `0xC3`: LZF-compressed.
    Lzf,
}

/// Encoding details of a key's value, where the walker looks at them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Detail {
    /// Nothing recorded for this type.
    None,
    /// A type-0 string and how its value was stored.
    String(StrEnc),
    /// Type 14: number of ziplist nodes.
    Quicklist {
        /// Nodes.
        nodes: usize,
    },
    /// Type 18: number of PLAIN (container 1) and PACKED (container 2) nodes.
    Quicklist2 {
        /// Nodes holding one large element as a plain string.
        plain: usize,
        /// Nodes holding a listpack.
        packed: usize,
    },
    /// Types 15, 19, 21: stream shape.
    Stream {
        /// Listpack nodes.
        nodes: usize,
        /// Live entries.
        length: u64,
        /// Consumer groups.
        groups: usize,
        /// Consumers over all groups.
        consumers: usize,
        /// Pending entries over all groups.
        pending: usize,
    },
}

/// One key record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyRecord {
    /// The database (from the last SELECTDB).
    pub db: u64,
    /// The key name, decompressed.
    pub key: Vec<u8>,
    /// The value type byte.
    pub type_byte: u8,
    /// Absolute expire time in unix ms, if any.
    pub expire_ms: Option<u64>,
    /// Encoding details.
    pub detail: Detail,
}

/// What [`scan`] found.
#[derive(Debug, Clone, Default)]
pub struct RdbSummary {
    /// `REDIS` or `VALKEY`.
    pub magic: String,
    /// The RDB version from the header.
    pub version: u16,
    /// AUX fields in file order.
    pub aux: Vec<(Vec<u8>, Vec<u8>)>,
    /// Key records in file order.
    pub keys: Vec<KeyRecord>,
    /// Sources of FUNCTION2 (opcode 245) records.
    pub functions: Vec<Vec<u8>>,
    /// Number of MODULE_AUX (opcode 247) records.
    pub module_aux: usize,
    /// The trailing CRC-64 as stored (0 = checksums disabled).
    pub checksum: u64,
}

impl RdbSummary {
    /// The record of `key` in `db`, if present.
    pub fn key(&self, db: u64, key: &[u8]) -> Option<&KeyRecord> {
        self.keys.iter().find(|k| k.db == db && k.key == key)
    }

    /// The distinct type bytes of all keys, sorted.
    pub fn type_bytes(&self) -> Vec<u8> {
        let mut t: Vec<u8> = self.keys.iter().map(|k| k.type_byte).collect();
        t.sort_unstable();
        t.dedup();
        t
    }
}

/// Why a dump could not be walked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScanError {
    /// Byte offset where it went wrong.
    pub offset: usize,
    /// What was wrong.
    pub msg: String,
}

impl fmt::Display for ScanError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RDB scan failed at offset {}: {}", self.offset, self.msg)
    }
}

impl std::error::Error for ScanError {}

type Res<T> = Result<T, ScanError>;

/// Walks a whole dump.
pub fn scan(rdb: &[u8]) -> Result<RdbSummary, ScanError> {
    let mut r = Reader { b: rdb, pos: 0 };
    let head = r.take(9)?;
    let (magic, digits) = if head.starts_with(b"VALKEY") {
        ("VALKEY", &head[6..9])
    } else if head.starts_with(b"REDIS") {
        ("REDIS", &head[5..9])
    } else {
        return r.err("no REDIS/VALKEY magic");
    };
    let version = std::str::from_utf8(digits)
        .ok()
        .and_then(|d| d.parse::<u16>().ok())
        .ok_or_else(|| ScanError {
            offset: 0,
            msg: "bad version digits".into(),
        })?;
    let valkey = magic == "VALKEY";
    let mut out = RdbSummary {
        magic: magic.into(),
        version,
        ..RdbSummary::default()
    };
    let mut db = 0;
    let mut expire = None;
    loop {
        let op = r.u8()?;
        match op {
            0xFF => {
                if let Ok(crc) = r.take(8) {
                    out.checksum = u64::from_le_bytes(crc.try_into().expect("8 bytes"));
                }
                return Ok(out);
            }
            0xFE => db = r.length()?,
            0xFD => {
                let s = u32::from_le_bytes(r.take(4)?.try_into().expect("4 bytes"));
                expire = Some(u64::from(s) * 1000);
            }
            0xFC => expire = Some(r.u64_le()?),
            0xFB => {
                r.length()?;
                r.length()?;
            }
            0xFA => {
                let k = r.string()?.0;
                let v = r.string()?.0;
                out.aux.push((k, v));
            }
            0xF9 => {
                r.u8()?;
            }
            0xF8 => {
                r.length()?;
            }
            0xF7 => {
                r.length()?;
                r.module_values()?;
                out.module_aux += 1;
            }
            0xF5 => out.functions.push(r.string()?.0),
            0xF4 => {
                for _ in 0..3 {
                    r.length()?;
                }
            }
            0xF3 if valkey => {
                r.string()?;
                for _ in 0..r.length()? {
                    r.length()?;
                    r.length()?;
                }
            }
            _ => {
                let (key, _) = r.string()?;
                let detail = r.value(op, valkey).map_err(|mut e| {
                    e.msg = format!(
                        "key {:?} type {op}: {}",
                        String::from_utf8_lossy(&key),
                        e.msg
                    );
                    e
                })?;
                out.keys.push(KeyRecord {
                    db,
                    key,
                    type_byte: op,
                    expire_ms: expire.take(),
                    detail,
                });
            }
        }
    }
}

struct Reader<'a> {
    b: &'a [u8],
    pos: usize,
}

enum Len {
    Plain(u64),
    Special(u8),
}

impl<'a> Reader<'a> {
    fn err<T>(&self, msg: &str) -> Res<T> {
        Err(ScanError {
            offset: self.pos,
            msg: msg.to_string(),
        })
    }

    fn take(&mut self, n: usize) -> Res<&'a [u8]> {
        match self.pos.checked_add(n).filter(|end| *end <= self.b.len()) {
            Some(end) => {
                let s = &self.b[self.pos..end];
                self.pos = end;
                Ok(s)
            }
            None => self.err(&format!("truncated: need {n} bytes")),
        }
    }

    fn u8(&mut self) -> Res<u8> {
        Ok(self.take(1)?[0])
    }

    fn u64_le(&mut self) -> Res<u64> {
        Ok(u64::from_le_bytes(
            self.take(8)?.try_into().expect("8 bytes"),
        ))
    }

    fn len(&mut self) -> Res<Len> {
        let b0 = self.u8()?;
        Ok(match b0 >> 6 {
            0 => Len::Plain(u64::from(b0 & 0x3F)),
            1 => Len::Plain((u64::from(b0 & 0x3F) << 8) | u64::from(self.u8()?)),
            2 if b0 == 0x80 => Len::Plain(u64::from(u32::from_be_bytes(
                self.take(4)?.try_into().expect("4"),
            ))),
            2 if b0 == 0x81 => Len::Plain(u64::from_be_bytes(self.take(8)?.try_into().expect("8"))),
            3 => Len::Special(b0 & 0x3F),
            _ => return self.err(&format!("bad length byte {b0:#04x}")),
        })
    }

    fn length(&mut self) -> Res<u64> {
        match self.len()? {
            Len::Plain(n) => Ok(n),
            Len::Special(s) => self.err(&format!("special encoding {s} where a length belongs")),
        }
    }

    fn usize_len(&mut self) -> Res<usize> {
        let n = self.length()?;
        usize::try_from(n).or_else(|_| self.err("length overflows usize"))
    }

    fn string(&mut self) -> Res<(Vec<u8>, StrEnc)> {
        match self.len()? {
            Len::Plain(n) => {
                let n = usize::try_from(n).or_else(|_| self.err("length overflows usize"))?;
                Ok((self.take(n)?.to_vec(), StrEnc::Raw))
            }
            Len::Special(0) => Ok(((self.u8()? as i8).to_string().into_bytes(), StrEnc::Int)),
            Len::Special(1) => {
                let v = i16::from_le_bytes(self.take(2)?.try_into().expect("2"));
                Ok((v.to_string().into_bytes(), StrEnc::Int))
            }
            Len::Special(2) => {
                let v = i32::from_le_bytes(self.take(4)?.try_into().expect("4"));
                Ok((v.to_string().into_bytes(), StrEnc::Int))
            }
            Len::Special(3) => {
                let clen = self.usize_len()?;
                let ulen = self.usize_len()?;
                let data = self.take(clen)?;
                match lzf_decompress(data, ulen) {
                    Some(v) => Ok((v, StrEnc::Lzf)),
                    None => self.err("bad LZF data"),
                }
            }
            Len::Special(s) => self.err(&format!("unknown string encoding {s}")),
        }
    }

    fn skip_strings(&mut self, n: u64) -> Res<()> {
        for _ in 0..n {
            self.string()?;
        }
        Ok(())
    }

    /// Opcode-framed module values up to opcode 0.
    fn module_values(&mut self) -> Res<()> {
        loop {
            match self.length()? {
                0 => return Ok(()),
                1 | 2 => {
                    self.length()?;
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
                op => return self.err(&format!("unknown module opcode {op}")),
            }
        }
    }

    fn value(&mut self, t: u8, valkey: bool) -> Res<Detail> {
        match t {
            0 => return Ok(Detail::String(self.string()?.1)),
            1 | 2 => {
                let n = self.length()?;
                self.skip_strings(n)?;
            }
            3 => {
                for _ in 0..self.length()? {
                    self.string()?;
                    let l = self.u8()?;
                    if l < 253 {
                        self.take(usize::from(l))?;
                    }
                }
            }
            4 => {
                let n = self.length()?;
                self.skip_strings(n.saturating_mul(2))?;
            }
            5 => {
                for _ in 0..self.length()? {
                    self.string()?;
                    self.take(8)?;
                }
            }
            7 => {
                self.length()?;
                self.module_values()?;
            }
            9..=13 | 16 | 17 | 20 | 23 => {
                self.string()?;
            }
            14 => {
                let nodes = self.usize_len()?;
                self.skip_strings(nodes as u64)?;
                return Ok(Detail::Quicklist { nodes });
            }
            18 => {
                let (mut plain, mut packed) = (0, 0);
                for _ in 0..self.length()? {
                    match self.length()? {
                        1 => plain += 1,
                        2 => packed += 1,
                        c => return self.err(&format!("unknown quicklist container {c}")),
                    }
                    self.string()?;
                }
                return Ok(Detail::Quicklist2 { plain, packed });
            }
            15 | 19 | 21 => return self.stream(t),
            22 if valkey => {
                for _ in 0..self.length()? {
                    self.string()?;
                    self.string()?;
                    self.take(8)?;
                }
            }
            22 | 24 => {
                if t == 24 {
                    self.take(8)?;
                }
                for _ in 0..self.length()? {
                    self.length()?;
                    self.string()?;
                    self.string()?;
                }
            }
            25 => {
                self.take(8)?;
                self.string()?;
            }
            _ => return self.err(&format!("unknown type byte {t}")),
        }
        Ok(Detail::None)
    }

    fn stream(&mut self, t: u8) -> Res<Detail> {
        let nodes = self.usize_len()?;
        self.skip_strings(nodes as u64 * 2)?;
        let length = self.length()?;
        self.length()?;
        self.length()?;
        if t >= 19 {
            for _ in 0..5 {
                self.length()?;
            }
        }
        let groups = self.usize_len()?;
        let (mut consumers, mut pending) = (0, 0);
        for _ in 0..groups {
            self.string()?;
            self.length()?;
            self.length()?;
            if t >= 19 {
                self.length()?;
            }
            let pel = self.usize_len()?;
            pending += pel;
            for _ in 0..pel {
                self.take(16 + 8)?;
                self.length()?;
            }
            let n_consumers = self.usize_len()?;
            consumers += n_consumers;
            for _ in 0..n_consumers {
                self.string()?;
                self.take(8)?;
                if t >= 21 {
                    self.take(8)?;
                }
                let owned = self.usize_len()?;
                self.take(owned.saturating_mul(16))?;
            }
        }
        Ok(Detail::Stream {
            nodes,
            length,
            groups,
            consumers,
            pending,
        })
    }
}

/// liblzf decompression; `None` on malformed input or a size mismatch.
pub fn lzf_decompress(input: &[u8], expected_len: usize) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(expected_len);
    let mut i = 0;
    while i < input.len() {
        let ctrl = usize::from(input[i]);
        i += 1;
        if ctrl < 32 {
            let run = input.get(i..i + ctrl + 1)?;
            out.extend_from_slice(run);
            i += ctrl + 1;
        } else {
            let mut len = ctrl >> 5;
            if len == 7 {
                len += usize::from(*input.get(i)?);
                i += 1;
            }
            let back = ((ctrl & 0x1F) << 8) + usize::from(*input.get(i)?) + 1;
            i += 1;
            let start = out.len().checked_sub(back)?;
            for k in 0..len + 2 {
                let b = out[start + k];
                out.push(b);
            }
        }
        if out.len() > expected_len {
            return None;
        }
    }
    (out.len() == expected_len).then_some(out)
}

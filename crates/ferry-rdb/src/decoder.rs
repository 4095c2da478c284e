//! The streaming decoder: bytes in, [`Item`]s out, no IO.
//!
//! The caller owns a `BytesMut`, appends whatever bytes arrive, and calls
//! [`Decoder::decode`] until it returns `Ok(None)` (need more bytes). The
//! decoder removes from the front of the buffer exactly the bytes it has
//! turned into items; the caller must only ever *append* to the buffer
//! between calls (bytes the decoder still holds as a value in progress
//! stay where they are).
//!
//! ```text
//! "REDIS0011" | "VALKEY080"
//! { AUX | SELECTDB | RESIZEDB | FUNCTION2 | MODULE_AUX | SLOT_INFO
//!   | [EXPIRETIME_MS] [IDLE|FREQ] [KEY_META] type key value } *
//! EOF(0xFF) crc64(8 bytes LE, over everything before it)
//! ```
//!
//! Memory: a key's value is held until complete, unless its encoding passes
//! [`DecodeOptions::big_value_bytes`]; then it is released in chunks of about
//! that size ([`Item::BigKeyStart`] / [`Item::BigKeyChunk`] / [`Item::BigKeyEnd`]).
//! Lengths read from the file never drive an allocation beyond the bytes that
//! actually arrived, except LZF output, which is bounded by the compressed size.

use std::collections::VecDeque;

use bytes::{Buf, Bytes, BytesMut};

use crate::crc64::Crc64;
use crate::cursor::{Cur, Limits, R, Stop};
use crate::error::RdbError;
use crate::item::{Flavor, Item, Key, KeyHeader, ModuleId};
use crate::types::{self, Layout};
use crate::value::{Status, ValueState};

/// Decoder settings.
#[derive(Debug, Clone)]
pub struct DecodeOptions {
    /// A value whose encoding is bigger than this is delivered in chunks of
    /// about this many bytes (lists, sets, zsets, hashes, streams). Default 8 MiB.
    pub big_value_bytes: usize,
    /// Largest single string accepted. Default 4 GiB.
    pub max_string_bytes: u64,
    /// Compute and check the CRC64 trailer (a zero checksum always means
    /// "not computed"). Default true; false skips the hashing entirely.
    pub verify_checksum: bool,
}

impl Default for DecodeOptions {
    fn default() -> Self {
        DecodeOptions {
            big_value_bytes: 8 << 20,
            max_string_bytes: 4 << 30,
            verify_checksum: true,
        }
    }
}

/// Per-key opcodes seen before the key's type byte.
#[derive(Debug, Default)]
struct Pending {
    start: Option<u64>,
    expire_ms: Option<i64>,
    idle: Option<u64>,
    freq: Option<u8>,
    meta: Option<Bytes>,
}

/// Streaming RDB decoder. See the module docs for the buffer contract.
pub struct Decoder {
    opts: DecodeOptions,
    header: Option<(Flavor, u16)>,
    offset: u64,
    crc: Crc64,
    /// Consumed bytes not yet hashed: small records are gathered so the
    /// checksum runs over large blocks (its per-call cost dominates otherwise).
    crc_pending: Vec<u8>,
    db: u64,
    pending: Pending,
    value: Option<Box<ValueState>>,
    out: VecDeque<Item>,
    done: bool,
    failed: Option<RdbError>,
}

impl Default for Decoder {
    fn default() -> Self {
        Decoder::new(DecodeOptions::default())
    }
}

impl Decoder {
    /// A decoder at the start of a file.
    pub fn new(opts: DecodeOptions) -> Decoder {
        Decoder {
            opts,
            header: None,
            offset: 0,
            crc: Crc64::new(),
            crc_pending: Vec::new(),
            db: 0,
            pending: Pending::default(),
            value: None,
            out: VecDeque::new(),
            done: false,
            failed: None,
        }
    }

    /// Magic and version, once the header was read.
    pub fn header(&self) -> Option<(Flavor, u16)> {
        self.header
    }

    /// Bytes consumed from the input so far (the file offset of the buffer's first byte).
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// True once the EOF marker and checksum were read and all items returned.
    pub fn is_done(&self) -> bool {
        self.done && self.out.is_empty()
    }

    /// Call when the input has ended: an error unless the file was complete.
    pub fn finish(&self, remaining: &[u8]) -> Result<(), RdbError> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        if self.done {
            return Ok(());
        }
        let context = match (&self.header, &self.value) {
            (None, _) => "the header".to_string(),
            (_, Some(v)) => format!(
                "the value of key {:?} (db {}, starting at offset {})",
                String::from_utf8_lossy(&v.header.key),
                v.header.db,
                v.header.offset
            ),
            _ => "a record".to_string(),
        };
        Err(RdbError::Truncated {
            offset: self.offset + remaining.len() as u64,
            context,
        })
    }

    /// Decode the next item from `src`, removing the bytes it used.
    /// `Ok(None)`: more input is needed (or the file is done: see [`Decoder::is_done`]).
    pub fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Item>, RdbError> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        loop {
            if let Some(item) = self.out.pop_front() {
                return Ok(Some(item));
            }
            if self.done {
                return Ok(None);
            }
            // A whole string key comes back directly, not through `out`:
            // two fewer moves of an `Item` per key (`out` is empty here).
            let r = if self.header.is_none() {
                self.read_header(src).map(|()| None)
            } else if self.value.is_some() {
                self.value_step(src).map(|()| None)
            } else {
                self.record(src)
            };
            match r {
                Ok(Some(item)) => return Ok(Some(item)),
                Ok(None) => {}
                Err(Stop::Incomplete) => return Ok(None),
                Err(Stop::Fail(e)) => {
                    self.failed = Some(e.clone());
                    return Err(e);
                }
            }
        }
    }

    fn limits(&self) -> Limits {
        Limits {
            max_string: self.opts.max_string_bytes,
        }
    }

    fn consume(&mut self, src: &mut BytesMut, n: usize) -> Bytes {
        const BLOCK: usize = 64 << 10;
        let chunk = src.split_to(n).freeze();
        self.offset += n as u64;
        if !self.opts.verify_checksum {
            return chunk;
        }
        if chunk.len() >= BLOCK / 4 {
            self.flush_crc();
            self.crc.update(&chunk);
        } else {
            if self.crc_pending.capacity() == 0 {
                self.crc_pending.reserve(BLOCK);
            }
            self.crc_pending.extend_from_slice(&chunk);
            if self.crc_pending.len() >= BLOCK {
                self.flush_crc();
            }
        }
        chunk
    }

    fn flush_crc(&mut self) {
        if !self.crc_pending.is_empty() {
            self.crc.update(&self.crc_pending);
            self.crc_pending.clear();
        }
    }

    fn read_header(&mut self, src: &mut BytesMut) -> R<()> {
        let Some(h) = src.get(..9) else {
            // A wrong magic is reported as soon as its first bytes differ.
            let n = src.len();
            if !b"REDIS".starts_with(&src[..n.min(5)]) && !b"VALKEY".starts_with(&src[..n.min(6)]) {
                return Err(RdbError::BadMagic {
                    found: String::from_utf8_lossy(src).into_owned(),
                }
                .into());
            }
            return Err(Stop::Incomplete);
        };
        let digits = |d: &[u8]| -> Option<u16> {
            if d.iter().all(u8::is_ascii_digit) {
                std::str::from_utf8(d).ok()?.parse().ok()
            } else {
                None
            }
        };
        let parsed = if &h[..5] == b"REDIS" {
            digits(&h[5..9]).map(|v| (Flavor::Redis, v))
        } else if &h[..6] == b"VALKEY" {
            digits(&h[6..9]).map(|v| (Flavor::Valkey, v))
        } else {
            None
        };
        let Some((flavor, version)) = parsed else {
            return Err(RdbError::BadMagic {
                found: String::from_utf8_lossy(h).into_owned(),
            }
            .into());
        };
        let ok = match flavor {
            Flavor::Redis => (1..=14).contains(&version),
            Flavor::Valkey => version == 80,
        };
        if !ok {
            return Err(RdbError::UnsupportedVersion { flavor, version }.into());
        }
        self.consume(src, 9);
        self.header = Some((flavor, version));
        self.out.push_back(Item::Header { flavor, version });
        Ok(())
    }

    /// One record; a whole string key is returned, everything else goes to `out`.
    fn record(&mut self, src: &mut BytesMut) -> R<Option<Item>> {
        let (flavor, version) = self.header.unwrap_or((Flavor::Redis, 0));
        let mut cur = Cur {
            buf: src,
            pos: 0,
            base: self.offset,
            limits: self.limits(),
        };
        let start = cur.offset();
        let op = cur.u8()?;
        match op {
            0xFF => {
                if version < 5 {
                    self.consume(src, 1);
                    self.done = true;
                    self.out.push_back(Item::End {
                        checksum: 0,
                        verified: false,
                    });
                    return Ok(None);
                }
                let stored = cur.u64_le()?;
                self.consume(src, 1);
                self.flush_crc();
                self.crc_pending = Vec::new();
                let computed = self.crc.value();
                let _ = src.split_to(8);
                self.offset += 8;
                if stored != 0 && self.opts.verify_checksum && stored != computed {
                    return Err(RdbError::Checksum {
                        offset: start + 1,
                        expected: stored,
                        computed,
                    }
                    .into());
                }
                self.done = true;
                self.out.push_back(Item::End {
                    checksum: stored,
                    verified: stored != 0 && self.opts.verify_checksum,
                });
            }
            0xFE => {
                let db = cur.len()?;
                let n = cur.pos;
                self.consume(src, n);
                self.db = db;
                self.out.push_back(Item::SelectDb { db });
            }
            0xFD => {
                let secs = u32::from_le_bytes(cur.array()?);
                let n = cur.pos;
                self.consume(src, n);
                self.pending.start.get_or_insert(start);
                self.pending.expire_ms = Some(i64::from(secs) * 1000);
            }
            0xFC => {
                let ms = cur.i64_le()?;
                let n = cur.pos;
                self.consume(src, n);
                self.pending.start.get_or_insert(start);
                self.pending.expire_ms = Some(ms);
            }
            0xFB => {
                let db_size = cur.len()?;
                let expires_size = cur.len()?;
                let n = cur.pos;
                self.consume(src, n);
                self.out.push_back(Item::ResizeDb {
                    db_size,
                    expires_size,
                });
            }
            0xFA => {
                let k = cur.string()?;
                let v = cur.string()?;
                let n = cur.pos;
                let chunk = self.consume(src, n);
                self.out.push_back(Item::Aux {
                    key: k.mat(&chunk),
                    value: v.mat(&chunk),
                });
            }
            0xF9 => {
                let f = cur.u8()?;
                let n = cur.pos;
                self.consume(src, n);
                self.pending.start.get_or_insert(start);
                self.pending.freq = Some(f);
            }
            0xF8 => {
                let idle = cur.len()?;
                let n = cur.pos;
                self.consume(src, n);
                self.pending.start.get_or_insert(start);
                self.pending.idle = Some(idle);
            }
            0xF7 => {
                let id = cur.len()?;
                let when_op = cur.len()?;
                if when_op != 2 {
                    return Err(cur.corrupt(format!(
                        "module aux 'when' opcode {when_op}, expected 2 (UINT)"
                    )));
                }
                let when = cur.len()?;
                let raw_start = cur.pos;
                cur.skip_module_values()?;
                let n = cur.pos;
                let chunk = self.consume(src, n);
                self.out.push_back(Item::ModuleAux {
                    module: ModuleId(id),
                    when,
                    raw: chunk.slice(raw_start..),
                });
            }
            0xF5 => {
                let code = cur.string()?;
                let n = cur.pos;
                let chunk = self.consume(src, n);
                self.out.push_back(Item::Function {
                    code: code.mat(&chunk),
                });
            }
            0xF4 => {
                let slot = cur.len()?;
                let keys = cur.len()?;
                let expires = cur.len()?;
                let n = cur.pos;
                self.consume(src, n);
                self.out.push_back(Item::SlotInfo {
                    slot,
                    keys,
                    expires,
                });
            }
            0xF3 if flavor == Flavor::Valkey => {
                let job = cur.string()?;
                let n = cur.len()?;
                let mut ranges = Vec::with_capacity(n.min(1024) as usize);
                for _ in 0..n {
                    ranges.push((cur.len()?, cur.len()?));
                }
                let used = cur.pos;
                let chunk = self.consume(src, used);
                self.out.push_back(Item::SlotImport {
                    job: job.mat(&chunk),
                    ranges,
                });
            }
            0xF3 if flavor == Flavor::Redis && version >= 13 => {
                let n = cur.len()?;
                for _ in 0..n {
                    cur.take(4)?;
                    cur.skip_module_values()?;
                }
                let used = cur.pos;
                let chunk = self.consume(src, used);
                self.pending.start.get_or_insert(start);
                self.pending.meta = Some(chunk.slice(1..));
            }
            t => {
                let Some((layout, kind)) = types::layout(t, flavor, version) else {
                    return Err(RdbError::UnknownType {
                        offset: start,
                        byte: t,
                        flavor,
                        version,
                    }
                    .into());
                };
                let key = cur.string()?;
                let key_end = cur.pos;
                // Fast path: a string value already complete in the buffer.
                let value = if layout == Layout::String {
                    match cur.string() {
                        Ok(v) => Some(v),
                        Err(Stop::Incomplete) => None,
                        Err(e) => return Err(e),
                    }
                } else {
                    None
                };
                let value_end = cur.pos;
                let pending = std::mem::take(&mut self.pending);
                // One split for a whole string key; a key whose value goes
                // on in a `ValueState` releases only its prefix.
                let chunk = self.consume(src, if value.is_some() { value_end } else { key_end });
                let header = KeyHeader {
                    db: self.db,
                    key: key.mat(&chunk),
                    rdb_type: t,
                    kind,
                    expire_ms: pending.expire_ms,
                    idle: pending.idle,
                    freq: pending.freq,
                    meta: pending.meta,
                    offset: pending.start.unwrap_or(start),
                };
                match value {
                    Some(v) => {
                        let value = crate::Value::String(v.mat(&chunk));
                        // The chunk itself becomes `raw`: one reference
                        // count round trip fewer than slicing it.
                        let mut raw = chunk;
                        raw.advance(key_end);
                        return Ok(Some(Item::Key(Key { header, value, raw })));
                    }
                    None => self.value = Some(Box::new(ValueState::new(header, layout))),
                }
            }
        }
        Ok(None)
    }

    fn value_step(&mut self, src: &mut BytesMut) -> R<()> {
        let Some(mut vs) = self.value.take() else {
            return Ok(());
        };
        if src.len() < vs.pos {
            return Err(RdbError::BufferContract { expected: vs.pos }.into());
        }
        let base = self.offset;
        let limits = self.limits();
        let status = {
            let buf: &[u8] = src;
            vs.advance(
                |pos| Cur {
                    buf,
                    pos,
                    base,
                    limits,
                },
                self.opts.big_value_bytes,
            )
        };
        let status = match status {
            Ok(s) => s,
            Err(e) => {
                self.value = Some(vs);
                return Err(e);
            }
        };
        let chunk = self.consume(src, vs.pos);
        if matches!(status, Status::Done) && vs.is_empty_collection() {
            self.out.push_back(Item::EmptyKey(vs.header));
            return Ok(());
        }
        let value = vs.take_value(&chunk);
        vs.pos = 0;
        match status {
            Status::Done => {
                if vs.big {
                    self.out.push_back(Item::BigKeyChunk(value));
                    self.out.push_back(Item::BigKeyEnd);
                } else {
                    self.out.push_back(Item::Key(Key {
                        header: vs.header,
                        value,
                        raw: chunk,
                    }));
                }
            }
            Status::Flush => {
                if !vs.big {
                    vs.big = true;
                    self.out.push_back(Item::BigKeyStart(vs.header.clone()));
                }
                self.out.push_back(Item::BigKeyChunk(value));
                self.value = Some(vs);
            }
        }
        Ok(())
    }
}

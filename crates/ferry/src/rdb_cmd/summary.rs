//! `--format summary`: what a dump holds, at a glance.
//!
//! Sizes are the encoded (serialized) sizes in the file, a good proxy for
//! the memory a key needs and the bytes a migration moves.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};
use std::io::Write;

use anyhow::Result;
use ferry_rdb::{Item, KeyHeader, Kind};

use super::json::text;

/// Key or aux bytes as a JSON string literal (as `--format json` writes them):
/// control characters and invalid UTF-8 never reach the terminal raw.
fn quoted(bytes: &[u8]) -> String {
    serde_json::Value::String(text(bytes)).to_string()
}
use super::{PerDb, Sink, value_bytes};

#[derive(Default, Clone, Copy)]
struct Tally {
    keys: u64,
    bytes: u64,
    elements: u64,
}

/// Accumulates counts while decoding.
pub(crate) struct Summary {
    top: usize,
    header: String,
    aux: Vec<(String, String)>,
    by_kind: BTreeMap<Kind, Tally>,
    by_encoding: BTreeMap<u8, u64>,
    by_db: PerDb,
    expires: u64,
    functions: u64,
    module_aux: Vec<String>,
    /// Smallest of the biggest keys on top (min-heap of size `top`).
    biggest: BinaryHeap<Reverse<(u64, u64, String, &'static str)>>,
    big: Option<(KeyHeader, u64, u64)>,
    checksum: String,
}

impl Summary {
    pub(crate) fn new(top: usize) -> Self {
        Summary {
            top,
            header: String::new(),
            aux: Vec::new(),
            by_kind: BTreeMap::new(),
            by_encoding: BTreeMap::new(),
            by_db: PerDb::new(),
            expires: 0,
            functions: 0,
            module_aux: Vec::new(),
            biggest: BinaryHeap::new(),
            big: None,
            checksum: String::new(),
        }
    }

    fn key(&mut self, h: &KeyHeader, bytes: u64, elements: u64) {
        let t = self.by_kind.entry(h.kind).or_default();
        t.keys += 1;
        t.bytes += bytes;
        t.elements += elements;
        *self.by_encoding.entry(h.rdb_type).or_default() += 1;
        *self.by_db.entry(h.db).or_default() += 1;
        if h.expire_ms.is_some() {
            self.expires += 1;
        }
        if self.top > 0 {
            self.biggest
                .push(Reverse((bytes, h.db, quoted(&h.key), h.kind.name())));
            if self.biggest.len() > self.top {
                self.biggest.pop();
            }
        }
    }
}

impl Sink for Summary {
    fn item(&mut self, item: Item, _out: &mut dyn Write) -> Result<()> {
        match item {
            Item::Header { flavor, version } => {
                self.header = format!("{flavor} RDB version {version}")
            }
            Item::Aux { key, value } => self.aux.push((quoted(&key), quoted(&value))),
            Item::Function { .. } => self.functions += 1,
            Item::ModuleAux { module, .. } => self.module_aux.push(module.name()),
            Item::Key(k) => {
                let n = k.value.len() as u64;
                self.key(&k.header, k.raw.len() as u64, n);
            }
            Item::BigKeyStart(h) => self.big = Some((h, 0, 0)),
            Item::BigKeyChunk(v) => {
                if let Some((_, bytes, n)) = &mut self.big {
                    *bytes += value_bytes(&v) as u64;
                    *n += v.len() as u64;
                }
            }
            Item::BigKeyEnd => {
                if let Some((h, bytes, n)) = self.big.take() {
                    self.key(&h, bytes, n);
                }
            }
            Item::End { checksum, verified } => {
                self.checksum = if verified {
                    format!("crc64 {checksum:016x} (verified)")
                } else {
                    "not present (rdbchecksum no)".into()
                };
            }
            _ => {}
        }
        Ok(())
    }

    fn finish(&mut self, out: &mut dyn Write) -> Result<()> {
        writeln!(out, "{}", self.header)?;
        writeln!(out, "checksum: {}", self.checksum)?;
        for (k, v) in &self.aux {
            writeln!(out, "aux {k}: {v}")?;
        }
        let total: u64 = self.by_kind.values().map(|t| t.keys).sum();
        let bytes: u64 = self.by_kind.values().map(|t| t.bytes).sum();
        writeln!(
            out,
            "keys: {total} ({} with a TTL), {bytes} bytes encoded",
            self.expires
        )?;
        writeln!(
            out,
            "\nper type:\n  {:<8} {:>10} {:>14} {:>14}",
            "type", "keys", "elements", "bytes"
        )?;
        for (k, t) in &self.by_kind {
            writeln!(
                out,
                "  {:<8} {:>10} {:>14} {:>14}",
                k.name(),
                t.keys,
                t.elements,
                t.bytes
            )?;
        }
        writeln!(out, "\nper encoding (RDB type byte): ")?;
        for (t, n) in &self.by_encoding {
            writeln!(out, "  type {t:>3}: {n}")?;
        }
        writeln!(out, "\nper db:")?;
        for (db, n) in &self.by_db {
            writeln!(out, "  db {db}: {n} keys")?;
        }
        if self.functions > 0 {
            writeln!(out, "\nfunction libraries: {}", self.functions)?;
        }
        if !self.module_aux.is_empty() {
            writeln!(out, "\nmodule aux data: {}", self.module_aux.join(", "))?;
        }
        let mut top: Vec<_> = std::mem::take(&mut self.biggest).into_sorted_vec();
        top.truncate(self.top);
        if !top.is_empty() {
            writeln!(out, "\nbiggest keys:")?;
            for Reverse((bytes, db, key, kind)) in top {
                writeln!(out, "  {bytes:>12} bytes  db {db}  {kind:<6} {key}")?;
            }
        }
        Ok(())
    }
}

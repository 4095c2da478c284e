//! `--format json`: one object per key per line.
//!
//! ```text
//! {"db":0,"key":"k","type":"hash","expire_at_ms":1700000000000,"value":{"f":"v"},
//!  "field_expire_at_ms":{"f":1700000000000}}
//! ```
//! Strings are binary safe: valid UTF-8 is kept (a backslash is written as
//! two), every byte that is not valid UTF-8 becomes `\xNN` — the same escape
//! `redis-cli` uses, so the text maps back to the exact bytes. A big key is
//! printed as several objects with a `"chunk"` number, each holding a part of
//! the value. Scores that are infinite are the strings `"inf"`/`"-inf"`.

use std::io::Write;

use anyhow::Result;
use ferry_rdb::{Item, KeyHeader, Stream, Value};
use serde_json::{Map, Value as J, json};

use super::Sink;

/// Escape bytes as described in the module docs.
pub(crate) fn text(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    for chunk in bytes.utf8_chunks() {
        for c in chunk.valid().chars() {
            if c == '\\' {
                out.push_str("\\\\");
            } else {
                out.push(c);
            }
        }
        for b in chunk.invalid() {
            out.push_str(&format!("\\x{b:02x}"));
        }
    }
    out
}

fn score(v: f64) -> J {
    if v.is_finite() {
        json!(v)
    } else {
        J::String(if v > 0.0 { "inf" } else { "-inf" }.into())
    }
}

fn stream_json(s: &Stream) -> J {
    let entries: Vec<J> = s
        .entries
        .iter()
        .map(|e| {
            let fields: Vec<J> = e
                .fields
                .iter()
                .map(|(f, v)| json!([text(f), text(v)]))
                .collect();
            json!({"id": e.id.to_string(), "fields": fields})
        })
        .collect();
    let mut o = Map::new();
    o.insert("entries".into(), J::Array(entries));
    if let Some(m) = &s.meta {
        o.insert("length".into(), json!(m.length));
        o.insert("last_id".into(), json!(m.last_id.to_string()));
        if let Some(v) = m.first_id {
            o.insert("first_id".into(), json!(v.to_string()));
        }
        if let Some(v) = m.max_deleted_id {
            o.insert("max_deleted_id".into(), json!(v.to_string()));
        }
        if let Some(v) = m.entries_added {
            o.insert("entries_added".into(), json!(v));
        }
        let groups: Vec<J> = m
            .groups
            .iter()
            .map(|g| {
                json!({
                    "name": text(&g.name),
                    "last_id": g.last_id.to_string(),
                    "entries_read": g.entries_read,
                    "consumers": g.consumers.iter().map(|c| json!({
                        "name": text(&c.name),
                        "seen_time_ms": c.seen_time,
                        "active_time_ms": c.active_time,
                    })).collect::<Vec<_>>(),
                    "pending": g.pending.iter().map(|p| json!({
                        "id": p.id.to_string(),
                        "consumer": p.consumer.as_deref().map(text),
                        "delivery_time_ms": p.delivery_time,
                        "delivery_count": p.delivery_count,
                    })).collect::<Vec<_>>(),
                })
            })
            .collect();
        o.insert("groups".into(), J::Array(groups));
    }
    J::Object(o)
}

/// The JSON of a value, plus hash field TTLs if any.
pub(crate) fn value_json(v: &Value) -> (J, Option<J>) {
    let strings = |l: &[bytes::Bytes]| J::Array(l.iter().map(|e| J::String(text(e))).collect());
    match v {
        Value::String(s) => (J::String(text(s)), None),
        Value::List(l) | Value::Set(l) => (strings(l), None),
        Value::SortedSet(z) => (
            J::Array(z.iter().map(|(m, s)| json!([text(m), score(*s)])).collect()),
            None,
        ),
        Value::Hash(h) => {
            let mut fields = Map::new();
            let mut ttls = Map::new();
            for f in h {
                let name = text(&f.field);
                if let Some(t) = f.expire_ms {
                    ttls.insert(name.clone(), json!(t));
                }
                fields.insert(name, J::String(text(&f.value)));
            }
            let ttls = (!ttls.is_empty()).then_some(J::Object(ttls));
            (J::Object(fields), ttls)
        }
        Value::Stream(s) => (stream_json(s), None),
        Value::Module(m) => (
            json!({"module": m.id.name(), "encoding_version": m.id.version()}),
            None,
        ),
    }
}

/// Writes one JSON line per key (or per chunk of a big key).
#[derive(Default)]
pub(crate) struct JsonWriter {
    big: Option<(KeyHeader, u64)>,
}

fn line(
    out: &mut dyn Write,
    h: &KeyHeader,
    v: &Value,
    chunk: Option<u64>,
    raw_len: Option<usize>,
) -> Result<()> {
    let (value, ttls) = value_json(v);
    let mut o = Map::new();
    o.insert("db".into(), json!(h.db));
    o.insert("key".into(), J::String(text(&h.key)));
    o.insert("type".into(), json!(h.kind.name()));
    o.insert("rdb_type".into(), json!(h.rdb_type));
    if let Some(t) = h.expire_ms {
        o.insert("expire_at_ms".into(), json!(t));
    }
    if let Some(c) = chunk {
        o.insert("chunk".into(), json!(c));
    }
    if let Some(n) = raw_len {
        o.insert("encoded_bytes".into(), json!(n));
    }
    o.insert("value".into(), value);
    if let Some(t) = ttls {
        o.insert("field_expire_at_ms".into(), t);
    }
    serde_json::to_writer(&mut *out, &J::Object(o))?;
    out.write_all(b"\n")?;
    Ok(())
}

impl Sink for JsonWriter {
    fn item(&mut self, item: Item, out: &mut dyn Write) -> Result<()> {
        match item {
            Item::Key(k) => line(out, &k.header, &k.value, None, Some(k.raw.len()))?,
            Item::BigKeyStart(h) => self.big = Some((h, 0)),
            Item::BigKeyChunk(v) => {
                if let Some((h, n)) = &mut self.big {
                    line(out, h, &v, Some(*n), None)?;
                    *n += 1;
                }
            }
            Item::BigKeyEnd => self.big = None,
            _ => {}
        }
        Ok(())
    }

    fn finish(&mut self, _out: &mut dyn Write) -> Result<()> {
        Ok(())
    }
}

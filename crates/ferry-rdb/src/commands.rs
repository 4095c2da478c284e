//! Turn decoded keys into the Redis commands that recreate them.
//!
//! | value | commands |
//! |---|---|
//! | string | `SET k v` |
//! | list / set / zset / hash | `RPUSH` / `SADD` / `ZADD` / `HSET` in batches bounded by element count and bytes |
//! | hash field TTLs | `HPEXPIREAT k <ms> FIELDS n f…` per distinct expiry |
//! | stream | `XADD k <id> f v…` per entry, `XSETID`, `XGROUP CREATE`, `XGROUP CREATECONSUMER`, `XCLAIM … FORCE JUSTID` per pending entry |
//! | module | `RESTORE k 0 <payload>` (needs the module on the target) |
//! | key TTL | `PEXPIREAT k <ms>` after the value |
//!
//! With [`CommandOptions::replace`], aggregates start with `DEL k` so the
//! result does not depend on what the target held. Big keys arrive in chunks:
//! call [`CommandBuilder::chunk`] for each, then [`CommandBuilder::finish_key`].

use bytes::Bytes;

use crate::item::{
    HashField, KeyHeader, Kind, Stream, StreamId, StreamMeta, Value, restore_payload,
};

/// One command: its arguments, name first.
pub type Command = Vec<Bytes>;

/// How commands are built.
#[derive(Debug, Clone)]
pub struct CommandOptions {
    /// Most elements per command (RPUSH/SADD/ZADD/HSET).
    pub max_elements: usize,
    /// Most argument bytes per command (a single element may exceed it).
    pub max_bytes: usize,
    /// Emit `DEL k` before rebuilding an aggregate (and `REPLACE` on `RESTORE`).
    pub replace: bool,
    /// RDB version stamped on module `RESTORE` payloads.
    pub payload_version: u16,
    /// Include `ENTRIESADDED`/`MAXDELETEDID`/`ENTRIESREAD` (Redis 7.0+ targets).
    pub stream_v2_args: bool,
}

impl Default for CommandOptions {
    fn default() -> Self {
        CommandOptions {
            max_elements: 512,
            max_bytes: 1 << 20,
            replace: false,
            payload_version: 9,
            stream_v2_args: true,
        }
    }
}

/// What could not be expressed as commands (reported by the caller, never dropped silently).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unsupported {
    /// The key.
    pub key: Bytes,
    /// Why.
    pub reason: String,
}

/// Builds commands for keys, whole or chunked.
#[derive(Debug, Clone, Default)]
pub struct CommandBuilder {
    /// Options.
    pub opts: CommandOptions,
}

fn b(s: &'static str) -> Bytes {
    Bytes::from_static(s.as_bytes())
}

fn num(v: impl itoa::Integer) -> Bytes {
    Bytes::copy_from_slice(itoa::Buffer::new().format(v).as_bytes())
}

fn id(id: StreamId) -> Bytes {
    Bytes::from(id.to_string())
}

/// Shortest text that parses back to exactly `v` (`inf`, `-inf` for infinities).
pub fn score_text(v: f64) -> Bytes {
    if v == f64::INFINITY {
        b("inf")
    } else if v == f64::NEG_INFINITY {
        b("-inf")
    } else {
        Bytes::from(format!("{v}"))
    }
}

impl CommandBuilder {
    /// A builder with these options.
    pub fn new(opts: CommandOptions) -> Self {
        CommandBuilder { opts }
    }

    /// Commands for a whole key (value and TTL). `raw` is the serialized value (for modules).
    pub fn whole(
        &self,
        h: &KeyHeader,
        value: &Value,
        raw: &[u8],
        out: &mut dyn FnMut(Command),
    ) -> Result<(), Unsupported> {
        if let Value::Module(_) = value {
            let mut c = vec![
                b("RESTORE"),
                h.key.clone(),
                h.expire_ms.map_or_else(|| b("0"), num),
                restore_payload(h.rdb_type, raw, self.opts.payload_version),
            ];
            if h.expire_ms.is_some() {
                c.push(b("ABSTTL"));
            }
            if self.opts.replace {
                c.push(b("REPLACE"));
            }
            out(c);
            return Ok(());
        }
        self.chunk(h, value, true, out)?;
        self.finish_key(h, out);
        Ok(())
    }

    /// Commands for one chunk of a key's value (`first`: the first chunk).
    pub fn chunk(
        &self,
        h: &KeyHeader,
        value: &Value,
        first: bool,
        out: &mut dyn FnMut(Command),
    ) -> Result<(), Unsupported> {
        let k = &h.key;
        if first && self.opts.replace && h.kind != Kind::String {
            out(vec![b("DEL"), k.clone()]);
        }
        match value {
            Value::String(v) => out(vec![b("SET"), k.clone(), v.clone()]),
            Value::List(items) => self.batched("RPUSH", k, items.iter().map(|e| [e.clone()]), out),
            Value::Set(items) => self.batched("SADD", k, items.iter().map(|e| [e.clone()]), out),
            Value::SortedSet(items) => self.zset(k, items, out),
            Value::Hash(fields) => {
                self.batched(
                    "HSET",
                    k,
                    fields.iter().map(|f| [f.field.clone(), f.value.clone()]),
                    out,
                );
                self.field_ttls(k, fields, out);
            }
            Value::Stream(s) => self.stream(h, s, first, out)?,
            Value::Module(_) => {
                return Err(Unsupported {
                    key: k.clone(),
                    reason: "module value too big to carry whole".into(),
                });
            }
        }
        Ok(())
    }

    /// Commands after the last chunk (the key's TTL).
    pub fn finish_key(&self, h: &KeyHeader, out: &mut dyn FnMut(Command)) {
        if let Some(ms) = h.expire_ms {
            out(vec![b("PEXPIREAT"), h.key.clone(), num(ms)]);
        }
    }

    fn batched<const N: usize>(
        &self,
        cmd: &'static str,
        key: &Bytes,
        elems: impl Iterator<Item = [Bytes; N]>,
        out: &mut dyn FnMut(Command),
    ) {
        let mut c: Command = Vec::new();
        let mut bytes = 0;
        let mut n = 0;
        for e in elems {
            if c.is_empty() {
                c.reserve(2 + N * self.opts.max_elements.min(64));
                c.push(b(cmd));
                c.push(key.clone());
            }
            for a in e {
                bytes += a.len();
                c.push(a);
            }
            n += 1;
            if n >= self.opts.max_elements || bytes >= self.opts.max_bytes {
                out(std::mem::take(&mut c));
                n = 0;
                bytes = 0;
            }
        }
        if !c.is_empty() {
            out(c);
        }
    }

    /// `ZADD` batches. A `-0` score survives only in a skiplist-encoded zset,
    /// and a zset starts as a listpack: such members are first added with a
    /// placeholder score, then set to `-0` once the chunk's other members are
    /// in, so the sign is kept exactly when the target ends with a skiplist
    /// (as when a server loads the dump: small zsets become listpacks there).
    fn zset(&self, k: &Bytes, items: &[(Bytes, f64)], out: &mut dyn FnMut(Command)) {
        let neg_zero = |s: f64| s == 0.0 && s.is_sign_negative();
        self.batched(
            "ZADD",
            k,
            items.iter().map(|(m, s)| {
                let s = if neg_zero(*s) { b("1") } else { score_text(*s) };
                [s, m.clone()]
            }),
            out,
        );
        self.batched(
            "ZADD",
            k,
            items
                .iter()
                .filter(|(_, s)| neg_zero(*s))
                .map(|(m, _)| [b("-0"), m.clone()]),
            out,
        );
    }

    fn field_ttls(&self, key: &Bytes, fields: &[HashField], out: &mut dyn FnMut(Command)) {
        let mut with_ttl: Vec<(i64, &Bytes)> = fields
            .iter()
            .filter_map(|f| f.expire_ms.map(|t| (t, &f.field)))
            .collect();
        if with_ttl.is_empty() {
            return;
        }
        with_ttl.sort_by_key(|(t, _)| *t);
        for group in with_ttl.chunk_by(|a, b| a.0 == b.0) {
            for part in group.chunks(self.opts.max_elements.max(1)) {
                let mut c = vec![
                    b("HPEXPIREAT"),
                    key.clone(),
                    num(part[0].0),
                    b("FIELDS"),
                    num(part.len()),
                ];
                c.extend(part.iter().map(|(_, f)| (*f).clone()));
                out(c);
            }
        }
    }

    fn stream(
        &self,
        h: &KeyHeader,
        s: &Stream,
        first: bool,
        out: &mut dyn FnMut(Command),
    ) -> Result<(), Unsupported> {
        let k = &h.key;
        // Pending entries whose stream entry was deleted ("ghosts") can only be
        // recreated by adding a placeholder at that id, claiming it, then deleting
        // it. That needs all entries at hand, i.e. a whole (not chunked) stream.
        let mut ghosts: Vec<StreamId> = Vec::new();
        if let (true, Some(meta)) = (first, &s.meta) {
            for g in &meta.groups {
                for p in &g.pending {
                    if s.entries.binary_search_by(|e| e.id.cmp(&p.id)).is_err() {
                        ghosts.push(p.id);
                    }
                }
            }
            ghosts.sort();
            ghosts.dedup();
        }
        let xadd = |id_: StreamId, fields: &[(Bytes, Bytes)], out: &mut dyn FnMut(Command)| {
            let mut c = Vec::with_capacity(5 + fields.len() * 2);
            c.push(b("XADD"));
            c.push(k.clone());
            c.push(id(id_));
            if fields.is_empty() {
                c.extend([b("ferry-placeholder"), b("")]);
            }
            for (f, v) in fields {
                c.push(f.clone());
                c.push(v.clone());
            }
            out(c);
        };
        let mut gi = ghosts.iter().peekable();
        for e in &s.entries {
            while let Some(g) = gi.next_if(|g| **g < e.id) {
                xadd(*g, &[], out);
            }
            xadd(e.id, &e.fields, out);
        }
        for g in gi {
            xadd(*g, &[], out);
        }
        if let Some(meta) = &s.meta {
            let had_entries = !s.entries.is_empty() || !ghosts.is_empty() || !first;
            // What the decoder found in the nodes (all chunks); for a whole
            // value built by hand, its entries.
            let found = match meta.entries_found {
                Some(n) => Some((meta.first_found, n)),
                None => first.then(|| (s.entries.first().map(|e| e.id), s.entries.len() as u64)),
            };
            self.stream_tail(k, meta, had_entries, found, &ghosts, out)?;
        }
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    fn stream_tail(
        &self,
        k: &Bytes,
        meta: &StreamMeta,
        had_entries: bool,
        found: Option<(Option<StreamId>, u64)>,
        ghosts: &[StreamId],
        out: &mut dyn FnMut(Command),
    ) -> Result<(), Unsupported> {
        let mut problems = Vec::new();
        let zero = StreamId::default();
        let empty = !had_entries && meta.length == 0;
        if let Some((_, live)) = found
            && live != meta.length
        {
            problems.push(format!(
                "stream length {} in the dump differs from its {live} entries (Redis loading \
                 the dump reports XLEN {}, Valkey 9 refuses it; commands give {live})",
                meta.length, meta.length
            ));
        }
        let derived = Derived::of(meta, found.map(|(first, _)| first));
        if empty && meta.last_id != zero {
            // An empty stream: create it by adding an entry at last_id and trimming it away.
            out(vec![
                b("XADD"),
                k.clone(),
                b("MAXLEN"),
                b("0"),
                id(meta.last_id),
                b("f"),
                b("v"),
            ]);
        } else if empty && meta.groups.is_empty() {
            // Empty, last id 0-0, no groups: a group created with MKSTREAM
            // and destroyed leaves exactly that.
            let tmp = b("ferry-tmp-group");
            out(vec![
                b("XGROUP"),
                b("CREATE"),
                k.clone(),
                tmp.clone(),
                b("$"),
                b("MKSTREAM"),
            ]);
            out(vec![b("XGROUP"), b("DESTROY"), k.clone(), tmp]);
        }
        for g in &meta.groups {
            let mut c = vec![
                b("XGROUP"),
                b("CREATE"),
                k.clone(),
                g.name.clone(),
                id(g.last_id),
            ];
            if empty && meta.last_id == zero {
                c.push(b("MKSTREAM"));
            }
            // RDB 9 streams carry no counter: a server loading them estimates it.
            let read = g.entries_read.or_else(|| {
                derived
                    .filter(|_| meta.entries_added.is_none())?
                    .entries_read(g.last_id)
            });
            if self.opts.stream_v2_args
                && let Some(r) = read
            {
                c.extend([b("ENTRIESREAD"), num(r)]);
            }
            out(c);
            for consumer in &g.consumers {
                out(vec![
                    b("XGROUP"),
                    b("CREATECONSUMER"),
                    k.clone(),
                    g.name.clone(),
                    consumer.name.clone(),
                ]);
            }
            for p in &g.pending {
                let Some(owner) = &p.consumer else {
                    problems.push(format!(
                        "pending entry {} of group {:?} has no consumer",
                        p.id,
                        String::from_utf8_lossy(&g.name)
                    ));
                    continue;
                };
                out(vec![
                    b("XCLAIM"),
                    k.clone(),
                    g.name.clone(),
                    owner.clone(),
                    b("0"),
                    id(p.id),
                    b("TIME"),
                    num(p.delivery_time),
                    b("RETRYCOUNT"),
                    num(p.delivery_count),
                    b("FORCE"),
                    b("JUSTID"),
                ]);
            }
        }
        // Placeholders before the first live entry go by XTRIM, which (unlike
        // XDEL) leaves the max deleted id alone: pending entries of trimmed
        // entries are common, and a server's own load has no tombstone for them.
        let first_live = found.and_then(|(f, _)| f);
        let (head, mid): (Vec<StreamId>, Vec<StreamId>) = ghosts
            .iter()
            .partition(|g| first_live.is_none_or(|f| **g < f));
        if !head.is_empty() {
            out(match first_live {
                Some(f) => vec![b("XTRIM"), k.clone(), b("MINID"), id(f)],
                None => vec![b("XTRIM"), k.clone(), b("MAXLEN"), b("0")],
            });
        }
        if !mid.is_empty() {
            if meta.max_deleted_id.is_none() && self.opts.stream_v2_args {
                problems.push(format!(
                    "pending entries of deleted entries up to {} leave that max deleted id \
                     (a server loading this RDB 9 stream shows 0-0)",
                    mid[mid.len() - 1]
                ));
            }
            let mut c = vec![b("XDEL"), k.clone()];
            c.extend(mid.iter().map(|g| id(*g)));
            out(c);
        }
        let (added, maxdel) = match derived {
            Some(d) => (d.entries_added, d.max_deleted),
            None => (
                meta.entries_added.unwrap_or(0),
                meta.max_deleted_id.unwrap_or(zero),
            ),
        };
        // XSETID refuses a counter below the entries the key holds.
        let added = added.max(found.map_or(0, |(_, live)| live));
        if meta.last_id != zero || (self.opts.stream_v2_args && (added != 0 || maxdel != zero)) {
            let mut c = vec![b("XSETID"), k.clone(), id(meta.last_id)];
            if self.opts.stream_v2_args && (meta.entries_added.is_some() || derived.is_some()) {
                c.extend([b("ENTRIESADDED"), num(added), b("MAXDELETEDID"), id(maxdel)]);
            }
            out(c);
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(Unsupported {
                key: k.clone(),
                reason: problems.join("; "),
            })
        }
    }
}

/// Stream counters as a server holds them after loading the dump: stored
/// (RDB type 19+), or derived as a server derives them for older types.
#[derive(Debug, Clone, Copy)]
struct Derived {
    length: u64,
    last: StreamId,
    first: StreamId,
    max_deleted: StreamId,
    entries_added: u64,
}

impl Derived {
    /// `first_live`: the first live entry when the whole stream is at hand
    /// (`Some(None)`: it has none); needed only for types without counters.
    fn of(m: &StreamMeta, first_live: Option<Option<StreamId>>) -> Option<Derived> {
        let max = StreamId {
            ms: u64::MAX,
            seq: u64::MAX,
        };
        match (m.entries_added, m.max_deleted_id, m.first_id) {
            (Some(added), Some(maxdel), Some(first)) => Some(Derived {
                length: m.length,
                last: m.last_id,
                first,
                max_deleted: maxdel,
                entries_added: added,
            }),
            // Type 15: added = length, no tombstones, first = first live entry.
            _ => first_live.map(|f| Derived {
                length: m.length,
                last: m.last_id,
                first: f.unwrap_or(max),
                max_deleted: StreamId::default(),
                entries_added: m.length,
            }),
        }
    }

    /// The entries-read counter a server derives for a group whose last
    /// delivered id is `id` (None: it cannot tell, the group reports nil).
    fn entries_read(&self, id: StreamId) -> Option<u64> {
        let zero = StreamId::default();
        if self.entries_added == 0 {
            return Some(0);
        }
        if self.length == 0 && id <= self.last {
            return Some(self.entries_added);
        }
        if id != zero && id < self.max_deleted {
            return None;
        }
        if id == self.last {
            return Some(self.entries_added);
        }
        if id > self.last {
            return None;
        }
        if self.max_deleted == zero || self.max_deleted < self.first {
            if id < self.first {
                return Some(self.entries_added - self.length.min(self.entries_added));
            }
            if id == self.first {
                return Some(self.entries_added - self.length.min(self.entries_added) + 1);
            }
        }
        None
    }
}

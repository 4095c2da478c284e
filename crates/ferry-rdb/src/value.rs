//! Resumable decoding of one key's value.
//!
//! A value is read one *unit* at a time (its count header, one element, one
//! quicklist or stream node, the stream tail). A unit is either complete or
//! not started, so when input runs out the decoder keeps every finished unit
//! and resumes at the next one: no byte is parsed twice except inside a single
//! unfinished unit. Strings are kept as ranges of the pending buffer and
//! turned into `Bytes` slices of it (no copy) when the value, or a chunk of a
//! big value, is released.

use bytes::Bytes;

use crate::container::{ContainerError, Entry};
use crate::cursor::{Cur, R, S, Stop};
use crate::error::RdbError;
use crate::item::{HashField, KeyHeader, ModuleId, ModuleValue, Stream, StreamId, Value};
use crate::stream;
use crate::types::Layout;
use crate::{listpack::Listpack, ziplist::Ziplist};

/// Where a value's decoding stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Start,
    /// Counted elements left.
    Elements(u64),
    /// Quicklist nodes left.
    Nodes(u64),
    /// Stream listpack nodes left.
    StreamNodes(u64),
    /// Stream metadata and consumer groups (progress in `ValueState::tail`).
    StreamTail,
    /// Module value opcodes, one per unit.
    ModuleOps,
    Done,
}

/// Elements read so far (ranges of the pending buffer, or owned bytes).
#[derive(Debug, Default)]
struct Acc {
    /// List/set members, hash field/value pairs, zset members, stream field/value pairs.
    strs: Vec<S>,
    /// Zset scores, one per member.
    scores: Vec<f64>,
    /// Hash field expiries, one per pair (empty if the type has none).
    ttls: Vec<Option<i64>>,
    /// Stream entries: id and number of field/value pairs in `strs`.
    entries: Vec<(StreamId, usize)>,
    /// Stream tail.
    meta: Option<crate::item::StreamMeta>,
}

/// What [`ValueState::advance`] reached.
pub(crate) enum Status {
    /// The value is complete: release it.
    Done,
    /// The buffered part passed the big-value threshold: release a chunk.
    Flush,
}

/// Decoding state of the current key's value.
pub(crate) struct ValueState {
    pub header: KeyHeader,
    layout: Layout,
    /// Bytes of the pending buffer that belong to this value and have been parsed.
    pub pos: usize,
    phase: Phase,
    acc: Acc,
    min_expire: i64,
    module: Option<ModuleId>,
    /// Progress through a stream's tail.
    tail: Option<Box<stream::Tail>>,
    /// Bytes held in owned strings (decompressed or integer text) since the last release.
    owned: usize,
    /// At least one chunk was released (the key is delivered as a big key).
    pub big: bool,
    /// Stream nodes in the value (a stored length with no node is refused).
    stream_nodes: u64,
    /// Live stream entries seen so far, over every chunk.
    stream_live: u64,
    /// The first live stream entry seen.
    stream_first: Option<StreamId>,
}

/// Cap on preallocation driven by counts read from the file.
const PREALLOC: u64 = 1024;

impl ValueState {
    pub(crate) fn new(header: KeyHeader, layout: Layout) -> ValueState {
        ValueState {
            header,
            layout,
            pos: 0,
            phase: Phase::Start,
            acc: Acc::default(),
            min_expire: 0,
            module: None,
            tail: None,
            owned: 0,
            big: false,
            stream_nodes: 0,
            stream_live: 0,
            stream_first: None,
        }
    }

    /// Decode units until the value is done, a chunk is due, or input runs out.
    pub(crate) fn advance<'b>(
        &mut self,
        mk: impl Fn(usize) -> Cur<'b>,
        big_at: usize,
    ) -> R<Status> {
        loop {
            if self.phase == Phase::Done {
                return Ok(Status::Done);
            }
            if self.pos + self.owned >= big_at && self.chunkable() {
                return Ok(Status::Flush);
            }
            let mut cur = mk(self.pos);
            let before = self.acc.strs.len();
            self.unit(&mut cur)?;
            self.pos = cur.pos;
            self.owned += self.acc.strs[before.min(self.acc.strs.len())..]
                .iter()
                .map(|s| match s {
                    S::O(b) => b.len(),
                    S::R(..) => 0,
                })
                .sum::<usize>();
        }
    }

    fn chunkable(&self) -> bool {
        matches!(
            self.phase,
            Phase::Elements(_) | Phase::Nodes(_) | Phase::StreamNodes(_)
        ) && (!self.acc.strs.is_empty() || !self.acc.entries.is_empty())
    }

    fn container_err(&self, at: u64, source: ContainerError) -> Stop {
        Stop::Fail(RdbError::Container {
            offset: at,
            rdb_type_name: self.layout.name(),
            source,
        })
    }

    /// Push every entry of a ziplist/listpack held in string `s`.
    fn push_entries<'e>(
        acc: &mut Vec<S>,
        cur: &Cur,
        s: &S,
        iter: impl Iterator<Item = Result<Entry<'e>, ContainerError>>,
    ) -> Result<usize, ContainerError> {
        let mut n = 0;
        for e in iter {
            acc.push(match e? {
                Entry::Str(piece) => cur.sub(s, piece),
                Entry::Int(v) => S::int(v),
            });
            n += 1;
        }
        Ok(n)
    }

    fn unit(&mut self, cur: &mut Cur) -> R<()> {
        use Layout::*;
        match self.phase {
            Phase::Start => match self.layout {
                String => {
                    let s = cur.string()?;
                    self.acc.strs.push(s);
                    self.phase = Phase::Done;
                }
                Strings | ZsetText | ZsetBinary | Hash | HashMetaPreGa | ValkeyHash2 => {
                    self.start_count(cur.len()?);
                }
                HashMeta => {
                    let min = cur.i64_le()?;
                    let n = cur.len()?;
                    self.min_expire = min;
                    self.start_count(n);
                }
                Quicklist | Quicklist2 => {
                    let n = cur.len()?;
                    self.phase = if n == 0 { Phase::Done } else { Phase::Nodes(n) };
                }
                Stream(_) => {
                    let n = cur.len()?;
                    self.stream_nodes = n;
                    self.phase = if n == 0 {
                        Phase::StreamTail
                    } else {
                        Phase::StreamNodes(n)
                    };
                }
                Module => {
                    self.module = Some(ModuleId(cur.len()?));
                    self.phase = Phase::ModuleOps;
                }
                HashListpackEx => {
                    let _min = cur.i64_le()?;
                    self.container(cur)?;
                }
                _ => self.container(cur)?,
            },
            Phase::Elements(left) => {
                self.element(cur)?;
                self.phase = if left <= 1 {
                    Phase::Done
                } else {
                    Phase::Elements(left - 1)
                };
            }
            Phase::Nodes(left) => {
                self.quicklist_node(cur)?;
                self.phase = if left <= 1 {
                    Phase::Done
                } else {
                    Phase::Nodes(left - 1)
                };
            }
            Phase::StreamNodes(left) => {
                let at = cur.offset();
                let key = cur.string()?;
                let lp = cur.string()?;
                let key_bytes = cur.bytes_of(&key);
                let Ok(node_id) = <&[u8; 16]>::try_from(key_bytes) else {
                    return Err(Stop::Fail(RdbError::Corrupt {
                        offset: at,
                        what: format!("stream node key of {} bytes, expected 16", key_bytes.len()),
                    }));
                };
                let master = StreamId::from_be_bytes(node_id);
                let lp_bytes = cur.bytes_of(&lp);
                let acc = &mut self.acc;
                let (live, first) = (&mut self.stream_live, &mut self.stream_first);
                let res = stream::parse_node(master, lp_bytes, &mut |id, pairs| {
                    *live += 1;
                    first.get_or_insert(id);
                    for (f, v) in pairs {
                        for e in [f, v] {
                            acc.strs.push(match e {
                                Entry::Str(p) => cur.sub(&lp, p),
                                Entry::Int(i) => S::int(*i),
                            });
                        }
                    }
                    acc.entries.push((id, pairs.len()));
                });
                if let Err(e) = res {
                    return Err(self.container_err(at, e));
                }
                self.phase = if left <= 1 {
                    Phase::StreamTail
                } else {
                    Phase::StreamNodes(left - 1)
                };
            }
            Phase::StreamTail => {
                let Stream(t) = self.layout else {
                    return Err(cur.corrupt("internal: stream tail outside a stream"));
                };
                let tail = self
                    .tail
                    .get_or_insert_with(|| Box::new(stream::Tail::new(t)));
                if tail.unit(cur)? {
                    let meta = self.tail.take().map(|t| {
                        let mut m = t.finish();
                        m.entries_found = Some(self.stream_live);
                        m.first_found = self.stream_first;
                        m
                    });
                    if let Some(m) = &meta
                        && m.length > 0
                        && self.stream_nodes == 0
                    {
                        // As a server loading the dump: "Stream length
                        // inconsistent with rax entries".
                        return Err(
                            cur.corrupt(format!("stream length {} but no entry node", m.length))
                        );
                    }
                    self.acc.meta = meta;
                    self.phase = Phase::Done;
                }
            }
            Phase::ModuleOps => {
                if cur.module_value()? {
                    self.phase = Phase::Done;
                }
            }
            Phase::Done => {}
        }
        Ok(())
    }

    fn start_count(&mut self, n: u64) {
        let cap = n.min(PREALLOC) as usize;
        let per = match self.layout {
            Layout::Strings | Layout::ZsetText | Layout::ZsetBinary => 1,
            _ => 2,
        };
        self.acc.strs.reserve(cap * per);
        self.phase = if n == 0 {
            Phase::Done
        } else {
            Phase::Elements(n)
        };
    }

    /// One counted element (all parts read before anything is recorded).
    fn element(&mut self, cur: &mut Cur) -> R<()> {
        use Layout::*;
        match self.layout {
            Strings => self.acc.strs.push(cur.string()?),
            ZsetText => {
                let m = cur.string()?;
                let s = cur.double_str()?;
                self.acc.strs.push(m);
                self.acc.scores.push(s);
            }
            ZsetBinary => {
                let m = cur.string()?;
                let s = cur.f64_le()?;
                self.acc.strs.push(m);
                self.acc.scores.push(s);
            }
            Hash => {
                let f = cur.string()?;
                let v = cur.string()?;
                self.acc.strs.push(f);
                self.acc.strs.push(v);
            }
            HashMetaPreGa | HashMeta => {
                let at = cur.offset();
                let ttl = cur.len()?;
                let f = cur.string()?;
                let v = cur.string()?;
                let exp = if ttl == 0 {
                    None
                } else if self.layout == HashMeta {
                    let t = i64::try_from(ttl)
                        .ok()
                        .and_then(|t| t.checked_add(self.min_expire))
                        .and_then(|t| t.checked_sub(1));
                    match t {
                        Some(t) => Some(t),
                        None => {
                            return Err(Stop::Fail(RdbError::Corrupt {
                                offset: at,
                                what: format!("hash field TTL {ttl} overflows"),
                            }));
                        }
                    }
                } else {
                    Some(ttl as i64)
                };
                self.acc.strs.push(f);
                self.acc.strs.push(v);
                self.acc.ttls.push(exp);
            }
            ValkeyHash2 => {
                let f = cur.string()?;
                let v = cur.string()?;
                let e = cur.i64_le()?;
                self.acc.strs.push(f);
                self.acc.strs.push(v);
                self.acc.ttls.push(if e == -1 { None } else { Some(e) });
            }
            _ => return Err(cur.corrupt("internal: element of a non-counted type")),
        }
        Ok(())
    }

    fn quicklist_node(&mut self, cur: &mut Cur) -> R<()> {
        let at = cur.offset();
        let container = if self.layout == Layout::Quicklist2 {
            cur.len()?
        } else {
            2
        };
        let s = cur.string()?;
        let bytes = cur.bytes_of(&s);
        let res = match (self.layout, container) {
            (Layout::Quicklist2, 1) => {
                self.acc.strs.push(s.clone());
                Ok(1)
            }
            (Layout::Quicklist2, 2) => Listpack::new(bytes)
                .and_then(|lp| Self::push_entries(&mut self.acc.strs, cur, &s, lp)),
            (Layout::Quicklist, _) => Ziplist::new(bytes)
                .and_then(|zl| Self::push_entries(&mut self.acc.strs, cur, &s, zl)),
            (_, c) => {
                return Err(Stop::Fail(RdbError::Corrupt {
                    offset: at,
                    what: format!("quicklist node container {c}, expected 1 (plain) or 2 (packed)"),
                }));
            }
        };
        match res {
            // A server skips empty nodes (and the key, if all are empty).
            Ok(_) => Ok(()),
            Err(e) => Err(self.container_err(at, e)),
        }
    }

    /// A value held in one packed string (zipmap, ziplist, intset, listpack).
    fn container(&mut self, cur: &mut Cur) -> R<()> {
        use Layout::*;
        let at = cur.offset();
        let s = cur.string()?;
        let bytes = cur.bytes_of(&s);
        let strs = &mut self.acc.strs;
        let res: Result<(), ContainerError> = (|| {
            match self.layout {
                Zipmap => {
                    for pair in crate::zipmap::Zipmap::new(bytes)? {
                        let (f, v) = pair?;
                        strs.push(cur.sub(&s, f));
                        strs.push(cur.sub(&s, v));
                    }
                }
                Intset => {
                    for v in crate::intset::Intset::new(bytes)? {
                        strs.push(S::int(v));
                    }
                }
                ListZiplist | HashZiplist => {
                    Self::push_entries(strs, cur, &s, Ziplist::new(bytes)?)?;
                }
                SetListpack | HashListpack => {
                    Self::push_entries(strs, cur, &s, Listpack::new(bytes)?)?;
                }
                ZsetZiplist | ZsetListpack => {
                    let mut member = true;
                    let mut push = |e: Entry| -> Result<(), ContainerError> {
                        if member {
                            strs.push(match e {
                                Entry::Str(p) => cur.sub(&s, p),
                                Entry::Int(v) => S::int(v),
                            });
                        } else {
                            self.acc.scores.push(score(e)?);
                        }
                        member = !member;
                        Ok(())
                    };
                    if self.layout == ZsetZiplist {
                        for e in Ziplist::new(bytes)? {
                            push(e?)?;
                        }
                    } else {
                        for e in Listpack::new(bytes)? {
                            push(e?)?;
                        }
                    }
                }
                HashListpackExPreGa | HashListpackEx => {
                    for (i, e) in Listpack::new(bytes)?.enumerate() {
                        let e = e?;
                        if i % 3 == 2 {
                            let t = e.as_int().ok_or_else(|| ContainerError {
                                container: "listpack",
                                at: 0,
                                what: "hash field TTL is not an integer".into(),
                            })?;
                            self.acc.ttls.push(if t == 0 { None } else { Some(t) });
                        } else {
                            strs.push(match e {
                                Entry::Str(p) => cur.sub(&s, p),
                                Entry::Int(v) => S::int(v),
                            });
                        }
                    }
                }
                _ => {}
            }
            Ok(())
        })();
        res.map_err(|e| self.container_err(at, e))?;
        let pairs = matches!(
            self.layout,
            Zipmap | HashZiplist | HashListpack | HashListpackEx | HashListpackExPreGa
        );
        if (pairs && self.acc.strs.len() % 2 != 0)
            || (matches!(self.layout, ZsetZiplist | ZsetListpack)
                && self.acc.strs.len() != self.acc.scores.len())
            || (!self.acc.ttls.is_empty() && self.acc.ttls.len() * 2 != self.acc.strs.len())
        {
            return Err(Stop::Fail(RdbError::Corrupt {
                offset: at,
                what: format!("{} holds an odd number of entries", self.layout.name()),
            }));
        }
        self.phase = Phase::Done;
        Ok(())
    }

    /// True when the finished value is a collection with no element, which
    /// a server skips when loading (streams and modules excepted).
    pub(crate) fn is_empty_collection(&self) -> bool {
        !self.big
            && self.phase == Phase::Done
            && matches!(
                self.header.kind,
                crate::Kind::List | crate::Kind::Set | crate::Kind::SortedSet | crate::Kind::Hash
            )
            && self.acc.strs.is_empty()
    }

    /// Release what was read as a [`Value`]; `chunk` holds the bytes `0..pos` of the buffer.
    pub(crate) fn take_value(&mut self, chunk: &Bytes) -> Value {
        let acc = std::mem::take(&mut self.acc);
        self.owned = 0;
        let mut strs = acc.strs.into_iter().map(|s| s.mat(chunk));
        match self.header.kind {
            crate::Kind::String => Value::String(strs.next().unwrap_or_default()),
            crate::Kind::List => Value::List(strs.collect()),
            crate::Kind::Set => Value::Set(strs.collect()),
            crate::Kind::SortedSet => Value::SortedSet(strs.zip(acc.scores).collect()),
            crate::Kind::Hash => {
                let mut out = Vec::with_capacity(acc.ttls.len().max(1));
                let mut ttls = acc.ttls.into_iter();
                while let (Some(field), Some(value)) = (strs.next(), strs.next()) {
                    out.push(HashField {
                        field,
                        value,
                        expire_ms: ttls.next().flatten(),
                    });
                }
                Value::Hash(out)
            }
            crate::Kind::Stream => {
                let entries = acc
                    .entries
                    .into_iter()
                    .map(|(id, n)| crate::StreamEntry {
                        id,
                        fields: (0..n)
                            .filter_map(|_| Some((strs.next()?, strs.next()?)))
                            .collect(),
                    })
                    .collect();
                Value::Stream(Box::new(Stream {
                    entries,
                    meta: acc.meta,
                }))
            }
            crate::Kind::Module => Value::Module(ModuleValue {
                id: self.module.unwrap_or(ModuleId(0)),
            }),
        }
    }
}

/// A zset score stored as a ziplist/listpack entry.
fn score(e: Entry) -> Result<f64, ContainerError> {
    match e {
        Entry::Int(v) => Ok(v as f64),
        Entry::Str(t) => std::str::from_utf8(t)
            .ok()
            .and_then(|t| t.parse::<f64>().ok())
            .ok_or_else(|| ContainerError {
                container: "zset",
                at: 0,
                what: format!("score {:?} is not a number", String::from_utf8_lossy(t)),
            }),
    }
}

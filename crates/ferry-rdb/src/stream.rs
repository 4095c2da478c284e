//! Streams: the entries inside each listpack node, and the tail of metadata
//! and consumer groups (RDB types 15, 19, 21, 26, 27).
//!
//! ```text
//! node listpack:  count deleted n_master f1..fn 0        (master entry)
//!                 flags ms_delta seq_delta                (each entry)
//!                   [n (field value)*n]   unless flags&2 (SAMEFIELDS): values only
//!                 lp_count                                (entry length, for reverse walks)
//!                 flags&1 = deleted
//! tail:  len length, len last.ms, len last.seq
//!        type>=19: first id, max deleted id (2 lens each), len entries_added
//!        len groups; per group: name, last id (2 lens), type>=19: len entries_read
//!          len pel; per entry: 16-byte BE id, 8-byte LE delivery ms, len count
//!          len consumers; per consumer: name, 8-byte LE seen ms,
//!            type>=21: 8-byte LE active ms; len n; n x 16-byte id (owned PEL)
//!          type>=27: len n; n x 16-byte id (NACK zone, unowned)
//!        type>=26: len duration, len max, len n; n x (string iid, 16-byte id),
//!                  len iids_added, len iids_duplicates
//! ```
//! The layout of types 26 and 27 (Redis 8.6 / 8.8) comes from secondary
//! sources; no server available here writes them.

use bytes::Bytes;

use crate::container::{ContainerError, Entry};
use crate::cursor::{Cur, R, Stop};
use crate::error::RdbError;
use crate::item::{PendingEntry, StreamConsumer, StreamGroup, StreamId, StreamIdmp, StreamMeta};
use crate::listpack::Listpack;

const FLAG_DELETED: i64 = 1;
const FLAG_SAMEFIELDS: i64 = 2;

fn bad(what: impl Into<String>) -> ContainerError {
    ContainerError {
        container: "stream listpack",
        at: 0,
        what: what.into(),
    }
}

fn int(e: Option<Result<Entry, ContainerError>>, what: &str) -> Result<i64, ContainerError> {
    match e {
        Some(Ok(e)) => e
            .as_int()
            .ok_or_else(|| bad(format!("{what} is not an integer"))),
        Some(Err(e)) => Err(e),
        None => Err(bad(format!("ends before {what}"))),
    }
}

fn entry<'a>(
    e: Option<Result<Entry<'a>, ContainerError>>,
    what: &str,
) -> Result<Entry<'a>, ContainerError> {
    match e {
        Some(r) => r,
        None => Err(bad(format!("ends before {what}"))),
    }
}

fn count(v: i64, what: &str) -> Result<usize, ContainerError> {
    usize::try_from(v).map_err(|_| bad(format!("negative {what} {v}")))
}

/// Field/value pairs of one stream entry.
pub(crate) type Pairs<'a> = [(Entry<'a>, Entry<'a>)];

/// Decode one node; `each` gets every live entry's id and field/value pairs.
pub(crate) fn parse_node<'a>(
    master: StreamId,
    lp: &'a [u8],
    each: &mut dyn FnMut(StreamId, &Pairs<'a>),
) -> Result<(), ContainerError> {
    let mut it = Listpack::new(lp)?.peekable();
    let _count = int(it.next(), "entry count")?;
    let _deleted = int(it.next(), "deleted count")?;
    let n_master = count(int(it.next(), "master field count")?, "master field count")?;
    let mut master_fields = Vec::with_capacity(n_master.min(256));
    for _ in 0..n_master {
        master_fields.push(entry(it.next(), "master field")?);
    }
    if int(it.next(), "master terminator")? != 0 {
        return Err(bad("master entry terminator is not 0"));
    }
    let mut pairs: Vec<(Entry, Entry)> = Vec::new();
    while it.peek().is_some() {
        let flags = int(it.next(), "entry flags")?;
        let ms = int(it.next(), "entry ms delta")?;
        let seq = int(it.next(), "entry seq delta")?;
        let id = StreamId {
            ms: master.ms.wrapping_add(ms as u64),
            seq: master.seq.wrapping_add(seq as u64),
        };
        pairs.clear();
        if flags & FLAG_SAMEFIELDS != 0 {
            for f in &master_fields {
                pairs.push((*f, entry(it.next(), "entry value")?));
            }
        } else {
            let n = count(int(it.next(), "entry field count")?, "entry field count")?;
            for _ in 0..n {
                let f = entry(it.next(), "entry field")?;
                let v = entry(it.next(), "entry value")?;
                pairs.push((f, v));
            }
        }
        let _lp_count = int(it.next(), "entry lp-count")?;
        if flags & FLAG_DELETED == 0 {
            each(id, &pairs);
        }
    }
    Ok(())
}

/// Where the decoding of a stream's tail stands. Every step reads one small
/// unit (a header, one pending entry, one consumer id), so a tail with
/// millions of pending entries arriving in pieces is never re-read.
#[derive(Debug)]
pub(crate) struct Tail {
    t: u8,
    step: Step,
    meta: StreamMeta,
    groups_left: u64,
    group: Option<StreamGroup>,
    /// Pending entries, consumers, NACK ids or idmp entries left in the current list.
    left: u64,
    /// Ids left in the current consumer's own PEL.
    consumer_pel_left: u64,
    consumer: Option<Bytes>,
    idmp: Option<StreamIdmp>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    Meta,
    GroupHeader,
    Pel,
    ConsumerCount,
    ConsumerHeader,
    ConsumerPel,
    NackCount,
    Nack,
    IdmpHeader,
    IdmpEntry,
    IdmpCounters,
    Done,
}

impl Tail {
    /// A tail of a type-`t` stream, about to be read.
    pub(crate) fn new(t: u8) -> Tail {
        Tail {
            t,
            step: Step::Meta,
            meta: StreamMeta::default(),
            groups_left: 0,
            group: None,
            left: 0,
            consumer_pel_left: 0,
            consumer: None,
            idmp: None,
        }
    }

    /// The decoded tail once [`Tail::unit`] returned true.
    pub(crate) fn finish(self) -> StreamMeta {
        self.meta
    }

    fn after_groups(&mut self) -> Step {
        if self.groups_left > 0 {
            Step::GroupHeader
        } else if self.t >= 26 {
            Step::IdmpHeader
        } else {
            Step::Done
        }
    }

    fn group_done(&mut self) -> Step {
        if let Some(g) = self.group.take() {
            self.meta.groups.push(g);
        }
        self.after_groups()
    }

    /// Read one unit; true when the tail is complete.
    pub(crate) fn unit(&mut self, cur: &mut Cur) -> R<bool> {
        let t = self.t;
        self.step = match self.step {
            Step::Meta => {
                let length = cur.len()?;
                let last_id = cur.len_id()?;
                let v2 = if t >= 19 {
                    Some((cur.len_id()?, cur.len_id()?, cur.len()?))
                } else {
                    None
                };
                let groups = cur.len()?;
                self.meta.length = length;
                self.meta.last_id = last_id;
                if let Some((first, maxdel, added)) = v2 {
                    self.meta.first_id = Some(first);
                    self.meta.max_deleted_id = Some(maxdel);
                    self.meta.entries_added = Some(added);
                }
                self.groups_left = groups;
                self.after_groups()
            }
            Step::GroupHeader => {
                let name = cur.string_bytes()?;
                let last_id = cur.len_id()?;
                // -1 (stored as 2^64-1) means "unknown" (SCG_INVALID_ENTRIES_READ).
                let entries_read = if t >= 19 {
                    Some(cur.len()?).filter(|&n| n != u64::MAX)
                } else {
                    None
                };
                let n_pel = cur.len()?;
                self.groups_left -= 1;
                self.group = Some(StreamGroup {
                    name,
                    last_id,
                    entries_read,
                    pending: Vec::with_capacity(n_pel.min(1024) as usize),
                    consumers: Vec::new(),
                });
                self.left = n_pel;
                if n_pel > 0 {
                    Step::Pel
                } else {
                    Step::ConsumerCount
                }
            }
            Step::Pel => {
                let id = cur.raw_id()?;
                let delivery_time = cur.u64_le()?;
                let delivery_count = cur.len()?;
                if let Some(g) = &mut self.group {
                    g.pending.push(PendingEntry {
                        id,
                        delivery_time,
                        delivery_count,
                        consumer: None,
                    });
                }
                self.left -= 1;
                if self.left > 0 {
                    Step::Pel
                } else {
                    Step::ConsumerCount
                }
            }
            Step::ConsumerCount => {
                self.left = cur.len()?;
                self.next_consumer()
            }
            Step::ConsumerHeader => {
                let name = cur.string_bytes()?;
                let seen_time = cur.u64_le()?;
                let active_time = if t >= 21 { Some(cur.u64_le()?) } else { None };
                let n = cur.len()?;
                if let Some(g) = &mut self.group {
                    g.consumers.push(StreamConsumer {
                        name: name.clone(),
                        seen_time,
                        active_time,
                    });
                }
                self.left -= 1;
                self.consumer = Some(name);
                self.consumer_pel_left = n;
                if n > 0 {
                    Step::ConsumerPel
                } else {
                    self.next_consumer()
                }
            }
            Step::ConsumerPel => {
                let at = cur.offset();
                let id = cur.raw_id()?;
                let Some(g) = &mut self.group else {
                    return Err(cur.corrupt("internal: consumer outside a group"));
                };
                match g.pending.binary_search_by(|p| p.id.cmp(&id)) {
                    Ok(i) => g.pending[i].consumer = self.consumer.clone(),
                    Err(_) => {
                        return Err(Stop::Fail(RdbError::Corrupt {
                            offset: at,
                            what: format!("consumer PEL id {id} is not in the group PEL"),
                        }));
                    }
                }
                self.consumer_pel_left -= 1;
                if self.consumer_pel_left > 0 {
                    Step::ConsumerPel
                } else {
                    self.next_consumer()
                }
            }
            Step::NackCount => {
                self.left = cur.len()?;
                if self.left > 0 {
                    Step::Nack
                } else {
                    self.group_done()
                }
            }
            Step::Nack => {
                cur.raw_id()?;
                self.left -= 1;
                if self.left > 0 {
                    Step::Nack
                } else {
                    self.group_done()
                }
            }
            Step::IdmpHeader => {
                let duration = cur.len()?;
                let max_entries = cur.len()?;
                let n = cur.len()?;
                self.idmp = Some(StreamIdmp {
                    duration,
                    max_entries,
                    entries: Vec::with_capacity(n.min(1024) as usize),
                    iids_added: 0,
                    iids_duplicates: 0,
                });
                self.left = n;
                if n > 0 {
                    Step::IdmpEntry
                } else {
                    Step::IdmpCounters
                }
            }
            Step::IdmpEntry => {
                let iid = cur.string_bytes()?;
                let id = cur.raw_id()?;
                if let Some(i) = &mut self.idmp {
                    i.entries.push((iid, id));
                }
                self.left -= 1;
                if self.left > 0 {
                    Step::IdmpEntry
                } else {
                    Step::IdmpCounters
                }
            }
            Step::IdmpCounters => {
                let added = cur.len()?;
                let dups = cur.len()?;
                if let Some(mut i) = self.idmp.take() {
                    i.iids_added = added;
                    i.iids_duplicates = dups;
                    self.meta.idmp = Some(i);
                }
                Step::Done
            }
            Step::Done => Step::Done,
        };
        Ok(self.step == Step::Done)
    }

    fn next_consumer(&mut self) -> Step {
        if self.left > 0 {
            Step::ConsumerHeader
        } else if self.t >= 27 {
            Step::NackCount
        } else {
            self.group_done()
        }
    }
}

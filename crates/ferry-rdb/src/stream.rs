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

/// Decode the metadata and groups that follow the nodes of a type-`t` stream.
pub(crate) fn parse_tail(cur: &mut Cur, t: u8) -> R<StreamMeta> {
    let mut meta = StreamMeta {
        length: cur.len()?,
        last_id: cur.len_id()?,
        ..StreamMeta::default()
    };
    if t >= 19 {
        meta.first_id = Some(cur.len_id()?);
        meta.max_deleted_id = Some(cur.len_id()?);
        meta.entries_added = Some(cur.len()?);
    }
    let n_groups = cur.len()?;
    for _ in 0..n_groups {
        meta.groups.push(group(cur, t)?);
    }
    if t >= 26 {
        let duration = cur.len()?;
        let max_entries = cur.len()?;
        let n = cur.len()?;
        let mut entries = Vec::with_capacity(n.min(1024) as usize);
        for _ in 0..n {
            let iid = cur.string_bytes()?;
            entries.push((iid, cur.raw_id()?));
        }
        meta.idmp = Some(StreamIdmp {
            duration,
            max_entries,
            entries,
            iids_added: cur.len()?,
            iids_duplicates: cur.len()?,
        });
    }
    Ok(meta)
}

fn group(cur: &mut Cur, t: u8) -> R<StreamGroup> {
    let name = cur.string_bytes()?;
    let last_id = cur.len_id()?;
    // -1 (stored as 2^64-1) means "unknown" (SCG_INVALID_ENTRIES_READ).
    let entries_read = if t >= 19 {
        Some(cur.len()?).filter(|&n| n != u64::MAX)
    } else {
        None
    };
    let n_pel = cur.len()?;
    let mut pending = Vec::with_capacity(n_pel.min(1024) as usize);
    for _ in 0..n_pel {
        let id = cur.raw_id()?;
        let delivery_time = cur.u64_le()?;
        let delivery_count = cur.len()?;
        pending.push(PendingEntry {
            id,
            delivery_time,
            delivery_count,
            consumer: None,
        });
    }
    let n_consumers = cur.len()?;
    let mut consumers = Vec::with_capacity(n_consumers.min(1024) as usize);
    for _ in 0..n_consumers {
        let name: Bytes = cur.string_bytes()?;
        let seen_time = cur.u64_le()?;
        let active_time = if t >= 21 { Some(cur.u64_le()?) } else { None };
        let n = cur.len()?;
        for _ in 0..n {
            let at = cur.offset();
            let id = cur.raw_id()?;
            match pending.binary_search_by(|p| p.id.cmp(&id)) {
                Ok(i) => pending[i].consumer = Some(name.clone()),
                Err(_) => {
                    return Err(Stop::Fail(RdbError::Corrupt {
                        offset: at,
                        what: format!("consumer PEL id {id} is not in the group PEL"),
                    }));
                }
            }
        }
        consumers.push(StreamConsumer {
            name,
            seen_time,
            active_time,
        });
    }
    if t >= 27 {
        let n = cur.len()?;
        for _ in 0..n {
            cur.raw_id()?;
        }
    }
    Ok(StreamGroup {
        name,
        last_id,
        entries_read,
        pending,
        consumers,
    })
}

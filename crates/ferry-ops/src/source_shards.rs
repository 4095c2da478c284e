//! The shards of a cluster *source*: `CLUSTER SHARDS` (fallback
//! `CLUSTER SLOTS`) replies into [`SourceShard`]s (slot ranges, master,
//! replicas), and the record of them ferry keeps across restarts
//! ([`ShardRecord`], `state_dir/shards.json`): names, matching after a
//! failover, the partition a process takes.
//!
//! ```text
//! name      shard-<lowest slot owned when first seen>    (shard-0, shard-5461, ...)
//! match     a current shard is the recorded one whose node ids include its
//!           master or one of its replicas (a failover promotes a replica);
//!           otherwise the unmatched recorded shard it shares most slots with;
//!           otherwise a new shard (appended: positions never change)
//! partition position i in the record (sorted by lowest slot at first
//!           discovery) goes to process i mod count
//! ```
//!
//! [`Topology`](crate::Topology) keeps only masters (what a writer needs);
//! a source also needs each shard's replicas and node ids.

use ferry_resp::Value;
use serde::{Deserialize, Serialize};

use crate::nodes::{ShardNode, SlotsNode, field, pairs};
use crate::slot::MAX_SLOT;
use crate::topology::TopologyError;

/// One node of a source shard.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShardMember {
    /// The node id (`None` from a pre-4.0 `CLUSTER SLOTS`).
    pub id: Option<String>,
    /// `host:port` to connect to.
    pub addr: String,
    /// Reported online (`health`; `CLUSTER SLOTS` lists only reachable
    /// replicas, so they count as online).
    pub online: bool,
    /// Reported failed (`health: fail`). A replica can be neither online
    /// nor failed: `loading` (syncing, or its offset not gossiped yet).
    pub failed: bool,
}

/// A shard of the source cluster: its slots, master and replicas.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceShard {
    /// Slot ranges `(start, end)`, in slot order.
    pub ranges: Vec<(u16, u16)>,
    /// The master.
    pub master: ShardMember,
    /// Its replicas.
    pub replicas: Vec<ShardMember>,
}

impl SourceShard {
    /// The lowest slot it owns (16384 when it owns none).
    pub fn lowest_slot(&self) -> u16 {
        self.ranges.first().map_or(MAX_SLOT + 1, |r| r.0)
    }

    /// The node ids known of it (master first).
    pub fn node_ids(&self) -> Vec<String> {
        std::iter::once(&self.master)
            .chain(&self.replicas)
            .filter_map(|m| m.id.clone())
            .collect()
    }

    /// The replica to replicate from: an online one, else one not
    /// reported failed (a node reports a replica `loading` until it has
    /// heard of its replication offset, e.g. just after the cluster
    /// formed); `None` when every replica failed or there is none.
    pub fn replica_to_read(&self) -> Option<&ShardMember> {
        self.replicas
            .iter()
            .find(|r| r.online)
            .or_else(|| self.replicas.iter().find(|r| !r.failed))
    }

    /// Whether it owns `slot`.
    pub fn owns(&self, slot: u16) -> bool {
        self.ranges.iter().any(|&(s, e)| s <= slot && slot <= e)
    }
}

/// `"0-5460,5462"`: ranges as text (a single slot without a dash).
pub fn ranges_text(ranges: &[(u16, u16)]) -> String {
    ranges
        .iter()
        .map(|&(s, e)| {
            if s == e {
                s.to_string()
            } else {
                format!("{s}-{e}")
            }
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// Sorts and merges adjacent ranges.
fn normalize(ranges: &mut Vec<(u16, u16)>) {
    ranges.sort_unstable();
    let mut out: Vec<(u16, u16)> = Vec::with_capacity(ranges.len());
    for &(s, e) in ranges.iter() {
        match out.last_mut() {
            Some(last) if u32::from(s) <= u32::from(last.1) + 1 => last.1 = last.1.max(e),
            _ => out.push((s, e)),
        }
    }
    *ranges = out;
}

fn range_of(start: Option<i64>, end: Option<i64>) -> Result<(u16, u16), TopologyError> {
    let (start, end) = (start.unwrap_or(-1), end.unwrap_or(-1));
    match (u16::try_from(start), u16::try_from(end)) {
        (Ok(s), Ok(e)) if s <= e && e <= MAX_SLOT => Ok((s, e)),
        _ => Err(TopologyError::BadRange { start, end }),
    }
}

/// The shards of a `CLUSTER SHARDS` reply (RESP2 or RESP3) that own
/// slots, in slot order; `tls`: prefer `tls-port`. A shard whose master is
/// not online (a failover in progress) is still listed with it.
///
/// # Errors
/// [`TopologyError`] on an error reply, a malformed one, or a shard with
/// slots and no master.
pub fn source_shards(
    reply: &Value,
    answered_by: &str,
    tls: bool,
) -> Result<Vec<SourceShard>, TopologyError> {
    if let Value::Error(message) = reply {
        return Err(TopologyError::ErrorReply {
            message: message.clone(),
        });
    }
    let shards = reply.as_array().ok_or(TopologyError::Shape {
        at: "reply".into(),
        expected: "an array",
    })?;
    let mut out = Vec::new();
    for (i, shard) in shards.iter().enumerate() {
        let at = || format!("shard {i}");
        let fields = pairs(shard).ok_or_else(|| TopologyError::Shape {
            at: at(),
            expected: "a map",
        })?;
        let slots = field(&fields, "slots")
            .and_then(Value::as_array)
            .unwrap_or_default();
        let mut ranges = Vec::new();
        for pair in slots.chunks(2) {
            ranges.push(range_of(
                pair.first().and_then(Value::as_int),
                pair.get(1).and_then(Value::as_int),
            )?);
        }
        if ranges.is_empty() {
            continue;
        }
        normalize(&mut ranges);
        let nodes = field(&fields, "nodes")
            .and_then(Value::as_array)
            .unwrap_or_default();
        let mut master: Option<ShardMember> = None;
        let mut replicas = Vec::new();
        for node in nodes {
            let Some(n) = ShardNode::parse(node, answered_by, tls) else {
                continue;
            };
            let Some(port) = n.port.and_then(|p| u16::try_from(p).ok()) else {
                continue;
            };
            let member = ShardMember {
                id: n.id.map(str::to_owned),
                addr: crate::endpoint::HostPort(&n.host, port).to_string(),
                online: n.health.is_none_or(|h| h == "online"),
                failed: n.health.is_some_and(|h| h.starts_with("fail")),
            };
            match n.role {
                Some("master") if master.as_ref().is_none_or(|m| !m.online) => {
                    master = Some(member)
                }
                Some("master") => {}
                _ => replicas.push(member),
            }
        }
        let master = master.ok_or(TopologyError::NoMaster { at: at() })?;
        out.push(SourceShard {
            ranges,
            master,
            replicas,
        });
    }
    out.sort_by_key(SourceShard::lowest_slot);
    Ok(out)
}

/// The shards of a `CLUSTER SLOTS` reply (servers before 7.0): ranges
/// grouped by master, in slot order.
///
/// # Errors
/// [`TopologyError`] on an error reply or a malformed one.
pub fn source_shards_from_slots(
    reply: &Value,
    answered_by: &str,
) -> Result<Vec<SourceShard>, TopologyError> {
    if let Value::Error(message) = reply {
        return Err(TopologyError::ErrorReply {
            message: message.clone(),
        });
    }
    let entries = reply.as_array().ok_or(TopologyError::Shape {
        at: "reply".into(),
        expected: "an array",
    })?;
    let mut out: Vec<SourceShard> = Vec::new();
    for (i, entry) in entries.iter().enumerate() {
        let items = entry.as_array().unwrap_or_default();
        if items.len() < 3 {
            return Err(TopologyError::Shape {
                at: format!("reply[{i}]"),
                expected: "[start, end, master, replicas...]",
            });
        }
        let range = range_of(items[0].as_int(), items[1].as_int())?;
        let mut members = Vec::new();
        for (j, item) in items[2..].iter().enumerate() {
            let n = SlotsNode::parse(item, answered_by).map_err(|e| TopologyError::Shape {
                at: format!("reply[{i}][{}]", j + 2),
                expected: e,
            })?;
            let Ok(port) = u16::try_from(n.port) else {
                continue;
            };
            members.push(ShardMember {
                id: n.id.map(str::to_owned),
                addr: crate::endpoint::HostPort(&n.host, port).to_string(),
                online: true,
                failed: false,
            });
        }
        let master = members.remove(0);
        let same = |s: &SourceShard| match (&s.master.id, &master.id) {
            (Some(a), Some(b)) => a == b,
            _ => s.master.addr == master.addr,
        };
        match out.iter_mut().find(|s| same(s)) {
            Some(s) => s.ranges.push(range),
            None => out.push(SourceShard {
                ranges: vec![range],
                master,
                replicas: members,
            }),
        }
    }
    for s in &mut out {
        normalize(&mut s.ranges);
    }
    out.sort_by_key(SourceShard::lowest_slot);
    Ok(out)
}

/// `source.partition` as recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PartitionRecord {
    /// This process.
    pub index: u32,
    /// How many processes.
    pub count: u32,
}

/// One recorded shard.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecordedShard {
    /// `shard-<lowest slot when first seen>`.
    pub name: String,
    /// The slot ranges it owned when last seen.
    pub ranges: Vec<(u16, u16)>,
    /// Node ids of its master and replicas when last seen.
    pub nodes: Vec<String>,
    /// Their addresses (`host:port`) when last seen: where to ask for the
    /// topology on restart when `source.url` does not answer.
    #[serde(default)]
    pub addrs: Vec<String>,
}

/// `state_dir/shards.json`: the source's shards in the order of first
/// discovery (by lowest slot) and the partition of this process.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShardRecord {
    /// `ferry-shards/1`.
    pub format: String,
    /// The partition this state_dir belongs to (`None`: every shard).
    pub partition: Option<PartitionRecord>,
    /// Every shard of the source, positions fixed at first discovery.
    pub shards: Vec<RecordedShard>,
}

impl ShardRecord {
    /// Every recorded node address (to ask for the topology).
    pub fn addrs(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for a in self.shards.iter().flat_map(|s| &s.addrs) {
            if !out.contains(a) {
                out.push(a.clone());
            }
        }
        out
    }
}

/// The file format tag of [`ShardRecord`].
pub const SHARDS_FORMAT: &str = "ferry-shards/1";

/// Why a record does not fit.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ShardRecordError {
    /// The partition count differs from the recorded one.
    #[error(
        "the state_dir was made for {recorded} partition(s) and this process runs with {now}: \
         shards would move between processes (restart with partition count {recorded}, or start \
         every process over with new state_dirs and an empty target)"
    )]
    CountChanged {
        /// Recorded count (1 when no partition was recorded).
        recorded: u32,
        /// The count now.
        now: u32,
    },
    /// The partition index differs from the recorded one.
    #[error(
        "the state_dir belongs to partition {recorded} and this process is partition {now}: \
         give each process its own state_dir"
    )]
    IndexChanged {
        /// Recorded index.
        recorded: u32,
        /// The index now.
        now: u32,
    },
}

/// A current shard with its recorded name and whether this process takes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Assigned {
    /// The shard name (its state subdirectory and checkpoint namespace).
    pub name: String,
    /// Index into the current shards.
    pub current: usize,
    /// Position in the record (partition key).
    pub position: usize,
    /// This process takes it.
    pub selected: bool,
}

fn overlap(a: &[(u16, u16)], b: &[(u16, u16)]) -> u32 {
    let mut n = 0u32;
    for &(s1, e1) in a {
        for &(s2, e2) in b {
            let (s, e) = (s1.max(s2), e1.min(e2));
            if s <= e {
                n += u32::from(e - s) + 1;
            }
        }
    }
    n
}

/// Matches `current` (from [`source_shards`]) to the `recorded` shards,
/// names new ones, and selects this process's share. Returns the updated
/// record (current ranges and node ids) and one [`Assigned`] per current
/// shard, in the order of `current`.
///
/// # Errors
/// A partition that differs from the recorded one.
pub fn reconcile(
    recorded: Option<&ShardRecord>,
    current: &[SourceShard],
    partition: Option<PartitionRecord>,
) -> Result<(ShardRecord, Vec<Assigned>), ShardRecordError> {
    let mut record = recorded.cloned().unwrap_or_else(|| ShardRecord {
        format: SHARDS_FORMAT.into(),
        partition,
        shards: Vec::new(),
    });
    if recorded.is_some() {
        let count = |p: Option<PartitionRecord>| p.map_or(1, |p| p.count);
        let index = |p: Option<PartitionRecord>| p.map_or(0, |p| p.index);
        if count(record.partition) != count(partition) {
            return Err(ShardRecordError::CountChanged {
                recorded: count(record.partition),
                now: count(partition),
            });
        }
        if index(record.partition) != index(partition) {
            return Err(ShardRecordError::IndexChanged {
                recorded: index(record.partition),
                now: index(partition),
            });
        }
        record.partition = partition;
    }
    let mut taken = vec![false; record.shards.len()];
    let mut matched: Vec<Option<usize>> = vec![None; current.len()];
    // By node id first: a failover keeps the ids, only the roles change.
    for (c, shard) in current.iter().enumerate() {
        let ids = shard.node_ids();
        if let Some(r) = record
            .shards
            .iter()
            .enumerate()
            .position(|(r, rec)| !taken[r] && rec.nodes.iter().any(|n| ids.contains(n)))
        {
            taken[r] = true;
            matched[c] = Some(r);
        }
    }
    // Then by the largest slot overlap.
    for (c, shard) in current.iter().enumerate() {
        if matched[c].is_some() {
            continue;
        }
        let best = record
            .shards
            .iter()
            .enumerate()
            .filter(|(r, _)| !taken[*r])
            .map(|(r, rec)| (overlap(&rec.ranges, &shard.ranges), r))
            .filter(|(n, _)| *n > 0)
            .max();
        if let Some((_, r)) = best {
            taken[r] = true;
            matched[c] = Some(r);
        }
    }
    // New shards, by lowest slot (current is in slot order).
    for (c, shard) in current.iter().enumerate() {
        if matched[c].is_some() {
            continue;
        }
        let base = format!("shard-{}", shard.lowest_slot());
        let mut name = base.clone();
        let mut n = 2;
        while record.shards.iter().any(|r| r.name == name) {
            name = format!("{base}-{n}");
            n += 1;
        }
        record.shards.push(RecordedShard {
            name,
            ranges: Vec::new(),
            nodes: Vec::new(),
            addrs: Vec::new(),
        });
        matched[c] = Some(record.shards.len() - 1);
    }
    let mut out = Vec::with_capacity(current.len());
    for (c, shard) in current.iter().enumerate() {
        let r = matched[c].unwrap_or_default();
        let rec = &mut record.shards[r];
        rec.ranges = shard.ranges.clone();
        let mut nodes = shard.node_ids();
        // Keep the old ids too: the old master may come back as a replica.
        for old in &rec.nodes {
            if !nodes.contains(old) {
                nodes.push(old.clone());
            }
        }
        nodes.truncate(16);
        rec.nodes = nodes;
        rec.addrs = std::iter::once(&shard.master)
            .chain(&shard.replicas)
            .map(|m| m.addr.clone())
            .collect();
        out.push(Assigned {
            name: rec.name.clone(),
            current: c,
            position: r,
            selected: partition.is_none_or(|p| r as u64 % u64::from(p.count) == u64::from(p.index)),
        });
    }
    Ok((record, out))
}

#[cfg(test)]
#[path = "source_shards_tests.rs"]
mod tests;

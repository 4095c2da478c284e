//! The `/status` document as types, and its assembly from what the link,
//! the applier and the sampler report.
//!
//! The top-level fields are those `ferry status`, `ferry cutover` and the
//! dashboard read; `links` and `targets` carry the same facts per source
//! link and per target, ready for more than one of each.

use std::collections::{BTreeMap, VecDeque};
use std::time::Instant;

use ferry_replica::LinkStatus;
use serde::Serialize;

/// Where the migration is.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Phase {
    /// Connecting to the source (or before the link starts).
    #[default]
    Connecting,
    /// Loading the source's snapshot.
    Snapshot,
    /// Replaying the source's command stream.
    Streaming,
    /// Stopped.
    Stopped,
    /// Stopped on an error (`error` says which).
    Error,
}

impl Phase {
    /// The value of the `ferry_phase` gauge.
    pub fn code(self) -> u8 {
        match self {
            Phase::Connecting => 0,
            Phase::Snapshot => 1,
            Phase::Streaming => 2,
            Phase::Stopped => 3,
            Phase::Error => 4,
        }
    }

    /// The name `/status` shows.
    pub fn name(self) -> &'static str {
        match self {
            Phase::Connecting => "connecting",
            Phase::Snapshot => "snapshot",
            Phase::Streaming => "streaming",
            Phase::Stopped => "stopped",
            Phase::Error => "error",
        }
    }
}

impl From<ferry_replica::Phase> for Phase {
    fn from(p: ferry_replica::Phase) -> Phase {
        match p {
            ferry_replica::Phase::Connecting => Phase::Connecting,
            ferry_replica::Phase::Snapshot => Phase::Snapshot,
            ferry_replica::Phase::Streaming => Phase::Streaming,
            ferry_replica::Phase::Stopped => Phase::Stopped,
        }
    }
}

/// What the cluster writer has coped with.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct TargetStats {
    /// `-MOVED` replies followed.
    pub moved: u64,
    /// `-ASK` replies followed.
    pub ask: u64,
    /// `TRYAGAIN`/`CLUSTERDOWN`/`LOADING`/… replies retried.
    pub retry: u64,
    /// Connections to target nodes re-established.
    pub reconnects: u64,
    /// Transactions committed with a checkpoint.
    pub checkpoints: u64,
    /// Ops not sent because the target had committed them before a restart.
    pub skipped_applied: u64,
    /// Source MULTI/EXEC blocks whose keys span slots (applied per slot).
    pub split_transactions: u64,
    /// Topology refreshes (failover, reshard, unreachable node).
    pub refreshes: u64,
    /// `target.wait_replicas`: committed transactions no replica had
    /// confirmed when their master's connection was lost (probed again).
    pub reprobed: u64,
    /// `target.wait_replicas`: `WAIT`s no replica answered in time.
    pub wait_timeouts: u64,
    /// Cluster source: copies of a `FUNCTION DELETE` (one per source shard)
    /// the target answered `Library not found` because another copy had
    /// deleted the library already; counted, not errors.
    pub function_delete_absent: u64,
    /// `target.max_ops_per_sec`/`max_bytes_per_sec` held writes back
    /// within the last second: the limit, not the target, sets the pace.
    pub rate_limited: bool,
    /// Total milliseconds writes waited for the rate limit.
    pub rate_limited_ms: u64,
}

impl From<ferry_cluster::WriterStats> for TargetStats {
    fn from(w: ferry_cluster::WriterStats) -> TargetStats {
        TargetStats {
            moved: w.moved,
            ask: w.ask,
            retry: w.retries,
            reconnects: w.reconnects,
            checkpoints: w.checkpoints,
            skipped_applied: w.skipped,
            split_transactions: w.split_groups,
            refreshes: w.refreshes,
            reprobed: w.reprobed,
            wait_timeouts: w.wait_timeouts,
            function_delete_absent: w.function_delete_absent,
            rate_limited: w.rate_limited,
            rate_limited_ms: w.rate_limited_ms,
        }
    }
}

/// The replica link's own counters for `/status` and `/metrics`.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct SourceStats {
    /// Spool bytes currently on disk.
    pub spool_disk_bytes: u64,
    /// The spool reached its cap: ferry stopped reading the source.
    pub spool_full: bool,
    /// Bytes written to spool segment files so far.
    pub spool_disk_bytes_written: u64,
    /// Error replies tolerated during handshakes (e.g. `REPLCONF version`
    /// refused by Redis); each is logged as a warning.
    pub handshake_warnings: u64,
}

/// One source link.
#[derive(Debug, Clone, Default, Serialize)]
pub struct LinkSection {
    /// The link's name (`source` for a standalone source, the shard name
    /// for a cluster source).
    pub name: String,
    /// The address the link replicates from now (a cluster shard's node,
    /// a Sentinel source's current master, the standalone source).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// Cluster source: the replication id of the shard's history.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replid: Option<String>,
    /// Cluster source: the slots the shard owns (e.g. `0-5460`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub slots: Option<String>,
    /// The link's phase.
    pub phase: Phase,
    /// Connected to the source now.
    pub connected: bool,
    /// The source's `master_repl_offset`.
    pub source_offset: Option<u64>,
    /// Offset received from the source.
    pub received_offset: Option<u64>,
    /// Offset applied to the target.
    pub applied_offset: Option<u64>,
    /// source_offset − applied_offset.
    pub lag_bytes: Option<u64>,
    /// Bytes waiting in the spool.
    pub spool_bytes: u64,
    /// Reconnects to the source.
    pub reconnects: u64,
    /// Why the connection was last lost, if it was.
    pub last_reconnect_reason: Option<String>,
    /// Spool and handshake counters.
    pub stats: SourceStats,
}

/// One target.
#[derive(Debug, Clone, Default, Serialize)]
pub struct TargetSection {
    /// The target's name (`target` while there is one).
    pub name: String,
    /// `cluster` or `standalone`.
    pub mode: &'static str,
    /// Its masters (`host:port`) at start.
    pub masters: Vec<String>,
    /// What its writer has coped with.
    pub stats: TargetStats,
}

/// The `/status` document.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Status {
    /// connecting, snapshot, streaming, stopped, error.
    pub phase: Phase,
    /// The source's `master_repl_offset`.
    pub source_offset: Option<u64>,
    /// Offset applied to the target.
    pub applied_offset: Option<u64>,
    /// Offset received from the source.
    pub received_offset: Option<u64>,
    /// source_offset − applied_offset.
    pub lag_bytes: Option<u64>,
    /// Age of the oldest byte received but not yet applied (0 when caught up).
    pub lag_seconds: f64,
    /// Snapshot keys written.
    pub keys_applied: u64,
    /// Stream commands written.
    pub commands_applied: u64,
    /// Cross-slot stream commands replayed by emulation (part of
    /// `commands_applied`).
    pub emulated: u64,
    /// Not carried, by reason.
    pub skipped: BTreeMap<String, u64>,
    /// Cluster source: ops dropped by a shard's slot gate (their slot is
    /// owned by another source shard now, which carries them).
    #[serde(skip_serializing_if = "is_zero")]
    pub moved_slot_dropped: u64,
    /// Bytes waiting in the spool (disk part included).
    pub spool_bytes: u64,
    /// Reconnects to the source.
    pub reconnects: u64,
    /// The source side of the link: spool on disk, handshake warnings.
    pub source: SourceStats,
    /// Target replies handled by redirecting or retrying, by kind
    /// (`moved`, `ask`, `retry`), and target reconnects.
    pub target: TargetStats,
    /// The error that stopped ferry, if any.
    pub error: Option<String>,
    /// Snapshot progress.
    pub snapshot: SnapshotProgress,
    /// Sampled verify during streaming.
    pub verify: crate::sampler::VerifyStatus,
    /// Per source link.
    pub links: Vec<LinkSection>,
    /// Per target.
    pub targets: Vec<TargetSection>,
    /// Cluster source: the topology watcher (source resharding).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source_watch: Option<WatchSection>,
    /// Two-way sync (`mode: two_way`); absent otherwise.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub two_way: Option<TwoWayStatus>,
}

/// `/status` `source_watch`: what the cluster source's topology watcher
/// saw and asked for.
#[derive(Debug, Clone, Default, Serialize)]
pub struct WatchSection {
    /// Slots are moving on the source, or a resync is not yet requested.
    /// `ferry cutover` must wait until this is false and every link streams.
    pub resharding: bool,
    /// Shards waiting for their resync.
    pub pending: Vec<String>,
    /// Resyncs requested since start.
    pub resyncs: u64,
    /// Masters serving slots that no ferry pipeline follows.
    pub unfollowed: Vec<String>,
    /// Polls where no source node answered.
    pub polls_failed: u64,
}

impl WatchSection {
    /// The section from the watcher's state.
    pub fn of(w: &crate::source_watch::WatchStatus) -> WatchSection {
        WatchSection {
            resharding: w.resharding(),
            pending: w.pending(),
            resyncs: w.resyncs(),
            unfollowed: w.unfollowed(),
            polls_failed: w.polls_failed(),
        }
    }
}

/// Two-way sync counters for `/status`.
#[derive(Debug, Clone, Default, Serialize)]
pub struct TwoWayStatus {
    /// Commands of the opposite ferry's transactions not carried back.
    pub echo_commands: u64,
    /// Client writes carried to a key the opposite ferry wrote within the
    /// conflict window (each side ends with the write applied there last).
    pub conflicts: u64,
}

impl Status {
    /// Ferry has drained and stopped cleanly.
    pub fn stopped(&mut self) {
        self.phase = Phase::Stopped;
        for l in &mut self.links {
            l.phase = Phase::Stopped;
        }
    }

    /// Ferry stops on `error`: phase `error`, the reason in `error`.
    pub fn failed(&mut self, error: String) {
        self.phase = Phase::Error;
        for l in &mut self.links {
            l.phase = Phase::Error;
        }
        self.error = Some(error);
    }

    /// The once-a-second line on stdout.
    pub fn line(&self) -> String {
        let progress = match (self.phase, self.snapshot.percent) {
            (Phase::Snapshot, Some(p)) => format!(
                " [{:<20}] {p:.1}%{}",
                "#".repeat((p / 5.0) as usize),
                if self.snapshot.transfer == Some("diskless") {
                    " (of keys; diskless: size unknown)"
                } else {
                    ""
                }
            ),
            _ => String::new(),
        };
        let opt = |v: Option<u64>| v.map_or("-".into(), |v| v.to_string());
        format!(
            "ferry: {}{progress} applied={} source={} lag={} bytes {:.1}s keys={} commands={} skipped={} verify={}/{}",
            self.phase.name(),
            opt(self.applied_offset),
            opt(self.source_offset),
            opt(self.lag_bytes),
            self.lag_seconds,
            self.keys_applied,
            self.commands_applied,
            self.skipped.values().sum::<u64>(),
            self.verify.mismatches,
            self.verify.checked,
        )
    }
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// How far a phase is (for "the least advanced link").
fn rank(p: Phase) -> u8 {
    match p {
        Phase::Error => 0,
        Phase::Connecting => 1,
        Phase::Snapshot => 2,
        Phase::Streaming => 3,
        Phase::Stopped => 4,
    }
}

/// Sums of optional values: `None` if any part is `None`.
fn sum_all(values: impl Iterator<Item = Option<u64>>) -> Option<u64> {
    let mut total = 0u64;
    for v in values {
        total = total.saturating_add(v?);
    }
    Some(total)
}

/// One shard pipeline's status with what names it.
#[derive(Debug, Clone)]
pub struct ShardStatus {
    /// The shard name.
    pub name: String,
    /// The address its link replicates from now.
    pub source: String,
    /// Its slots, as text.
    pub slots: String,
    /// Its replication id, if known.
    pub replid: Option<String>,
    /// Its pipeline's status.
    pub status: Status,
}

/// The status of a cluster source from its shard pipelines' statuses:
/// `links[]` has one entry per shard (`name`, `source`, `replid`,
/// `slots`); the top-level offsets (`source_offset`, `received_offset`,
/// `applied_offset`) and `lag_bytes` are **sums** over the shards (each
/// shard has its own offset space; a sum is `None` while any shard's is),
/// so `lag_bytes` stays `source_offset − applied_offset`; `lag_seconds`
/// is the **largest** of the shards'; `phase` is the least advanced
/// shard's (an error first); counters are sums; `targets` is one entry
/// with the writers' counters summed.
pub fn combine(shards: &[ShardStatus]) -> Status {
    let mut st = Status::default();
    let all = || shards.iter().map(|s| &s.status);
    st.phase = all()
        .map(|s| s.phase)
        .min_by_key(|p| rank(*p))
        .unwrap_or_default();
    st.source_offset = sum_all(all().map(|s| s.source_offset));
    st.applied_offset = sum_all(all().map(|s| s.applied_offset));
    st.received_offset = sum_all(all().map(|s| s.received_offset));
    st.lag_bytes = sum_all(all().map(|s| s.lag_bytes));
    st.lag_seconds = all().map(|s| s.lag_seconds).fold(0.0, f64::max);
    st.error = all().find_map(|s| s.error.clone());
    let mut bytes_total = Some(0u64);
    let mut keys_total = Some(0u64);
    for s in all() {
        st.keys_applied += s.keys_applied;
        st.commands_applied += s.commands_applied;
        st.emulated += s.emulated;
        st.moved_slot_dropped += s.moved_slot_dropped;
        for (k, v) in &s.skipped {
            *st.skipped.entry(k.clone()).or_default() += v;
        }
        st.spool_bytes += s.spool_bytes;
        st.reconnects += s.reconnects;
        st.source.spool_disk_bytes += s.source.spool_disk_bytes;
        st.source.spool_full |= s.source.spool_full;
        st.source.spool_disk_bytes_written += s.source.spool_disk_bytes_written;
        st.source.handshake_warnings += s.source.handshake_warnings;
        let (t, u) = (&mut st.target, &s.target);
        t.moved += u.moved;
        t.ask += u.ask;
        t.retry += u.retry;
        t.reconnects += u.reconnects;
        t.checkpoints += u.checkpoints;
        t.skipped_applied += u.skipped_applied;
        t.split_transactions += u.split_transactions;
        t.refreshes += u.refreshes;
        t.reprobed += u.reprobed;
        t.wait_timeouts += u.wait_timeouts;
        t.function_delete_absent += u.function_delete_absent;
        t.rate_limited |= u.rate_limited;
        t.rate_limited_ms += u.rate_limited_ms;
        if let Some(w) = &s.two_way {
            let t = st.two_way.get_or_insert_with(TwoWayStatus::default);
            t.echo_commands += w.echo_commands;
            t.conflicts += w.conflicts;
        }
        st.snapshot.bytes_done += s.snapshot.bytes_done;
        st.snapshot.keys_done += s.snapshot.keys_done;
        bytes_total = bytes_total.zip(s.snapshot.bytes_total).map(|(a, b)| a + b);
        keys_total = keys_total.zip(s.snapshot.keys_total).map(|(a, b)| a + b);
    }
    st.snapshot.bytes_total = bytes_total.filter(|_| !shards.is_empty());
    st.snapshot.keys_total = keys_total.filter(|_| !shards.is_empty());
    st.snapshot.compute(st.phase == Phase::Streaming);
    st.links = shards
        .iter()
        .map(|s| {
            let mut l = s.status.links.first().cloned().unwrap_or_default();
            l.name = s.name.clone();
            l.source = l.source.or_else(|| Some(s.source.clone()));
            l.replid = l.replid.or_else(|| s.replid.clone());
            l.slots = Some(s.slots.clone());
            l
        })
        .collect();
    if let Some(first) = shards.first().and_then(|s| s.status.targets.first()) {
        let mut t = first.clone();
        t.stats = st.target;
        st.targets = vec![t];
    }
    st
}

/// Snapshot progress for `/status`, the status line and the dashboard.
#[derive(Debug, Clone, Default, Serialize)]
pub struct SnapshotProgress {
    /// RDB bytes decoded.
    pub bytes_done: u64,
    /// The RDB's size from its `$<len>` preamble; `None` for a diskless
    /// transfer (the source streams it with no size).
    pub bytes_total: Option<u64>,
    /// `disk` (size known), `diskless` (size unknown) or `None` before the
    /// transfer starts (or after a resume without a snapshot).
    pub transfer: Option<&'static str>,
    /// Snapshot keys handled (written or skipped).
    pub keys_done: u64,
    /// Keys in the carried dbs from the source's `INFO keyspace` at start.
    pub keys_total: Option<u64>,
    /// Done, in percent: from the bytes when the size is known, from the
    /// keys otherwise; 100 once streaming.
    pub percent: Option<f64>,
}

impl SnapshotProgress {
    fn compute(&mut self, streaming: bool) {
        self.transfer = match (self.bytes_total, self.bytes_done) {
            (Some(_), _) => Some("disk"),
            (None, 0) => None,
            (None, _) => Some("diskless"),
        };
        self.percent = if streaming {
            Some(100.0)
        } else if let Some(t) = self.bytes_total.filter(|t| *t > 0) {
            Some((100.0 * self.bytes_done as f64 / t as f64).min(100.0))
        } else {
            self.keys_total
                .filter(|t| *t > 0)
                .map(|t| (100.0 * self.keys_done as f64 / t as f64).min(99.9))
        };
    }
}

/// What the status assembly keeps between snapshots.
#[derive(Debug, Default)]
pub struct Assembler {
    /// (received offset, when it was first seen): the age of the oldest
    /// received-but-unapplied byte is the lag in seconds.
    unapplied: VecDeque<(u64, Instant)>,
    snapshot: SnapshotProgress,
    last_reconnect_reason: Option<String>,
    target: TargetSection,
    /// One shard of a cluster source: the link section carries the replid.
    shard: bool,
}

/// The applier's totals, as the status shows them.
#[derive(Debug, Clone, Default)]
pub struct Applied {
    /// Snapshot keys written.
    pub keys: u64,
    /// Stream commands written.
    pub commands: u64,
    /// Of which emulated.
    pub emulated: u64,
    /// Not carried, by reason.
    pub skipped: BTreeMap<String, u64>,
    /// Keys the snapshot held (written or skipped), once it has ended.
    pub snapshot_keys: Option<u64>,
    /// Ops dropped by a cluster source shard's slot gate.
    pub moved_slot_dropped: u64,
}

impl Assembler {
    /// Starts with the source's key count and the target's shape.
    pub fn new(keys_total: Option<u64>, standalone: bool, masters: Vec<String>) -> Assembler {
        Assembler {
            snapshot: SnapshotProgress {
                keys_total,
                ..Default::default()
            },
            target: TargetSection {
                name: "target".into(),
                mode: if standalone { "standalone" } else { "cluster" },
                masters,
                stats: TargetStats::default(),
            },
            ..Default::default()
        }
    }

    /// For one shard of a cluster source (the link section names its replid).
    pub fn for_shard(mut self) -> Assembler {
        self.shard = true;
        self
    }

    /// The link lost its connection for `reason`.
    pub fn reconnecting(&mut self, reason: &str) {
        self.last_reconnect_reason = Some(reason.to_string());
    }

    /// One status document from the parts' current reports.
    pub fn assemble(
        &mut self,
        ls: &LinkStatus,
        applied: Applied,
        writer: ferry_cluster::WriterStats,
        verify: crate::sampler::VerifyStatus,
    ) -> Status {
        if let Some(r) = ls.received_offset
            && self.unapplied.back().is_none_or(|(o, _)| r > *o)
        {
            self.unapplied.push_back((r, Instant::now()));
        }
        let applied_offset = ls.applied_offset.unwrap_or(0);
        while self
            .unapplied
            .front()
            .is_some_and(|(o, _)| *o <= applied_offset)
        {
            self.unapplied.pop_front();
        }
        let lag_seconds = self
            .unapplied
            .front()
            .map_or(0.0, |(_, t)| t.elapsed().as_secs_f64());
        let phase = Phase::from(ls.phase);
        self.snapshot.bytes_done = ls.snapshot_bytes_done;
        self.snapshot.bytes_total = ls.snapshot_bytes_total;
        if let Some(n) = applied.snapshot_keys {
            self.snapshot.keys_done = n;
        } else if phase == Phase::Snapshot {
            self.snapshot.keys_done = applied.keys + applied.skipped.values().sum::<u64>();
        }
        self.snapshot.compute(phase == Phase::Streaming);
        let lag_bytes = match (ls.source_offset, ls.applied_offset) {
            (Some(s), Some(a)) => Some(s.saturating_sub(a)),
            _ => None,
        };
        let source = SourceStats {
            spool_disk_bytes: ls.spool_disk_bytes,
            spool_full: ls.spool_full,
            spool_disk_bytes_written: ls.spool_disk_bytes_written,
            handshake_warnings: ls.handshake_warnings,
        };
        let target = TargetStats::from(writer);
        self.target.stats = target;
        Status {
            phase,
            source_offset: ls.source_offset,
            applied_offset: ls.applied_offset,
            received_offset: ls.received_offset,
            lag_bytes,
            lag_seconds,
            keys_applied: applied.keys,
            commands_applied: applied.commands,
            emulated: applied.emulated,
            skipped: applied.skipped,
            spool_bytes: ls.spool_bytes,
            reconnects: ls.reconnects,
            source,
            target,
            error: None,
            snapshot: self.snapshot.clone(),
            verify,
            moved_slot_dropped: applied.moved_slot_dropped,
            source_watch: None,
            links: vec![LinkSection {
                name: "source".into(),
                // The address in use (a Sentinel source's master moves).
                source: Some(ls.addr.clone()).filter(|a| !a.is_empty()),
                replid: if self.shard { ls.replid.clone() } else { None },
                slots: None,
                phase,
                connected: ls.connected,
                source_offset: ls.source_offset,
                received_offset: ls.received_offset,
                applied_offset: ls.applied_offset,
                lag_bytes,
                spool_bytes: ls.spool_bytes,
                reconnects: ls.reconnects,
                last_reconnect_reason: self.last_reconnect_reason.clone(),
                stats: source,
            }],
            targets: vec![self.target.clone()],
            two_way: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phases_serialise_as_before() {
        for (p, name, code) in [
            (Phase::Connecting, "connecting", 0),
            (Phase::Snapshot, "snapshot", 1),
            (Phase::Streaming, "streaming", 2),
            (Phase::Stopped, "stopped", 3),
            (Phase::Error, "error", 4),
        ] {
            assert_eq!(
                serde_json::to_value(p).expect("json"),
                serde_json::json!(name)
            );
            assert_eq!(p.name(), name);
            assert_eq!(p.code(), code);
        }
    }

    #[test]
    fn shards_combine_into_one_status() {
        let shard = |name: &str, phase, source, applied, lag: f64| {
            let mut st = Status {
                phase,
                source_offset: source,
                applied_offset: applied,
                lag_bytes: source.zip(applied).map(|(s, a)| s - a),
                lag_seconds: lag,
                keys_applied: 10,
                moved_slot_dropped: 1,
                links: vec![LinkSection {
                    name: "source".into(),
                    phase,
                    ..Default::default()
                }],
                ..Default::default()
            };
            st.skipped.insert("expired".into(), 2);
            st.target.moved = 3;
            ShardStatus {
                name: name.into(),
                source: format!("{name}:1"),
                slots: "0-5460".into(),
                replid: Some("r".into()),
                status: st,
            }
        };
        let c = combine(&[
            shard("shard-0", Phase::Streaming, Some(100), Some(90), 0.5),
            shard("shard-5461", Phase::Snapshot, Some(50), Some(50), 2.0),
        ]);
        assert_eq!(c.phase, Phase::Snapshot, "the least advanced");
        assert_eq!(c.source_offset, Some(150));
        assert_eq!(c.applied_offset, Some(140));
        assert_eq!(c.lag_bytes, Some(10));
        assert_eq!(c.lag_seconds, 2.0, "the largest");
        assert_eq!(c.keys_applied, 20);
        assert_eq!(c.moved_slot_dropped, 2);
        assert_eq!(c.skipped["expired"], 4);
        assert_eq!(c.target.moved, 6);
        assert_eq!(c.links.len(), 2);
        let v = serde_json::to_value(&c).expect("json");
        assert_eq!(v["links"][1]["name"], "shard-5461");
        assert_eq!(v["links"][1]["slots"], "0-5460");
        assert_eq!(v["links"][0]["source"], "shard-0:1");
        let c = combine(&[
            shard("a", Phase::Streaming, None, Some(1), 0.0),
            shard("b", Phase::Error, Some(1), Some(1), 0.0),
        ]);
        assert_eq!(c.source_offset, None, "unknown while a shard's is");
        assert_eq!(c.phase, Phase::Error);
        // A standalone status has none of the shard fields.
        let one = Assembler::new(None, false, vec![]).assemble(
            &LinkStatus::default(),
            Applied::default(),
            ferry_cluster::WriterStats::default(),
            Default::default(),
        );
        let v = serde_json::to_value(&one).expect("json");
        assert!(v["links"][0].get("slots").is_none());
        assert!(v.get("moved_slot_dropped").is_none());
    }

    #[test]
    fn a_failure_sets_phase_and_error() {
        let mut a = Assembler::new(Some(10), false, vec!["127.0.0.1:1".into()]);
        a.reconnecting("connection reset");
        let mut st = a.assemble(
            &LinkStatus::default(),
            Applied::default(),
            ferry_cluster::WriterStats::default(),
            Default::default(),
        );
        assert_eq!(st.links.len(), 1);
        assert_eq!(
            st.links[0].last_reconnect_reason.as_deref(),
            Some("connection reset")
        );
        assert_eq!(st.targets[0].mode, "cluster");
        st.failed("target cluster: gone".into());
        let v = serde_json::to_value(&st).expect("json");
        assert_eq!(v["phase"], "error");
        assert_eq!(v["error"], "target cluster: gone");
        assert_eq!(v["links"][0]["phase"], "error");
    }
}

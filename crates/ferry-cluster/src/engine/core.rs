//! The engine's state machine: plain data, no IO, time passed in.
//!
//! The driver (`engine/mod.rs`) feeds it commands from the handle, replies
//! and connection events from the node pipelines, refreshed topologies and
//! timer ticks, each with the current time; the core answers with
//! [`Action`]s (bytes to write on a node's connection, a connection to
//! open, a topology to read) that the driver carries out. Everything the
//! module docs of `engine` describe (holds, transactions, probes, `WAIT`,
//! redirects, topology changes) happens here; the other files of this
//! directory are `impl Core` blocks by concern.

use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use ferry_ops::{SLOTS, Topology};

/// Size of the buffers plain ops are encoded into (see `Core::wire_buf`).
/// Small, so that an entry held for long pins little besides itself.
pub(super) const WIRE_CHUNK: usize = 4096;

use super::entry::{Hold, NodeState, SpareTxns};
use super::events::Telemetry;
use super::open::{OpenGroup, OpenGroups};
use crate::checkpoint::Resume;
use crate::config::{Op, WriterConfig};
use crate::error::WriterError;
use crate::progress::Progress;
use crate::shared::Shared;

/// Watchdog period (stalled nodes, unreachable nodes).
pub(super) const TICK: Duration = Duration::from_millis(250);
/// How long a node may be unreachable before the topology is re-read.
pub(super) const REFRESH_GRACE: Duration = Duration::from_secs(1);
/// Least time between the starts of two topology refreshes.
pub(super) const REFRESH_EVERY: Duration = Duration::from_millis(500);

/// What the driver must do for the core.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Action {
    /// Write `bytes` on the current connection of node `node`.
    Send { node: usize, bytes: Bytes },
    /// Open a connection to node `node` for `generation` (retrying until
    /// `reconnect_for`), then report it with [`Core::on_connected`] or
    /// [`Core::on_connect_failed`].
    Connect {
        node: usize,
        generation: u64,
        addr: String,
    },
    /// Read the topology from the first of `addrs` that answers, then
    /// report it with [`Core::on_refreshed`].
    Refresh { addrs: Vec<String> },
}

/// Topology refresh state.
#[derive(Debug, Default)]
pub(super) struct Refresh {
    /// A refresh is running.
    pub(super) running: bool,
    /// A refresh is wanted (started when none runs and the interval passed).
    pub(super) wanted: bool,
    /// When the last one started.
    pub(super) started: Option<Instant>,
    /// Since when refreshes have been failing.
    pub(super) failing_since: Option<Instant>,
    /// Every node address seen (seed, replicas), fallback seeds.
    pub(super) known: Vec<String>,
}

/// Hashing for maps keyed by slot: one multiplication (the default SipHash
/// cost more than the rest of an op's checkpoint bookkeeping; slots are not
/// chosen by an adversary who could aim at one bucket, and 16384 keys at
/// most).
pub(crate) type SlotHash = BuildHasherDefault<SlotHasher>;

/// See [`SlotHash`].
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct SlotHasher(u64);

impl Hasher for SlotHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(b)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }

    fn write_u16(&mut self, n: u16) {
        self.0 = (self.0 ^ u64::from(n)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

/// The cluster writer's state machine.
pub(crate) struct Core {
    /// The current time, as last passed in.
    pub(super) now: Instant,
    /// Where plain ops are encoded: each op's wire is split off it, so
    /// small commands share one allocation of [`WIRE_CHUNK`] bytes.
    pub(super) wire_buf: BytesMut,
    /// The highest op offset submitted so far.
    pub(super) last_offset: u64,
    /// Every op at or below this offset has been submitted: the applied
    /// offset never passes it (all snapshot keys share one offset).
    pub(super) complete: u64,
    pub(super) topology: Topology,
    pub(super) nodes: Vec<NodeState>,
    pub(super) holds: HashMap<u16, Hold, SlotHash>,
    /// Entries per slot in node queues.
    pub(super) inflight: Vec<u32>,
    pub(super) held_bytes: usize,
    pub(super) progress: Progress,
    /// Plain ops acknowledged in the current reply batch, added to
    /// `shared.acked` at its end.
    pub(super) acked_batch: u64,
    pub(super) seq: u64,
    pub(super) config: WriterConfig,
    pub(super) shared: Arc<Shared>,
    /// Units taken from the handle that wait for room, oldest first.
    pub(super) pending: VecDeque<Vec<Op>>,
    pub(super) fatal: Option<WriterError>,
    pub(super) refresh: Refresh,
    /// Checkpoint mode is on.
    pub(super) txn_on: bool,
    /// The checkpoint `SET` of each slot, built once, and the source
    /// history written into checkpoint values.
    pub(super) ckpt_keys: crate::checkpoint::KeyCache,
    /// Per slot: the connect-time checkpoint (0: none; `skip_applied`).
    pub(super) slot_resume: Vec<u64>,
    /// Open groups of this loop turn, per slot.
    pub(super) open: OpenGroups,
    /// The groups being sealed (kept for its allocation).
    pub(super) sealing: Vec<(u16, OpenGroup)>,
    /// Per slot, the keys its plain groups wrote since its last
    /// transaction and their value types (see the `plain` module).
    pub(super) plain_runs: super::plain::Runs,
    /// Boxes of committed transactions, reused by the next ones.
    pub(super) spare_txns: SpareTxns,
    /// Bytes of the open groups.
    pub(super) open_bytes: usize,
    /// What the driver must do, oldest first.
    pub(super) actions: Vec<Action>,
    /// Log lines and their rate limits.
    pub(super) telemetry: Telemetry,
    /// The last tolerated refusal logged: (offset, command), so that one
    /// source command refused by every target master logs one line.
    pub(super) last_tolerated: Option<(u64, Vec<Bytes>)>,
    /// Standalone target: the db the ops expect (see `dbs`).
    pub(super) db: u64,
    /// Standalone target: the db the connection is on after everything
    /// queued (see `dbs`).
    pub(super) wire_db: u64,
}

impl Core {
    /// A core over `topology` at time `now`; nodes listed in `connected`
    /// have a connection already (generation 0).
    pub(crate) fn new(
        topology: Topology,
        connected: usize,
        resume: Resume,
        known: Vec<String>,
        config: WriterConfig,
        shared: Arc<Shared>,
        now: Instant,
    ) -> Core {
        let mut core = Core {
            now,
            nodes: Vec::new(),
            holds: HashMap::default(),
            inflight: vec![0; usize::from(SLOTS)],
            held_bytes: 0,
            progress: Progress::default(),
            acked_batch: 0,
            last_offset: 0,
            complete: 0,
            seq: 0,
            config,
            shared,
            pending: VecDeque::new(),
            fatal: None,
            refresh: Refresh {
                known,
                ..Refresh::default()
            },
            topology,
            txn_on: false,
            ckpt_keys: crate::checkpoint::KeyCache::default(),
            slot_resume: vec![0; usize::from(SLOTS)],
            open: OpenGroups::default(),
            sealing: Vec::new(),
            plain_runs: super::plain::Runs::new(),
            spare_txns: SpareTxns::default(),
            open_bytes: 0,
            wire_buf: BytesMut::new(),
            actions: Vec::new(),
            telemetry: Telemetry::default(),
            last_tolerated: None,
            db: 0,
            wire_db: 0,
        };
        if let Some(c) = &core.config.checkpoint {
            core.txn_on = true;
            core.ckpt_keys = crate::checkpoint::KeyCache::new(&c.namespace, c.history.clone());
        }
        core.sync_nodes();
        if core.config.skip_applied && resume.slot.len() == usize::from(SLOTS) {
            core.slot_resume = resume.slot;
            for (node, b) in core.nodes.iter_mut().zip(resume.node_barrier) {
                node.barrier = b;
            }
        }
        for node in core.nodes.iter_mut().take(connected) {
            node.connected = true;
        }
        core
    }

    /// Adds a [`NodeState`] for every master the topology gained.
    pub(super) fn sync_nodes(&mut self) {
        while self.nodes.len() < self.topology.masters.len() {
            let node = &self.topology.masters[self.nodes.len()];
            self.nodes
                .push(NodeState::new(node.addr(), node.host.clone()));
        }
    }

    /// The actions produced since the last call, oldest first.
    pub(crate) fn take_actions(&mut self) -> Vec<Action> {
        std::mem::take(&mut self.actions)
    }

    /// The error that stops the engine, if any.
    pub(crate) fn fatal(&self) -> Option<&WriterError> {
        self.fatal.as_ref()
    }

    /// Takes the fatal error.
    pub(crate) fn take_fatal(&mut self) -> Option<WriterError> {
        self.fatal.take()
    }

    /// The current connection generation of node `i`.
    pub(crate) fn generation(&self, i: usize) -> Option<u64> {
        self.nodes.get(i).map(|n| n.generation)
    }

    /// Nothing waits: no unit pending, every op acknowledged, no hold.
    pub(crate) fn is_idle(&self) -> bool {
        self.pending.is_empty() && self.progress.is_idle() && self.holds.is_empty()
    }

    /// Whether the handle's next command may be taken (nothing waits for
    /// room).
    pub(crate) fn accepting(&self) -> bool {
        self.pending.is_empty() && self.fatal.is_none()
    }

    pub(super) fn fail(&mut self, e: WriterError) {
        if self.fatal.is_none() {
            self.fatal = Some(e);
        }
    }

    /// Which nodes serve at least one slot in the current map.
    pub(super) fn serving(&self) -> Vec<bool> {
        let mut serving = vec![false; self.nodes.len()];
        for (_, _, n) in self.topology.slots.ranges() {
            if let Some(s) = serving.get_mut(n) {
                *s = true;
            }
        }
        serving
    }

    /// When the driver must call [`Core::on_timer`] at the latest: the
    /// earliest hold deadline that is the only thing keeping a hold, a due
    /// refresh, else the watchdog tick.
    pub(crate) fn next_wake(&self, now: Instant) -> Instant {
        let mut wake = now + TICK;
        for (&slot, hold) in &self.holds {
            if self.inflight[usize::from(slot)] == 0 {
                wake = wake.min(hold.not_before);
            }
        }
        if self.refresh.wanted
            && !self.refresh.running
            && let Some(t) = self.refresh.started
        {
            wake = wake.min(t + REFRESH_EVERY);
        }
        wake
    }

    /// The watchdog: due holds, unreachable nodes (refresh), stalled nodes
    /// (fatal).
    pub(crate) fn on_timer(&mut self, now: Instant) {
        self.now = now;
        self.telemetry.flush(now);
        self.release_ready();
        let serving = self.serving();
        let unreachable = self.nodes.iter().zip(&serving).any(|(n, &serves)| {
            !n.connected
                && (serves || !n.queue.is_empty())
                && n.lost_at
                    .is_some_and(|t| now.saturating_duration_since(t) >= REFRESH_GRACE)
        });
        if unreachable {
            self.request_refresh();
        }
        self.maybe_start_refresh();
        for node in &self.nodes {
            if let Some(since) = node.waiting_since
                && node.sent > 0
                && now.saturating_duration_since(since) > self.config.reply_timeout
            {
                let e = WriterError::Stalled {
                    node: node.addr.clone(),
                    over: now.saturating_duration_since(since),
                    pending: node.sent,
                };
                self.fatal.get_or_insert(e);
            }
        }
    }

    /// The end of a loop turn: seals open groups, writes what is ready,
    /// publishes the applied offset. `closed`: the handle is gone, every
    /// op is taken.
    pub(crate) fn end_turn(&mut self, now: Instant, closed: bool) {
        self.now = now;
        if closed {
            self.complete = self.last_offset;
        }
        self.seal(false);
        self.write_out();
        // Bounded by `complete`: acknowledging every op taken so far for
        // an offset says nothing about its ops still to come (all snapshot
        // keys share one offset).
        self.shared.applied.store(
            self.progress.applied().min(self.complete),
            Ordering::Release,
        );
    }
}

#[cfg(test)]
mod slot_hash_tests {
    use std::collections::HashSet;
    use std::hash::{BuildHasher, Hasher};

    use super::SlotHash;

    #[test]
    fn every_slot_hashes_apart_and_maps_work() {
        let hashes: HashSet<u64> = (0..16384u16)
            .map(|s| SlotHash::default().hash_one(s))
            .collect();
        assert_eq!(hashes.len(), 16384);
        let mut h = SlotHash::default().build_hasher();
        h.write(b"ab");
        assert_ne!(h.finish(), 0);
        let mut map: std::collections::HashMap<u16, u16, SlotHash> = Default::default();
        for s in (0..16384u16).rev() {
            map.insert(s, s ^ 7);
        }
        assert!((0..16384u16).all(|s| map.get(&s) == Some(&(s ^ 7))));
    }
}

//! The engine task: owns the topology, one pipeline and one in-flight queue
//! per node, and the per-slot holds that keep order across redirects.
//!
//! ```text
//! node queue:  [ e0 e1 e2 | e3 e4 ]      replies match entries front to back
//!                 written   ^ sent       entries past `sent` are written at the
//!                                        end of the current batch (or after a
//!                                        reconnect, when `sent` drops to 0)
//!
//! slot hold (one per slot being redirected or retried):
//!   reply MOVED/ASK/TRYAGAIN/... for entry e of slot s
//!     -> e goes to hold[s].resend (with its target: slot map, or ASK node)
//!     -> new ops for s go to hold[s].queued
//!     -> when no entry of s is in any node queue any more (inflight[s] == 0)
//!        and the backoff has passed: resend sorted by submission seq, then
//!        queued, each to its target; the hold is removed
//! ```
//!
//! Invariants: an entry is in exactly one place (a node queue, a hold's
//! resend list or queued list); `inflight[s]` counts entries of slot s in
//! node queues; an entry answered with a non-error reply is never sent
//! again. Ops for every master (`slot: None`) are not redirected: any error
//! reply on them is fatal, and they are resent only after a reconnect.
//!
//! Topology refresh: when a node has been unreachable for [`REFRESH_GRACE`]
//! (and still serves slots or holds entries), or a reply is `CLUSTERDOWN`,
//! `READONLY` or `MASTERDOWN`, the engine re-reads `CLUSTER SHARDS`
//! (fallback `CLUSTER SLOTS`) in a task, from reachable masters first, then
//! every other address seen (other masters, replicas, the seed); at most one
//! refresh runs and they start at most every [`REFRESH_EVERY`]. The new map
//! replaces the slot map (node indexes are kept; new masters are appended
//! and connected), and every unsent entry whose slot is now served by
//! another node, which on a disconnected node is every entry, moves into
//! its slot's hold as if redirected, so the hold machinery resends it in
//! submission order once nothing of the slot is in flight. Failing to get a
//! topology from any node for longer than `reconnect_for` is fatal; so is a
//! node that stays unreachable for `reconnect_for` while it still serves
//! slots or holds entries that cannot move (ops for every master).
//!
//! Checkpoints (optional) are entries of their own kind in a node's queue:
//! `SET <key> <offset>` with the highest offset all of whose ops for that
//! node are acknowledged. They are not ops: no progress group, no slot
//! accounting, never redirected (an error reply drops them and the next one
//! is written with a recomputed key).

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use ferry_ops::{ErrorKind, Redirect, SLOTS, SlotMap, Topology};
use ferry_resp::{Value, put_command};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use crate::conn::{Conn, ConnError, PipeEvent, Pipeline};
use crate::error::WriterError;
use crate::writer::{Op, Shared, TargetMode, WriterConfig, checkpoint_key, refresh_topology};

/// `*1\r\n$6\r\nASKING\r\n`.
const ASKING: &[u8] = b"*1\r\n$6\r\nASKING\r\n";
/// Events handled per loop turn before writes are flushed.
const BATCH_EVENTS: usize = 256;
/// Ops taken per loop turn before writes are flushed.
const BATCH_OPS: usize = 4096;
/// Chunks larger than this are passed to the writer task without copying.
const COPY_MAX: usize = 64 * 1024;
/// Watchdog period (stalled nodes, unreachable nodes).
const TICK: Duration = Duration::from_millis(250);
/// How long a node may be unreachable before the topology is re-read.
const REFRESH_GRACE: Duration = Duration::from_secs(1);
/// Least time between the starts of two topology refreshes.
const REFRESH_EVERY: Duration = Duration::from_millis(500);

/// A request from the handle.
#[derive(Debug)]
pub(crate) enum Cmd {
    Op(Op),
    Flush(oneshot::Sender<Result<(), WriterError>>),
    /// Stop checkpointing and `DEL` these keys (plus the current ones).
    RemoveCheckpoints(Vec<String>, RemoveReply),
    /// Every op with an offset at or below this one has been submitted.
    Complete(u64),
}

/// What an entry is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// A user op.
    Op,
    /// `SET <checkpoint key> <offset>`.
    Checkpoint(u64),
    /// `DEL <checkpoint key>...`.
    Remove,
}

/// The answer to `remove_checkpoints`: keys deleted.
type RemoveReply = oneshot::Sender<Result<u64, WriterError>>;

/// (node index, connection generation).
type Tag = (usize, u64);

enum Event {
    Pipe(Tag, PipeEvent),
    Connected(Tag, Result<Conn, ConnError>),
    Refreshed(Result<(Topology, Vec<String>), WriterError>),
}

/// Topology refresh state.
#[derive(Debug, Default)]
struct Refresh {
    /// A refresh task is running.
    running: bool,
    /// A refresh is wanted (started when none runs and the interval passed).
    wanted: bool,
    /// When the last one started.
    started: Option<Instant>,
    /// Since when refreshes have been failing.
    failing_since: Option<Instant>,
    /// Every node address seen (seed, replicas), fallback seeds.
    known: Vec<String>,
}

/// One op on its way to one node.
#[derive(Debug, Clone)]
struct Entry {
    kind: Kind,
    seq: u64,
    group: u64,
    op: Arc<Op>,
    wire: Bytes,
    /// Send `ASKING` first (after `-ASK`).
    asking: bool,
    /// The `ASKING` reply has been consumed.
    asking_done: bool,
    attempts: u32,
    first_failure: Option<Instant>,
}

impl Entry {
    fn bytes(&self) -> usize {
        self.wire.len() + if self.asking { ASKING.len() } else { 0 }
    }
}

#[derive(Debug, Clone, Copy)]
enum Target {
    /// Wherever the slot map says.
    Map,
    /// `ASKING` + the op on this node, once.
    Ask(usize),
}

#[derive(Debug)]
struct Hold {
    resend: Vec<(Entry, Target)>,
    queued: VecDeque<Entry>,
    not_before: Instant,
}

struct NodeState {
    addr: String,
    host: String,
    pipe: Option<Pipeline>,
    generation: u64,
    connecting: bool,
    queue: VecDeque<Entry>,
    /// Entries of `queue` written on the current connection.
    sent: usize,
    /// Bytes of the entries in `queue`.
    bytes: usize,
    /// When the oldest unanswered write was sent or the last reply came.
    waiting_since: Option<Instant>,
    /// Unreachable since (connection lost or never made).
    lost_at: Option<Instant>,
    /// Checkpoint read at connect time (ops at or below it are skipped
    /// with `skip_applied`).
    resume: Option<u64>,
    /// Current checkpoint key (recomputed when its slot moves).
    ckpt_key: Option<String>,
    /// Highest checkpoint value queued (or read at connect time).
    ckpt_written: u64,
    /// Highest checkpoint value acknowledged.
    ckpt_acked: u64,
    /// When the last checkpoint was queued.
    ckpt_at: Option<Instant>,
    /// No checkpoint before this (after an error reply to one).
    ckpt_retry_at: Option<Instant>,
}

pub(crate) struct Engine {
    topology: Topology,
    nodes: Vec<NodeState>,
    holds: HashMap<u16, Hold>,
    /// Entries per slot in node queues.
    inflight: Vec<u32>,
    held_bytes: usize,
    progress: crate::progress::Progress,
    seq: u64,
    config: WriterConfig,
    shared: Arc<Shared>,
    events_tx: mpsc::UnboundedSender<Event>,
    events_rx: mpsc::UnboundedReceiver<Event>,
    pipe_tx: mpsc::UnboundedSender<(Tag, PipeEvent)>,
    pipe_rx: mpsc::UnboundedReceiver<(Tag, PipeEvent)>,
    pending: Option<Op>,
    flushes: Vec<oneshot::Sender<Result<(), WriterError>>>,
    fatal: Option<WriterError>,
    /// Offset of the last op taken from the channel.
    last_offset: u64,
    /// Highest offset all of whose ops have been taken from the channel.
    complete: u64,
    /// Checkpoint and remove entries in node queues.
    ckpt_inflight: usize,
    /// Checkpoints stopped (`remove_checkpoints`).
    ckpt_off: bool,
    /// A `remove_checkpoints` waiting: (answer, DELs outstanding, deleted).
    removing: Option<(RemoveReply, usize, u64)>,
    refresh: Refresh,
}

impl Engine {
    pub(crate) fn new(
        topology: Topology,
        conns: Vec<Conn>,
        resume: Vec<Option<u64>>,
        known: Vec<String>,
        config: WriterConfig,
        shared: Arc<Shared>,
    ) -> Engine {
        let (events_tx, events_rx) = mpsc::unbounded_channel();
        let (pipe_tx, pipe_rx) = mpsc::unbounded_channel();
        let mut engine = Engine {
            nodes: Vec::new(),
            holds: HashMap::new(),
            inflight: vec![0; usize::from(SLOTS)],
            held_bytes: 0,
            progress: crate::progress::Progress::default(),
            seq: 0,
            config,
            shared,
            events_tx,
            events_rx,
            pipe_tx,
            pipe_rx,
            pending: None,
            flushes: Vec::new(),
            fatal: None,
            last_offset: 0,
            complete: 0,
            ckpt_inflight: 0,
            ckpt_off: false,
            removing: None,
            refresh: Refresh {
                known,
                ..Refresh::default()
            },
            topology,
        };
        engine.sync_nodes();
        for (node, r) in engine.nodes.iter_mut().zip(resume) {
            node.resume = r;
            node.ckpt_written = r.unwrap_or(0);
            node.ckpt_acked = r.unwrap_or(0);
        }
        for (i, conn) in conns.into_iter().enumerate() {
            let pipe = conn.into_pipeline((i, 0), engine.pipe_tx.clone());
            engine.nodes[i].pipe = Some(pipe);
        }
        engine
    }

    /// Adds a [`NodeState`] for every master the topology gained.
    fn sync_nodes(&mut self) {
        while self.nodes.len() < self.topology.masters.len() {
            let node = &self.topology.masters[self.nodes.len()];
            self.nodes.push(NodeState {
                addr: node.addr(),
                host: node.host.clone(),
                pipe: None,
                generation: 0,
                connecting: false,
                queue: VecDeque::new(),
                sent: 0,
                bytes: 0,
                waiting_since: None,
                lost_at: None,
                resume: None,
                ckpt_key: None,
                ckpt_written: 0,
                ckpt_acked: 0,
                ckpt_at: None,
                ckpt_retry_at: None,
            });
        }
    }

    pub(crate) async fn run(mut self, mut cmds: mpsc::Receiver<Cmd>) {
        let mut cmds_open = true;
        loop {
            if self.fatal.is_some() {
                break;
            }
            let wake = self.next_wake();
            let accept = cmds_open && self.pending.is_none();
            tokio::select! {
                biased;
                Some((tag, ev)) = self.pipe_rx.recv() => self.on_event(Event::Pipe(tag, ev)),
                Some(ev) = self.events_rx.recv() => self.on_event(ev),
                cmd = cmds.recv(), if accept => match cmd {
                    Some(cmd) => self.on_cmd(cmd),
                    None => cmds_open = false,
                },
                () = tokio::time::sleep_until(wake) => self.on_timer(),
            }
            for _ in 0..BATCH_EVENTS {
                match self.pipe_rx.try_recv() {
                    Ok((tag, ev)) => self.on_event(Event::Pipe(tag, ev)),
                    Err(_) => break,
                }
            }
            self.retry_pending();
            for _ in 0..BATCH_OPS {
                if !cmds_open || self.pending.is_some() || self.fatal.is_some() {
                    break;
                }
                match cmds.try_recv() {
                    Ok(cmd) => self.on_cmd(cmd),
                    Err(mpsc::error::TryRecvError::Empty) => break,
                    Err(mpsc::error::TryRecvError::Disconnected) => cmds_open = false,
                }
            }
            if !cmds_open {
                // Every op is taken: the last command is complete.
                self.complete = self.last_offset;
            }
            let force = (!self.flushes.is_empty() || !cmds_open) && self.is_idle();
            self.queue_checkpoints(force);
            self.write_out();
            // Bounded by `complete`: acknowledging every op taken so far
            // for an offset says nothing about its ops still to come (all
            // snapshot keys share one offset).
            self.shared
                .applied
                .fetch_max(self.progress.applied().min(self.complete), Ordering::AcqRel);
            if self.is_idle() && self.ckpt_inflight == 0 {
                for f in self.flushes.drain(..) {
                    let _ = f.send(Ok(()));
                }
                if !cmds_open {
                    break;
                }
            }
        }
        if let Some(e) = self.fatal.take() {
            self.shared.fail(e.clone());
            for f in self.flushes.drain(..) {
                let _ = f.send(Err(e.clone()));
            }
            if let Some((tx, _, _)) = self.removing.take() {
                let _ = tx.send(Err(e));
            }
        }
    }

    /// The highest offset such that every op at or below it that node `i`
    /// may still have to apply is acknowledged: bounded by the complete
    /// frontier, the node's unanswered ops and every held op (held ops may
    /// be pinned anywhere, so they bound all nodes).
    fn checkpoint_value(&self, i: usize) -> u64 {
        let mut c = self.complete;
        let mut bound = |e: &Entry| {
            if e.kind == Kind::Op {
                c = c.min(e.op.offset.saturating_sub(1));
            }
        };
        self.nodes[i].queue.iter().for_each(&mut bound);
        for hold in self.holds.values() {
            hold.resend.iter().for_each(|(e, _)| bound(e));
            hold.queued.iter().for_each(&mut bound);
        }
        c
    }

    /// Queues `SET <key> <offset>` on every node whose checkpoint moved and
    /// is due (`force`: ignore the interval).
    fn queue_checkpoints(&mut self, force: bool) {
        let Some(cfg) = &self.config.checkpoint else {
            return;
        };
        if self.ckpt_off || self.fatal.is_some() {
            return;
        }
        let (every, prefix) = (cfg.every, cfg.key_prefix.clone());
        let now = Instant::now();
        for i in 0..self.nodes.len() {
            let node = &self.nodes[i];
            if self.complete <= node.ckpt_written
                || node.ckpt_retry_at.is_some_and(|t| t > now)
                || (!force && node.ckpt_at.is_some_and(|t| now < t + every))
            {
                continue;
            }
            let value = self.checkpoint_value(i);
            if value <= self.nodes[i].ckpt_written {
                continue;
            }
            let Some(key) = self.current_key(i, &prefix) else {
                continue;
            };
            let args = vec![
                Bytes::from_static(b"SET"),
                Bytes::from(key),
                Bytes::from(value.to_string()),
            ];
            self.push_internal(i, Kind::Checkpoint(value), args);
            let node = &mut self.nodes[i];
            node.ckpt_written = value;
            node.ckpt_at = Some(now);
        }
    }

    /// Node `i`'s checkpoint key for the current slot map.
    fn current_key(&mut self, i: usize, prefix: &str) -> Option<String> {
        let valid = self.nodes[i].ckpt_key.as_ref().is_some_and(|k| {
            self.topology
                .slots
                .node_for(ferry_ops::key_slot(k.as_bytes()))
                == Some(i)
        });
        if !valid {
            self.nodes[i].ckpt_key = checkpoint_key(prefix, &self.topology, i);
        }
        self.nodes[i].ckpt_key.clone()
    }

    /// Queues a checkpoint or remove entry on node `i`.
    fn push_internal(&mut self, i: usize, kind: Kind, args: Vec<Bytes>) {
        let mut wire = BytesMut::with_capacity(ferry_resp::command_len(&args));
        put_command(&mut wire, &args);
        let entry = Entry {
            kind,
            seq: 0,
            group: 0,
            op: Arc::new(Op::all_masters(args, 0)),
            wire: wire.freeze(),
            asking: false,
            asking_done: false,
            attempts: 0,
            first_failure: None,
        };
        self.ckpt_inflight += 1;
        self.push(i, entry);
    }

    fn remove_checkpoints(&mut self, mut keys: Vec<String>, tx: RemoveReply) {
        self.ckpt_off = true;
        let prefix = self.config.checkpoint_prefix().to_owned();
        for i in 0..self.nodes.len() {
            if let Some(k) = self.current_key(i, &prefix) {
                keys.push(k);
            }
        }
        keys.sort();
        keys.dedup();
        // One DEL per key, on the node that serves it now.
        let mut sent = 0;
        for key in keys {
            let slot = ferry_ops::key_slot(key.as_bytes());
            let Some(i) = self.topology.slots.node_for(slot) else {
                continue;
            };
            let args = vec![Bytes::from_static(b"DEL"), Bytes::from(key)];
            self.push_internal(i, Kind::Remove, args);
            sent += 1;
        }
        if sent == 0 {
            let _ = tx.send(Ok(0));
        } else {
            self.removing = Some((tx, sent, 0));
        }
    }

    /// A reply to a checkpoint or remove entry.
    fn on_internal_reply(&mut self, i: usize, entry: &Entry, value: &Value) {
        self.ckpt_inflight -= 1;
        if let Value::Error(message) = value {
            let kind = ErrorKind::classify(message);
            if kind.is_redirect() {
                // The key's slot moved: learn it, so the key is recomputed.
                if let Some(r) = Redirect::parse(message) {
                    let host = self.nodes[i].host.clone();
                    self.topology.apply_redirect(&r, &host);
                    self.sync_nodes();
                }
            } else if kind.needs_refresh() {
                self.request_refresh();
            } else if !kind.is_transient() {
                self.fail(WriterError::Rejected {
                    node: self.nodes[i].addr.clone(),
                    command: String::from_utf8_lossy(&entry.op.args[0]).into_owned(),
                    key: String::from_utf8_lossy(&entry.op.args[1]).into_owned(),
                    reply: String::from_utf8_lossy(message).into_owned(),
                });
                return;
            }
            let node = &mut self.nodes[i];
            match entry.kind {
                Kind::Checkpoint(_) => {
                    node.ckpt_written = node.ckpt_acked;
                    node.ckpt_retry_at = Some(Instant::now() + self.config.backoff_max);
                }
                Kind::Remove => self.removed(0),
                Kind::Op => {}
            }
            return;
        }
        match entry.kind {
            Kind::Checkpoint(v) => {
                let node = &mut self.nodes[i];
                node.ckpt_acked = node.ckpt_acked.max(v);
                node.ckpt_retry_at = None;
                self.shared.checkpoints.fetch_add(1, Ordering::Relaxed);
            }
            Kind::Remove => {
                let n = match value {
                    Value::Integer(n) => u64::try_from(*n).unwrap_or(0),
                    _ => 0,
                };
                self.removed(n);
            }
            Kind::Op => {}
        }
    }

    fn removed(&mut self, n: u64) {
        if let Some((_, left, deleted)) = &mut self.removing {
            *left -= 1;
            *deleted += n;
            if *left == 0
                && let Some((tx, _, deleted)) = self.removing.take()
            {
                let _ = tx.send(Ok(deleted));
            }
        }
    }

    fn is_idle(&self) -> bool {
        self.pending.is_none() && self.progress.is_idle() && self.holds.is_empty()
    }

    fn fail(&mut self, e: WriterError) {
        if self.fatal.is_none() {
            self.fatal = Some(e);
        }
    }

    /// The earliest hold deadline that is the only thing keeping a hold,
    /// else the watchdog tick.
    fn next_wake(&self) -> Instant {
        let mut wake = Instant::now() + TICK;
        if let Some(cfg) = &self.config.checkpoint
            && !self.ckpt_off
        {
            // Only future deadlines: a due checkpoint that cannot move yet
            // waits for the replies that will move it.
            let now = Instant::now();
            for node in &self.nodes {
                if self.complete > node.ckpt_written {
                    let due = node.ckpt_at.map(|t| t + cfg.every);
                    for t in [due, node.ckpt_retry_at].into_iter().flatten() {
                        if t > now {
                            wake = wake.min(t);
                        }
                    }
                }
            }
        }
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

    /// Releases every hold with nothing in flight whose backoff has passed.
    fn release_ready(&mut self) {
        let now = Instant::now();
        let ready: Vec<u16> = self
            .holds
            .iter()
            .filter(|(s, h)| self.inflight[usize::from(**s)] == 0 && h.not_before <= now)
            .map(|(s, _)| *s)
            .collect();
        for slot in ready {
            self.release(slot);
        }
    }

    fn on_timer(&mut self) {
        self.release_ready();
        let serving = self.serving();
        let unreachable = self.nodes.iter().zip(&serving).any(|(n, &serves)| {
            n.pipe.is_none()
                && (serves || !n.queue.is_empty())
                && n.lost_at.is_some_and(|t| t.elapsed() >= REFRESH_GRACE)
        });
        if unreachable {
            self.request_refresh();
        }
        self.maybe_start_refresh();
        for node in &self.nodes {
            if let Some(since) = node.waiting_since
                && node.sent > 0
                && since.elapsed() > self.config.reply_timeout
            {
                let e = WriterError::Stalled {
                    node: node.addr.clone(),
                    over: since.elapsed(),
                    pending: node.sent,
                };
                self.fatal.get_or_insert(e);
            }
        }
    }

    fn on_cmd(&mut self, cmd: Cmd) {
        match cmd {
            Cmd::Flush(tx) => {
                // Everything before the flush is taken.
                self.complete = self.last_offset;
                self.flushes.push(tx);
            }
            Cmd::RemoveCheckpoints(keys, tx) => self.remove_checkpoints(keys, tx),
            Cmd::Complete(offset) => {
                self.complete = self.complete.max(offset.min(self.last_offset));
            }
            Cmd::Op(op) => {
                if op.offset > self.last_offset {
                    self.complete = self.complete.max(self.last_offset);
                    self.last_offset = op.offset;
                }
                if self.has_room(&op) {
                    self.accept(op);
                } else {
                    self.pending = Some(op);
                }
            }
        }
    }

    fn retry_pending(&mut self) {
        if let Some(op) = self.pending.take() {
            if self.has_room(&op) {
                self.accept(op);
            } else {
                self.pending = Some(op);
            }
        }
    }

    /// Whether `op` fits under the in-flight bound of where it goes. A node
    /// with nothing in flight always takes one op, however big.
    fn has_room(&self, op: &Op) -> bool {
        let len = ferry_resp::command_len(&op.args);
        let limit = self.config.max_inflight_bytes;
        let fits = |n: &NodeState| n.queue.is_empty() || n.bytes + len <= limit;

        match op.slot {
            Some(slot) if self.holds.contains_key(&slot) => {
                self.held_bytes == 0 || self.held_bytes + len <= limit
            }
            Some(slot) => match self.topology.slots.node_for(slot) {
                Some(i) => fits(&self.nodes[i]),
                None => self.held_bytes == 0 || self.held_bytes + len <= limit,
            },
            // A barrier: everything before it must be acknowledged, so a
            // redirected or retried op cannot land after a FLUSHALL it
            // preceded at the source.
            None => self.progress.is_idle() && self.holds.is_empty(),
        }
    }

    /// Whether node `i` already holds `offset` by its connect-time
    /// checkpoint (only with `skip_applied`).
    fn applied_on(&self, i: usize, offset: u64) -> bool {
        self.config.skip_applied && self.nodes[i].resume.is_some_and(|c| offset <= c)
    }

    fn accept(&mut self, op: Op) {
        let targets: Vec<usize> = match op.slot {
            Some(slot) => match self.topology.slots.node_for(slot) {
                Some(i) if self.applied_on(i, op.offset) => Vec::new(),
                _ => vec![usize::MAX],
            },
            // Every node that serves slots now (a master demoted by a
            // failover stays in `nodes` without slots).
            None => {
                let serving = self.serving();
                (0..self.nodes.len())
                    .filter(|&i| serving[i] && !self.applied_on(i, op.offset))
                    .collect()
            }
        };
        let skipped = match op.slot {
            Some(_) => u64::from(targets.is_empty()),
            None => {
                let serving = self.serving().iter().filter(|s| **s).count();
                serving.saturating_sub(targets.len()) as u64
            }
        };
        if skipped > 0 {
            self.shared.skipped.fetch_add(skipped, Ordering::Relaxed);
        }
        if targets.is_empty() {
            self.progress.add(op.offset, 0);
            return;
        }
        let mut wire = BytesMut::with_capacity(ferry_resp::command_len(&op.args));
        put_command(&mut wire, &op.args);
        let copies = u32::try_from(targets.len()).unwrap_or(u32::MAX);
        let group = self.progress.add(op.offset, copies);
        self.seq += 1;
        let slot = op.slot;
        let entry = Entry {
            kind: Kind::Op,
            seq: self.seq,
            group,
            op: Arc::new(op),
            wire: wire.freeze(),
            asking: false,
            asking_done: false,
            attempts: 0,
            first_failure: None,
        };
        match slot {
            Some(slot) => self.route(slot, entry),
            None => {
                for i in targets {
                    self.push(i, entry.clone());
                }
            }
        }
    }

    /// Sends `entry` for `slot` where it belongs now: behind a hold, to the
    /// slot's node, or into a new hold if no node serves the slot.
    fn route(&mut self, slot: u16, mut entry: Entry) {
        if let Some(hold) = self.holds.get_mut(&slot) {
            self.held_bytes += entry.wire.len();
            hold.queued.push_back(entry);
            return;
        }
        match self.topology.slots.node_for(slot) {
            Some(i) => self.push(i, entry),
            None => {
                if self.count_failure(slot, &mut entry, "slot not served by any node") {
                    let backoff = self.backoff(entry.attempts);
                    self.hold(slot, entry, Target::Map, backoff);
                }
            }
        }
    }

    fn push(&mut self, i: usize, entry: Entry) {
        if let Some(slot) = entry.op.slot {
            self.inflight[usize::from(slot)] += 1;
        }
        let node = &mut self.nodes[i];
        node.bytes += entry.bytes();
        node.queue.push_back(entry);
        if node.pipe.is_none() && !node.connecting {
            self.connect(i);
        }
    }

    /// Counts a failed attempt; `false` (and fatal) once past the bound.
    fn count_failure(&mut self, slot: u16, entry: &mut Entry, last: &str) -> bool {
        entry.attempts += 1;
        let first = *entry.first_failure.get_or_insert_with(Instant::now);
        if first.elapsed() > self.config.retry_for {
            self.fail(WriterError::RetriesExhausted {
                slot,
                attempts: entry.attempts,
                over: first.elapsed(),
                last: last.to_owned(),
            });
            return false;
        }
        true
    }

    fn backoff(&self, attempts: u32) -> Duration {
        let factor = 1u32 << attempts.saturating_sub(1).min(16);
        (self.config.backoff_min * factor).min(self.config.backoff_max)
    }

    /// Puts an answered-with-redirect/retry entry into the slot's hold.
    fn hold(&mut self, slot: u16, mut entry: Entry, target: Target, backoff: Duration) {
        entry.asking = matches!(target, Target::Ask(_));
        entry.asking_done = false;
        self.held_bytes += entry.wire.len();
        let not_before = Instant::now() + backoff;
        let hold = self.holds.entry(slot).or_insert_with(|| Hold {
            resend: Vec::new(),
            queued: VecDeque::new(),
            not_before,
        });
        hold.not_before = hold.not_before.max(not_before);
        hold.resend.push((entry, target));
    }

    /// Releases the hold of `slot` if nothing of it is in flight and its
    /// backoff has passed.
    fn maybe_release(&mut self, slot: u16) {
        if self.inflight[usize::from(slot)] == 0
            && self
                .holds
                .get(&slot)
                .is_some_and(|h| h.not_before <= Instant::now())
        {
            self.release(slot);
        }
    }

    fn release(&mut self, slot: u16) {
        let Some(mut hold) = self.holds.remove(&slot) else {
            return;
        };
        hold.resend.sort_by_key(|(e, _)| e.seq);
        for (entry, target) in hold.resend {
            self.held_bytes -= entry.wire.len();
            match target {
                Target::Ask(i) if !self.holds.contains_key(&slot) => self.push(i, entry),
                _ => self.route(slot, entry),
            }
        }
        for entry in hold.queued {
            self.held_bytes -= entry.wire.len();
            self.route(slot, entry);
        }
    }

    fn on_event(&mut self, event: Event) {
        match event {
            Event::Pipe((i, generation), ev) => {
                if self.nodes[i].generation != generation {
                    return;
                }
                match ev {
                    PipeEvent::Replies(values) => self.on_replies(i, values),
                    PipeEvent::Lost(e) => self.on_lost(i, e),
                }
            }
            Event::Refreshed(result) => self.on_refreshed(result),
            Event::Connected((i, generation), result) => {
                if self.nodes[i].generation != generation {
                    return;
                }
                let serves = self.serving()[i];
                let node = &mut self.nodes[i];
                node.connecting = false;
                match result {
                    Ok(conn) => {
                        node.pipe = Some(conn.into_pipeline((i, generation), self.pipe_tx.clone()));
                        node.sent = 0;
                        node.lost_at = None;
                        if generation > 0 {
                            self.shared.reconnects.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    // A master that a failover replaced, with nothing left
                    // to send: forget it (connected again if it ever gets
                    // slots back).
                    Err(_) if !serves && node.queue.is_empty() => {}
                    Err(reason) => {
                        let e = WriterError::Unreachable {
                            node: node.addr.clone(),
                            over: self.config.reconnect_for,
                            reason,
                        };
                        self.fail(e);
                    }
                }
            }
        }
    }

    fn on_lost(&mut self, i: usize, _error: ConnError) {
        let node = &mut self.nodes[i];
        node.pipe = None;
        node.generation += 1;
        node.sent = 0;
        node.waiting_since = None;
        for e in &mut node.queue {
            e.asking_done = false;
        }
        self.connect(i);
    }

    /// Spawns a (bounded) reconnect loop for node `i`'s current generation.
    fn connect(&mut self, i: usize) {
        let node = &mut self.nodes[i];
        node.connecting = true;
        node.lost_at.get_or_insert_with(Instant::now);
        let tag = (i, node.generation);
        let addr = node.addr.clone();
        let auth = self.config.auth.clone();
        let tls = self.config.tls.clone();
        // Standalone: back on the db of the last acknowledged SELECT (the
        // ops to resend come after it).
        let db = (self.config.mode == TargetMode::Standalone)
            .then(|| self.shared.selected_db.load(Ordering::Acquire))
            .filter(|db| *db != 0);
        let timeout = self.config.connect_timeout;
        let give_up = Instant::now() + self.config.reconnect_for;
        let (min, max) = (self.config.backoff_min, self.config.backoff_max);
        let tx = self.events_tx.clone();
        tokio::spawn(async move {
            let mut delay = min;
            let result = loop {
                let conn = match (
                    Conn::connect_tls(&addr, &auth, timeout, tls.as_ref()).await,
                    db,
                ) {
                    (Ok(mut conn), Some(db)) => conn.select(db, timeout).await.map(|()| conn),
                    (result, _) => result,
                };
                match conn {
                    Ok(conn) => break Ok(conn),
                    // A bad certificate, a refused AUTH or SELECT does not heal.
                    Err(
                        e @ (ConnError::Tls { .. }
                        | ConnError::Auth { .. }
                        | ConnError::Select { .. }),
                    ) => break Err(e),
                    Err(e) if Instant::now() + delay >= give_up => break Err(e),
                    Err(_) => {
                        tokio::time::sleep(delay).await;
                        delay = (delay * 2).min(max);
                    }
                }
            };
            let _ = tx.send(Event::Connected(tag, result));
        });
    }

    fn on_replies(&mut self, i: usize, values: Vec<Value>) {
        let mut touched: Vec<u16> = Vec::new();
        for value in values {
            let node = &mut self.nodes[i];
            let Some(front) = node.queue.front_mut() else {
                let e = WriterError::Unexpected {
                    node: node.addr.clone(),
                    reply: format!("{value:?}"),
                };
                self.fail(e);
                return;
            };
            if front.asking && !front.asking_done {
                front.asking_done = true;
                if value.is_error() {
                    let e = WriterError::Unexpected {
                        node: node.addr.clone(),
                        reply: format!("{value:?} to ASKING"),
                    };
                    self.fail(e);
                    return;
                }
                continue;
            }
            let entry = node.queue.pop_front().expect("front exists");
            node.sent = node.sent.saturating_sub(1);
            node.bytes -= entry.bytes();
            if entry.kind != Kind::Op {
                self.on_internal_reply(i, &entry, &value);
                if self.fatal.is_some() {
                    return;
                }
                continue;
            }
            if let Some(slot) = entry.op.slot {
                self.inflight[usize::from(slot)] -= 1;
                touched.push(slot);
            }
            self.on_reply(i, entry, value);
            if self.fatal.is_some() {
                return;
            }
        }
        let node = &mut self.nodes[i];
        node.waiting_since = (node.sent > 0).then(Instant::now);
        touched.sort_unstable();
        touched.dedup();
        for slot in touched {
            self.maybe_release(slot);
        }
    }

    fn on_reply(&mut self, i: usize, mut entry: Entry, value: Value) {
        let Value::Error(message) = &value else {
            self.shared.acked_op(&entry.op.args);
            self.progress.ack(entry.group);
            self.shared.acked.fetch_add(1, Ordering::Relaxed);
            return;
        };
        let kind = ErrorKind::classify(message);
        let text = String::from_utf8_lossy(message).into_owned();
        let redirect = if kind.is_redirect() {
            Redirect::parse(message)
        } else {
            None
        };
        match (entry.op.slot, kind, redirect) {
            (Some(slot), ErrorKind::Moved | ErrorKind::Ask, Some(r)) => {
                let host = self.nodes[i].host.clone();
                let to = self.topology.apply_redirect(&r, &host);
                self.sync_nodes();
                let target = if kind == ErrorKind::Moved {
                    self.shared.moved.fetch_add(1, Ordering::Relaxed);
                    Target::Map
                } else {
                    self.shared.ask.fetch_add(1, Ordering::Relaxed);
                    Target::Ask(to)
                };
                // A redirect loop (e.g. two nodes disagreeing) is bounded
                // like any retry.
                if entry.attempts >= 16 && !self.count_failure(slot, &mut entry, &text) {
                    return;
                }
                entry.attempts += 1;
                self.hold(slot, entry, target, Duration::ZERO);
            }
            (
                Some(slot),
                ErrorKind::TryAgain
                | ErrorKind::ClusterDown
                | ErrorKind::Loading
                | ErrorKind::Busy
                | ErrorKind::MasterDown
                | ErrorKind::ReadOnly,
                _,
            ) if self.config.mode != TargetMode::Standalone => {
                self.shared.retries.fetch_add(1, Ordering::Relaxed);
                if kind.needs_refresh() {
                    self.request_refresh();
                }
                if self.count_failure(slot, &mut entry, &text) {
                    let backoff = self.backoff(entry.attempts);
                    self.hold(slot, entry, Target::Map, backoff);
                }
            }
            _ => {
                let args = &entry.op.args;
                let show = |b: Option<&Bytes>| {
                    b.map_or_else(
                        || "-".to_owned(),
                        |b| {
                            let mut s = b[..b.len().min(64)].escape_ascii().to_string();
                            if b.len() > 64 {
                                s.push_str(&format!("...({} bytes)", b.len()));
                            }
                            s
                        },
                    )
                };
                let e = WriterError::Rejected {
                    node: self.nodes[i].addr.clone(),
                    command: show(args.first()),
                    key: show(args.get(1)),
                    reply: text,
                };
                self.fail(e);
            }
        }
    }

    /// Which nodes serve at least one slot in the current map.
    fn serving(&self) -> Vec<bool> {
        let mut serving = vec![false; self.nodes.len()];
        for (_, _, n) in self.topology.slots.ranges() {
            if let Some(s) = serving.get_mut(n) {
                *s = true;
            }
        }
        serving
    }

    fn request_refresh(&mut self) {
        self.refresh.wanted = true;
        self.maybe_start_refresh();
    }

    /// Starts a refresh task if one is wanted, none runs and the last one
    /// started at least [`REFRESH_EVERY`] ago.
    fn maybe_start_refresh(&mut self) {
        let r = &self.refresh;
        if !r.wanted
            || r.running
            || self.fatal.is_some()
            || r.started.is_some_and(|t| t.elapsed() < REFRESH_EVERY)
        {
            return;
        }
        // Reachable masters that serve slots, other reachable nodes, the
        // unreachable ones, then every other address seen.
        let serving = self.serving();
        let mut order: Vec<(u8, String)> = self
            .nodes
            .iter()
            .zip(&serving)
            .map(|(n, &serves)| {
                let rank = match (n.pipe.is_some(), serves) {
                    (true, true) => 0,
                    (true, false) => 1,
                    (false, _) => 3,
                };
                (rank, n.addr.clone())
            })
            .collect();
        order.extend(self.refresh.known.iter().map(|a| (2, a.clone())));
        order.sort_by_key(|(rank, _)| *rank);
        let mut addrs: Vec<String> = Vec::with_capacity(order.len());
        for (_, a) in order {
            if !addrs.contains(&a) {
                addrs.push(a);
            }
        }
        self.refresh.wanted = false;
        self.refresh.running = true;
        self.refresh.started = Some(Instant::now());
        let config = self.config.clone();
        let tx = self.events_tx.clone();
        tokio::spawn(async move {
            let result = refresh_topology(addrs, config).await;
            let _ = tx.send(Event::Refreshed(result));
        });
    }

    fn on_refreshed(&mut self, result: Result<(Topology, Vec<String>), WriterError>) {
        self.refresh.running = false;
        match result {
            Err(e) => {
                let since = *self.refresh.failing_since.get_or_insert_with(Instant::now);
                if since.elapsed() > self.config.reconnect_for {
                    self.fail(WriterError::TopologyRefresh {
                        over: since.elapsed(),
                        last: e.to_string(),
                    });
                    return;
                }
                self.refresh.wanted = true;
            }
            Ok((topology, known)) => {
                self.refresh.failing_since = None;
                self.shared.refreshes.fetch_add(1, Ordering::Relaxed);
                for a in known {
                    if !self.refresh.known.contains(&a) {
                        self.refresh.known.push(a);
                    }
                }
                self.apply_topology(&topology);
            }
        }
    }

    /// Replaces the slot map with `new`'s (keeping node indexes), connects
    /// to masters that serve slots and have no connection, and moves every
    /// entry that now belongs elsewhere into its slot's hold.
    fn apply_topology(&mut self, new: &Topology) {
        let index: Vec<usize> = new
            .masters
            .iter()
            .map(|m| {
                self.topology.index_of(&m.host, m.port).unwrap_or_else(|| {
                    self.topology.masters.push(m.clone());
                    self.topology.masters.len() - 1
                })
            })
            .collect();
        let mut slots = SlotMap::new();
        for (start, end, n) in new.slots.ranges() {
            // Ranges of a parsed map never overlap.
            let _ = slots.set_range(start, end, index[n]);
        }
        let changed = slots != self.topology.slots;
        self.topology.slots = slots;
        self.sync_nodes();
        let serving = self.serving();
        for (i, &serves) in serving.iter().enumerate() {
            let node = &self.nodes[i];
            if serves && node.pipe.is_none() && !node.connecting {
                self.connect(i);
            }
        }
        self.reroute();
        if changed {
            // Retry what the old map made wait, now.
            let now = Instant::now();
            for hold in self.holds.values_mut() {
                hold.not_before = hold.not_before.min(now);
            }
        }
        self.release_ready();
    }

    /// Moves every unsent op entry whose slot another node serves now (on a
    /// disconnected node: every such entry, sent or not) into its slot's
    /// hold; drops checkpoints queued on a disconnected node that serves no
    /// slot any more (the next one goes to the slot's new owner).
    fn reroute(&mut self) {
        let serving = self.serving();
        let mut touched: Vec<u16> = Vec::new();
        for (i, &serves) in serving.iter().enumerate() {
            let slots = &self.topology.slots;
            let node = &mut self.nodes[i];
            let from = node.sent;
            let disconnected = node.pipe.is_none();
            if from >= node.queue.len() {
                continue;
            }
            let tail: Vec<Entry> = node.queue.drain(from..).collect();
            let mut moved = Vec::new();
            let mut dropped = 0;
            for e in tail {
                let elsewhere =
                    e.op.slot
                        .filter(|_| e.kind == Kind::Op && (disconnected || !e.asking))
                        .is_some_and(|s| slots.node_for(s) != Some(i));
                let stale_ckpt = disconnected && !serves && matches!(e.kind, Kind::Checkpoint(_));
                if elsewhere || stale_ckpt {
                    node.bytes -= e.bytes();
                    if stale_ckpt {
                        dropped += 1;
                    } else {
                        moved.push(e);
                    }
                } else {
                    node.queue.push_back(e);
                }
            }
            if dropped > 0 {
                node.ckpt_written = node.ckpt_acked;
                self.ckpt_inflight -= dropped;
            }
            for e in moved {
                let slot = e.op.slot.expect("moved entries have a slot");
                self.inflight[usize::from(slot)] -= 1;
                touched.push(slot);
                self.hold(slot, e, Target::Map, Duration::ZERO);
            }
        }
        touched.sort_unstable();
        touched.dedup();
        for slot in touched {
            self.maybe_release(slot);
        }
    }

    /// Writes every entry not yet written, one chunk per node.
    fn write_out(&mut self) {
        for node in &mut self.nodes {
            let Some(pipe) = &node.pipe else { continue };
            if node.sent >= node.queue.len() {
                continue;
            }
            let mut buf = BytesMut::new();
            for e in node.queue.range(node.sent..) {
                if e.asking && !e.asking_done {
                    buf.extend_from_slice(ASKING);
                }
                if e.wire.len() > COPY_MAX {
                    if !buf.is_empty() {
                        pipe.send(buf.split().freeze());
                    }
                    pipe.send(e.wire.clone());
                } else {
                    buf.extend_from_slice(&e.wire);
                }
            }
            if !buf.is_empty() {
                pipe.send(buf.freeze());
            }
            if node.sent == 0 {
                node.waiting_since = Some(Instant::now());
            }
            node.sent = node.queue.len();
        }
    }
}

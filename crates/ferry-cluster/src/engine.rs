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
//! Checkpoint mode (with `WriterConfig::checkpoint`, while checkpointing is
//! on): ops are not queued one by one but collected per slot ("open
//! groups") and sealed at the end of a loop turn into one `Txn` entry:
//! `MULTI, ops..., SET <ckpt key of the slot> <history>:<last offset>, EXEC`.
//! A slot's group is sealed only when no `Txn` of that slot is in a node
//! queue or a hold (one transaction per slot at a time: a later one must not
//! commit a higher checkpoint while an earlier one may still be refused).
//! A `Txn` entry is one entry for the slot accounting and the holds; it
//! consumes `ops + 3` replies, the last one (`EXEC`) deciding: an array is a
//! commit (an error inside it is fatal, as for a plain op), an error
//! (`EXECABORT` after a `MOVED`/`TRYAGAIN` at queue time) means nothing was
//! applied and the entry is redirected or retried whole; after `ASK` it is
//! retried with backoff until the migration ends (it cannot follow `ASK`:
//! its keys may be on both sides). Ops for every master become one `Txn`
//! per master with a barrier key. `Txn` entries written before without a
//! final reply (connection lost, moved by a failover) are written again
//! only after `GET`s of their keys say they did not commit ("probes": sent
//! together, in queue order, after the normal writes; nothing else is
//! written on the node until every probe is answered).
//!
//! With `WriterConfig::wait_replicas`, a committed `Txn` is parked on its
//! node (`unconfirmed`) instead of acknowledged; a `Wait` entry
//! (`WAIT 1 <ms>`, at most one per node, written when everything before it
//! is written and no probe is out) acknowledges every parked transaction of
//! the node when its reply is at least 1. A lost connection puts the parked
//! ones back at the front of the node's queue as written-without-reply, so
//! they are probed (and resent if missing) wherever their slot is served
//! next, e.g. on a promoted replica. A `WAIT` refused because the node is
//! no longer a master (a graceful failover demoted it: `ERR WAIT cannot be
//! used with replica instances`, `UNBLOCKED`; or `READONLY`, `LOADING`,
//! `CLUSTERDOWN`, ...) refreshes the topology and moves the parked ones
//! into their slots' holds, marked written, for the same probe.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use ferry_ops::{ErrorKind, Redirect, SLOTS, SlotMap, Topology};
use ferry_resp::{Value, put_command};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use crate::checkpoint::{self, Resume};
use crate::config::{Op, TargetMode, WriterConfig};
use crate::conn::{Conn, ConnError, PipeEvent, Pipeline};
use crate::discovery::refresh_topology;
use crate::error::WriterError;
use crate::shared::Shared;

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

/// A command argument for an error message: escaped, cut at 64 bytes; `-`
/// when absent.
fn show(b: Option<&Bytes>) -> String {
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
}

/// `UNBLOCKED ...`: a blocked command (a `WAIT`) of a master that turned
/// into a replica; the server closes the connection after it.
fn unblocked(message: &[u8]) -> bool {
    message
        .strip_prefix(b"-")
        .unwrap_or(message)
        .starts_with(b"UNBLOCKED")
}

/// An error reply that says the node is not (or no longer) a master able to
/// take this: `WAIT` on a replica, `UNBLOCKED` by a demotion.
fn demoted(message: &[u8]) -> bool {
    let m = message.strip_prefix(b"-").unwrap_or(message);
    unblocked(m) || m.starts_with(b"ERR WAIT cannot be used with replica")
}

/// An error reply a master gives while it is demoted, fails or restarts
/// (redirects, `READONLY`, `LOADING`, `CLUSTERDOWN`, `MASTERDOWN`,
/// `TRYAGAIN`, `BUSY`, [`demoted`]): a topology change to follow, never
/// fatal by itself (retries stay bounded by `retry_for`).
fn topology_changing(message: &[u8]) -> bool {
    let kind = ErrorKind::classify(message);
    kind.is_redirect() || kind.is_transient() || demoted(message)
}

/// A request from the handle.
#[derive(Debug)]
pub(crate) enum Cmd {
    Op(Op),
    /// Ops to commit together if they share a slot.
    Group(Vec<Op>),
    Flush(oneshot::Sender<Result<(), WriterError>>),
    /// Checkpoint mode on/off for the ops after it.
    Checkpointing(bool),
    /// A new source history (sent when idle).
    NewHistory(String, oneshot::Sender<()>),
    /// Every op with an offset at or below this one has been submitted.
    Complete(u64),
}

/// What an entry is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// A user op, sent as is.
    Op,
    /// `MULTI, ops..., SET <key> <value>, EXEC` (see [`Txn`]).
    Txn,
    /// `WAIT 1 <ms>` after committed transactions
    /// ([`WriterConfig::wait_replicas`]).
    Wait,
}

/// The parts of a `Txn` entry.
#[derive(Debug)]
struct Txn {
    /// The ops inside (for error messages).
    ops: Vec<Arc<Op>>,
    /// Their progress groups, acknowledged on commit.
    groups: Vec<u64>,
    /// The checkpoint or barrier key set inside.
    key: Bytes,
    /// The offset written into it.
    offset: u64,
}

/// Ops of one slot collected during a loop turn.
#[derive(Debug, Default)]
struct OpenGroup {
    ops: Vec<Arc<Op>>,
    groups: Vec<u64>,
    bytes: usize,
}

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
    /// `Txn` entries: the parts.
    txn: Option<Arc<Txn>>,
    /// `Txn` entries: replies consumed in the current attempt.
    replies: u32,
    /// `Txn` entries: the first error reply while queueing.
    queue_error: Option<Bytes>,
    /// `Txn` entries: written and not known to have failed (a resend needs
    /// a probe first).
    written: bool,
    /// `Txn` entries: a probe `GET` is in flight on this connection
    /// generation.
    probe: Option<u64>,
}

impl Entry {
    fn new(kind: Kind, seq: u64, group: u64, op: Arc<Op>, wire: Bytes) -> Entry {
        Entry {
            kind,
            seq,
            group,
            op,
            wire,
            asking: false,
            asking_done: false,
            attempts: 0,
            first_failure: None,
            txn: None,
            replies: 0,
            queue_error: None,
            written: false,
            probe: None,
        }
    }

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
    /// Barrier read at connect time (`skip_applied`).
    barrier: u64,
    /// Probes in flight, on connection generation `.1`.
    probes: (usize, u64),
    /// Committed `Txn` entries no replica is known to have yet
    /// ([`WriterConfig::wait_replicas`]), oldest first.
    unconfirmed: Vec<Entry>,
    /// A `WAIT` entry is in `queue`.
    wait_queued: bool,
}

impl NodeState {
    /// Probes in flight on the current connection.
    fn probing(&self) -> usize {
        if self.probes.1 == self.generation {
            self.probes.0
        } else {
            0
        }
    }
}

pub(crate) struct Engine {
    /// The highest op offset submitted so far.
    last_offset: u64,
    /// Every op at or below this offset has been submitted: the applied
    /// offset never passes it (all snapshot keys share one offset).
    complete: u64,
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
    /// Units taken from the channel that wait for room, oldest first.
    pending: VecDeque<Vec<Op>>,
    flushes: Vec<oneshot::Sender<Result<(), WriterError>>>,
    fatal: Option<WriterError>,
    refresh: Refresh,
    /// Checkpoint mode is on.
    txn_on: bool,
    /// The source history written into checkpoint values.
    history: String,
    /// Per slot: the connect-time checkpoint (0: none; `skip_applied`).
    slot_resume: Vec<u64>,
    /// Open groups of this loop turn, per slot.
    open: HashMap<u16, OpenGroup>,
    /// Bytes of the open groups.
    open_bytes: usize,
}

impl Engine {
    pub(crate) fn new(
        topology: Topology,
        conns: Vec<Conn>,
        resume: Resume,
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
            last_offset: 0,
            complete: 0,
            seq: 0,
            config,
            shared,
            events_tx,
            events_rx,
            pipe_tx,
            pipe_rx,
            pending: VecDeque::new(),
            flushes: Vec::new(),
            fatal: None,
            refresh: Refresh {
                known,
                ..Refresh::default()
            },
            topology,
            txn_on: false,
            history: String::new(),
            slot_resume: vec![0; usize::from(SLOTS)],
            open: HashMap::new(),
            open_bytes: 0,
        };
        if let Some(c) = &engine.config.checkpoint {
            engine.txn_on = true;
            engine.history = c.history.clone();
        }
        engine.sync_nodes();
        if engine.config.skip_applied && resume.slot.len() == usize::from(SLOTS) {
            engine.slot_resume = resume.slot;
            for (node, b) in engine.nodes.iter_mut().zip(resume.node_barrier) {
                node.barrier = b;
            }
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
                barrier: 0,
                probes: (0, 0),
                unconfirmed: Vec::new(),
                wait_queued: false,
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
            let accept = cmds_open && self.pending.is_empty();
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
                if !cmds_open || !self.pending.is_empty() || self.fatal.is_some() {
                    break;
                }
                match cmds.try_recv() {
                    Ok(cmd) => self.on_cmd(cmd),
                    Err(mpsc::error::TryRecvError::Empty) => break,
                    Err(mpsc::error::TryRecvError::Disconnected) => cmds_open = false,
                }
            }
            if !cmds_open {
                // Closed: every op is taken.
                self.complete = self.last_offset;
            }
            self.seal_open();
            self.write_out();
            // Bounded by `complete`: acknowledging every op taken so far
            // for an offset says nothing about its ops still to come (all
            // snapshot keys share one offset).
            self.shared.applied.store(
                self.progress.applied().min(self.complete),
                Ordering::Release,
            );
            if self.is_idle() {
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
        }
    }

    /// Seals the open group of every slot with no transaction in flight
    /// or held into a `Txn` entry and routes it (`all`: every open group,
    /// when leaving checkpoint mode).
    ///
    /// One transaction per slot at a time: a later group of a slot must not
    /// commit (and checkpoint a higher offset) while an earlier one may
    /// still be refused and retried. Ops arriving meanwhile join the open
    /// group, so a busy slot commits bigger groups.
    fn seal_open(&mut self) {
        self.seal(false);
    }

    fn seal(&mut self, all: bool) {
        if self.open.is_empty() {
            return;
        }
        let mut ready: Vec<u16> = self
            .open
            .keys()
            .copied()
            .filter(|&s| {
                all || (self.inflight[usize::from(s)] == 0 && !self.holds.contains_key(&s))
            })
            .collect();
        ready.sort_unstable();
        for slot in ready {
            let g = self.open.remove(&slot).expect("an open group");
            self.open_bytes -= g.bytes;
            let offset = g.ops.last().map_or(0, |o| o.offset);
            let key = Bytes::from(checkpoint::ckpt_key(slot));
            let ops: Vec<&[Bytes]> = g.ops.iter().map(|o| o.args.as_slice()).collect();
            let wire = self.txn_wire(&ops, &key, offset);
            self.seq += 1;
            let mut entry = Entry::new(
                Kind::Txn,
                self.seq,
                0,
                Arc::new(Op::slot(Vec::new(), slot, offset)),
                wire,
            );
            entry.txn = Some(Arc::new(Txn {
                ops: g.ops,
                groups: g.groups,
                key,
                offset,
            }));
            self.route(slot, entry);
        }
    }

    /// `MULTI, ops..., SET key <history>:<offset>, EXEC`.
    fn txn_wire(&self, ops: &[&[Bytes]], key: &Bytes, offset: u64) -> Bytes {
        let value = Bytes::from(checkpoint::encode(&self.history, offset));
        let set = [Bytes::from_static(b"SET"), key.clone(), value];
        let len: usize = ops.iter().map(|o| ferry_resp::command_len(o)).sum();
        let mut wire = BytesMut::with_capacity(len + ferry_resp::command_len(&set) + 40);
        wire.extend_from_slice(b"*1\r\n$5\r\nMULTI\r\n");
        for o in ops {
            put_command(&mut wire, o);
        }
        put_command(&mut wire, &set);
        wire.extend_from_slice(b"*1\r\n$4\r\nEXEC\r\n");
        wire.freeze()
    }

    /// The final reply (`EXEC`) of a `Txn` entry.
    fn on_txn_reply(&mut self, i: usize, mut entry: Entry, value: Value) {
        let txn = Arc::clone(entry.txn.as_ref().expect("a Txn entry has parts"));
        match value {
            Value::Array(results) => {
                for (k, r) in results.iter().enumerate() {
                    if let Value::Error(message) = r {
                        let (command, key) = match txn.ops.get(k) {
                            Some(op) => (show(op.args.first()), show(op.args.get(1))),
                            None => ("SET".to_owned(), show(Some(&txn.key))),
                        };
                        self.fail(WriterError::Rejected {
                            node: self.nodes[i].addr.clone(),
                            command,
                            key,
                            reply: String::from_utf8_lossy(message).into_owned(),
                        });
                        return;
                    }
                }
                self.shared.checkpoints.fetch_add(1, Ordering::Relaxed);
                self.committed_on(i, entry);
            }
            Value::Error(message) => {
                // Nothing of it was applied: redirect or retry it whole.
                let cause = entry.queue_error.take().unwrap_or(message);
                entry.written = false;
                self.on_error(i, entry, &cause);
            }
            other => self.fail(WriterError::Unexpected {
                node: self.nodes[i].addr.clone(),
                reply: format!("{other:?} to EXEC"),
            }),
        }
    }

    /// A transaction committed on node `i`: acknowledged now, or, with
    /// [`WriterConfig::wait_replicas`], once a `WAIT` on that node says a
    /// replica has it.
    fn committed_on(&mut self, i: usize, mut entry: Entry) {
        if self.config.wait_replicas.is_some() {
            entry.probe = None;
            entry.written = true;
            self.nodes[i].unconfirmed.push(entry);
            return;
        }
        let txn = Arc::clone(entry.txn.as_ref().expect("a Txn entry has parts"));
        self.committed(&txn);
    }

    /// The reply to a `WAIT 1 <ms>` on node `i`: every transaction
    /// committed before it is on a replica when the count is at least 1.
    fn on_wait_reply(&mut self, i: usize, value: &Value) {
        self.nodes[i].wait_queued = false;
        match value {
            Value::Integer(n) if *n >= 1 => {
                let done = std::mem::take(&mut self.nodes[i].unconfirmed);
                for e in done {
                    let txn = Arc::clone(e.txn.as_ref().expect("a Txn entry has parts"));
                    self.committed(&txn);
                }
            }
            Value::Integer(_) => {
                // No replica within the timeout: the transactions stay
                // unconfirmed (the applied offset waits) and the next
                // `WAIT` asks again.
                self.shared.wait_timeouts.fetch_add(1, Ordering::Relaxed);
            }
            // The node is no longer a master that can confirm anything
            // (demoted by a failover: `ERR WAIT cannot be used with replica
            // instances`, or `UNBLOCKED` when it was demoted during the
            // `WAIT`; restarting; cut off): a topology change.
            Value::Error(message)
                if self.config.mode != TargetMode::Standalone && topology_changing(message) =>
            {
                self.on_demoted(i, message);
            }
            other => self.fail(WriterError::Unexpected {
                node: self.nodes[i].addr.clone(),
                reply: format!("{other:?} to WAIT"),
            }),
        }
    }

    /// Node `i` refused a `WAIT` because it is no longer (or not yet) a
    /// master that can confirm: the topology is read again, and the
    /// transactions it committed without confirmation go into their slots'
    /// holds as written-without-reply, so they are probed (skipped if
    /// present, resent if absent) wherever their slot is served next,
    /// before anything newer of the slot (holds resend in submission
    /// order).
    fn on_demoted(&mut self, i: usize, message: &Bytes) {
        let text = String::from_utf8_lossy(message).into_owned();
        self.shared.retries.fetch_add(1, Ordering::Relaxed);
        self.request_refresh();
        let unconfirmed = std::mem::take(&mut self.nodes[i].unconfirmed);
        self.shared
            .reprobed
            .fetch_add(unconfirmed.len() as u64, Ordering::Relaxed);
        for mut e in unconfirmed {
            let Some(slot) = e.op.slot else {
                // A barrier transaction cannot move (as after a lost
                // connection): acknowledged as committed.
                let txn = Arc::clone(e.txn.as_ref().expect("a Txn entry has parts"));
                self.committed(&txn);
                continue;
            };
            e.written = true;
            e.probe = None;
            if !self.count_failure(slot, &mut e, &text) {
                return;
            }
            let backoff = self.backoff(e.attempts);
            self.hold(slot, e, Target::Map, backoff);
        }
    }

    /// Acknowledges every op of a committed transaction.
    fn committed(&mut self, txn: &Txn) {
        for g in &txn.groups {
            self.progress.ack(*g);
        }
        self.shared
            .acked
            .fetch_add(txn.ops.len() as u64, Ordering::Relaxed);
    }

    /// The reply to a probe of `entry` (its key, read before a resend):
    /// `true` if the transaction committed.
    fn probe_says_committed(&self, entry: &Entry, value: &Value) -> Option<bool> {
        let txn = entry.txn.as_ref()?;
        match value {
            Value::Null => Some(false),
            Value::Bulk(b) => Some(
                checkpoint::decode(b).is_some_and(|(h, o)| h == self.history && o >= txn.offset),
            ),
            _ => None,
        }
    }

    fn is_idle(&self) -> bool {
        self.pending.is_empty() && self.progress.is_idle() && self.holds.is_empty()
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
            Cmd::Complete(offset) => {
                self.complete = self.complete.max(offset.min(self.last_offset));
            }
            Cmd::Op(op) => {
                self.note_offset(op.offset);
                self.take(vec![op]);
            }
            Cmd::Group(ops) => {
                for op in &ops {
                    self.note_offset(op.offset);
                }
                let slot = ops[0].slot;
                let one_slot = slot.is_some() && ops.iter().all(|o| o.slot == slot);
                if self.txn_on && one_slot {
                    self.take(ops);
                } else {
                    if !one_slot {
                        self.shared.split_groups.fetch_add(1, Ordering::Relaxed);
                    }
                    for op in ops {
                        self.take(vec![op]);
                    }
                }
            }
            Cmd::Checkpointing(on) => {
                self.seal(true);
                self.txn_on = on && self.config.checkpoint.is_some();
            }
            Cmd::NewHistory(history, tx) => {
                self.seal(true);
                self.history = history;
                self.slot_resume.iter_mut().for_each(|c| *c = 0);
                for node in &mut self.nodes {
                    node.barrier = 0;
                }
                if self.is_idle() {
                    self.progress = crate::progress::Progress::default();
                    self.shared.applied.store(0, Ordering::Release);
                    self.last_offset = 0;
                    self.complete = 0;
                }
                let _ = tx.send(());
            }
        }
    }

    /// An op for `offset` arrived: every lower offset is completely
    /// submitted (ops come in offset order).
    fn note_offset(&mut self, offset: u64) {
        if offset > self.last_offset {
            self.complete = self.complete.max(self.last_offset);
            self.last_offset = offset;
        }
    }

    /// Accepts a unit now if it fits and nothing waits before it, else
    /// queues it.
    fn take(&mut self, unit: Vec<Op>) {
        if self.pending.is_empty() && self.has_room(&unit) {
            self.accept_unit(unit);
        } else {
            self.pending.push_back(unit);
        }
    }

    fn retry_pending(&mut self) {
        while let Some(unit) = self.pending.front() {
            if !self.has_room(unit) {
                return;
            }
            let unit = self.pending.pop_front().expect("front exists");
            self.accept_unit(unit);
        }
    }

    fn accept_unit(&mut self, unit: Vec<Op>) {
        for op in unit {
            if self.txn_on {
                self.accept_txn(op);
            } else {
                self.accept(op);
            }
        }
    }

    /// Whether node `i` or slot `slot` already holds `offset` by the
    /// connect-time checkpoints (checkpoint mode with `skip_applied`).
    fn applied_on(&self, i: Option<usize>, slot: Option<u16>, offset: u64) -> bool {
        if !self.txn_on {
            return false;
        }
        // 0 is "no checkpoint".
        let by_slot = slot.is_some_and(|s| {
            let c = self.slot_resume[usize::from(s)];
            c > 0 && offset <= c
        });
        let by_barrier = i
            .and_then(|i| self.nodes.get(i))
            .is_some_and(|n| n.barrier > 0 && offset <= n.barrier);
        by_slot || by_barrier
    }

    /// Checkpoint mode: a slot op joins its slot's open group; an op for
    /// every master becomes one barrier transaction per master.
    fn accept_txn(&mut self, op: Op) {
        let Some(slot) = op.slot else {
            return self.accept_barrier(op);
        };
        let node = self.topology.slots.node_for(slot);
        if self.applied_on(node, Some(slot), op.offset) {
            self.shared.skipped.fetch_add(1, Ordering::Relaxed);
            self.progress.add(op.offset, 0);
            return;
        }
        let len = ferry_resp::command_len(&op.args);
        let group = self.progress.add(op.offset, 1);
        let g = self.open.entry(slot).or_default();
        g.ops.push(Arc::new(op));
        g.groups.push(group);
        g.bytes += len;
        self.open_bytes += len;
    }

    fn accept_barrier(&mut self, op: Op) {
        let serving = self.serving();
        let targets: Vec<(usize, u16)> = (0..self.nodes.len())
            .filter(|&i| serving[i] && !self.applied_on(Some(i), None, op.offset))
            .filter_map(|i| {
                let (lo, _, _) = self.topology.slots.ranges().find(|(_, _, n)| *n == i)?;
                Some((i, lo))
            })
            .collect();
        let skipped = serving.iter().filter(|s| **s).count() - targets.len();
        if skipped > 0 {
            self.shared
                .skipped
                .fetch_add(skipped as u64, Ordering::Relaxed);
        }
        let copies = u32::try_from(targets.len()).unwrap_or(u32::MAX);
        let group = self.progress.add(op.offset, copies);
        let op = Arc::new(op);
        for (i, slot) in targets {
            let key = Bytes::from(checkpoint::barrier_key(slot));
            let wire = self.txn_wire(&[op.args.as_slice()], &key, op.offset);
            self.seq += 1;
            let mut entry = Entry::new(Kind::Txn, self.seq, group, Arc::clone(&op), wire);
            entry.txn = Some(Arc::new(Txn {
                ops: vec![Arc::clone(&op)],
                groups: vec![group],
                key,
                offset: op.offset,
            }));
            self.push(i, entry);
        }
    }

    /// Whether `op` fits under the in-flight bound of where it goes. A node
    /// with nothing in flight always takes one op, however big.
    fn has_room(&self, unit: &[Op]) -> bool {
        let Some(op) = unit.first() else {
            return true;
        };
        let len: usize = unit.iter().map(|o| ferry_resp::command_len(&o.args)).sum();
        let limit = self.config.max_inflight_bytes;
        let open = self.open_bytes;
        let fits = |n: &NodeState| {
            (n.queue.is_empty() || n.bytes + len <= limit) && (open == 0 || open + len <= limit)
        };

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

    /// Plain mode: one entry per op (per master for `slot: None`).
    fn accept(&mut self, op: Op) {
        let targets: Vec<usize> = match op.slot {
            Some(_) => vec![usize::MAX],
            // Every node that serves slots now (a master demoted by a
            // failover stays in `nodes` without slots).
            None => {
                let serving = self.serving();
                (0..self.nodes.len()).filter(|&i| serving[i]).collect()
            }
        };
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
        let entry = Entry::new(Kind::Op, self.seq, group, Arc::new(op), wire.freeze());
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
        // A `WAIT` is asked again on the next connection.
        if node.wait_queued {
            node.wait_queued = false;
            node.queue.retain(|e| e.kind != Kind::Wait);
            node.bytes = node.queue.iter().map(Entry::bytes).sum();
        }
        // Committed transactions no replica confirmed may be lost with
        // the node (asynchronous replication): probe them again wherever
        // their slot is served next, before anything newer of the slot.
        let unconfirmed = std::mem::take(&mut node.unconfirmed);
        self.shared
            .reprobed
            .fetch_add(unconfirmed.len() as u64, Ordering::Relaxed);
        for e in unconfirmed.into_iter().rev() {
            match e.op.slot {
                Some(slot) => {
                    self.inflight[usize::from(slot)] += 1;
                    let node = &mut self.nodes[i];
                    node.bytes += e.bytes();
                    node.queue.push_front(e);
                }
                None => {
                    // A barrier transaction (an op for every master) cannot
                    // move to another node: acknowledged as committed (a
                    // documented limit).
                    let txn = Arc::clone(e.txn.as_ref().expect("a Txn entry has parts"));
                    self.committed(&txn);
                }
            }
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
            let generation = node.generation;
            let Some(front) = node.queue.front_mut() else {
                let e = WriterError::Unexpected {
                    node: node.addr.clone(),
                    reply: format!("{value:?}"),
                };
                self.fail(e);
                return;
            };
            let _ = front;
            if node.sent == 0 {
                // Nothing written normally is unanswered: a probe's answer
                // (probes go out in queue order, after the normal writes).
                let Some(k) = node.queue.iter().position(|e| e.probe == Some(generation)) else {
                    let e = WriterError::Unexpected {
                        node: node.addr.clone(),
                        reply: format!("{value:?}"),
                    };
                    self.fail(e);
                    return;
                };
                node.probes.0 = node.probes.0.saturating_sub(1);
                node.queue[k].probe = None;
                let verdict = self.probe_says_committed(&self.nodes[i].queue[k], &value);
                if verdict == Some(false) {
                    self.nodes[i].queue[k].written = false;
                    continue;
                }
                let node = &mut self.nodes[i];
                let entry = node.queue.remove(k).expect("probed entry");
                node.bytes -= entry.bytes();
                if let Some(slot) = entry.op.slot {
                    self.inflight[usize::from(slot)] -= 1;
                    touched.push(slot);
                }
                if verdict == Some(true) {
                    // It committed before its reply was lost.
                    self.shared.verified.fetch_add(1, Ordering::Relaxed);
                    self.committed_on(i, entry);
                } else {
                    // An error reply (e.g. the slot moved): handled like one
                    // to the transaction; probed again where it goes next.
                    let message = match &value {
                        Value::Error(m) => m.clone(),
                        other => Bytes::from(format!("{other:?} to GET")),
                    };
                    self.on_error(i, entry, &message);
                }
                if self.fatal.is_some() {
                    return;
                }
                continue;
            }
            let front = &mut self.nodes[i].queue[0];
            if front.asking && !front.asking_done {
                front.asking_done = true;
                if value.is_error() {
                    let e = WriterError::Unexpected {
                        node: self.nodes[i].addr.clone(),
                        reply: format!("{value:?} to ASKING"),
                    };
                    self.fail(e);
                    return;
                }
                continue;
            }
            if front.kind == Kind::Txn {
                front.replies += 1;
                let expected = front.txn.as_ref().map_or(0, |t| t.ops.len() as u32 + 3);
                if front.replies < expected {
                    if let Value::Error(m) = &value {
                        front.queue_error.get_or_insert_with(|| m.clone());
                    }
                    continue;
                }
            }
            let node = &mut self.nodes[i];
            let entry = node.queue.pop_front().expect("front exists");
            node.sent = node.sent.saturating_sub(1);
            node.bytes -= entry.bytes();
            if let Some(slot) = entry.op.slot {
                self.inflight[usize::from(slot)] -= 1;
                touched.push(slot);
            }
            if entry.kind == Kind::Txn {
                self.on_txn_reply(i, entry, value);
            } else if entry.kind == Kind::Wait {
                self.on_wait_reply(i, &value);
            } else {
                self.on_reply(i, entry, value);
            }
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

    fn on_reply(&mut self, i: usize, entry: Entry, value: Value) {
        let Value::Error(message) = &value else {
            self.shared.acked_op(&entry.op.args);
            self.progress.ack(entry.group);
            self.shared.acked.fetch_add(1, Ordering::Relaxed);
            return;
        };
        self.on_error(i, entry, message);
    }

    /// An error reply to `entry` (for a `Txn`: the cause of its abort):
    /// redirect, retry with backoff, or stop.
    fn on_error(&mut self, i: usize, mut entry: Entry, message: &Bytes) {
        let kind = ErrorKind::classify(message);
        let text = String::from_utf8_lossy(message).into_owned();
        let redirect = if kind.is_redirect() {
            Redirect::parse(message)
        } else {
            None
        };
        match (entry.op.slot, kind, redirect) {
            // A transaction mixes keys that may be on either side of a
            // migrating slot, and its checkpoint key is one of them: it
            // cannot follow an ASK (the importing node would create the
            // keys still on the migrating node). It waits, with backoff,
            // until the migration ends and MOVED sends it whole to the new
            // owner.
            (Some(slot), ErrorKind::Ask, _) if entry.kind == Kind::Txn => {
                self.shared.ask.fetch_add(1, Ordering::Relaxed);
                if self.count_failure(slot, &mut entry, &text) {
                    let backoff = self.backoff(entry.attempts);
                    self.hold(slot, entry, Target::Map, backoff);
                }
            }
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
            (Some(slot), _, _)
                if self.config.mode != TargetMode::Standalone
                    && (kind.is_transient() || demoted(message)) =>
            {
                self.shared.retries.fetch_add(1, Ordering::Relaxed);
                if kind.needs_refresh() || demoted(message) {
                    self.request_refresh();
                }
                if self.count_failure(slot, &mut entry, &text) {
                    let backoff = self.backoff(entry.attempts);
                    self.hold(slot, entry, Target::Map, backoff);
                }
            }
            _ => {
                let first = entry.txn.as_ref().and_then(|t| t.ops.first());
                let args = first.map_or(&entry.op.args, |op| &op.args);
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
            let _ = serves;
            let disconnected = node.pipe.is_none();
            let from = node.sent;
            // Entries whose probes are in flight stay: their replies are
            // due (a MOVED on the resend redirects them later).
            if (!disconnected && node.probing() > 0) || from >= node.queue.len() {
                continue;
            }
            let tail: Vec<Entry> = node.queue.drain(from..).collect();
            let mut moved = Vec::new();
            for e in tail {
                let elsewhere =
                    e.op.slot
                        .filter(|_| disconnected || !e.asking)
                        .is_some_and(|s| slots.node_for(s) != Some(i));
                if elsewhere {
                    node.bytes -= e.bytes();
                    moved.push(e);
                } else {
                    node.queue.push_back(e);
                }
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

    /// Writes every entry not yet written, one chunk per node. A `Txn`
    /// entry written before without a final reply is preceded by a probe
    /// (`GET` of its key), and nothing after it is written until the probe
    /// is answered.
    fn write_out(&mut self) {
        for node in &mut self.nodes {
            let Some(pipe) = &node.pipe else { continue };
            if node.sent >= node.queue.len() {
                continue;
            }
            let generation = node.generation;
            if node.probing() > 0 {
                // Nothing more until every probe is answered.
                continue;
            }
            let mut buf = BytesMut::new();
            let mut written = node.sent;
            let mut probes = 0;
            for e in node.queue.range_mut(node.sent..) {
                if e.kind == Kind::Txn && e.written {
                    // Written before, no final reply: did it commit? Probe
                    // this and the following ones, then wait.
                    let key = e.txn.as_ref().map(|t| t.key.clone()).unwrap_or_default();
                    put_command(&mut buf, &[Bytes::from_static(b"GET"), key]);
                    e.probe = Some(generation);
                    probes += 1;
                    continue;
                }
                if probes > 0 {
                    break;
                }
                if e.kind == Kind::Txn {
                    e.written = true;
                    e.replies = 0;
                    e.queue_error = None;
                }
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
                written += 1;
            }
            if !buf.is_empty() {
                pipe.send(buf.freeze());
            }
            if probes > 0 {
                node.probes = (probes, generation);
            }
            if node.sent == 0 {
                node.waiting_since = Some(Instant::now());
            }
            node.sent = written;
        }
        if let Some(ms) = self.config.wait_replicas {
            self.write_waits(ms);
        }
    }

    /// Appends and writes a `WAIT 1 <ms>` on every connected node with
    /// committed or in-flight transactions, no probe in flight and no
    /// `WAIT` pending.
    fn write_waits(&mut self, timeout: Duration) {
        let ms = Bytes::from(timeout.as_millis().max(1).to_string());
        for node in &mut self.nodes {
            let Some(pipe) = &node.pipe else { continue };
            if node.wait_queued || node.probing() > 0 || node.sent < node.queue.len() {
                continue;
            }
            let wanted =
                !node.unconfirmed.is_empty() || node.queue.iter().any(|e| e.kind == Kind::Txn);
            if !wanted {
                continue;
            }
            let args = vec![
                Bytes::from_static(b"WAIT"),
                Bytes::from_static(b"1"),
                ms.clone(),
            ];
            let mut wire = BytesMut::new();
            put_command(&mut wire, &args);
            let op = Op {
                args,
                slot: None,
                offset: 0,
            };
            let entry = Entry::new(Kind::Wait, 0, 0, Arc::new(op), wire.freeze());
            pipe.send(entry.wire.clone());
            node.bytes += entry.bytes();
            if node.sent == 0 {
                node.waiting_since = Some(Instant::now());
            }
            node.queue.push_back(entry);
            node.wait_queued = true;
            node.sent += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_of_a_demoted_or_failing_master_are_topology_changes() {
        for m in [
            &b"ERR WAIT cannot be used with replica instances. Please also note"[..],
            b"UNBLOCKED force unblock from blocking operation, instance state changed (master -> replica?)",
            b"-UNBLOCKED force unblock",
            b"READONLY You can't write against a read only replica.",
            b"MOVED 3999 127.0.0.1:7001",
            b"LOADING Redis is loading the dataset in memory",
            b"CLUSTERDOWN The cluster is down",
            b"MASTERDOWN Link with MASTER is down and replica-serve-stale-data is set to 'no'.",
            b"TRYAGAIN Multiple keys request during rehashing of slot",
        ] {
            assert!(topology_changing(m), "{}", m.escape_ascii());
        }
        for m in [
            &b"ERR unknown command 'WAIT'"[..],
            b"NOPERM this user has no permissions to run the 'wait' command",
            b"OOM command not allowed when used memory > 'maxmemory'.",
            b"WRONGTYPE Operation against a key holding the wrong kind of value",
        ] {
            assert!(!topology_changing(m), "{}", m.escape_ascii());
        }
        assert!(demoted(b"ERR WAIT cannot be used with replica instances."));
        assert!(!demoted(
            b"READONLY You can't write against a read only replica."
        ));
    }
}

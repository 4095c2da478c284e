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
//!     -> after a retryable refusal (CLUSTERDOWN, TRYAGAIN, ...): only the
//!        oldest entry goes out (the pilot); the rest stay held until it is
//!        answered (the condition can clear in the middle of a pipeline)
//! ```
//!
//! Invariants: an entry is in exactly one place (a node queue, a hold's
//! resend list or queued list); `inflight[s]` counts entries of slot s in
//! node queues; an entry answered with a non-error reply is never sent
//! again. Ops for every master (`slot: None`) are not redirected: any error
//! reply on them is fatal (except the one reply an op's `tolerate` names,
//! counted and acknowledged: `reply.rs`), and they are resent only after a
//! reconnect.
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
//!
//! Structure: [`core::Core`] is the whole state machine above as plain data
//! and functions with the time passed in (no tokio, no sockets), split by
//! concern: `accept` (ops in, transactions), `open` (the open groups of
//! a turn, per slot), `route` (holds,
//! error replies), `reply` (replies, probes, `WAIT`), `topology`
//! (connections, refreshes, rerouting), `output` (what is written),
//! `events` (log lines), `entry` (the data). It answers with
//! [`core::Action`]s; [`Engine`] below is the thin tokio driver that owns
//! the channels and the node pipelines and carries them out.
//!
//! ```text
//! handle ──Cmd──▶ Engine ──submit/on_replies/on_lost/on_timer(now)──▶ Core
//!                   ▲                                                  │
//!  Pipeline ◀─Send──┤◀──────────── Action { Send, Connect, Refresh } ◀─┘
//!  connect task ◀───┤     (spawned tasks report back as events)
//!  refresh task ◀───┘
//! ```
//!
//! The engine's own task reads every node's replies (its pipelines are
//! polled beside its channels) and, on plain TCP, writes a turn's bytes to
//! each socket; a writer task takes only what a full socket buffer refuses
//! (all writes on TLS) (`conn/pipeline.rs`, `docs/decisions.md` D101).

mod accept;
mod core;
mod dbs;
mod entry;
mod events;
mod open;
mod output;
mod plain;
mod reply;
mod route;
#[cfg(test)]
mod tests;
mod topology;

use std::sync::Arc;
use std::sync::atomic::Ordering;

use ferry_ops::Topology;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use self::core::{Action, Core};
use crate::checkpoint::Resume;
use crate::config::{Op, TargetMode, WriterConfig};
use crate::conn::{Conn, ConnError, PipeEvent, Pipeline};
use crate::discovery::refresh_topology;
use crate::error::WriterError;
use crate::shared::Shared;

/// Events handled per loop turn before writes are flushed.
const BATCH_EVENTS: usize = 256;
/// Ops taken per loop turn before writes are flushed.
const BATCH_OPS: usize = 4096;

/// A request from the handle.
#[derive(Debug)]
pub(crate) enum Cmd {
    Op(Op),
    /// Ops in order (as many `Op`s, one message).
    Ops(Vec<Op>),
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

/// (node index, connection generation).
type Tag = (usize, u64);

/// What the spawned tasks report.
enum Event {
    Connected(Tag, Result<Conn, ConnError>),
    Refreshed(Result<(Topology, Vec<String>), WriterError>),
}

/// The tokio driver of a [`Core`]: channels, pipelines, spawned tasks.
pub(crate) struct Engine {
    core: Core,
    /// The connection of each node, when up.
    pipes: Vec<Option<Pipeline<Tag>>>,
    config: WriterConfig,
    shared: Arc<Shared>,
    events_tx: mpsc::UnboundedSender<Event>,
    events_rx: mpsc::UnboundedReceiver<Event>,
    pipe_tx: mpsc::UnboundedSender<(Tag, PipeEvent)>,
    pipe_rx: mpsc::UnboundedReceiver<(Tag, PipeEvent)>,
    flushes: Vec<oneshot::Sender<Result<(), WriterError>>>,
}

/// The first pipeline with replies (or a loss) to report.
fn poll_pipes(
    pipes: &mut [Option<Pipeline<Tag>>],
    cx: &mut std::task::Context<'_>,
) -> std::task::Poll<(Tag, PipeEvent)> {
    for pipe in pipes.iter_mut().flatten() {
        if let std::task::Poll::Ready(event) = pipe.poll_event(cx) {
            return std::task::Poll::Ready(event);
        }
    }
    std::task::Poll::Pending
}

fn now() -> std::time::Instant {
    Instant::now().into_std()
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
        let core = Core::new(
            topology,
            conns.len(),
            resume,
            known,
            config.clone(),
            Arc::clone(&shared),
            now(),
        );
        let pipes = conns
            .into_iter()
            .enumerate()
            .map(|(i, conn)| Some(conn.into_pipeline((i, 0), pipe_tx.clone())))
            .collect();
        Engine {
            core,
            pipes,
            config,
            shared,
            events_tx,
            events_rx,
            pipe_tx,
            pipe_rx,
            flushes: Vec::new(),
        }
    }

    pub(crate) async fn run(mut self, mut cmds: mpsc::Receiver<Cmd>) {
        let mut cmds_open = true;
        loop {
            if self.core.fatal().is_some() {
                break;
            }
            let wake = Instant::from_std(self.core.next_wake(now()));
            let accept = cmds_open && self.core.accepting();
            tokio::select! {
                biased;
                Some((tag, ev)) = self.pipe_rx.recv() => self.on_pipe(tag, ev),
                (tag, ev) = std::future::poll_fn(|cx| poll_pipes(&mut self.pipes, cx)) => {
                    self.on_pipe(tag, ev);
                }
                Some(ev) = self.events_rx.recv() => self.on_event(ev),
                cmd = cmds.recv(), if accept => match cmd {
                    Some(cmd) => self.on_cmd(cmd),
                    None => cmds_open = false,
                },
                () = tokio::time::sleep_until(wake) => self.core.on_timer(now()),
            }
            for _ in 0..BATCH_EVENTS {
                match self.pipe_rx.try_recv() {
                    Ok((tag, ev)) => self.on_pipe(tag, ev),
                    Err(_) => break,
                }
            }
            // Replies already readable.
            let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
            for _ in 0..BATCH_EVENTS {
                match poll_pipes(&mut self.pipes, &mut cx) {
                    std::task::Poll::Ready((tag, ev)) => self.on_pipe(tag, ev),
                    std::task::Poll::Pending => break,
                }
            }
            self.core.retry_pending(now());
            for _ in 0..BATCH_OPS {
                if !cmds_open || !self.core.accepting() {
                    break;
                }
                match cmds.try_recv() {
                    Ok(cmd) => self.on_cmd(cmd),
                    Err(mpsc::error::TryRecvError::Empty) => break,
                    Err(mpsc::error::TryRecvError::Disconnected) => cmds_open = false,
                }
            }
            self.core.end_turn(now(), !cmds_open);
            self.perform();
            if self.core.is_idle() {
                for f in self.flushes.drain(..) {
                    let _ = f.send(Ok(()));
                }
                if !cmds_open {
                    break;
                }
            }
        }
        if let Some(e) = self.core.take_fatal() {
            self.shared.fail(e.clone());
            for f in self.flushes.drain(..) {
                let _ = f.send(Err(e.clone()));
            }
        }
    }

    fn on_cmd(&mut self, cmd: Cmd) {
        let t = now();
        match cmd {
            Cmd::Flush(tx) => {
                self.core.all_taken();
                self.flushes.push(tx);
            }
            Cmd::Complete(offset) => self.core.mark_complete(offset),
            Cmd::Op(op) => self.core.submit(op, t),
            Cmd::Ops(ops) => {
                for op in ops {
                    self.core.submit(op, t);
                }
            }
            Cmd::Group(ops) => self.core.submit_group(ops, t),
            Cmd::Checkpointing(on) => self.core.set_checkpointing(on),
            Cmd::NewHistory(history, tx) => {
                self.core.new_history(history);
                let _ = tx.send(());
            }
        }
    }

    fn on_pipe(&mut self, (i, generation): Tag, ev: PipeEvent) {
        match ev {
            PipeEvent::Replies(values) => self.core.on_replies(i, generation, values, now()),
            PipeEvent::Lost(_) => {
                if self.core.on_lost(i, generation, now())
                    && let Some(p) = self.pipes.get_mut(i)
                {
                    *p = None;
                }
            }
        }
    }

    fn on_event(&mut self, event: Event) {
        match event {
            Event::Refreshed(result) => self.core.on_refreshed(result, now()),
            Event::Connected((i, generation), Ok(conn)) => {
                if self.core.on_connected(i, generation, now()) {
                    if self.pipes.len() <= i {
                        self.pipes.resize_with(i + 1, || None);
                    }
                    let pipe = conn.into_pipeline((i, generation), self.pipe_tx.clone());
                    self.pipes[i] = Some(pipe);
                }
            }
            Event::Connected((i, generation), Err(e)) => {
                self.core.on_connect_failed(i, generation, e, now());
            }
        }
    }

    /// Carries out the core's actions.
    fn perform(&mut self) {
        for action in self.core.take_actions() {
            match action {
                Action::Send { node, bytes } => {
                    if let Some(Some(pipe)) = self.pipes.get(node) {
                        pipe.send(bytes);
                    }
                }
                Action::Connect {
                    node,
                    generation,
                    addr,
                } => self.spawn_connect((node, generation), addr),
                Action::Refresh { addrs } => {
                    let config = self.config.clone();
                    let tx = self.events_tx.clone();
                    tokio::spawn(async move {
                        let result = refresh_topology(addrs, config).await;
                        let _ = tx.send(Event::Refreshed(result));
                    });
                }
            }
        }
    }

    /// Spawns a (bounded) reconnect loop for `tag`.
    fn spawn_connect(&mut self, tag: Tag, addr: String) {
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
}

//! The public handle: discovery, `submit`, `flush`, progress.
//!
//! ```text
//! ClusterWriter::connect(seed, auth)
//!   seed --CLUSTER SHARDS--> Topology      (fallback CLUSTER SLOTS before 7.0;
//!                                           "cluster support disabled" -> NotACluster)
//!   one Conn per master, then the engine task owns everything
//! submit(op) --bounded channel--> engine   (awaits when the channel is full, and
//!                                           the engine stops taking ops while the
//!                                           target node's in-flight bytes are at
//!                                           the bound: it blocks, it never drops)
//! flush()   --------------------> engine   (answered once every op before it is)
//! applied_offset()  <- atomic, updated by the engine after each batch of replies
//! failover          -> a node unreachable for 1 s, or CLUSTERDOWN / READONLY /
//!                      MASTERDOWN: the engine re-reads CLUSTER SHARDS from any
//!                      reachable known node (masters first, then replicas and
//!                      the seed), connects to new masters and resends held and
//!                      unanswered ops of the moved slots there, in order; bounded
//!                      by `reconnect_for` (see the `engine` module)
//! ```
//!
//! # Checkpoints: exactly-once replay after a crash
//!
//! With [`WriterConfig::checkpoint`] set and checkpointing on (the default;
//! [`ClusterWriter::set_checkpointing`] turns it off for idempotent phases
//! such as a snapshot), the engine commits the ops of one slot taken in one
//! loop turn as `MULTI, ops..., SET <ckpt key of the slot> <history>:<offset
//! of the last op>, EXEC` (Redis Cluster runs a transaction on one slot).
//! The key proves, atomically with the ops, what that slot has applied.
//! Ops for every master (`FLUSHALL`, `FUNCTION LOAD`, ...) are committed
//! per master as `MULTI, op, SET <barrier key of a slot it serves>
//! <history>:<offset>, EXEC`, after everything before them is acknowledged.
//! A group answered with `EXECABORT` (a `MOVED`/`ASK`/`TRYAGAIN` at queue
//! time) is redirected or retried as a unit, in order. A group whose `EXEC`
//! reply was lost (connection cut, failover) is probed with a `GET` of its
//! key before it is sent again, and acknowledged without resending if it
//! committed ([`WriterStats::verified`]).
//!
//! With [`WriterConfig::skip_applied`], the keys of the current
//! [`CheckpointConfig::history`] are read at connect time (one pipelined
//! `GET` per slot on its master) and, while checkpointing is on, an op is
//! acknowledged without being sent if its offset is at or below its slot's
//! checkpoint or at or below the barrier of the master serving its slot (a
//! committed barrier implies that everything before it was acknowledged,
//! and that a `FLUSHALL` in it wiped the older checkpoints). See the
//! [`checkpoint`] module for the key names and
//! `docs/design.md` for the limits (resharding while ferry is down, target
//! failover).

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use ferry_ops::{ErrorKind, Redirect, RedirectKind, Topology};
use ferry_resp::Value;
use tokio::sync::{mpsc, oneshot};

use crate::checkpoint::{self, CheckpointSummary};
pub use crate::config::{CheckpointConfig, Op, TargetMode, WriterConfig, WriterStats};
use crate::conn::{Auth, Conn, ConnError};
pub use crate::discovery::discover_topology;
use crate::discovery::{discover, parse_seed, refresh_topology};
use crate::engine::{Cmd, Engine};
use crate::error::WriterError;
use crate::shared::Shared;

mod delete_slots;

/// Replays ops into a Redis Cluster: one pipelined connection per master,
/// per-slot order kept across redirects, retries and reconnects.
///
/// Without checkpoints (or with checkpointing off), after a connection
/// loss every op not yet answered is sent again: an op the node executed
/// but whose reply was lost is applied twice. That is harmless for
/// idempotent writes (`SET`, `RESTORE ... REPLACE`, `HSET`, `DEL`,
/// `PEXPIREAT`) but not for `INCR`, `RPUSH`, `APPEND`... With checkpoints,
/// such a transaction is probed first and sent again only if it did not
/// commit; see the module docs.
#[derive(Debug)]
pub struct ClusterWriter {
    cmds: mpsc::Sender<Cmd>,
    shared: Arc<Shared>,
    masters: Vec<String>,
    summary: CheckpointSummary,
    standalone: bool,
    side: SideReads,
    /// Per slot, the offset committed at connect time (empty: none).
    committed: Vec<u64>,
    /// `target.max_ops_per_sec` / `max_bytes_per_sec`, and its time origin.
    rate: Option<(crate::rate::Limiter, std::time::Instant)>,
    /// Time actually spent sleeping for the rate limit.
    rate_slept: Duration,
}

/// Ops per [`ClusterWriter::submit_batch`] message that callers aim for.
pub const SUBMIT_BATCH_OPS: usize = 64;
/// Argument bytes per [`ClusterWriter::submit_batch`] message that callers
/// aim for (a batch is sent once it reaches either bound).
pub const SUBMIT_BATCH_BYTES: usize = 64 * 1024;

/// Bytes of a command's arguments (what the byte limit counts).
fn args_len(args: &[Bytes]) -> u64 {
    args.iter().map(|a| a.len() as u64).sum()
}

/// Per slot: the connect-time checkpoint or the barrier of the master
/// serving it, whichever is higher (what the engine skips); empty when
/// nothing is skipped.
fn committed_per_slot(topology: &Topology, resume: &checkpoint::Resume, skip: bool) -> Vec<u64> {
    if !skip || resume.slot.len() != usize::from(ferry_ops::SLOTS) {
        return Vec::new();
    }
    (0..ferry_ops::SLOTS)
        .map(|s| {
            let barrier = topology
                .slots
                .node_for(s)
                .and_then(|n| resume.node_barrier.get(n))
                .copied()
                .unwrap_or(0);
            resume.slot[usize::from(s)].max(barrier)
        })
        .collect()
}

/// Attempts of one side read (redirects, reconnects, retryable replies).
const SIDE_READ_ATTEMPTS: u32 = 8;
/// The only commands [`ClusterWriter::read`] sends: reads of one key.
const SIDE_READS: [&[u8]; 3] = [b"DUMP", b"PTTL", b"LINDEX"];

/// The handle's read side: its own copy of the slot map (updated by the
/// `-MOVED` replies it gets) and one plain request/response connection per
/// master it read from. Never used for writes.
#[derive(Debug)]
struct SideReads {
    topology: Topology,
    known: Vec<String>,
    config: WriterConfig,
    conns: HashMap<String, Conn>,
}

impl ClusterWriter {
    /// Discovers the cluster from `seed` (`host:port` or
    /// `redis://[user:password@]host:port`) and connects to every master,
    /// with the default [`WriterConfig`] and `auth`.
    ///
    /// # Errors
    /// [`WriterError::NotACluster`] for a standalone seed; connection,
    /// `AUTH` and topology errors.
    pub async fn connect(seed: &str, auth: Auth) -> Result<ClusterWriter, WriterError> {
        ClusterWriter::connect_with(
            seed,
            WriterConfig {
                auth,
                ..WriterConfig::default()
            },
        )
        .await
    }

    /// Like [`ClusterWriter::connect`] with a full config. Credentials in a
    /// `redis://` seed are used when `config.auth` has no password.
    ///
    /// # Errors
    /// As [`ClusterWriter::connect`].
    pub async fn connect_with(
        seed: &str,
        mut config: WriterConfig,
    ) -> Result<ClusterWriter, WriterError> {
        let (addr, url_auth) = parse_seed(seed)?;
        if config.auth.password.is_none() {
            config.auth = url_auth;
        }
        let (topology, known) = match discover(&addr, &config).await {
            Err(WriterError::NotACluster { .. }) if config.mode == TargetMode::Auto => {
                config.mode = TargetMode::Standalone;
                discover(&addr, &config).await?
            }
            Ok(found) if config.mode == TargetMode::Auto => {
                config.mode = TargetMode::Cluster;
                found
            }
            other => other?,
        };
        let standalone = config.mode == TargetMode::Standalone;
        let mut conns = Vec::with_capacity(topology.masters.len());
        for node in &topology.masters {
            conns.push(
                Conn::connect_tls(
                    &node.addr(),
                    &config.auth,
                    config.connect_timeout,
                    config.tls.as_ref(),
                )
                .await?,
            );
        }
        let masters: Vec<String> = topology.masters.iter().map(|n| n.addr()).collect();
        let resume = match &config.checkpoint {
            Some(c) if config.skip_applied => {
                checkpoint::read(
                    &topology,
                    &config.auth,
                    config.tls.as_ref(),
                    config.connect_timeout,
                    c,
                )
                .await?
            }
            _ => checkpoint::Resume::default(),
        };
        let summary = resume.summary.clone();
        let committed = committed_per_slot(&topology, &resume, config.skip_applied);
        let shared = Arc::new(Shared::default());
        // `queue_ops` counts ops; a message carries up to a batch of them.
        let (tx, rx) = mpsc::channel((config.queue_ops / SUBMIT_BATCH_OPS).max(16));
        let mut known = known;
        known.push(addr);
        let side = SideReads {
            topology: topology.clone(),
            known: known.clone(),
            config: config.clone(),
            conns: HashMap::new(),
        };
        let engine = Engine::new(topology, conns, resume, known, config, Arc::clone(&shared));
        tokio::spawn(engine.run(rx));
        Ok(ClusterWriter {
            cmds: tx,
            shared,
            masters,
            summary,
            standalone,
            side,
            committed,
            rate: None,
            rate_slept: Duration::ZERO,
        })
    }

    /// Limits what [`ClusterWriter::submit`] and
    /// [`ClusterWriter::submit_group`] pass on (snapshot and stream alike):
    /// they wait once the limit is reached, so the source lag grows instead
    /// of the target's load. 0 = unlimited.
    pub fn set_rate_limit(&mut self, limit: crate::RateLimit) {
        let start = std::time::Instant::now();
        self.rate = crate::rate::Limiter::new(limit, Duration::ZERO).map(|l| (l, start));
    }

    /// Waits as the rate limit requires for `ops` commands of `bytes` bytes.
    async fn throttle(&mut self, ops: u64, bytes: u64) {
        if let Some((limiter, start)) = &mut self.rate {
            let wait = limiter.take(ops, bytes, start.elapsed());
            if !wait.is_zero() {
                let t = std::time::Instant::now();
                tokio::time::sleep(wait).await;
                self.rate_slept += t.elapsed();
            }
        }
    }

    /// Whether an op of `slot` at `offset` was committed before this
    /// writer connected (at or below the slot's connect-time checkpoint or
    /// its master's barrier, with [`WriterConfig::skip_applied`]): such an
    /// op is acknowledged without being sent while checkpointing is on.
    /// Always `false` after [`ClusterWriter::new_history`].
    pub fn committed_before_connect(&self, slot: u16, offset: u64) -> bool {
        self.committed
            .get(usize::from(slot))
            .is_some_and(|&c| offset <= c)
    }

    /// The master (`host:port`) serving `slot` in the handle's slot map
    /// (the connect-time topology, updated by redirects and refreshes of
    /// [`ClusterWriter::read`]); `None` if no master serves it.
    pub fn node_for_slot(&self, slot: u16) -> Option<String> {
        self.side.topology.node_for(slot).map(ferry_ops::Node::addr)
    }

    /// Reads one key of `slot` on the master serving it, over a side
    /// connection (with the writer's credentials and TLS), not through the
    /// write pipelines: for emulating cross-slot commands after a
    /// [`ClusterWriter::flush`]. Only `DUMP`, `PTTL` and `LINDEX` are sent;
    /// anything else is refused without sending. Follows `-MOVED` (updating
    /// the handle's slot map) and `-ASK`, retries `TRYAGAIN`/`CLUSTERDOWN`/
    /// `LOADING` and lost connections (re-reading the topology), a bounded
    /// number of times. Other error replies are returned as values.
    ///
    /// # Errors
    /// [`WriterError::Rejected`] for a command that is not one of those
    /// reads; [`WriterError::RetriesExhausted`] when the attempts run out;
    /// TLS and `AUTH` errors.
    pub async fn read(&mut self, slot: u16, args: &[Bytes]) -> Result<Value, WriterError> {
        let name = args.first().cloned().unwrap_or_default();
        if !SIDE_READS.iter().any(|r| name.eq_ignore_ascii_case(r)) {
            return Err(WriterError::Rejected {
                node: "-".into(),
                command: String::from_utf8_lossy(&name).into_owned(),
                key: args
                    .get(1)
                    .map_or_else(|| "-".into(), |k| k.escape_ascii().to_string()),
                reply: "not a read the side connection may send".into(),
            });
        }
        let started = Instant::now();
        let timeout = self.side.config.reply_timeout;
        let mut last = String::new();
        let mut ask: Option<String> = None;
        for attempt in 0..SIDE_READ_ATTEMPTS {
            if attempt > 0 {
                let pause = self.side.config.backoff_min * (1 << attempt.min(6));
                tokio::time::sleep(pause.min(self.side.config.backoff_max)).await;
            }
            let addr = match ask.take() {
                Some(a) => a,
                None => match self.node_for_slot(slot) {
                    Some(a) => a,
                    None => {
                        last = "no master serves the slot".into();
                        self.side_refresh().await;
                        continue;
                    }
                },
            };
            let asking = addr != self.node_for_slot(slot).unwrap_or_default();
            let conn = match self.side_conn(&addr).await {
                Ok(c) => c,
                Err(e @ WriterError::Connect(ConnError::Tls { .. } | ConnError::Auth { .. })) => {
                    return Err(e);
                }
                Err(e) => {
                    last = e.to_string();
                    self.side_refresh().await;
                    continue;
                }
            };
            let reply = if asking {
                match conn.call(&["ASKING"], timeout).await {
                    Ok(_) => conn.call(args, timeout).await,
                    Err(e) => Err(e),
                }
            } else {
                conn.call(args, timeout).await
            };
            let reply = match reply {
                Ok(r) => r,
                Err(e) => {
                    last = e.to_string();
                    self.side.conns.remove(&addr);
                    self.side_refresh().await;
                    continue;
                }
            };
            let Value::Error(e) = &reply else {
                return Ok(reply);
            };
            let host = ferry_ops::host_of(&addr).to_owned();
            if let Some(r) = Redirect::parse(e) {
                last = r.to_string();
                let i = self.side.topology.apply_redirect(&r, &host);
                if r.kind == RedirectKind::Ask {
                    ask = self.side.topology.masters.get(i).map(ferry_ops::Node::addr);
                }
                continue;
            }
            let kind = ErrorKind::classify(e);
            if kind.is_transient() {
                last = String::from_utf8_lossy(e).into_owned();
                if kind.needs_refresh() {
                    self.side_refresh().await;
                }
                continue;
            }
            return Ok(reply);
        }
        Err(WriterError::RetriesExhausted {
            slot,
            attempts: SIDE_READ_ATTEMPTS,
            over: started.elapsed(),
            last,
        })
    }

    /// The masters serving at least one slot in the handle's slot map (see
    /// [`ClusterWriter::node_for_slot`]).
    pub fn serving_masters(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for (_, _, node) in self.side.topology.slots.ranges() {
            if let Some(n) = self.side.topology.masters.get(node) {
                let addr = n.addr();
                if !out.contains(&addr) {
                    out.push(addr);
                }
            }
        }
        out
    }

    /// One `SCAN cursor MATCH pattern COUNT count` step on `master` over a
    /// side connection (a read, like [`ClusterWriter::read`]): the next
    /// cursor (`0` at the end) and the keys. No retries: a lost
    /// connection is an error (the side connection is dropped).
    ///
    /// # Errors
    /// Connection errors; [`WriterError::Rejected`] for an error reply or
    /// a reply that is not a `SCAN` reply.
    pub async fn scan(
        &mut self,
        master: &str,
        cursor: &[u8],
        pattern: &[u8],
        count: usize,
    ) -> Result<(Vec<u8>, Vec<Bytes>), WriterError> {
        let timeout = self.side.config.reply_timeout;
        let count = count.to_string();
        let args: [&[u8]; 6] = [
            b"SCAN",
            cursor,
            b"MATCH",
            pattern,
            b"COUNT",
            count.as_bytes(),
        ];
        let conn = self.side_conn(master).await?;
        let reply = match conn.call(&args, timeout).await {
            Ok(r) => r,
            Err(e) => {
                self.side.conns.remove(master);
                return Err(e.into());
            }
        };
        let rejected = |reply: String| WriterError::Rejected {
            node: master.to_owned(),
            command: "SCAN".into(),
            key: pattern.escape_ascii().to_string(),
            reply,
        };
        let parts = match &reply {
            Value::Error(e) => return Err(rejected(String::from_utf8_lossy(e).into_owned())),
            Value::Array(parts) if parts.len() == 2 => parts,
            other => return Err(rejected(format!("unexpected reply {other:?}"))),
        };
        let next = parts[0]
            .as_bytes()
            .map(|c| c.to_vec())
            .ok_or_else(|| rejected("no cursor".into()))?;
        let keys = parts[1]
            .as_array()
            .unwrap_or_default()
            .iter()
            .filter_map(|k| k.as_bytes().cloned())
            .collect();
        Ok((next, keys))
    }

    /// The side connection to `addr`, connecting if needed.
    async fn side_conn(&mut self, addr: &str) -> Result<&mut Conn, WriterError> {
        if !self.side.conns.contains_key(addr) {
            let c = &self.side.config;
            let conn = Conn::connect_tls(addr, &c.auth, c.connect_timeout, c.tls.as_ref()).await?;
            self.side.conns.insert(addr.to_owned(), conn);
        }
        self.side.conns.get_mut(addr).ok_or(WriterError::Stopped)
    }

    /// Re-reads the handle's topology from any known node (best effort: on
    /// failure the old map stays and the next attempt tries again).
    async fn side_refresh(&mut self) {
        let mut addrs: Vec<String> = self
            .side
            .topology
            .masters
            .iter()
            .map(|n| n.addr())
            .collect();
        addrs.extend(self.side.known.iter().cloned());
        addrs.dedup();
        if let Ok((topology, known)) = refresh_topology(addrs, self.side.config.clone()).await {
            self.side.topology = topology;
            for k in known {
                if !self.side.known.contains(&k) {
                    self.side.known.push(k);
                }
            }
        }
    }

    /// Queues one op. Waits while the queue is full (backpressure: the
    /// engine stops taking ops while the target node is at its in-flight
    /// bound). Ops to one slot are applied in submission order.
    ///
    /// # Errors
    /// The writer's fatal error, once it has stopped.
    pub async fn submit(&mut self, mut op: Op) -> Result<(), WriterError> {
        self.admit(std::slice::from_mut(&mut op)).await?;
        self.send(Cmd::Op(op)).await
    }

    /// What every submit does before handing ops to the engine: stop on
    /// the writer's fatal error, put a standalone target's ops on one
    /// "slot" (one node, one order: a hold or retry can never let a later
    /// op, or a `SELECT`, overtake an earlier one), and wait for the rate
    /// limit.
    async fn admit(&mut self, ops: &mut [Op]) -> Result<(), WriterError> {
        if let Some(e) = self.shared.error() {
            return Err(e);
        }
        if self.standalone {
            for op in ops.iter_mut() {
                op.slot = op.slot.map(|_| 0);
            }
        }
        if self.rate.is_some() && !ops.is_empty() {
            let bytes = ops.iter().map(|o| args_len(&o.args)).sum();
            self.throttle(ops.len() as u64, bytes).await;
        }
        Ok(())
    }

    /// Hands `cmd` to the engine (waits while its queue is full).
    async fn send(&mut self, cmd: Cmd) -> Result<(), WriterError> {
        self.cmds.send(cmd).await.map_err(|_| self.stopped())
    }

    /// Queues ops in order, as one message to the engine: the same as
    /// [`ClusterWriter::submit`] for each in turn, for one channel send
    /// (and engine wake-up) per batch instead of per op. Callers keep
    /// batches to about [`SUBMIT_BATCH_OPS`] ops and
    /// [`SUBMIT_BATCH_BYTES`] bytes (the queue's bound counts messages).
    ///
    /// # Errors
    /// The writer's fatal error, once it has stopped.
    pub async fn submit_batch(&mut self, mut ops: Vec<Op>) -> Result<(), WriterError> {
        self.admit(&mut ops).await?;
        if ops.is_empty() {
            return Ok(());
        }
        self.send(Cmd::Ops(ops)).await
    }

    /// Declares every op with an offset at or below `offset` submitted, so
    /// [`ClusterWriter::applied_offset`] may reach it once they are all
    /// acknowledged (without it, the last offset submitted is complete only
    /// when an op with a higher offset, a `flush` or `close` follows).
    ///
    /// # Errors
    /// The writer's fatal error, once it has stopped.
    pub async fn mark_complete(&mut self, offset: u64) -> Result<(), WriterError> {
        self.send(Cmd::Complete(offset)).await
    }

    /// Waits until every op submitted so far is acknowledged.
    ///
    /// # Errors
    /// The writer's fatal error.
    pub async fn flush(&mut self) -> Result<(), WriterError> {
        let (tx, rx) = oneshot::channel();
        self.send(Cmd::Flush(tx)).await?;
        rx.await.map_err(|_| self.stopped())?
    }

    /// Flushes, then stops the engine and closes every connection.
    ///
    /// # Errors
    /// As [`ClusterWriter::flush`].
    pub async fn close(mut self) -> Result<(), WriterError> {
        self.flush().await
    }

    /// Queues ops that must commit together: a source `MULTI`/`EXEC`
    /// block. With checkpointing on and every op in one slot they go into
    /// one transaction; otherwise they are applied per slot (counted in
    /// [`WriterStats::split_groups`] when they span slots). Offsets must be
    /// non-decreasing.
    ///
    /// # Errors
    /// The writer's fatal error, once it has stopped.
    pub async fn submit_group(&mut self, mut ops: Vec<Op>) -> Result<(), WriterError> {
        self.admit(&mut ops).await?;
        if ops.is_empty() {
            return Ok(());
        }
        self.send(Cmd::Group(ops)).await
    }

    /// Turns the per-slot transactions with checkpoints on or off for the
    /// ops submitted after this call (no effect without
    /// [`WriterConfig::checkpoint`]). Off, ops are plain pipelined commands
    /// and nothing is skipped: for idempotent phases (a snapshot's
    /// `RESTORE ... REPLACE`).
    ///
    /// # Errors
    /// The writer's fatal error.
    pub async fn set_checkpointing(&mut self, on: bool) -> Result<(), WriterError> {
        self.send(Cmd::Checkpointing(on)).await
    }

    /// Starts a new source history (a full resync): waits until everything
    /// submitted is acknowledged, then forgets the connect-time checkpoints
    /// (nothing is skipped any more), writes `history` into later
    /// checkpoints and restarts offset tracking at 0
    /// ([`ClusterWriter::applied_offset`]).
    ///
    /// # Errors
    /// The writer's fatal error.
    pub async fn new_history(&mut self, history: String) -> Result<(), WriterError> {
        self.flush().await?;
        self.committed.clear();
        let (tx, rx) = oneshot::channel();
        self.send(Cmd::NewHistory(history, tx)).await?;
        rx.await.map_err(|_| self.stopped())
    }

    /// What the target held at connect time (with
    /// [`WriterConfig::skip_applied`]).
    pub fn checkpoint_summary(&self) -> &CheckpointSummary {
        &self.summary
    }

    /// The highest source offset such that every op with an offset at or
    /// below it is acknowledged by its node (0 before the first), and no
    /// more ops with that offset can come: it trails the last offset
    /// submitted until a higher one, [`ClusterWriter::mark_complete`] or a
    /// flush says that offset is complete.
    pub fn applied_offset(&self) -> u64 {
        self.shared.applied.load(Ordering::Acquire)
    }

    /// The fatal error, if the writer has stopped on one.
    pub fn error(&self) -> Option<WriterError> {
        self.shared.error()
    }

    /// The counters.
    pub fn stats(&self) -> WriterStats {
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        WriterStats {
            acked: get(&self.shared.acked),
            moved: get(&self.shared.moved),
            ask: get(&self.shared.ask),
            retries: get(&self.shared.retries),
            reconnects: get(&self.shared.reconnects),
            skipped: get(&self.shared.skipped),
            checkpoints: get(&self.shared.checkpoints),
            verified: get(&self.shared.verified),
            split_groups: get(&self.shared.split_groups),
            refreshes: get(&self.shared.refreshes),
            reprobed: get(&self.shared.reprobed),
            wait_timeouts: get(&self.shared.wait_timeouts),
            rate_limited: self
                .rate
                .as_ref()
                .is_some_and(|(l, start)| l.binding(start.elapsed())),
            rate_limited_ms: self.rate_slept.as_millis() as u64,
        }
    }

    /// The masters found at connect time (`host:port`); for a standalone
    /// target, the server.
    pub fn masters(&self) -> &[String] {
        &self.masters
    }

    /// Whether the target is a standalone server ([`TargetMode`]).
    pub fn is_standalone(&self) -> bool {
        self.standalone
    }

    fn stopped(&self) -> WriterError {
        self.shared.error().unwrap_or(WriterError::Stopped)
    }
}

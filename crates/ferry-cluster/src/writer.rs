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
//! # Checkpoints and resume (design decision 3)
//!
//! With [`WriterConfig::checkpoint`] set, the engine keeps one key per
//! master, `<key_prefix>:{<tag>}`, whose hash tag is chosen so the key lives
//! on that master (first tag `0`, `1`, ... whose slot it serves; recomputed
//! when the slot map changes). At most every [`CheckpointConfig::every`], and
//! once more on `flush`/`close`/drop, it appends `SET <key> <offset>` to that
//! master's pipeline, where `offset` is the highest source offset such that
//! every op with an offset at or below it that belongs to that master has
//! already been **acknowledged** by it (ops held for a redirect or retry, and
//! ops of a command not yet fully submitted, hold it back). The value only
//! states facts the writer has seen, so a `TRYAGAIN` or `MOVED` on an op
//! ahead of it can never make it claim too much.
//!
//! On restart, [`ClusterWriter::checkpoints`] has every master's value (a
//! `GET` per master at connect time), [`ClusterWriter::min_checkpoint`] is
//! where to resume the source, and with [`WriterConfig::skip_applied`] an op
//! whose offset is at or below the checkpoint of the master that owns its
//! slot *now* is acknowledged without being sent ([`WriterStats::skipped`]).
//!
//! **What this guarantees, and what not:**
//! * No op is lost: everything at or below a master's checkpoint is on that
//!   master; everything above it is replayed.
//! * Replay is **at-least-once, not exactly-once**, for ops a master applied
//!   after its last stored checkpoint: a crash (kill -9, runtime dropped)
//!   between an op landing and the next checkpoint landing replays that op.
//!   The window is about `every` plus one round trip of in-flight ops per
//!   master. Idempotent writes (`SET`, `RESTORE REPLACE`, `DEL`, `HSET`,
//!   `PEXPIREAT`...) are unaffected; `INCR`, `RPUSH`, `APPEND`, `XADD` in the
//!   window are applied twice. A checkpoint in the same pipeline cannot
//!   close this window: only an atomic commit of ops and checkpoint on the
//!   node can (a per-slot `MULTI ... SET ckpt ... EXEC`, or a Lua batch with
//!   `allow-cross-slot-keys` on 7.0+), which this writer does not do yet.
//!   A clean stop (`flush`/`close`, or dropping the handle and letting the
//!   engine drain) leaves every checkpoint exact, so a resume after it
//!   applies every command exactly once.
//! * A master with no checkpoint while others have one (it never stored
//!   one before the crash, or was added while ferry was down) counts as 0
//!   in [`ClusterWriter::min_checkpoint`]: resume from the beginning (full
//!   resync) rather than risk losing its ops.
//! * Resharding or failover while ferry is down can move slots between
//!   checkpoints: an op is judged by the checkpoint of the slot's owner at
//!   restart, which may not be the node that applied it. Resume only onto
//!   the topology that was checkpointed (or full-resync).
//! * The target replicates asynchronously: a target failover can lose
//!   acknowledged writes *and* the checkpoint with them, or keep a
//!   checkpoint whose writes were lost. `WAIT` is not used.
//! * The checkpoint keys live in the target (prefix `ferry:`): `verify`
//!   must ignore them, and [`ClusterWriter::remove_checkpoints`] deletes
//!   them after cutover. Their names are in
//!   [`ClusterWriter::checkpoint_keys`].

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use ferry_ops::{ErrorKind, Topology, TopologyError, key_slot};
use ferry_resp::Value;
use tokio::sync::{mpsc, oneshot};

use crate::conn::{Auth, Conn};
use crate::engine::{Cmd, Engine};
use crate::error::WriterError;

/// One write for the cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Op {
    /// The command and its arguments.
    pub args: Vec<Bytes>,
    /// The slot of its keys (all in one slot: split first); `None` sends it
    /// to every master (`FLUSHALL`, `FUNCTION LOAD`, ...).
    pub slot: Option<u16>,
    /// The source replication offset of the command it came from (several
    /// ops may share one). Non-decreasing across submits.
    pub offset: u64,
}

impl Op {
    /// An op for one slot.
    pub fn slot(args: Vec<Bytes>, slot: u16, offset: u64) -> Op {
        Op {
            args,
            slot: Some(slot),
            offset,
        }
    }

    /// An op for every master.
    pub fn all_masters(args: Vec<Bytes>, offset: u64) -> Op {
        Op {
            args,
            slot: None,
            offset,
        }
    }
}

/// Tuning and bounds. Every wait in the writer is bounded by one of these.
#[derive(Debug, Clone)]
pub struct WriterConfig {
    /// Credentials for every node.
    pub auth: Auth,
    /// Bytes of commands in flight per node before `submit` waits.
    pub max_inflight_bytes: usize,
    /// Ops queued between `submit` and the engine.
    pub queue_ops: usize,
    /// Bound on connecting and on each handshake reply.
    pub connect_timeout: Duration,
    /// How long a node may stay unreachable before the writer gives up.
    pub reconnect_for: Duration,
    /// How long one op may keep getting retryable replies (`TRYAGAIN`,
    /// `CLUSTERDOWN`, `LOADING`, ...) before the writer gives up.
    pub retry_for: Duration,
    /// First backoff after a retryable reply; doubles up to `backoff_max`.
    pub backoff_min: Duration,
    /// Largest backoff.
    pub backoff_max: Duration,
    /// How long a node with commands in flight may stay silent.
    pub reply_timeout: Duration,
    /// Per-master checkpoint keys (see the module docs); `None` writes none.
    pub checkpoint: Option<CheckpointConfig>,
    /// Acknowledge without sending every op at or below the connect-time
    /// checkpoint of the master that owns its slot (resume after a restart).
    /// Reads the keys of [`WriterConfig::checkpoint`]'s prefix, or of the
    /// default prefix when that is `None`.
    pub skip_applied: bool,
    /// TLS to every node (`rediss://`); `None` is plain TCP.
    pub tls: Option<ferry_tls::TlsConfig>,
    /// A cluster, a standalone server, or whichever the seed is.
    pub mode: TargetMode,
}

/// What kind of target the writer talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TargetMode {
    /// A Redis Cluster; a standalone seed is [`WriterError::NotACluster`].
    #[default]
    Cluster,
    /// One standalone server: every op goes, in submission order, to it
    /// over one pipelined connection (one "master" serving every slot).
    /// `SELECT` ops are sent as submitted; after a reconnect the connection
    /// is put back on the db of the last acknowledged `SELECT`. A
    /// retryable reply (`LOADING`, `BUSY`, ...) is fatal here, since ops
    /// after it may already have run in a db chosen by a later `SELECT`.
    Standalone,
    /// A cluster if the seed answers `CLUSTER SHARDS`/`SLOTS`, standalone
    /// if it has cluster support disabled.
    Auto,
}

/// Where and how often the per-master checkpoints are written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckpointConfig {
    /// Key prefix; a master's key is `<key_prefix>:{<tag>}`.
    pub key_prefix: String,
    /// At most one checkpoint write per master per this interval (plus one
    /// on `flush`/`close`).
    pub every: Duration,
}

/// The default checkpoint key prefix.
pub const DEFAULT_CHECKPOINT_PREFIX: &str = "ferry:ckpt";

impl Default for CheckpointConfig {
    fn default() -> Self {
        CheckpointConfig {
            key_prefix: DEFAULT_CHECKPOINT_PREFIX.to_owned(),
            every: Duration::from_millis(200),
        }
    }
}

impl WriterConfig {
    /// The checkpoint key prefix in use.
    pub(crate) fn checkpoint_prefix(&self) -> &str {
        self.checkpoint
            .as_ref()
            .map_or(DEFAULT_CHECKPOINT_PREFIX, |c| c.key_prefix.as_str())
    }
}

/// The checkpoint key of master `node`: `<prefix>:{<n>}` for the smallest
/// `n` whose slot `node` serves; `None` if it serves no slot.
pub(crate) fn checkpoint_key(prefix: &str, topology: &Topology, node: usize) -> Option<String> {
    if !topology.slots.ranges().any(|(_, _, n)| n == node) {
        return None;
    }
    (0u32..)
        .map(|n| n.to_string())
        .find(|tag| topology.slots.node_for(key_slot(tag.as_bytes())) == Some(node))
        .map(|tag| format!("{prefix}:{{{tag}}}"))
}

impl Default for WriterConfig {
    fn default() -> Self {
        WriterConfig {
            auth: Auth::none(),
            max_inflight_bytes: 8 * 1024 * 1024,
            queue_ops: 4096,
            connect_timeout: Duration::from_secs(5),
            reconnect_for: Duration::from_secs(30),
            retry_for: Duration::from_secs(60),
            backoff_min: Duration::from_millis(10),
            backoff_max: Duration::from_secs(1),
            reply_timeout: Duration::from_secs(60),
            checkpoint: None,
            skip_applied: false,
            tls: None,
            mode: TargetMode::Cluster,
        }
    }
}

/// Counters, for status pages and tests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WriterStats {
    /// Ops acknowledged (a per-master op counts once per master).
    pub acked: u64,
    /// `-MOVED` replies handled.
    pub moved: u64,
    /// `-ASK` replies handled.
    pub ask: u64,
    /// Retryable replies handled (`TRYAGAIN`, `CLUSTERDOWN`, `LOADING`, ...).
    pub retries: u64,
    /// Connections re-established after a loss.
    pub reconnects: u64,
    /// Ops acknowledged without sending, at or below a checkpoint
    /// ([`WriterConfig::skip_applied`]; a per-master op counts once per
    /// master skipped).
    pub skipped: u64,
    /// Checkpoint writes acknowledged (not counted in `acked`).
    pub checkpoints: u64,
    /// Topology refreshes completed (`CLUSTER SHARDS` re-read after a
    /// node stayed unreachable or a `CLUSTERDOWN`/`READONLY`/`MASTERDOWN`).
    pub refreshes: u64,
}

/// State shared between the handle and the engine.
#[derive(Debug, Default)]
pub(crate) struct Shared {
    pub(crate) applied: AtomicU64,
    pub(crate) acked: AtomicU64,
    pub(crate) moved: AtomicU64,
    pub(crate) ask: AtomicU64,
    pub(crate) retries: AtomicU64,
    pub(crate) reconnects: AtomicU64,
    pub(crate) skipped: AtomicU64,
    pub(crate) checkpoints: AtomicU64,
    pub(crate) refreshes: AtomicU64,
    /// Standalone target: the db of the last acknowledged `SELECT`.
    pub(crate) selected_db: AtomicU64,
    pub(crate) fatal: Mutex<Option<WriterError>>,
}

impl Shared {
    pub(crate) fn fail(&self, e: WriterError) {
        let mut fatal = self.fatal.lock().unwrap_or_else(|p| p.into_inner());
        fatal.get_or_insert(e);
    }

    fn error(&self) -> Option<WriterError> {
        self.fatal.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Notes an acknowledged op: a `SELECT n` moves the standalone
    /// connection to db `n`.
    pub(crate) fn acked_op(&self, args: &[Bytes]) {
        if let [name, db] = args
            && name.eq_ignore_ascii_case(b"SELECT")
            && let Some(db) = std::str::from_utf8(db).ok().and_then(|d| d.parse().ok())
        {
            self.selected_db.store(db, Ordering::Release);
        }
    }
}

/// Replays ops into a Redis Cluster: one pipelined connection per master,
/// per-slot order kept across redirects, retries and reconnects.
///
/// Exactly-once caveat: after a connection loss, every op not yet answered
/// is sent again. An op the node executed but whose reply was lost is then
/// applied twice. That is harmless for idempotent writes (`SET`, `RESTORE
/// ... REPLACE`, `HSET`, `DEL`, `PEXPIREAT`) but not for `INCR`, `RPUSH`,
/// `APPEND`...; see the module docs for what the checkpoints do and do not
/// guarantee.
#[derive(Debug)]
pub struct ClusterWriter {
    cmds: mpsc::Sender<Cmd>,
    shared: Arc<Shared>,
    masters: Vec<String>,
    checkpoints: BTreeMap<String, u64>,
    checkpoint_keys: BTreeMap<String, String>,
    standalone: bool,
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
        let (addr, url_auth) = parse_seed(seed);
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
        let mut resume = vec![None; masters.len()];
        let mut checkpoints = BTreeMap::new();
        let mut checkpoint_keys = BTreeMap::new();
        if config.checkpoint.is_some() || config.skip_applied {
            let prefix = config.checkpoint_prefix().to_owned();
            for (i, conn) in conns.iter_mut().enumerate() {
                let Some(key) = checkpoint_key(&prefix, &topology, i) else {
                    continue;
                };
                let value = read_checkpoint(conn, &key, config.connect_timeout).await?;
                if let Some(v) = value {
                    checkpoints.insert(masters[i].clone(), v);
                }
                resume[i] = value;
                checkpoint_keys.insert(masters[i].clone(), key);
            }
        }
        let shared = Arc::new(Shared::default());
        let (tx, rx) = mpsc::channel(config.queue_ops.max(1));
        let mut known = known;
        known.push(addr);
        let engine = Engine::new(topology, conns, resume, known, config, Arc::clone(&shared));
        tokio::spawn(engine.run(rx));
        Ok(ClusterWriter {
            cmds: tx,
            shared,
            masters,
            checkpoints,
            checkpoint_keys,
            standalone,
        })
    }

    /// Queues one op. Waits while the queue is full (backpressure: the
    /// engine stops taking ops while the target node is at its in-flight
    /// bound). Ops to one slot are applied in submission order.
    ///
    /// # Errors
    /// The writer's fatal error, once it has stopped.
    pub async fn submit(&mut self, mut op: Op) -> Result<(), WriterError> {
        if let Some(e) = self.shared.error() {
            return Err(e);
        }
        if self.standalone {
            // One node, one order: every op on one "slot" so a hold or
            // retry can never let a later op (or `SELECT`) overtake it.
            op.slot = op.slot.map(|_| 0);
        }
        self.cmds
            .send(Cmd::Op(op))
            .await
            .map_err(|_| self.stopped())
    }

    /// Declares every op with an offset at or below `offset` submitted, so
    /// [`ClusterWriter::applied_offset`] may reach it once they are all
    /// acknowledged (without it, the last offset submitted is complete only
    /// when an op with a higher offset, a `flush` or `close` follows).
    ///
    /// # Errors
    /// The writer's fatal error, once it has stopped.
    pub async fn mark_complete(&mut self, offset: u64) -> Result<(), WriterError> {
        self.cmds
            .send(Cmd::Complete(offset))
            .await
            .map_err(|_| self.stopped())
    }

    /// Waits until every op submitted so far is acknowledged.
    ///
    /// # Errors
    /// The writer's fatal error.
    pub async fn flush(&mut self) -> Result<(), WriterError> {
        let (tx, rx) = oneshot::channel();
        self.cmds
            .send(Cmd::Flush(tx))
            .await
            .map_err(|_| self.stopped())?;
        rx.await.map_err(|_| self.stopped())?
    }

    /// Flushes, then stops the engine and closes every connection.
    ///
    /// # Errors
    /// As [`ClusterWriter::flush`].
    pub async fn close(mut self) -> Result<(), WriterError> {
        self.flush().await
    }

    /// Every master's checkpoint as read at connect time (`host:port` ->
    /// offset); masters without one are absent. Empty unless
    /// [`WriterConfig::checkpoint`] or [`WriterConfig::skip_applied`] is set.
    pub fn checkpoints(&self) -> &BTreeMap<String, u64> {
        &self.checkpoints
    }

    /// The checkpoint key of every master at connect time (`host:port` ->
    /// key). Empty unless checkpoints or `skip_applied` are configured.
    pub fn checkpoint_keys(&self) -> &BTreeMap<String, String> {
        &self.checkpoint_keys
    }

    /// Where to resume the source after a restart: the smallest connect-time
    /// checkpoint, a master without one counting as 0 as soon as any master
    /// has one (see the module docs); `None` if no master has one.
    pub fn min_checkpoint(&self) -> Option<u64> {
        let min = self.checkpoints.values().min().copied()?;
        if self.checkpoints.len() < self.checkpoint_keys.len() {
            return Some(0);
        }
        Some(min)
    }

    /// Stops writing checkpoints and deletes every master's checkpoint key
    /// (in each master's pipeline, after everything submitted before);
    /// returns how many keys existed. For cleanup after cutover.
    ///
    /// # Errors
    /// The writer's fatal error.
    pub async fn remove_checkpoints(&mut self) -> Result<u64, WriterError> {
        let (tx, rx) = oneshot::channel();
        let keys = self.checkpoint_keys.values().cloned().collect();
        self.cmds
            .send(Cmd::RemoveCheckpoints(keys, tx))
            .await
            .map_err(|_| self.stopped())?;
        rx.await.map_err(|_| self.stopped())?
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
            refreshes: get(&self.shared.refreshes),
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

/// `host:port` and credentials from `host:port` or
/// `redis[s]://[[user]:password@]host:port[/db]` (TLS itself is
/// [`WriterConfig::tls`]).
fn parse_seed(seed: &str) -> (String, Auth) {
    let Some(rest) = seed
        .strip_prefix("redis://")
        .or_else(|| seed.strip_prefix("rediss://"))
    else {
        return (seed.to_owned(), Auth::none());
    };
    let rest = rest.split('/').next().unwrap_or(rest);
    let Some((creds, host)) = rest.rsplit_once('@') else {
        return (rest.to_owned(), Auth::none());
    };
    let auth = match creds.split_once(':') {
        Some(("", pw)) => Auth::password(pw),
        Some((user, pw)) => Auth::user(user, pw),
        None => Auth::password(creds),
    };
    (host.to_owned(), auth)
}

/// `GET` of a checkpoint key: `None` if absent.
async fn read_checkpoint(
    conn: &mut Conn,
    key: &str,
    timeout: Duration,
) -> Result<Option<u64>, WriterError> {
    let reply = conn.call(&["GET", key], timeout).await?;
    let bad = |reply: String| WriterError::Checkpoint {
        node: conn.addr().to_owned(),
        key: key.to_owned(),
        reply,
    };
    match &reply {
        Value::Null => Ok(None),
        Value::Bulk(b) => std::str::from_utf8(b)
            .ok()
            .and_then(|t| t.parse().ok())
            .map(Some)
            .ok_or_else(|| bad(format!("{reply:?}"))),
        _ => Err(bad(format!("{reply:?}"))),
    }
}

/// Reads the topology from `seed` (`host:port` or a `redis[s]://` URL) the
/// way [`ClusterWriter::connect_with`] does (`CLUSTER SHARDS`, else
/// `CLUSTER SLOTS`; TLS ports when `config.tls` is set), without connecting
/// to the masters. For tools that read the target (`ferry verify`).
///
/// # Errors
/// [`WriterError::NotACluster`] for a standalone seed; connection, `AUTH`
/// and topology errors.
pub async fn discover_topology(seed: &str, config: &WriterConfig) -> Result<Topology, WriterError> {
    let (addr, url_auth) = parse_seed(seed);
    let mut config = config.clone();
    if config.auth.password.is_none() {
        config.auth = url_auth;
    }
    discover(&addr, &config).await.map(|(t, _)| t)
}

/// Re-reads the topology from the first of `addrs` that answers with a
/// usable one (the engine puts reachable masters first, then every other
/// address it has seen). Returns it with every node address it names, or
/// the last error.
pub(crate) async fn refresh_topology(
    addrs: Vec<String>,
    config: WriterConfig,
) -> Result<(Topology, Vec<String>), WriterError> {
    let mut last = WriterError::Stopped;
    for addr in addrs {
        match discover(&addr, &config).await {
            Ok(found) => return Ok(found),
            Err(e) => last = e,
        }
    }
    Err(last)
}

/// `CLUSTER SHARDS`, falling back to `CLUSTER SLOTS`; also returns the
/// address of every node the reply names (replicas included), as fallback
/// seeds for a later topology refresh.
async fn discover(
    addr: &str,
    config: &WriterConfig,
) -> Result<(Topology, Vec<String>), WriterError> {
    if config.mode == TargetMode::Standalone {
        return Ok((standalone_topology(addr)?, Vec::new()));
    }
    let mut conn = Conn::connect_tls(
        addr,
        &config.auth,
        config.connect_timeout,
        config.tls.as_ref(),
    )
    .await?;
    let host = addr.rsplit_once(':').map_or(addr, |(h, _)| h);
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let not_a_cluster = |reply: &Value| match reply {
        Value::Error(e) if contains(e, b"cluster support disabled") => {
            Some(WriterError::NotACluster {
                addr: addr.to_owned(),
                message: String::from_utf8_lossy(e).into_owned(),
            })
        }
        _ => None,
    };
    let topo_err = |source: TopologyError| WriterError::Topology {
        addr: addr.to_owned(),
        source,
    };
    let reply = conn
        .call(&["CLUSTER", "SHARDS"], config.connect_timeout)
        .await?;
    if let Some(e) = not_a_cluster(&reply) {
        return Err(e);
    }
    let (topology, known) = match &reply {
        Value::Error(e) if ErrorKind::classify(e) == ErrorKind::Other => {
            // Before 7.0: unknown subcommand.
            let reply = conn
                .call(&["CLUSTER", "SLOTS"], config.connect_timeout)
                .await?;
            if let Some(e) = not_a_cluster(&reply) {
                return Err(e);
            }
            let topology = Topology::from_slots(&reply, host).map_err(topo_err)?;
            (topology, slots_addrs(&reply, host))
        }
        _ => {
            let tls = config.tls.is_some();
            let topology = Topology::from_shards_with(&reply, host, tls).map_err(topo_err)?;
            (topology, shards_addrs(&reply, host, tls))
        }
    };
    if topology.masters.is_empty() {
        return Err(WriterError::Topology {
            addr: addr.to_owned(),
            source: TopologyError::NoMaster {
                at: "CLUSTER SHARDS".into(),
            },
        });
    }
    Ok((topology, known))
}

/// A standalone server as a one-master topology serving every slot.
fn standalone_topology(addr: &str) -> Result<Topology, WriterError> {
    let bad = || WriterError::Topology {
        addr: addr.to_owned(),
        source: TopologyError::NoMaster {
            at: "a standalone address without a port".into(),
        },
    };
    let (host, port) = addr.rsplit_once(':').ok_or_else(bad)?;
    let port = port.parse().map_err(|_| bad())?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let mut topology = Topology::default();
    topology.masters.push(ferry_ops::Node {
        id: None,
        host: host.to_owned(),
        port,
    });
    topology
        .slots
        .set_range(0, ferry_ops::SLOTS - 1, 0)
        .map_err(|source| WriterError::Topology {
            addr: addr.to_owned(),
            source,
        })?;
    Ok(topology)
}

/// Key/value pairs of a RESP2 flat array or a RESP3 map.
fn pairs(v: &Value) -> Vec<(&Value, &Value)> {
    match v {
        Value::Map(m) => m.iter().map(|(k, v)| (k, v)).collect(),
        Value::Array(a) if a.len() % 2 == 0 => {
            a.chunks_exact(2).map(|kv| (&kv[0], &kv[1])).collect()
        }
        _ => Vec::new(),
    }
}

fn text(v: &Value) -> Option<&str> {
    v.as_bytes().and_then(|b| std::str::from_utf8(b).ok())
}

/// `host:port` for a node entry, with the endpoint rules of `ferry-ops`
/// (empty endpoint: the answering host; `?`: the ip).
fn node_addr(
    endpoint: Option<&str>,
    ip: Option<&str>,
    port: i64,
    answered_by: &str,
) -> Option<String> {
    let port = u16::try_from(port).ok().filter(|p| *p != 0)?;
    let host = match endpoint {
        None | Some("") => answered_by,
        Some("?") => ip
            .filter(|ip| !ip.is_empty() && *ip != "?")
            .unwrap_or(answered_by),
        Some(e) => e,
    };
    Some(
        ferry_ops::Node {
            id: None,
            host: host.to_owned(),
            port,
        }
        .addr(),
    )
}

/// Every node address in a `CLUSTER SHARDS` reply (TLS ports when `tls`).
fn shards_addrs(reply: &Value, answered_by: &str, tls: bool) -> Vec<String> {
    let mut out = Vec::new();
    for shard in reply.as_array().unwrap_or_default() {
        let shard = pairs(shard);
        let nodes = shard
            .iter()
            .find(|(k, _)| text(k) == Some("nodes"))
            .and_then(|(_, v)| v.as_array())
            .unwrap_or_default();
        for node in nodes {
            let f = pairs(node);
            let get = |name: &str| {
                f.iter()
                    .find(|(k, _)| text(k) == Some(name))
                    .map(|(_, v)| *v)
            };
            let port = |name| get(name).and_then(Value::as_int).filter(|p| *p != 0);
            let port = if tls {
                port("tls-port").or_else(|| port("port"))
            } else {
                port("port").or_else(|| port("tls-port"))
            }
            .unwrap_or(0);
            let endpoint = get("endpoint").and_then(text);
            let ip = get("ip").and_then(text);
            out.extend(node_addr(endpoint, ip, port, answered_by));
        }
    }
    out
}

/// Every node address in a `CLUSTER SLOTS` reply.
fn slots_addrs(reply: &Value, answered_by: &str) -> Vec<String> {
    let mut out = Vec::new();
    for range in reply.as_array().unwrap_or_default() {
        for node in range.as_array().unwrap_or_default().iter().skip(2) {
            let node = node.as_array().unwrap_or_default();
            let endpoint = node.first().and_then(text);
            let port = node.get(1).and_then(Value::as_int).unwrap_or(0);
            out.extend(node_addr(endpoint, None, port, answered_by));
        }
    }
    out
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeds() {
        assert_eq!(
            parse_seed("127.0.0.1:7000"),
            ("127.0.0.1:7000".into(), Auth::none())
        );
        assert_eq!(
            parse_seed("redis://127.0.0.1:7000"),
            ("127.0.0.1:7000".into(), Auth::none())
        );
        assert_eq!(
            parse_seed("redis://:pw@h:1/0"),
            ("h:1".into(), Auth::password("pw"))
        );
        assert_eq!(
            parse_seed("rediss://:pw@h:1"),
            ("h:1".into(), Auth::password("pw"))
        );
        assert_eq!(
            parse_seed("redis://u:p:w@h:1"),
            ("h:1".into(), Auth::user("u", "p:w"))
        );
    }
}

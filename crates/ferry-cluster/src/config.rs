//! What the writer is given: [`Op`]s and its [`WriterConfig`], and what it
//! reports ([`WriterStats`]). Plain data, shared by the handle, the engine,
//! discovery and checkpoints.

use std::time::Duration;

use crate::conn::Auth;

pub use ferry_ops::Op;

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
    /// Per-slot checkpoints committed with the ops (see the module docs);
    /// `None` writes plain pipelined commands and no keys.
    pub checkpoint: Option<CheckpointConfig>,
    /// Acknowledge without sending every op at or below the connect-time
    /// checkpoint of its slot or barrier of its master (resume after a
    /// restart). Needs [`WriterConfig::checkpoint`].
    pub skip_applied: bool,
    /// TLS to every node (`rediss://`); `None` is plain TCP.
    pub tls: Option<ferry_tls::TlsConfig>,
    /// A cluster, a standalone server, or whichever the seed is.
    pub mode: TargetMode,
    /// Checkpoint mode: a committed transaction counts as applied only
    /// once `WAIT 1 <ms>` on its master says a replica has it, so a master
    /// killed before replicating loses nothing that was reported applied
    /// (its unconfirmed transactions are probed and resent on the promoted
    /// replica). `None`: applied on the `EXEC` reply.
    pub wait_replicas: Option<Duration>,
    /// Checkpoint mode, a cluster target without `wait_replicas`: a slot's
    /// group whose ops are all replay-safe assignments (`SET k v [PXAT
    /// t]`, `HSET`, `SADD`, `ZADD`, `DEL`, `UNLINK`, absolute expiries,
    /// `PERSIST`, each key keeping its type until the slot's next
    /// transaction: see `docs/decisions.md` D96–D98) is written as plain
    /// commands, without `MULTI … SET <checkpoint> EXEC`. Off for two-way
    /// sync, whose other side recognises this ferry's writes by their
    /// checkpoint key.
    pub plain_groups: bool,
}

/// What kind of target the writer talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TargetMode {
    /// A Redis Cluster; a standalone seed is [`WriterError::NotACluster`](crate::WriterError::NotACluster).
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

/// Checkpoint settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckpointConfig {
    /// Names the source history (one full sync) the offsets belong to;
    /// written into every checkpoint value, and checkpoints of another
    /// history are ignored. No `:` needed; any text.
    pub history: String,
    /// Names the key family: `__ferry:ckpt:<namespace>:{tag}` and
    /// `__ferry:barrier:<namespace>:{tag}`, so several writers (one per
    /// source shard) keep apart checkpoints in one target. Empty (the
    /// default, a standalone source): `__ferry:ckpt:{tag}`, as always.
    pub namespace: String,
}

impl Default for CheckpointConfig {
    fn default() -> Self {
        CheckpointConfig {
            history: "0".to_owned(),
            namespace: String::new(),
        }
    }
}

impl CheckpointConfig {
    /// The checkpoint key of `slot` in this namespace.
    pub fn ckpt_key(&self, slot: u16) -> String {
        crate::checkpoint::ckpt_key_in(&self.namespace, slot)
    }

    /// The barrier key of `slot` in this namespace.
    pub fn barrier_key(&self, slot: u16) -> String {
        crate::checkpoint::barrier_key_in(&self.namespace, slot)
    }
}

impl Default for WriterConfig {
    fn default() -> Self {
        WriterConfig {
            auth: Auth::none(),
            max_inflight_bytes: 2 * 1024 * 1024,
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
            wait_replicas: None,
            plain_groups: true,
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
    /// Transactions (ops plus checkpoint) committed.
    pub checkpoints: u64,
    /// Transactions whose reply was lost, found committed by a probe of
    /// their checkpoint and not sent again.
    pub verified: u64,
    /// Source `MULTI`/`EXEC` blocks submitted as one group
    /// ([`ClusterWriter::submit_group`](crate::ClusterWriter::submit_group)) whose ops span several slots, so
    /// they were committed per slot.
    pub split_groups: u64,
    /// Topology refreshes completed (`CLUSTER SHARDS` re-read after a
    /// node stayed unreachable or a `CLUSTERDOWN`/`READONLY`/`MASTERDOWN`).
    pub refreshes: u64,
    /// Committed transactions no replica had confirmed when their master's
    /// connection was lost, probed again ([`WriterConfig::wait_replicas`]).
    pub reprobed: u64,
    /// `WAIT` replies with no replica within the timeout.
    pub wait_timeouts: u64,
    /// `FUNCTION DELETE` copies answered `Library not found` and counted
    /// instead of failing (ops marked [`ferry_ops::Tolerate::LibraryNotFound`]:
    /// the copies a cluster source's shards carry of one client command).
    pub function_delete_absent: u64,
    /// The rate limit held writes back within the last second.
    pub rate_limited: bool,
    /// Total milliseconds writes waited for the rate limit.
    pub rate_limited_ms: u64,
}

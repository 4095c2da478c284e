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
//! ```

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use ferry_ops::{ErrorKind, Topology, TopologyError};
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
}

/// Replays ops into a Redis Cluster: one pipelined connection per master,
/// per-slot order kept across redirects, retries and reconnects.
///
/// Exactly-once caveat: after a connection loss, every op not yet answered
/// is sent again. An op the node executed but whose reply was lost is then
/// applied twice. That is harmless for idempotent writes (`SET`, `RESTORE
/// ... REPLACE`, `HSET`, `DEL`, `PEXPIREAT`) but not for `INCR`, `RPUSH`,
/// `APPEND`...; exactly-once across reconnects needs the per-node
/// checkpoints of the daemon (design decision 3).
#[derive(Debug)]
pub struct ClusterWriter {
    cmds: mpsc::Sender<Cmd>,
    shared: Arc<Shared>,
    masters: Vec<String>,
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
        let topology = discover(&addr, &config).await?;
        let mut conns = Vec::with_capacity(topology.masters.len());
        for node in &topology.masters {
            conns.push(Conn::connect(&node.addr(), &config.auth, config.connect_timeout).await?);
        }
        let masters = topology.masters.iter().map(|n| n.addr()).collect();
        let shared = Arc::new(Shared::default());
        let (tx, rx) = mpsc::channel(config.queue_ops.max(1));
        let engine = Engine::new(topology, conns, config, Arc::clone(&shared));
        tokio::spawn(engine.run(rx));
        Ok(ClusterWriter {
            cmds: tx,
            shared,
            masters,
        })
    }

    /// Queues one op. Waits while the queue is full (backpressure: the
    /// engine stops taking ops while the target node is at its in-flight
    /// bound). Ops to one slot are applied in submission order.
    ///
    /// # Errors
    /// The writer's fatal error, once it has stopped.
    pub async fn submit(&mut self, op: Op) -> Result<(), WriterError> {
        if let Some(e) = self.shared.error() {
            return Err(e);
        }
        self.cmds
            .send(Cmd::Op(op))
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

    /// The highest source offset such that every op with an offset at or
    /// below it is acknowledged by its node (0 before the first).
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
        }
    }

    /// The masters found at connect time (`host:port`).
    pub fn masters(&self) -> &[String] {
        &self.masters
    }

    fn stopped(&self) -> WriterError {
        self.shared.error().unwrap_or(WriterError::Stopped)
    }
}

/// `host:port` and credentials from `host:port` or
/// `redis://[[user]:password@]host:port[/db]`.
fn parse_seed(seed: &str) -> (String, Auth) {
    let Some(rest) = seed.strip_prefix("redis://") else {
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

/// `CLUSTER SHARDS`, falling back to `CLUSTER SLOTS`.
async fn discover(addr: &str, config: &WriterConfig) -> Result<Topology, WriterError> {
    let mut conn = Conn::connect(addr, &config.auth, config.connect_timeout).await?;
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
    let topology = match &reply {
        Value::Error(e) if ErrorKind::classify(e) == ErrorKind::Other => {
            // Before 7.0: unknown subcommand.
            let reply = conn
                .call(&["CLUSTER", "SLOTS"], config.connect_timeout)
                .await?;
            if let Some(e) = not_a_cluster(&reply) {
                return Err(e);
            }
            Topology::from_slots(&reply, host).map_err(topo_err)?
        }
        _ => Topology::from_shards(&reply, host).map_err(topo_err)?,
    };
    if topology.masters.is_empty() {
        return Err(WriterError::Topology {
            addr: addr.to_owned(),
            source: TopologyError::NoMaster {
                at: "CLUSTER SHARDS".into(),
            },
        });
    }
    Ok(topology)
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
            parse_seed("redis://u:p:w@h:1"),
            ("h:1".into(), Auth::user("u", "p:w"))
        );
    }
}

//! The writer's typed errors. Every variant names the node, and where a
//! write was refused, the command and key, so the operator can act.

use std::time::Duration;

use ferry_ops::TopologyError;

use crate::conn::ConnError;

/// Why the cluster writer cannot continue. Cloneable: the one fatal error
/// is handed to every caller that asks.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WriterError {
    /// The seed is a standalone server (`cluster-enabled no`).
    #[error(
        "{addr} is not a Redis Cluster node (it answered \"{message}\"): point the writer at a \
         node of the target cluster, or configure the target as standalone"
    )]
    NotACluster {
        /// The seed address.
        addr: String,
        /// The node's error reply.
        message: String,
    },
    /// The seed is neither `host:port` nor a `redis[s]://` URL.
    #[error("bad seed: {0}")]
    Seed(#[from] ferry_ops::EndpointError),
    /// A node could not be reached or refused `AUTH` while connecting.
    #[error("cannot connect: {0}")]
    Connect(#[from] ConnError),
    /// The topology reply could not be used.
    #[error("{addr}: cannot read the cluster topology: {source}")]
    Topology {
        /// The node asked.
        addr: String,
        /// Why.
        source: TopologyError,
    },
    /// A node refused a write with a reply that retrying cannot fix
    /// (`OOM`, `NOPERM`, `MISCONF`, `WRONGTYPE`, `ERR ...`). The writer
    /// never guesses around it.
    #[error("{node} refused {command} (key {key}): {reply}")]
    Rejected {
        /// The node that answered.
        node: String,
        /// The command name.
        command: String,
        /// The first key argument (escaped, cut at 64 bytes), or `-`.
        key: String,
        /// The error reply.
        reply: String,
    },
    /// A retryable reply (`TRYAGAIN`, `CLUSTERDOWN`, `LOADING`, ...) or an
    /// uncovered slot kept coming back for longer than the retry bound.
    #[error("slot {slot}: still failing after {attempts} attempts over {:.1} s (last: {last})", .over.as_secs_f64())]
    RetriesExhausted {
        /// The slot.
        slot: u16,
        /// Attempts made.
        attempts: u32,
        /// Time since the first failure.
        over: Duration,
        /// The last reply or reason.
        last: String,
    },
    /// A node stayed unreachable for longer than the reconnect bound.
    #[error("{node} unreachable for {:.1} s: {reason}", .over.as_secs_f64())]
    Unreachable {
        /// The node.
        node: String,
        /// How long.
        over: Duration,
        /// The last connection error.
        reason: ConnError,
    },
    /// The topology was needed (a node unreachable, `CLUSTERDOWN`,
    /// `READONLY`, `MASTERDOWN`) but no known node answered `CLUSTER
    /// SHARDS` / `CLUSTER SLOTS` for longer than the reconnect bound.
    #[error("cannot re-read the cluster topology from any known node for {:.1} s (last: {last})", .over.as_secs_f64())]
    TopologyRefresh {
        /// How long.
        over: Duration,
        /// The last error.
        last: String,
    },
    /// A node holds commands but answered nothing for too long.
    #[error("{node} answered nothing for {:.1} s with {pending} commands in flight", .over.as_secs_f64())]
    Stalled {
        /// The node.
        node: String,
        /// How long.
        over: Duration,
        /// Commands waiting for a reply.
        pending: usize,
    },
    /// A node sent more replies than commands, or a reply to `ASKING`
    /// that is not `OK`.
    #[error("{node}: unexpected reply {reply}")]
    Unexpected {
        /// The node.
        node: String,
        /// What it sent.
        reply: String,
    },
    /// A checkpoint key could not be read (not a number, or an error
    /// reply such as `MOVED` when the topology changed during connect).
    #[error("{node}: cannot read checkpoint {key}: {reply}")]
    Checkpoint {
        /// The node asked.
        node: String,
        /// The key.
        key: String,
        /// What it answered.
        reply: String,
    },
    /// The writer task is gone (it panicked or was shut down).
    #[error("the cluster writer has stopped")]
    Stopped,
}

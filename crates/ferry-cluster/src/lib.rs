//! ferry's cluster writer: the tokio half of the write path into a Redis
//! Cluster (the pure half — slots, routing, topology, redirects — is
//! `ferry-ops`).
//!
//! ```text
//! ClusterWriter::submit(Op { args, slot, offset })
//!        │ bounded channel (blocks when full, never drops)
//!        ▼
//!   engine task ── slot map ──▶ node queue (in flight, in order) ──▶ Pipeline ──▶ master
//!        ▲                                                              │
//!        └──────────── replies, matched front to back ◀─────────────────┘
//!   MOVED: hold the slot, wait for its in-flight replies, update the map,
//!          resend the redirected op and everything after it, in order
//!   ASK:   hold likewise, then ASKING + op on the importing node, once
//!   TRYAGAIN / CLUSTERDOWN / LOADING / BUSY / MASTERDOWN / READONLY:
//!          hold with bounded exponential backoff, resend in order;
//!          CLUSTERDOWN / READONLY / MASTERDOWN also re-read the topology
//!   connection lost: reconnect (bounded), resend every unanswered op in order;
//!          a node unreachable for 1 s triggers a topology refresh
//!          (CLUSTER SHARDS, or SLOTS, from any known node) and its pending
//!          ops move, in order, to the slots' new owners (failover)
//!   anything else (OOM, NOPERM, ERR ...): fatal WriterError::Rejected
//!   checkpoints (optional): per slot, MULTI ops... SET __ferry:ckpt:{tag}
//!          <history>:<offset> EXEC, so ops and checkpoint commit together;
//!          read back at connect time to skip what a previous run applied
//! ```
//!
//! Checkpoints give exactly-once replay after a crash; see [`writer`] for
//! the guarantee and its limits, [`checkpoint`] for the keys.
//!
//! * [`checkpoint`]: checkpoint key names and values, cleanup.
//! * [`conn`]: one connection — handshake calls, then a pipeline.
//! * [`writer`]: [`ClusterWriter`] (re-exports [`Op`], [`WriterConfig`] and
//!   the stats, defined in `config`); `discovery` reads the topology.
//! * `engine`: the task behind the handle (a pure state machine, `core`,
//!   driven by a thin tokio loop).
//! * [`rate`]: the target rate limit (token buckets, pure).
//! * [`error`](mod@error): [`WriterError`].
//!
//! Module dependencies run one way: `config`, `error`, `conn` ←
//! `discovery`, `shared` ← `checkpoint` ← `engine` ← `writer`.

pub mod checkpoint;
mod config;
pub mod conn;
mod discovery;
mod engine;
pub mod error;
mod progress;
pub mod rate;
mod shared;
pub mod writer;

pub use checkpoint::{CheckpointSummary, RESERVED_PREFIX};
pub use conn::{Auth, Conn, ConnError, PipeEvent, Pipeline};
pub use error::WriterError;
pub use rate::RateLimit;
pub use writer::{
    CheckpointConfig, ClusterWriter, Op, SUBMIT_BATCH_BYTES, SUBMIT_BATCH_OPS, TargetMode,
    WriterConfig, WriterStats, discover_topology,
};

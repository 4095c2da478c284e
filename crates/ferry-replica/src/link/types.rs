//! The link's public types: its configuration, the events it delivers,
//! its status and its errors.

use std::io;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use ferry_rdb::{DecodeOptions, Item};

use super::Locate;
use crate::{
    Auth, HandshakeError, Position, PositionError, SnapshotError, SpoolConfig, SpoolError,
    StreamError, StreamEvent,
};

/// How the link connects and paces itself.
#[derive(Debug, Clone)]
pub struct LinkConfig {
    /// The source, `host:port` (used when `locator` is `None`).
    pub addr: String,
    /// Asked for the source's address before every connection (e.g. the
    /// current master of a Sentinel-managed or cluster shard); `None`:
    /// always `addr`. Its errors are logged and retried with backoff.
    pub locator: Option<Arc<dyn Locate>>,
    /// `AUTH` credentials (also used by the INFO poller).
    pub auth: Auth,
    /// Port announced with `REPLCONF listening-port`.
    pub listening_port: Option<u16>,
    /// Version announced with `REPLCONF version` (default `"9.0.0"`, so a
    /// Valkey 9 source sends `VALKEY080`); `None` skips it.
    pub announce_version: Option<String>,
    /// Directory of the saved position and (by default) the spool segments.
    pub state_dir: PathBuf,
    /// Spool limits; `spool.dir` is usually `state_dir/spool`.
    pub spool: SpoolConfig,
    /// Interval between `REPLCONF ACK`s (and between position saves).
    pub ack_interval: Duration,
    /// No byte from the source for this long (not even a `PING` or a `\n`
    /// keepalive) means the link is dead: reconnect. Also bounds connecting.
    pub timeout: Duration,
    /// First delay before a reconnect; doubles up to `reconnect_max`.
    pub reconnect_min: Duration,
    /// Longest delay between reconnects.
    pub reconnect_max: Duration,
    /// Events in flight between the decoder and the consumer. Events
    /// travel in batches of up to 1024 (what one spool read decoded to), so
    /// this is rounded up to whole batches, at least two. When full, the
    /// decoder waits; the spool absorbs the socket meanwhile.
    pub channel_capacity: usize,
    /// Interval of the `INFO replication` poller; `None` disables it.
    pub info_interval: Option<Duration>,
    /// RDB decoder options.
    pub rdb: DecodeOptions,
    /// TLS to the source (`rediss://`), also for the INFO poller; `None`
    /// is plain TCP.
    pub tls: Option<ferry_tls::TlsConfig>,
    /// Where to start when `state_dir` holds no saved position: the first
    /// `PSYNC` asks for the byte after it, as for a saved one (e.g. the
    /// position a cutover recorded for a reverse run).
    pub start_position: Option<Position>,
    /// `Some(hint)`: a `+FULLRESYNC` answer stops the link with
    /// [`LinkError::FullSyncRefused`] (carrying `hint`, what the operator
    /// can do) instead of taking a snapshot.
    pub refuse_full_sync: Option<String>,
}

impl LinkConfig {
    /// Defaults for `addr` with state (and spool segments) under `state_dir`:
    /// 1 s ACKs, 60 s timeout, 64 MiB spool memory, 1 GiB segments, 16 GiB cap.
    pub fn new(addr: impl Into<String>, state_dir: impl Into<PathBuf>) -> LinkConfig {
        let state_dir = state_dir.into();
        LinkConfig {
            addr: addr.into(),
            locator: None,
            auth: Auth::none(),
            listening_port: None,
            announce_version: Some("9.0.0".into()),
            spool: SpoolConfig {
                dir: state_dir.join("spool"),
                memory_bytes: 64 << 20,
                segment_bytes: 1 << 30,
                cap_bytes: 16 << 30,
            },
            state_dir,
            ack_interval: Duration::from_secs(1),
            timeout: Duration::from_secs(60),
            reconnect_min: Duration::from_millis(100),
            reconnect_max: Duration::from_secs(5),
            channel_capacity: 1024,
            info_interval: Some(Duration::from_secs(1)),
            rdb: DecodeOptions::default(),
            tls: None,
            start_position: None,
            refuse_full_sync: None,
        }
    }
}

/// A point the consumer has applied, handed back with [`Link::applied`](super::Link::applied).
/// Taken from [`LinkEvent::SnapshotEnd`] or [`LinkEvent::Stream`]; it is
/// always a boundary outside `MULTI` (inside a transaction it stays at the
/// position before `MULTI`), so it is safe to ACK and to resume from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Applied {
    /// History number: grows on every full sync (and when a resume on
    /// another server skipped received bytes that carried no data).
    pub epoch: u64,
    /// Replication offset.
    pub offset: u64,
    /// Database selected at `offset`.
    pub db: u64,
}

/// What the link delivers, in order.
#[derive(Debug, Clone, PartialEq)]
pub enum LinkEvent {
    /// `+FULLRESYNC`: a snapshot follows; whatever the consumer held from an
    /// earlier history is superseded.
    FullSync {
        /// The source's replication id.
        replid: String,
        /// Offset of the snapshot point.
        offset: u64,
        /// The new history's epoch.
        epoch: u64,
    },
    /// `+CONTINUE`: the stream goes on from `offset` (after a restart: the
    /// saved position; after a reconnect: the last byte received, so
    /// nothing is delivered twice).
    Continue {
        /// The replication id now in force (adopt it if it changed).
        replid: String,
        /// The last byte before the resumed stream.
        offset: u64,
    },
    /// One decoded RDB record.
    Rdb(Item),
    /// The snapshot is complete; apply it, then report `applied`.
    SnapshotEnd {
        /// The snapshot point, with the RDB's `repl-stream-db`.
        applied: Applied,
    },
    /// One command-stream event; after applying it, report `applied`.
    Stream {
        /// The event, with its end offset.
        event: StreamEvent,
        /// The position to report once `event` (and everything before) is applied.
        applied: Applied,
    },
    /// The connection was lost; the link reconnects by itself.
    Reconnecting {
        /// Why.
        reason: String,
    },
}

/// Where the link is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Phase {
    /// Connecting or in the handshake.
    #[default]
    Connecting,
    /// Decoding a snapshot.
    Snapshot,
    /// Decoding the command stream.
    Streaming,
    /// Ended (cancelled or failed).
    Stopped,
}

/// A snapshot of the link's state, for status pages and metrics.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LinkStatus {
    /// The source address in use: the one connected now, or being
    /// connected to (from the locator when one is configured; empty until
    /// it first answered).
    pub addr: String,
    /// A replication connection is established (handshake done).
    pub connected: bool,
    /// What the decoder is doing.
    pub phase: Phase,
    /// The replication id in force.
    pub replid: Option<String>,
    /// Replication offset of the last byte received (known in the stream,
    /// or once the snapshot's end has been decoded).
    pub received_offset: Option<u64>,
    /// The offset the consumer reported applied (current history).
    pub applied_offset: Option<u64>,
    /// The source's `master_repl_offset` (INFO poller).
    pub source_offset: Option<u64>,
    /// Bytes held by the spool (memory and disk).
    pub spool_bytes: u64,
    /// Bytes held by the spool on disk.
    pub spool_disk_bytes: u64,
    /// The spool is at its cap: the socket is not being read.
    pub spool_full: bool,
    /// Spool segment files created since the start (0 while the consumer
    /// keeps up: the spool stays in memory).
    pub spool_segments_written: u64,
    /// Bytes written to spool segment files since the start.
    pub spool_disk_bytes_written: u64,
    /// Reconnects so far.
    pub reconnects: u64,
    /// RDB bytes of the current snapshot decoded so far.
    pub snapshot_bytes_done: u64,
    /// Size of the current snapshot from its `$<len>` preamble (disk-based
    /// sync); `None` for a diskless sync (`$EOF:`) or before the preamble.
    pub snapshot_bytes_total: Option<u64>,
    /// Error replies the handshakes tolerated so far (e.g. a Redis
    /// answering `-ERR` to `REPLCONF version`), counted on every
    /// connection; each is also logged with `tracing::warn!`. Not counted:
    /// `PING` refused before `AUTH` when credentials are configured (the
    /// normal case with a password). The daemon exports it as a metric;
    /// [`LinkHandle::handshake_warnings`](super::LinkHandle::handshake_warnings) has the text.
    pub handshake_warnings: u64,
}

/// Why the link failed (or a connection attempt did).
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    /// The handshake failed.
    #[error(transparent)]
    Handshake(#[from] HandshakeError),
    /// The snapshot transfer failed.
    #[error(transparent)]
    Snapshot(#[from] SnapshotError),
    /// The command stream is not decodable.
    #[error(transparent)]
    Stream(#[from] StreamError),
    /// The saved position cannot be read or written.
    #[error(transparent)]
    Position(#[from] PositionError),
    /// The spool failed (disk).
    #[error(transparent)]
    Spool(#[from] SpoolError),
    /// A socket operation failed.
    #[error("{what} {addr}: {source}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// The source address.
        addr: String,
        /// The OS error.
        source: io::Error,
    },
    /// Nothing arrived for too long.
    #[error("no data from {addr} for {after:?} while {what}")]
    Timeout {
        /// What was awaited.
        what: &'static str,
        /// The source address.
        addr: String,
        /// The configured timeout.
        after: Duration,
    },
    /// The source closed the connection.
    #[error("{addr} closed the connection while {what}")]
    Closed {
        /// What was going on.
        what: &'static str,
        /// The source address.
        addr: String,
    },
    /// TLS is misconfigured or the source's certificate is refused.
    #[error(transparent)]
    Tls(#[from] ferry_tls::TlsError),
    /// The locator could not tell where the source is (retried).
    #[error("locating the source: {0}")]
    Locate(String),
    /// [`LinkHandle::reconnect`](super::LinkHandle::reconnect) or [`LinkHandle::resync`](super::LinkHandle::resync) dropped the
    /// connection (the link reconnects at once).
    #[error("connection to {addr} dropped on request: {reason}")]
    Interrupted {
        /// The source address.
        addr: String,
        /// The reason given by the caller.
        reason: String,
    },
    /// A bug: state that should not happen.
    #[error("internal error in the replica link: {0}")]
    Internal(String),
    /// The source answered `+FULLRESYNC` and [`LinkConfig::refuse_full_sync`]
    /// is set.
    #[error(
        "{addr} cannot continue from {asked}: it answered +FULLRESYNC; refusing a full sync: {hint}"
    )]
    FullSyncRefused {
        /// The source.
        addr: String,
        /// The position asked for (`<replid> <offset>`, or "no position").
        asked: String,
        /// What to do (from the config).
        hint: String,
    },
}

impl LinkError {
    /// Whether reconnecting may help (network, timeouts, a source that is
    /// loading or aborted its snapshot). Fatal: credentials, ACL, PSYNC
    /// refused, corrupt data, disk errors.
    pub fn retriable(&self) -> bool {
        match self {
            LinkError::Handshake(e) => e.retriable(),
            LinkError::Snapshot(e) => e.retriable(),
            LinkError::Io { .. }
            | LinkError::Timeout { .. }
            | LinkError::Closed { .. }
            | LinkError::Locate(_)
            | LinkError::Interrupted { .. } => true,
            LinkError::Stream(_)
            | LinkError::Position(_)
            | LinkError::Spool(_)
            | LinkError::Tls(_)
            | LinkError::FullSyncRefused { .. }
            | LinkError::Internal(_) => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A snapshot key travels as a `LinkEvent` in the batches: it must stay
    /// the size of the `Item` it carries (192 bytes on 64-bit), no bigger.
    #[test]
    fn a_link_event_stays_small() {
        if size_of::<usize>() == 8 {
            assert!(size_of::<LinkEvent>() <= 192, "{}", size_of::<LinkEvent>());
            assert!(
                size_of::<LinkEvent>() <= size_of::<ferry_rdb::Item>(),
                "{}",
                size_of::<LinkEvent>()
            );
        }
    }
}

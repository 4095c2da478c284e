//! The tokio driver of the replica link: a thin shell around the sans-IO
//! parts of this crate.
//!
//! ```text
//!            ┌───────── connection task (one socket at a time) ──────────┐
//! source ───▶│ reader: socket ─▶ Spool (memory, then segment files, cap) │
//!        ◀───│ acker:  REPLCONF ACK <applied> every ack_interval/GETACK  │
//!            └───────────────────────────┬───────────────────────────────┘
//!                        bytes + in-band session marks (FullSync, Continue, Reconnecting)
//!                                        ▼
//!            decoder task: SnapshotFramer + ferry_rdb::Decoder, then CommandStream
//!                                        │ bounded mpsc of event batches (blocks when full, never drops)
//!                                        ▼
//!                   LinkEvents::recv ─▶ consumer ── Link::applied(Applied) ──▶ watch ─▶ acker, position task
//! position task: saves state_dir/position.json (at most once per ack_interval, and on shutdown; on a blocking thread)
//! info poller:   INFO replication on a second connection, once a second (source offset, for lag)
//! ```
//!
//! Invariants:
//! * The socket is read at line rate whatever the consumer does; only a
//!   full spool (its cap) stops reading, and [`LinkStatus::spool_full`]
//!   says so.
//! * The ACK reports what the consumer *applied* (an [`Applied`] it handed
//!   back), never what was received. Before the consumer applied anything of
//!   the current history (e.g. during a full sync) the ACK says `0`.
//! * ACKs start as soon as `PSYNC` is answered and go out every
//!   `ack_interval`: a diskless master starts the stream only on an ACK
//!   received after it put the replica online (slightly after the EOF mark).
//! * Reconnects inside one process resume at the *received* offset: bytes
//!   already spooled are still decoded and delivered, so the consumer sees
//!   every command exactly once (a `MULTI` cut by a reconnect continues).
//!   Only a restart resumes from the saved, applied position.
//! * Histories are numbered by an *epoch* that grows on every full sync; an
//!   [`Applied`] from an older epoch is ignored (it belongs to data the new
//!   snapshot replaces).
//! * The source may move: with a [`Locate`] in [`LinkConfig::locator`],
//!   every connection asks it for the address first (the INFO poller and
//!   [`LinkStatus::addr`] follow), and resumes there with the same
//!   replication id and offset: a promoted replica answers `+CONTINUE`
//!   when its history holds the offset. [`LinkHandle::reconnect`] makes it
//!   ask now (e.g. on a Sentinel's `+switch-master`);
//!   [`LinkHandle::resync`] forgets the position (next: `PSYNC ? -1`).

mod conn;
mod decode;
mod locate;
mod spool_io;

pub use locate::Locate;

use std::io;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use ferry_rdb::{DecodeOptions, Item};
use tokio::sync::{Notify, mpsc, watch};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::{
    Auth, HandshakeError, Position, PositionError, SnapshotError, Spool, SpoolConfig, SpoolError,
    StreamError, StreamEvent,
};

/// Name of the saved position file in [`LinkConfig::state_dir`].
pub const POSITION_FILE: &str = "position.json";

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

/// A point the consumer has applied, handed back with [`Link::applied`].
/// Taken from [`LinkEvent::SnapshotEnd`] or [`LinkEvent::Stream`]; it is
/// always a boundary outside `MULTI` (inside a transaction it stays at the
/// position before `MULTI`), so it is safe to ACK and to resume from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Applied {
    /// History number: grows on every full sync.
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
    /// [`LinkHandle::handshake_warnings`] has the text.
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
    /// [`LinkHandle::reconnect`] or [`LinkHandle::resync`] dropped the
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

/// A replication session as the reader sees it.
#[derive(Debug, Clone)]
struct Session {
    epoch: u64,
    replid: String,
    /// Offset of the last byte before this session's stream.
    base: u64,
    /// Spool position (bytes pushed) where this session's bytes start.
    start_pos: u64,
    full: bool,
}

/// An in-band mark, at a spool position, for the decoder.
#[derive(Debug, Clone)]
enum Mark {
    FullSync {
        epoch: u64,
        replid: String,
        offset: u64,
    },
    Continue {
        epoch: u64,
        replid: String,
        offset: u64,
        db: u64,
    },
    Reconnecting {
        reason: String,
    },
}

/// State shared by the tasks, behind one mutex (held briefly, never
/// across I/O; the spool has its own lock, see `spool_io`).
struct Inner {
    /// Marks, at spool positions (bytes pushed before them).
    marks: std::collections::VecDeque<(u64, Mark)>,
    session: Option<Session>,
    /// (epoch, spool position) where the decoder found that epoch's snapshot end.
    snapshot_end: Option<(u64, u64)>,
    connected: bool,
    phase: Phase,
    spool_full: bool,
    reconnects: u64,
    source_offset: Option<u64>,
    /// (epoch, checkpoint offset) of the latest `REPLCONF GETACK` not yet
    /// covered by an ACK.
    getack: Option<(u64, u64)>,
    /// Warnings of the latest handshake, and the count over all of them.
    warnings: Vec<crate::Warning>,
    warnings_total: u64,
    /// The source address in use ([`LinkStatus::addr`]).
    addr: String,
    /// A pending [`LinkHandle::reconnect`] / [`LinkHandle::resync`].
    request: Option<Request>,
}

/// What the consumer asked the connection task to do.
#[derive(Debug, Clone)]
struct Request {
    /// Forget the position: the next connection asks for a full sync.
    resync: bool,
    reason: String,
}

impl Inner {
    /// Offset of the last byte received, if known, given the bytes pushed
    /// into the spool so far.
    fn received_offset(&self, pushed: u64) -> Option<u64> {
        let s = self.session.as_ref()?;
        if !s.full {
            return Some(s.base + (pushed - s.start_pos));
        }
        match self.snapshot_end {
            Some((epoch, pos)) if epoch == s.epoch => Some(s.base + (pushed - pos)),
            _ => None,
        }
    }
}

/// What the position task knows: the history whose applied offsets it saves.
struct PositionState {
    epoch: u64,
    replid: Option<String>,
    saved: Option<(u64, u64)>,
    /// A resync was asked: save nothing until the next full sync starts.
    hold: bool,
}

struct Shared {
    cfg: LinkConfig,
    inner: Mutex<Inner>,
    spool: Arc<spool_io::SharedSpool>,
    position: Mutex<PositionState>,
    /// Held while `position.json` is written or removed (blocking threads).
    position_file: Mutex<()>,
    /// Reader → decoder: bytes or a mark were pushed.
    data: Notify,
    /// Decoder → reader: room was made in the spool.
    room: Notify,
    /// Decoder → acker: GETACK, or the snapshot ended.
    ack_now: Notify,
    /// Decoder → connection: drop this connection (snapshot aborted).
    reconnect: Notify,
    /// Handle → connection: a [`Request`] is pending (the value counts them).
    interrupt: watch::Sender<u64>,
    applied: watch::Sender<Option<Applied>>,
    /// Snapshot progress: RDB bytes decoded, and the announced size
    /// (`u64::MAX`: unknown).
    snapshot_done: std::sync::atomic::AtomicU64,
    snapshot_total: std::sync::atomic::AtomicU64,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn lock_position(&self) -> MutexGuard<'_, PositionState> {
        self.position.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn position_path(&self) -> PathBuf {
        self.cfg.state_dir.join(POSITION_FILE)
    }

    /// Saves the applied position if it belongs to the current history and
    /// moved. Blocking (write, fsync, rename): runs on a blocking thread.
    /// The file lock orders it with [`Shared::remove_position_blocking`]; the
    /// history is checked under it, so a save of an older history either
    /// finishes before the removal or does not happen.
    fn save_position_blocking(&self) -> Result<(), LinkError> {
        let _file = self.position_file.lock().unwrap_or_else(|p| p.into_inner());
        let Some(a) = *self.applied.borrow() else {
            return Ok(());
        };
        let (replid, epoch) = {
            let p = self.lock_position();
            let Some(replid) = p.replid.clone() else {
                return Ok(());
            };
            if p.hold || a.epoch != p.epoch || p.saved == Some((a.offset, a.db)) {
                return Ok(());
            }
            (replid, p.epoch)
        };
        Position {
            replid,
            offset: a.offset,
            db: a.db,
        }
        .save(&self.position_path())?;
        let mut p = self.lock_position();
        if p.epoch == epoch {
            p.saved = Some((a.offset, a.db));
        }
        Ok(())
    }

    /// Deletes the saved position (a full sync replaces its history).
    /// Blocking; see [`Shared::save_position_blocking`].
    fn remove_position_blocking(&self) -> Result<(), LinkError> {
        let _file = self.position_file.lock().unwrap_or_else(|p| p.into_inner());
        let path = self.position_path();
        match std::fs::remove_file(&path) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => {
                Err(LinkError::Position(PositionError::Io {
                    action: "remove",
                    path,
                    source: e,
                }))
            }
            _ => Ok(()),
        }
    }
}

/// Runs `f` on a blocking thread (file I/O stays off the tokio workers).
async fn blocking(
    shared: &Arc<Shared>,
    f: fn(&Shared) -> Result<(), LinkError>,
) -> Result<(), LinkError> {
    let s = shared.clone();
    tokio::task::spawn_blocking(move || f(&s))
        .await
        .map_err(|e| LinkError::Internal(format!("position I/O thread: {e}")))?
}

/// A running replica link; see the [module docs](self).
pub struct Link {
    shared: Arc<Shared>,
    cancel: CancellationToken,
    handle: JoinHandle<Result<(), LinkError>>,
}

impl Link {
    /// Starts the link: loads the saved position (if any), creates the
    /// spool and spawns the tasks. Events arrive on the returned receiver;
    /// the link stops when `cancel` is cancelled, on a fatal error (see
    /// [`Link::finish`]), or when the receiver is dropped.
    pub fn start(
        cfg: LinkConfig,
        cancel: CancellationToken,
    ) -> Result<(Link, LinkEvents), LinkError> {
        std::fs::create_dir_all(&cfg.state_dir).map_err(|source| {
            LinkError::Position(PositionError::Io {
                action: "create the state directory",
                path: cfg.state_dir.clone(),
                source,
            })
        })?;
        let saved = Position::load(&cfg.state_dir.join(POSITION_FILE))?
            .or_else(|| cfg.start_position.clone());
        let spool = spool_io::SharedSpool::new(Spool::new(cfg.spool.clone())?);
        let batches = cfg.channel_capacity.div_ceil(decode::BATCH_EVENTS).max(2);
        let (tx, rx) = mpsc::channel(batches);
        let (applied, _) = watch::channel(saved.as_ref().map(|p| Applied {
            epoch: 0,
            offset: p.offset,
            db: p.db,
        }));
        let shared = Arc::new(Shared {
            spool,
            inner: Mutex::new(Inner {
                marks: Default::default(),
                session: None,
                snapshot_end: None,
                connected: false,
                phase: Phase::Connecting,
                spool_full: false,
                reconnects: 0,
                source_offset: None,
                getack: None,
                warnings: Vec::new(),
                warnings_total: 0,
                addr: if cfg.locator.is_some() {
                    String::new()
                } else {
                    cfg.addr.clone()
                },
                request: None,
            }),
            position_file: Mutex::new(()),
            position: Mutex::new(PositionState {
                epoch: 0,
                replid: saved.as_ref().map(|p| p.replid.clone()),
                saved: saved.as_ref().map(|p| (p.offset, p.db)),
                hold: false,
            }),
            cfg,
            data: Notify::new(),
            room: Notify::new(),
            ack_now: Notify::new(),
            reconnect: Notify::new(),
            interrupt: watch::channel(0).0,
            applied,
            snapshot_done: Default::default(),
            snapshot_total: std::sync::atomic::AtomicU64::new(u64::MAX),
        });
        let token = cancel.child_token();
        let handle = tokio::spawn(run(shared.clone(), token.clone(), tx, saved));
        Ok((
            Link {
                shared,
                cancel: token,
                handle,
            },
            LinkEvents {
                rx,
                batch: Vec::new().into_iter(),
            },
        ))
    }

    /// Reports that everything up to `applied` has been applied to the
    /// target. Marks from an older epoch are ignored.
    pub fn applied(&self, applied: Applied) {
        self.handle().applied(applied);
    }

    /// The link's current state.
    pub fn status(&self) -> LinkStatus {
        self.handle().status()
    }

    /// See [`LinkHandle::handshake_warnings`].
    pub fn handshake_warnings(&self) -> Vec<crate::Warning> {
        self.handle().handshake_warnings()
    }

    /// A cloneable handle for the consumer side ([`LinkHandle::applied`],
    /// [`LinkHandle::status`]), e.g. to move into the task that applies events.
    pub fn handle(&self) -> LinkHandle {
        LinkHandle {
            shared: self.shared.clone(),
        }
    }

    /// Stops the link (saving the applied position) and waits for it.
    pub async fn shutdown(self) -> Result<(), LinkError> {
        self.cancel.cancel();
        self.finish().await
    }

    /// Waits for the link to end: `Ok` after cancellation, the error after a
    /// fatal one.
    pub async fn finish(self) -> Result<(), LinkError> {
        match self.handle.await {
            Ok(r) => r,
            Err(e) => Err(LinkError::Internal(format!("link task: {e}"))),
        }
    }
}

/// The ordered events of a [`Link`] (returned by [`Link::start`]).
/// Dropping it stops the link.
pub struct LinkEvents {
    rx: mpsc::Receiver<Vec<LinkEvent>>,
    batch: std::vec::IntoIter<LinkEvent>,
}

impl LinkEvents {
    /// The next event; `None` once the link has stopped and everything was
    /// delivered. Cancel-safe (usable in `tokio::select!`): no event is lost
    /// when the future is dropped.
    pub async fn recv(&mut self) -> Option<LinkEvent> {
        loop {
            if let Some(ev) = self.batch.next() {
                return Some(ev);
            }
            self.batch = self.rx.recv().await?.into_iter();
        }
    }

    /// The next event if one is ready, without waiting.
    pub fn try_recv(&mut self) -> Option<LinkEvent> {
        loop {
            if let Some(ev) = self.batch.next() {
                return Some(ev);
            }
            self.batch = self.rx.try_recv().ok()?.into_iter();
        }
    }

    /// Moves every event that is ready (at least one, waiting for it) to
    /// the end of `out`; `false` once the link has stopped and everything
    /// was delivered. Cancel-safe. For consumers that work in batches.
    pub async fn recv_many(&mut self, out: &mut Vec<LinkEvent>) -> bool {
        if self.batch.len() == 0 {
            match self.rx.recv().await {
                Some(b) => self.batch = b.into_iter(),
                None => return false,
            }
        }
        out.extend(self.batch.by_ref());
        while let Ok(b) = self.rx.try_recv() {
            out.extend(b);
        }
        true
    }
}

/// The consumer's side of a [`Link`]: report progress, read status.
#[derive(Clone)]
pub struct LinkHandle {
    shared: Arc<Shared>,
}

impl LinkHandle {
    /// See [`Link::applied`].
    pub fn applied(&self, applied: Applied) {
        self.shared.applied.send_replace(Some(applied));
    }

    /// See [`Link::status`].
    pub fn status(&self) -> LinkStatus {
        let applied = *self.shared.applied.borrow();
        let epoch = self.shared.lock_position().epoch;
        let inner = self.shared.lock();
        LinkStatus {
            addr: inner.addr.clone(),
            connected: inner.connected,
            phase: inner.phase,
            replid: inner.session.as_ref().map(|s| s.replid.clone()),
            received_offset: inner.received_offset(self.shared.spool.pushed()),
            applied_offset: applied.filter(|a| a.epoch == epoch).map(|a| a.offset),
            source_offset: inner.source_offset,
            spool_bytes: self.shared.spool.len(),
            spool_disk_bytes: self.shared.spool.disk_bytes(),
            spool_full: inner.spool_full,
            spool_segments_written: self.shared.spool.segments_written(),
            spool_disk_bytes_written: self.shared.spool.disk_bytes_written(),
            reconnects: inner.reconnects,
            snapshot_bytes_done: self
                .shared
                .snapshot_done
                .load(std::sync::atomic::Ordering::Relaxed),
            snapshot_bytes_total: Some(
                self.shared
                    .snapshot_total
                    .load(std::sync::atomic::Ordering::Relaxed),
            )
            .filter(|t| *t != u64::MAX),
            handshake_warnings: inner.warnings_total,
        }
    }

    /// The error replies the latest handshake tolerated and counted in
    /// [`LinkStatus::handshake_warnings`] (empty when the source accepted
    /// every request), e.g. `REPLCONF version answered -ERR Unrecognized
    /// REPLCONF option: version (ignored)` from Redis 7.0.
    pub fn handshake_warnings(&self) -> Vec<crate::Warning> {
        self.shared.lock().warnings.clone()
    }

    /// Drops the connection (if any) and connects again, asking the
    /// locator for the address first; the position is kept (`PSYNC` with
    /// the replication id and the offset received so far), so the consumer
    /// sees [`LinkEvent::Reconnecting`] then [`LinkEvent::Continue`] (or a
    /// full sync when the source cannot continue). E.g. on a Sentinel's
    /// `+switch-master`.
    pub fn reconnect(&self, reason: impl Into<String>) {
        self.request(false, reason.into());
    }

    /// Drops the connection and the saved position: the next connection
    /// asks for a full sync (`PSYNC ? -1`), and the consumer sees
    /// [`LinkEvent::Reconnecting`], then the usual [`LinkEvent::FullSync`],
    /// snapshot and stream. Events already received are still delivered
    /// before it. Until the full sync starts, no position is saved, so a
    /// restart meanwhile also starts with a full sync.
    pub fn resync(&self, reason: impl Into<String>) {
        self.request(true, reason.into());
    }

    fn request(&self, resync: bool, reason: String) {
        if resync {
            self.shared.lock_position().hold = true;
        }
        {
            let mut inner = self.shared.lock();
            let resync = resync || inner.request.as_ref().is_some_and(|r| r.resync);
            inner.request = Some(Request { resync, reason });
        }
        self.shared.interrupt.send_modify(|n| *n += 1);
    }
}

/// Runs the tasks until cancellation or the first fatal error.
async fn run(
    shared: Arc<Shared>,
    token: CancellationToken,
    tx: mpsc::Sender<Vec<LinkEvent>>,
    saved: Option<Position>,
) -> Result<(), LinkError> {
    let guard = |r: Result<(), LinkError>, token: &CancellationToken| {
        if r.is_err() {
            token.cancel();
        }
        r
    };
    let conn = {
        let (s, t) = (shared.clone(), token.clone());
        tokio::spawn(async move { guard(conn::run(&s, &t, saved).await, &t) })
    };
    let dec = {
        let (s, t) = (shared.clone(), token.clone());
        tokio::spawn(async move { guard(decode::run(&s, &t, tx).await, &t) })
    };
    let info = {
        let (s, t) = (shared.clone(), token.clone());
        tokio::spawn(async move { conn::poll_info(&s, &t).await })
    };
    let pos = {
        let (s, t) = (shared.clone(), token.clone());
        tokio::spawn(async move { guard(position_task(&s, &t).await, &t) })
    };
    let mut first: Result<(), LinkError> = Ok(());
    for h in [conn, dec, pos, info] {
        let r = h
            .await
            .unwrap_or_else(|e| Err(LinkError::Internal(format!("task: {e}"))));
        if first.is_ok() {
            first = r;
        }
    }
    let mut inner = shared.lock();
    inner.phase = Phase::Stopped;
    inner.connected = false;
    first
}

/// Saves the applied position every `ack_interval` when it moved, and once
/// more on shutdown.
async fn position_task(shared: &Arc<Shared>, token: &CancellationToken) -> Result<(), LinkError> {
    let mut tick = tokio::time::interval(shared.cfg.ack_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => blocking(shared, Shared::save_position_blocking).await?,
            _ = token.cancelled() => return blocking(shared, Shared::save_position_blocking).await,
        }
    }
}

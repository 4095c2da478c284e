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
//! * Histories are numbered by an *epoch* that grows on every full sync
//!   (and on a resume that skipped a tail without data, below); an
//!   [`Applied`] from an older epoch is ignored (it belongs to data the new
//!   snapshot replaces).
//! * The source may move: with a [`Locate`] in [`LinkConfig::locator`],
//!   every connection asks it for the address first (the INFO poller and
//!   [`LinkStatus::addr`] follow), and resumes there with the same
//!   replication id and offset: a promoted replica answers `+CONTINUE`
//!   when its history holds the offset. When the bytes received after the
//!   last data command carry no data (`PING`, `PUBLISH`, `SELECT`,
//!   `REPLCONF`: what an old master sends after a replica was promoted,
//!   e.g. Sentinel's hellos), the resume on the new server starts right
//!   after that command instead, in a new epoch (the consumer sees
//!   `Continue` at that lower offset). [`LinkHandle::reconnect`] makes it
//!   ask now (e.g. on a Sentinel's `+switch-master`);
//!   [`LinkHandle::resync`] forgets the position (next: `PSYNC ? -1`).

mod conn;
mod decode;
mod inbuf;
mod locate;
mod spool_io;
mod types;

pub use locate::Locate;
pub use types::{Applied, LinkConfig, LinkError, LinkEvent, LinkStatus, Phase};

use std::io;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::{Notify, mpsc, watch};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::{Position, PositionError, Spool};

/// Name of the saved position file in [`LinkConfig::state_dir`].
pub const POSITION_FILE: &str = "position.json";

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
    /// The source address of the session.
    addr: String,
}

/// Where the decoder stopped when it last ran out of bytes, at a command
/// boundary outside `MULTI`: what a resume on another server may skip.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Tail {
    epoch: u64,
    /// Spool position (bytes popped): the decoder had everything pushed.
    at: u64,
    /// Replication offset of the last byte decoded.
    offset: u64,
    /// Offset after the last event with an effect on data (not `PING`,
    /// `PUBLISH`, `REPLCONF`, …), and the db selected there.
    data_end: u64,
    db: u64,
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
    /// Set by the decoder when it waits for bytes.
    tail: Option<Tail>,
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
                tail: None,
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

    /// Moves the next batch of events the decoder sent (waiting for it)
    /// to the end of `out`; `false` once the link has stopped and
    /// everything was delivered. Cancel-safe. For consumers that work in
    /// batches.
    ///
    /// Into an empty `out` the batch moves whole (its buffer is taken, not
    /// copied: an event is ≈ 200 bytes, and copying each cost ≈ 130
    /// instructions per snapshot key; `docs/decisions.md` D76).
    pub async fn recv_many(&mut self, out: &mut Vec<LinkEvent>) -> bool {
        if self.batch.len() > 0 {
            out.extend(self.batch.by_ref());
            return true;
        }
        match self.rx.recv().await {
            Some(b) if out.is_empty() => *out = b,
            Some(b) => out.extend(b),
            None => return false,
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

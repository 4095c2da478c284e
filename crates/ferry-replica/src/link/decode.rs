//! The decoder task: pops bytes and session marks from the spool, in
//! order, runs the snapshot framer / RDB decoder / command stream over them
//! and sends [`LinkEvent`]s into the bounded channel (waiting when it is
//! full; the spool absorbs the socket meanwhile).
//!
//! Popped chunks go into an [`InBuf`], which copies as little of them as
//! it can (a chunk mostly becomes the buffer itself).
//!
//! Events travel in batches: everything decoded from one spool pop (at most
//! [`POP_CHUNK`] bytes), cut at [`BATCH_EVENTS`] events. One channel message
//! (and one consumer wake-up) per RDB key cost more than decoding the key.
//!
//! ```text
//! mark FullSync  ─▶ drop buffered bytes, new epoch, delete the saved position ─▶ Snapshot
//! mark Continue  ─▶ same epoch and contiguous: keep decoding; else new CommandStream ─▶ Stream
//! Snapshot: Preamble, Item…, Complete ─▶ SnapshotEnd (and ACK now) ─▶ Stream
//! Stream:   StreamEvent… (GETACK ─▶ ACK now)
//! a retriable snapshot error (source aborted) ─▶ Discard until the next mark
//! ```

use std::sync::Arc;
use std::sync::atomic::Ordering;

use ferry_rdb::Item;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::inbuf::InBuf;
use super::{Applied, LinkError, LinkEvent, Mark, Phase, Shared};
use crate::{CommandStream, SnapshotEvent, SnapshotFramer, StreamEvent};

/// Most bytes popped from the spool at once.
const POP_CHUNK: usize = 256 * 1024;

/// Most events in one batch sent to the consumer.
pub(super) const BATCH_EVENTS: usize = 1024;

/// While a snapshot loads, a batch of fewer events than this is not sent
/// when the spool runs dry: it waits up to [`SNAPSHOT_LINGER`] for more
/// bytes. A diskless source sends its RDB in pieces of a few dozen keys as
/// it serializes them; one batch per piece cost more wake-ups (link, main
/// loop, writer) than keys (`docs/decisions.md` D78).
const SNAPSHOT_MIN_BATCH: usize = 256;

/// How long a small snapshot batch waits for more bytes.
const SNAPSHOT_LINGER: std::time::Duration = std::time::Duration::from_millis(1);

/// Whether a batch may wait for more bytes (see [`SNAPSHOT_MIN_BATCH`]):
/// only while a snapshot loads (never in the stream, where an event waits
/// for nothing), only a non-empty batch of fewer events than
/// [`SNAPSHOT_MIN_BATCH`], and only while it was decoded from fewer than
/// [`POP_CHUNK`] popped bytes. The byte bound keeps a batch of a big key's
/// chunks (each up to megabytes) as small as a batch without lingering:
/// counting events alone let 255 such chunks pile up in one batch.
fn may_linger(snapshot: bool, events: usize, popped_bytes: usize) -> bool {
    snapshot && events > 0 && events < SNAPSHOT_MIN_BATCH && popped_bytes < POP_CHUNK
}

enum State {
    /// Before the first session, or discarding an aborted snapshot.
    Idle,
    Snapshot {
        framer: SnapshotFramer,
        rdb: Box<ferry_rdb::Decoder>,
        offset: u64,
        db: u64,
    },
    Stream(CommandStream),
}

enum Work {
    Pop(usize),
    Bytes(bytes::Bytes),
    Mark(Mark),
    Wait,
}

struct Dec<'a> {
    shared: &'a Arc<Shared>,
    token: &'a CancellationToken,
    tx: mpsc::Sender<Vec<LinkEvent>>,
    /// Events decoded but not yet sent.
    batch: Vec<LinkEvent>,
    /// Bytes popped since the last batch was sent.
    batch_popped: usize,
    /// Popped bytes not yet decoded.
    input: InBuf,
    state: State,
    epoch: u64,
    popped: u64,
    /// Offset after the last event with an effect on data, and its db.
    data_end: (u64, u64),
}

/// Events that change no data: a resume on another server may skip them
/// (see `conn::rewind`).
fn no_data(ev: &StreamEvent) -> bool {
    match ev {
        // A `SELECT` only matters to the commands after it: resuming
        // before it in the db of the last data command is the new
        // server's state there too (its history up to that point is the
        // same, and it selects before its own next command).
        StreamEvent::Ping { .. }
        | StreamEvent::GetAck { .. }
        | StreamEvent::Ignored { .. }
        | StreamEvent::Select { .. } => true,
        StreamEvent::Command { cmd, .. } => {
            let name = &cmd.args[0];
            name.eq_ignore_ascii_case(b"PUBLISH") || name.eq_ignore_ascii_case(b"SPUBLISH")
        }
        StreamEvent::Multi { .. } | StreamEvent::Exec { .. } => false,
    }
}

/// Decodes until cancelled, the consumer is gone, or a fatal error.
pub(super) async fn run(
    shared: &Arc<Shared>,
    token: &CancellationToken,
    tx: mpsc::Sender<Vec<LinkEvent>>,
) -> Result<(), LinkError> {
    let mut d = Dec {
        shared,
        token,
        tx,
        batch: Vec::with_capacity(BATCH_EVENTS),
        batch_popped: 0,
        input: InBuf::default(),
        state: State::Idle,
        epoch: 0,
        popped: 0,
        data_end: (0, 0),
    };
    loop {
        let work = {
            let mut inner = shared.lock();
            match inner.marks.front() {
                Some((pos, _)) if *pos == d.popped => match inner.marks.pop_front() {
                    Some((_, m)) => Work::Mark(m),
                    None => Work::Wait,
                },
                next => {
                    // Never past the next mark, nor past what is counted as
                    // pushed now: a mark added later sits at or after it.
                    let avail = shared.spool.pushed() - d.popped;
                    let to_mark = next.map_or(u64::MAX, |(pos, _)| pos - d.popped);
                    let limit = avail.min(to_mark).min(POP_CHUNK as u64) as usize;
                    if limit == 0 {
                        inner.tail = d.tail();
                        Work::Wait
                    } else {
                        Work::Pop(limit)
                    }
                }
            }
        };
        let work = match work {
            Work::Pop(limit) => match shared.spool.pop(limit).await? {
                Some(b) => {
                    d.popped += b.len() as u64;
                    d.batch_popped += b.len();
                    Work::Bytes(b)
                }
                None => Work::Wait,
            },
            w => w,
        };
        let go_on = match work {
            Work::Wait if d.lingers() => {
                // A small snapshot batch waits a moment for the next bytes
                // (sent as they come, its wake-ups cost more than its keys).
                tokio::select! {
                    _ = shared.data.notified() => true,
                    _ = tokio::time::sleep(SNAPSHOT_LINGER) => {
                        if !d.flush().await {
                            return Ok(());
                        }
                        true
                    }
                    _ = token.cancelled() => false,
                }
            }
            Work::Wait => {
                tokio::select! {
                    _ = shared.data.notified() => true,
                    _ = token.cancelled() => false,
                }
            }
            Work::Bytes(b) => {
                shared.room.notify_one();
                d.input.feed(b);
                d.process().await?
            }
            Work::Mark(m) => d.mark(m).await?,
            Work::Pop(_) => true,
        };
        if !go_on {
            return Ok(());
        }
        if !d.lingers() && !d.flush().await {
            return Ok(());
        }
    }
}

impl Dec<'_> {
    /// Whether the queued events may wait for more ([`may_linger`]).
    fn lingers(&self) -> bool {
        may_linger(
            matches!(self.state, State::Snapshot { .. }),
            self.batch.len(),
            self.batch_popped,
        )
    }

    /// Where decoding stands when every pushed byte is decoded: at a
    /// command boundary outside `MULTI` in the stream, else `None`.
    fn tail(&self) -> Option<super::Tail> {
        match &self.state {
            State::Stream(s) if self.input.held() == 0 && !s.in_multi() => Some(super::Tail {
                epoch: self.epoch,
                at: self.popped,
                offset: s.offset(),
                data_end: self.data_end.0,
                db: self.data_end.1,
            }),
            _ => None,
        }
    }

    /// Queues an event, sending the batch when it is full; `false` when
    /// the link is stopping (cancelled, or the consumer dropped the
    /// receiver, which stops the link).
    async fn send(&mut self, ev: LinkEvent) -> bool {
        self.batch.push(ev);
        self.batch.len() < BATCH_EVENTS || self.flush().await
    }

    /// Sends the queued events (if any) as one batch; `false` as for [`Dec::send`].
    async fn flush(&mut self) -> bool {
        self.batch_popped = 0;
        if self.batch.is_empty() {
            return true;
        }
        let ev = std::mem::replace(&mut self.batch, Vec::with_capacity(BATCH_EVENTS));
        // Fast path: room in the channel (the common case when the consumer keeps up).
        let ev = match self.tx.try_send(ev) {
            Ok(()) => return true,
            Err(mpsc::error::TrySendError::Closed(_)) => {
                self.token.cancel();
                return false;
            }
            Err(mpsc::error::TrySendError::Full(ev)) => ev,
        };
        tokio::select! {
            r = self.tx.send(ev) => {
                if r.is_err() {
                    self.token.cancel();
                }
                r.is_ok()
            }
            _ = self.token.cancelled() => false,
        }
    }

    fn set_phase(&self, phase: Phase) {
        self.shared.lock().phase = phase;
    }

    async fn mark(&mut self, mark: Mark) -> Result<bool, LinkError> {
        match mark {
            Mark::Reconnecting { reason } => {
                Ok(self.send(LinkEvent::Reconnecting { reason }).await)
            }
            Mark::FullSync {
                epoch,
                replid,
                offset,
            } => {
                self.input.clear();
                self.epoch = epoch;
                self.shared.snapshot_done.store(0, Ordering::Relaxed);
                self.shared
                    .snapshot_total
                    .store(u64::MAX, Ordering::Relaxed);
                self.state = State::Snapshot {
                    framer: SnapshotFramer::new(),
                    rdb: Box::new(ferry_rdb::Decoder::new(self.shared.cfg.rdb.clone())),
                    offset,
                    db: 0,
                };
                {
                    // The old position belongs to a history the snapshot
                    // replaces: a crash before the snapshot is applied must
                    // not resume from it.
                    let mut p = self.shared.lock_position();
                    p.epoch = epoch;
                    p.replid = Some(replid.clone());
                    p.saved = None;
                    p.hold = false;
                }
                super::blocking(self.shared, Shared::remove_position_blocking).await?;
                self.set_phase(Phase::Snapshot);
                Ok(self
                    .send(LinkEvent::FullSync {
                        replid,
                        offset,
                        epoch,
                    })
                    .await)
            }
            Mark::Continue {
                epoch,
                replid,
                offset,
                db,
            } => {
                match &self.state {
                    State::Stream(stream) if self.epoch == epoch => {
                        let at = stream.offset() + self.input.held() as u64;
                        if at != offset {
                            return Err(LinkError::Internal(format!(
                                "resumed at {offset} but the decoder holds bytes up to {at}"
                            )));
                        }
                    }
                    _ => {
                        self.input.clear();
                        self.epoch = epoch;
                        self.state = State::Stream(CommandStream::new(offset, db));
                        self.data_end = (offset, db);
                    }
                }
                {
                    let mut p = self.shared.lock_position();
                    p.epoch = epoch;
                    p.replid = Some(replid.clone());
                }
                self.set_phase(Phase::Streaming);
                if !self.send(LinkEvent::Continue { replid, offset }).await {
                    return Ok(false);
                }
                self.process().await
            }
        }
    }

    /// Decodes everything decodable in the buffer.
    async fn process(&mut self) -> Result<bool, LinkError> {
        loop {
            self.input.unstitch();
            let ev = match &mut self.state {
                State::Idle => {
                    self.input.clear();
                    return Ok(true);
                }
                State::Snapshot {
                    framer,
                    rdb,
                    offset,
                    db,
                } => match framer.next_event(rdb, &mut self.input.buf) {
                    Ok(None) => {
                        if self.input.append_rest() {
                            continue;
                        }
                        return Ok(true);
                    }
                    Ok(Some(SnapshotEvent::Preamble(p))) => {
                        if let crate::Preamble::Disk { len } = p {
                            self.shared.snapshot_total.store(len, Ordering::Relaxed);
                        }
                        continue;
                    }
                    Ok(Some(SnapshotEvent::Item(item))) => {
                        self.shared
                            .snapshot_done
                            .store(rdb.offset(), Ordering::Relaxed);
                        if let Item::Aux { key, value } = &item
                            && &key[..] == b"repl-stream-db"
                            && let Some(n) = crate::parse_decimal(value)
                        {
                            *db = n;
                        }
                        LinkEvent::Rdb(item)
                    }
                    Ok(Some(SnapshotEvent::Complete)) => {
                        let (offset, db) = (*offset, *db);
                        self.shared
                            .snapshot_done
                            .store(rdb.offset(), Ordering::Relaxed);
                        let end = self.popped - self.input.held() as u64;
                        self.shared.lock().snapshot_end = Some((self.epoch, end));
                        self.shared.ack_now.notify_one();
                        self.state = State::Stream(CommandStream::new(offset, db));
                        self.data_end = (offset, db);
                        self.set_phase(Phase::Streaming);
                        LinkEvent::SnapshotEnd {
                            applied: Applied {
                                epoch: self.epoch,
                                offset,
                                db,
                            },
                        }
                    }
                    Err(e) if e.retriable() => {
                        // The source aborted; it closes the link (make
                        // sure), and the next session starts over.
                        self.state = State::Idle;
                        self.input.clear();
                        self.shared.reconnect.notify_waiters();
                        return Ok(true);
                    }
                    Err(e) => return Err(e.into()),
                },
                State::Stream(stream) => match stream.next_event(&mut self.input.buf)? {
                    None => {
                        if self.input.append_rest() {
                            continue;
                        }
                        return Ok(true);
                    }
                    Some(event) => {
                        if !no_data(&event) {
                            self.data_end = (event.end_offset(), stream.db());
                        }
                        let cp = stream.checkpoint();
                        if let StreamEvent::GetAck { .. } = event {
                            self.shared.lock().getack = Some((self.epoch, cp.offset));
                            self.shared.ack_now.notify_one();
                        }
                        LinkEvent::Stream {
                            event,
                            applied: Applied {
                                epoch: self.epoch,
                                offset: cp.offset,
                                db: cp.db,
                            },
                        }
                    }
                },
            };
            // `send` inlined: the event goes straight into the batch
            // instead of first into `send`'s future.
            self.batch.push(ev);
            if self.batch.len() >= BATCH_EVENTS && !self.flush().await {
                return Ok(false);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_small_snapshot_batch_lingers() {
        assert!(may_linger(true, 1, 0));
        assert!(may_linger(true, SNAPSHOT_MIN_BATCH - 1, POP_CHUNK - 1));
        // Never in the stream, never an empty batch.
        assert!(!may_linger(false, 1, 0));
        assert!(!may_linger(true, 0, 0));
        // Enough events, or enough bytes behind them (a big key's chunks).
        assert!(!may_linger(true, SNAPSHOT_MIN_BATCH, 0));
        assert!(!may_linger(true, 2, POP_CHUNK));
        assert!(!may_linger(true, 2, 64 * POP_CHUNK));
    }
}

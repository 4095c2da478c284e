//! TTL hold: keys with short TTLs survive a long snapshot and its catch-up.
//!
//! A real replica never expires keys (it waits for the master's `DEL`);
//! the target is a master and does. A snapshot key written with its
//! absolute expiry can therefore expire on the target while the snapshot
//! is still loading, even though the source keeps refreshing it; the
//! refreshing `PEXPIREAT` then hits nothing, and a later `HINCRBY`
//! recreates the key holding only the new part. The same happens to a
//! `PEXPIREAT` replayed from the backlog that accumulated meanwhile.
//!
//! So, from a full sync (or a resume) until the stream has caught up:
//!
//! ```text
//! snapshot key, expired before the snapshot was taken (RDB `ctime`)
//!   → skipped as without the hold (the source's DEL follows)
//! snapshot key, expiry E < now + 2 × (snapshot ETA + lag) + 60 s
//!   → written with expiry E + HOLD_MS (a "stamp": ~100 years later)
//!   → Action::Hold(db, key)       (the executor remembers the name)
//! stream PEXPIREAT/EXPIREAT k E, SET … PXAT/EXAT E, RESTORE … E ABSTTL,
//!   with E < now + 2 × lag + 60 s
//!   → the same command with E + HOLD_MS (PEXPIREAT's NX/XX/GT/LT dropped:
//!     the master propagates only what it applied) → Action::Hold
//! RENAME/RENAMENX/COPY src dst → Action::Hold(dst) (a stamp moves with the key;
//!   MOVE k db: Hold(db, k))
//! caught up (the stream has reached the source's offset as polled 1.5 s
//! after the snapshot, and lag < 0.5 s)
//!   → Action::FixUp(offset): for each remembered name, through the writer,
//!     the guarded fix-up (fixup_op): if the key still carries a stamp
//!     (PTTL > HOLD_MS / 2), PEXPIREAT it to stamp − HOLD_MS, its true
//!     expiry; a key deleted, recreated, persisted or given a new TTL by
//!     the stream since is left alone.
//! ```
//!
//! The stamp carries the true expiry in the key itself: nothing but the
//! key names need remembering, the fix-up is idempotent (a second run finds
//! no stamp), and after a crash it is simply run again from the executor's
//! file of names.

use bytes::Bytes;

use super::{Action, Translator};
use crate::op::Op;
use crate::slot::key_slot;

/// How much later than its true expiry a held key expires (~100 years):
/// far beyond any snapshot, and recognisable (`PTTL > HOLD_MS / 2`).
pub const HOLD_MS: i64 = 100 * 365 * 86_400_000;
/// Margin added to the estimated time until the stream has caught up.
pub const HOLD_MARGIN_MS: i64 = 60_000;
/// Lag under which the stream counts as caught up (the fix-up runs).
pub const CAUGHT_UP_MS: u64 = 500;
/// How long after the backlog is replayed the fix-up runs even if the lag
/// stays over [`CAUGHT_UP_MS`].
pub const MAX_WAIT_MS: i64 = 30_000;
/// How long after the stream first showed the source's offset is taken
/// as the end of the backlog (the executor polls it about once a second).
pub const SOURCE_POLL_MS: i64 = 1_500;
/// The snapshot's remaining time assumed before progress tells (10 min).
const UNKNOWN_ETA_MS: i64 = 600_000;

/// The guarded fix-up: `KEYS[1]` the key, `ARGV[1]` [`HOLD_MS`].
pub const FIXUP_SCRIPT: &str = "local ttl = redis.call('PTTL', KEYS[1]) \
local hold = tonumber(ARGV[1]) \
if ttl < hold / 2 then return 0 end \
local t = redis.call('TIME') \
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) \
redis.call('PEXPIREAT', KEYS[1], now + ttl - hold) \
return 1";

/// Where the hold stands.
#[derive(Debug, Clone, Default)]
pub(super) struct Hold {
    /// Stamping (from a full sync or resume until the fix-up is emitted).
    pub active: bool,
    /// Between a full sync and its snapshot's end.
    pub in_snapshot: bool,
    /// Wall clock (unix ms) at the full sync.
    pub sync_ms: i64,
    /// The snapshot's creation time (its `ctime` aux field, unix ms).
    pub ctime_ms: Option<i64>,
    /// Snapshot progress in percent, from the executor.
    pub percent: Option<f64>,
    /// Replication lag, from the executor.
    pub lag_ms: u64,
    /// The offset of the last stream event seen.
    pub stream_offset: u64,
    /// Wall clock when the stream first showed after the snapshot (or a
    /// resume).
    pub stream_since_ms: Option<i64>,
    /// The source's offset polled after that: the end of the backlog to
    /// replay before the fix-up.
    pub backlog_end: Option<u64>,
    /// The source's offset as reported when the stream first showed.
    pub first_source: Option<u64>,
    /// Wall clock when the translated stream reached `backlog_end`.
    pub backlog_done_ms: Option<i64>,
}

fn num(v: i64) -> Bytes {
    Bytes::from(v.to_string())
}

fn parse(b: &[u8]) -> Option<i64> {
    std::str::from_utf8(b).ok()?.parse().ok()
}

impl Translator {
    /// The executor's view of progress: snapshot percent (`None` unknown),
    /// the replication lag, the source's offset (`master_repl_offset`,
    /// polled about once a second; `None` unknown), the wall clock. Emits
    /// [`Action::FixUp`] once the stream has caught up after a hold: the
    /// translated stream has reached the source's offset as polled at
    /// least [`SOURCE_POLL_MS`] after the stream first showed, and changed
    /// since (a stalled poll repeats an old value; an offset that never
    /// changes is taken after [`MAX_WAIT_MS`]) (so it
    /// covers the backlog written during the snapshot, wherever it waits:
    /// the source's output buffer, the network or the spool), and the lag
    /// is under [`CAUGHT_UP_MS`].
    pub fn progress(
        &mut self,
        percent: Option<f64>,
        lag_ms: u64,
        source_offset: Option<u64>,
        now_ms: i64,
        out: &mut Vec<Action>,
    ) {
        self.hold.percent = percent;
        self.hold.lag_ms = lag_ms;
        if self.hold.in_snapshot {
            return;
        }
        if self.hold.stream_since_ms.is_none() {
            self.hold.stream_since_ms = Some(now_ms);
            self.hold.first_source = source_offset;
        }
        let since = self.hold.stream_since_ms.unwrap_or(now_ms);
        // A value polled after the stream showed: later, and changed (a
        // stalled poll keeps reporting an old one); an unchanging source
        // (idle, or not polled at all) is taken after MAX_WAIT_MS.
        let fresh = source_offset != self.hold.first_source || now_ms >= since + MAX_WAIT_MS;
        if self.hold.backlog_end.is_none() && now_ms >= since + SOURCE_POLL_MS && fresh {
            self.hold.backlog_end = source_offset;
        }
        let backlog_done = self
            .hold
            .backlog_end
            .is_some_and(|end| self.hold.stream_offset >= end);
        let done_since = if backlog_done {
            *self.hold.backlog_done_ms.get_or_insert(now_ms)
        } else {
            now_ms
        };
        // A stream that never gets within CAUGHT_UP_MS (a source writing
        // about as fast as the target takes it) must not keep the hold
        // forever: the fix-up then runs MAX_WAIT_MS after the backlog.
        let near = lag_ms < CAUGHT_UP_MS || now_ms >= done_since + MAX_WAIT_MS;
        if self.cfg.ttl_hold
            && self.hold.active
            && backlog_done
            && near
            && self.hold.stream_offset > 0
            && self.txn.is_none()
        {
            self.hold.active = false;
            out.push(Action::FixUp {
                offset: self.hold.stream_offset,
            });
        }
    }

    /// The executor could not run the fix-up yet (its offset is not past
    /// every slot's checkpoint): keep holding, ask again later.
    pub fn fixup_postponed(&mut self) {
        self.hold.active = true;
    }

    /// A stream event at `offset` was seen (any event, `PING` included).
    pub fn stream_position(&mut self, offset: u64) {
        self.hold.stream_offset = self.hold.stream_offset.max(offset);
    }

    /// The link resumed an earlier history: hold again until caught up
    /// (the executor still has the names of a fix-up a crash interrupted).
    pub fn resume(&mut self) {
        self.hold.active = self.cfg.ttl_hold;
        self.hold.in_snapshot = false;
        self.hold.backlog_end = None;
        self.hold.stream_since_ms = None;
        self.hold.backlog_done_ms = None;
        self.hold.first_source = None;
    }

    /// The time before which a snapshot key's expiry means it was already
    /// expired when the snapshot was taken (skipped, the source's `DEL`
    /// follows). With the hold, a key that expired only since may have
    /// been refreshed by the backlog: it is held, not skipped.
    pub(super) fn expired_before(&self, now_ms: i64) -> i64 {
        if self.cfg.ttl_hold && self.hold.active {
            self.hold.ctime_ms.unwrap_or(self.hold.sync_ms).min(now_ms)
        } else {
            now_ms
        }
    }

    /// Estimated time until the stream catches up.
    fn hold_horizon(&self, now_ms: i64) -> i64 {
        let lag = i64::try_from(self.hold.lag_ms).unwrap_or(i64::MAX / 4);
        let eta = if self.hold.in_snapshot {
            match self.hold.percent {
                Some(p) if (1.0..=100.0).contains(&p) => {
                    let elapsed = (now_ms - self.hold.sync_ms).max(0) as f64;
                    (elapsed * (100.0 - p) / p) as i64
                }
                _ => UNKNOWN_ETA_MS,
            }
        } else {
            0
        };
        now_ms
            .saturating_add(2 * (eta + lag))
            .saturating_add(HOLD_MARGIN_MS)
    }

    /// A snapshot key's expiry: stamped (and the key remembered) if it
    /// could pass before the stream catches up.
    pub(super) fn hold_snapshot_key(
        &mut self,
        db: u64,
        key: &Bytes,
        expire_ms: &mut Option<i64>,
        now_ms: i64,
        out: &mut Vec<Action>,
    ) {
        let Some(e) = *expire_ms else { return };
        if self.cfg.ttl_hold && self.hold.active && e < self.hold_horizon(now_ms) {
            *expire_ms = Some(e.saturating_add(HOLD_MS));
            self.counters.ttl_held += 1;
            out.push(Action::Hold {
                db,
                key: key.clone(),
            });
        }
    }

    /// A stream command (keys already prefixed): absolute expiries that
    /// could pass before the stream catches up are stamped; names whose
    /// stamp may move are remembered.
    pub(super) fn hold_command(
        &mut self,
        args: &mut crate::op::Args,
        db: u64,
        now_ms: i64,
        out: &mut Vec<Action>,
    ) {
        if !self.cfg.ttl_hold || !self.hold.active || args.len() < 2 {
            return;
        }
        let horizon = self.hold_horizon(now_ms);
        // The name in upper case, on the stack (no allocation per command).
        let mut buf = [0u8; 12];
        let len = args[0].len();
        let name: &[u8] = if len <= buf.len() {
            buf[..len].copy_from_slice(&args[0]);
            buf[..len].make_ascii_uppercase();
            &buf[..len]
        } else {
            b""
        };
        let held = match name {
            b"PEXPIREAT" | b"EXPIREAT" if args.len() >= 3 => {
                let scale = if name == b"EXPIREAT" { 1000 } else { 1 };
                match parse(&args[2]) {
                    Some(t) if t.saturating_mul(scale) < horizon => {
                        let at = t.saturating_mul(scale).saturating_add(HOLD_MS);
                        args.truncate(3);
                        args[0] = Bytes::from_static(b"PEXPIREAT");
                        args[2] = num(at);
                        true
                    }
                    _ => false,
                }
            }
            b"SET" => {
                let mut held = false;
                let mut i = 3;
                while i + 1 < args.len() {
                    let opt = args[i].to_ascii_uppercase();
                    let scale = match &opt[..] {
                        b"PXAT" => 1,
                        b"EXAT" => 1000,
                        _ => {
                            i += 1;
                            continue;
                        }
                    };
                    if let Some(t) = parse(&args[i + 1])
                        && t.saturating_mul(scale) < horizon
                    {
                        args[i] = Bytes::from_static(b"PXAT");
                        args[i + 1] = num(t.saturating_mul(scale).saturating_add(HOLD_MS));
                        held = true;
                    }
                    break;
                }
                held
            }
            b"RESTORE" if args.len() >= 4 => {
                let abs = args[4..].iter().any(|a| a.eq_ignore_ascii_case(b"ABSTTL"));
                match parse(&args[2]) {
                    Some(t) if abs && t > 0 && t < horizon => {
                        args[2] = num(t.saturating_add(HOLD_MS));
                        true
                    }
                    _ => false,
                }
            }
            b"MOVE" if args.len() >= 3 => {
                // Standalone: the stamp moves to the other db.
                if let Some(to) = parse(&args[2]).and_then(|d| u64::try_from(d).ok()) {
                    out.push(Action::Hold {
                        db: to,
                        key: args[1].clone(),
                    });
                }
                return;
            }
            b"RENAME" | b"RENAMENX" | b"COPY" if args.len() >= 3 => {
                // A stamp moves (or is copied) with the value.
                out.push(Action::Hold {
                    db,
                    key: args[2].clone(),
                });
                return;
            }
            _ => false,
        };
        if held {
            self.counters.ttl_held += 1;
            out.push(Action::Hold {
                db,
                key: args[1].clone(),
            });
        }
    }

    /// The fix-up of held `key` (of source db `db`) at `offset`: a
    /// `SELECT` first on a standalone target when the db changes.
    pub fn fixup_op(&mut self, db: u64, key: Bytes, offset: u64, out: &mut Vec<Action>) {
        let slot = if self.cfg.standalone {
            self.select(db, offset, out);
            0
        } else {
            key_slot(&key)
        };
        let args = vec![
            Bytes::from_static(b"EVAL"),
            Bytes::from_static(FIXUP_SCRIPT.as_bytes()),
            Bytes::from_static(b"1"),
            key,
            num(HOLD_MS),
        ];
        self.counters.ttl_fixups += 1;
        self.write(out, Op::slot(args, slot, offset));
    }
}

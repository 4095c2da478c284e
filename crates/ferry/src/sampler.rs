//! Sampled verify while streaming: a background task of `ferry run` that
//! compares random source keys with the target, the way `ferry verify` does.
//!
//! ```text
//! every 1/sample_per_second s, while streaming:
//!   RANDOMKEY on the source (db 0; read-only) → skip ferry's own keys and
//!   keys outside the filter
//!   S1 = read(source, key); O1 = source master_repl_offset (read after S1)
//!   T1 = read(target, key)         equal → checked
//!   different → pending (key, S1, O1)
//! pending, once the applied offset ≥ O1 (the target has every write the
//! source had made when S1 was read):
//!   T2 = read(target, key); S2 = read(source, key); O2 = offset
//!   T2 equals S1 or S2                 → checked (it was in flight)
//!   S2 differs from S1 (key changed)   → pending again (key, S2, O2), at
//!                                        most MAX_TRIES rounds, then
//!                                        counted as unsettled
//!   otherwise                          → mismatch: counted and logged
//! ```
//! A mismatch is thus only counted when it persists after the target has
//! caught up with the source's state at the first read, and the source key
//! did not change meanwhile.
//!
//! A cluster source: each sample is drawn from the next source master in
//! turn, among those this process replicates (a link of
//! [`Progress::links`] with the master's `master_replid`; with
//! `source.partition` the other masters belong to other processes); O1 is
//! that master's offset and "applied" is its link's. Errors (a node restarting, a failover) are
//! logged, the connections dropped and re-made; they never stop the daemon.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use ferry_cluster::Conn;
use serde::Serialize;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::Config;
use crate::verify::{Endpoints, Side, Target, compare, compared_key, connect_source, read};

/// Rounds a pending key may need because it keeps changing on the source.
const MAX_TRIES: u32 = 5;
/// Pending keys at most; no new samples while full.
const MAX_PENDING: usize = 256;
/// A pending key the applied offset has not reached after this long is
/// dropped as unsettled (ferry is far behind; the lag alerts say so).
const PENDING_FOR: Duration = Duration::from_secs(120);
const T: Duration = Duration::from_secs(5);

/// Counters shared with the status page.
#[derive(Debug, Default)]
pub struct SamplerStats {
    checked: AtomicU64,
    mismatches: AtomicU64,
    unsettled: AtomicU64,
    pending: AtomicU64,
    last_mismatch: Mutex<Option<String>>,
}

/// The `verify` object of `/status`.
#[derive(Debug, Clone, Default, Serialize)]
pub struct VerifyStatus {
    /// Samples per second (0: off).
    pub sample_per_second: u32,
    /// Keys compared and settled (equal, or a confirmed mismatch).
    pub checked: u64,
    /// Confirmed mismatches.
    pub mismatches: u64,
    /// Samples waiting for the applied offset to pass their source offset.
    pub pending: u64,
    /// Samples given up on: the key kept changing, or ferry stayed behind.
    pub unsettled: u64,
    /// The last confirmed mismatch: key and what differs.
    pub last_mismatch: Option<String>,
}

impl SamplerStats {
    /// The counters as `/status` shows them.
    pub fn status(&self, sample_per_second: u32) -> VerifyStatus {
        VerifyStatus {
            sample_per_second,
            checked: self.checked.load(Ordering::Relaxed),
            mismatches: self.mismatches.load(Ordering::Relaxed),
            pending: self.pending.load(Ordering::Relaxed),
            unsettled: self.unsettled.load(Ordering::Relaxed),
            last_mismatch: self.last_mismatch.lock().ok().and_then(|m| m.clone()),
        }
    }
}

/// What the sampler needs to know about the daemon.
#[derive(Debug, Clone, Default)]
pub struct Progress {
    /// The link is streaming (the snapshot is applied).
    pub streaming: bool,
    /// Source offset applied to the target.
    pub applied: Option<u64>,
    /// A cluster source: each link (source shard) of this process.
    pub links: Vec<LinkProgress>,
}

/// One link of a cluster source, as the sampler needs it.
#[derive(Debug, Clone, Default)]
pub struct LinkProgress {
    /// The replication id the link follows (its master's `master_replid`).
    pub replid: Option<String>,
    /// The link is streaming.
    pub streaming: bool,
    /// Offset of that history applied to the target.
    pub applied: Option<u64>,
}

impl Progress {
    /// The applied offset of history `replid` (`None`: the one source
    /// of a standalone source), when its link is streaming.
    fn applied(&self, replid: Option<&str>) -> Option<u64> {
        match replid {
            None => self.applied.filter(|_| self.streaming),
            Some(r) => self
                .links
                .iter()
                .find(|l| l.streaming && l.replid.as_deref() == Some(r))
                .and_then(|l| l.applied),
        }
    }

    /// Something is streaming.
    fn any_streaming(&self) -> bool {
        (self.streaming && self.applied.is_some()) || self.links.iter().any(|l| l.streaming)
    }
}

struct Pending {
    /// The source node the key was read on.
    node: usize,
    /// Its `master_replid` then (a cluster source).
    replid: Option<String>,
    key: Vec<u8>,
    first: Side,
    offset: u64,
    tries: u32,
    since: Instant,
}

struct Conns {
    src: Endpoints,
    source: Vec<Conn>,
    target: Target,
}

/// Start the sampler (nothing when `verify.sample_per_second` is 0 or db 0
/// is not migrated), as a task of `tracker`. It stops with `cancel`.
pub fn spawn(
    cfg: &Config,
    stats: Arc<SamplerStats>,
    progress: impl Fn() -> Progress + Send + 'static,
    cancel: CancellationToken,
    tracker: &TaskTracker,
) {
    let rate = cfg.verify.sample_per_second;
    if rate == 0 {
        tracing::info!("sampled verify is off (verify.sample_per_second: 0)");
        return;
    }
    if !cfg.filter.db(0) {
        tracing::info!("sampled verify is off: it samples db 0, which filter.dbs leaves out");
        return;
    }
    let cfg = cfg.clone();
    tracker.spawn(async move {
        let mut s = Sampler {
            cfg,
            stats,
            pending: VecDeque::new(),
            conns: None,
            next_node: 0,
            last_error: None,
        };
        let every = Duration::from_secs_f64(1.0 / f64::from(rate));
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = tick.tick() => {}
            }
            let p = progress();
            if !p.any_streaming() {
                continue;
            }
            if let Err(e) = s.step(&p).await {
                s.conns = None;
                let msg = format!("{e:#}");
                if s.last_error.as_deref() != Some(msg.as_str()) {
                    tracing::warn!("sampled verify: {msg} (retrying)");
                    s.last_error = Some(msg);
                }
                tokio::select! {
                    _ = cancel.cancelled() => return,
                    _ = tokio::time::sleep(Duration::from_secs(2)) => {}
                }
            }
        }
    });
}

struct Sampler {
    cfg: Config,
    stats: Arc<SamplerStats>,
    pending: VecDeque<Pending>,
    conns: Option<Conns>,
    /// The source node the next sample is drawn from (a cluster source).
    next_node: usize,
    last_error: Option<String>,
}

/// A source node's `master_replid` and `master_repl_offset`.
async fn source_offset(conn: &mut Conn) -> Result<(String, u64)> {
    let reply = conn.call(&["INFO", "replication"], T).await?;
    let text = ferry_ops::info_text(&reply).context("the source's INFO replication")?;
    let info = ferry_ops::Info::parse(&text);
    let offset = info
        .get_u64("master_repl_offset")
        .context("the source's INFO replication has no master_repl_offset")?;
    let replid = info.get("master_replid").unwrap_or_default().to_string();
    Ok((replid, offset))
}

/// The target's name of source db 0's `key` (`filter.db_prefix` applied).
fn target_key(filter: &crate::config::Filter, key: &[u8]) -> Vec<u8> {
    match filter.prefix_for(0) {
        Some(p) => [&p[..], key].concat(),
        None => key.to_vec(),
    }
}

impl Sampler {
    async fn conns(&mut self) -> Result<&mut Conns> {
        if self.conns.is_none() {
            let (src, source) = connect_source(&self.cfg).await?;
            let target = Target::connect(&self.cfg).await?;
            self.conns = Some(Conns {
                src,
                source,
                target,
            });
            self.last_error = None;
        }
        self.conns.as_mut().context("sampler connections")
    }

    /// Re-check what is due, then take one new sample.
    async fn step(&mut self, progress: &Progress) -> Result<()> {
        let tolerance = self.cfg.verify.ttl_tolerance_ms;
        // Pending keys whose offset the target has reached.
        let mut due = Vec::new();
        let mut keep = VecDeque::new();
        while let Some(p) = self.pending.pop_front() {
            if progress
                .applied(p.replid.as_deref())
                .is_some_and(|a| p.offset <= a)
            {
                due.push(p);
            } else if p.since.elapsed() > PENDING_FOR {
                self.stats.unsettled.fetch_add(1, Ordering::Relaxed);
            } else {
                keep.push_back(p);
            }
        }
        self.pending = keep;
        let mut result = Ok(());
        let mut due = due.into_iter();
        for p in due.by_ref() {
            if let Err(e) = self.recheck(p, tolerance).await {
                result = Err(e);
                break;
            }
        }
        // On an error the rest stay pending.
        self.pending.extend(due);
        if result.is_ok() && self.pending.len() < MAX_PENDING {
            result = self.sample(tolerance, progress).await;
        }
        self.stats
            .pending
            .store(self.pending.len() as u64, Ordering::Relaxed);
        result
    }

    async fn sample(&mut self, tolerance: i64, progress: &Progress) -> Result<()> {
        let filter = self.cfg.filter.clone();
        let turn = self.next_node;
        self.next_node = self.next_node.wrapping_add(1);
        let c = self.conns().await?;
        let node = turn % c.source.len();
        let cluster = c.src.is_cluster();
        let (replid, _) = source_offset(&mut c.source[node]).await?;
        // A cluster source: only masters whose shard this process carries,
        // once its link streams.
        let replid = cluster.then_some(replid);
        if progress.applied(replid.as_deref()).is_none() {
            return Ok(());
        }
        let key = c.source[node].call(&["RANDOMKEY"], T).await?;
        let Some(key) = key.as_bytes().map(|k| k.to_vec()) else {
            return Ok(()); // empty
        };
        if !compared_key(&filter, &key) {
            return Ok(());
        }
        let first = read(&mut c.source[node], &key).await?;
        if first.kind == "none" {
            return Ok(()); // deleted meanwhile
        }
        let (_, offset) = source_offset(&mut c.source[node]).await?;
        let t = c.target.read(&target_key(&filter, &key)).await?;
        if compare(&first, &t, tolerance).is_none() {
            self.stats.checked.fetch_add(1, Ordering::Relaxed);
        } else {
            self.pending.push_back(Pending {
                node,
                replid,
                key,
                first,
                offset,
                tries: 0,
                since: Instant::now(),
            });
        }
        Ok(())
    }

    async fn recheck(&mut self, mut p: Pending, tolerance: i64) -> Result<()> {
        let tkey = target_key(&self.cfg.filter, &p.key);
        let c = self.conns().await?;
        let t = c.target.read(&tkey).await?;
        let node = p.node.min(c.source.len() - 1);
        let now = read(&mut c.source[node], &p.key).await?;
        let (replid, offset) = source_offset(&mut c.source[node]).await?;
        if p.replid.is_some() && p.replid.as_deref() != Some(replid.as_str()) {
            // The shard failed over to another history meanwhile: its link
            // follows the new one; start this key again.
            p.replid = Some(replid);
        }
        let same = |a: &Side| compare(a, &t, tolerance).is_none();
        if same(&p.first) || same(&now) {
            self.stats.checked.fetch_add(1, Ordering::Relaxed);
            return Ok(());
        }
        if compare(&p.first, &now, tolerance).is_some() {
            // The key changed on the source meanwhile: look again later.
            p.tries += 1;
            if p.tries >= MAX_TRIES {
                self.stats.unsettled.fetch_add(1, Ordering::Relaxed);
            } else {
                p.first = now;
                p.offset = offset;
                self.pending.push_back(p);
            }
            return Ok(());
        }
        let what = compare(&now, &t, tolerance).unwrap_or_else(|| "differs".into());
        let key = String::from_utf8_lossy(&p.key).into_owned();
        tracing::warn!(key = %key, "sampled verify: mismatch: {what}");
        self.stats.checked.fetch_add(1, Ordering::Relaxed);
        self.stats.mismatches.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut m) = self.stats.last_mismatch.lock() {
            *m = Some(format!("{key:?}: {what}"));
        }
        Ok(())
    }
}

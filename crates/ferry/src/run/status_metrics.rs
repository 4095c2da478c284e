//! The metrics set from each status snapshot: gauges, and the counters
//! that library crates own (the link's, the writer's, the applier's
//! totals), set with `Counter::absolute`. Names are in [`crate::telemetry`].
//!
//! Each source link (one per source shard of a cluster source) also has
//! its own gauges labelled `shard` (its name): offsets, lag, connected,
//! reconnects, spool. The address it reads from is the `source` label of
//! `ferry_link_info` only, so a failover to another address does not leave
//! a stale lag series behind (the old address's info drops to 0).

use std::collections::BTreeMap;
use std::sync::Mutex;

use metrics::{Counter, Gauge, counter, gauge};

use super::status::{LinkSection, Status};
use crate::telemetry::*;

/// Handles of the metrics set from each status snapshot (looked up once).
pub struct StatusMetrics {
    phase: Gauge,
    lag_bytes: Gauge,
    lag_seconds: Gauge,
    applied_offset: Gauge,
    source_offset: Gauge,
    spool_bytes: Gauge,
    verify_pending: Gauge,
    snapshot_percent: Gauge,
    spool_disk_bytes: Gauge,
    spool_full: Gauge,
    keys_applied: Counter,
    commands_applied: Counter,
    emulated: Counter,
    target_reconnects: Counter,
    moved: Counter,
    ask: Counter,
    retry: Counter,
    checkpoints: Counter,
    skipped_applied: Counter,
    split: Counter,
    refreshes: Counter,
    reprobed: Counter,
    wait_timeouts: Counter,
    rate_limited: Gauge,
    rate_limited_wait: Gauge,
    verify_checked: Counter,
    verify_mismatches: Counter,
    spool_disk_written: Counter,
    handshake_warnings: Counter,
    /// The source address each link's info series was last set for.
    link_sources: Mutex<BTreeMap<String, String>>,
}

impl Default for StatusMetrics {
    fn default() -> Self {
        StatusMetrics {
            phase: gauge!(PHASE),
            lag_bytes: gauge!(LAG_BYTES),
            lag_seconds: gauge!(LAG_SECONDS),
            applied_offset: gauge!(APPLIED_OFFSET),
            source_offset: gauge!(SOURCE_OFFSET),
            spool_bytes: gauge!(SPOOL_BYTES),
            verify_pending: gauge!(VERIFY_PENDING),
            snapshot_percent: gauge!(SNAPSHOT_PERCENT),
            spool_disk_bytes: gauge!(SPOOL_DISK_BYTES),
            spool_full: gauge!(SPOOL_FULL),
            keys_applied: counter!(KEYS_APPLIED),
            commands_applied: counter!(COMMANDS_APPLIED),
            emulated: counter!(COMMANDS_EMULATED),
            target_reconnects: counter!(RECONNECTS, "side" => "target"),
            moved: counter!(TARGET_ERRORS, "kind" => "moved"),
            ask: counter!(TARGET_ERRORS, "kind" => "ask"),
            retry: counter!(TARGET_ERRORS, "kind" => "retry"),
            checkpoints: counter!(CHECKPOINTS),
            skipped_applied: counter!(SKIPPED_APPLIED),
            split: counter!(TRANSACTIONS_SPLIT),
            refreshes: counter!(TARGET_REFRESHES),
            reprobed: counter!(TARGET_REPROBED),
            wait_timeouts: counter!(TARGET_WAIT_TIMEOUTS),
            rate_limited: gauge!(TARGET_RATE_LIMITED),
            rate_limited_wait: gauge!(TARGET_RATE_LIMITED_WAIT),
            verify_checked: counter!(VERIFY_CHECKED),
            verify_mismatches: counter!(VERIFY_MISMATCHES),
            spool_disk_written: counter!(SPOOL_DISK_WRITTEN),
            handshake_warnings: counter!(HANDSHAKE_WARNINGS),
            link_sources: Mutex::new(BTreeMap::new()),
        }
    }
}

impl StatusMetrics {
    /// Sets every gauge and library-owned counter from `st`.
    pub fn record(&self, st: &Status) {
        self.phase.set(f64::from(st.phase.code()));
        self.lag_bytes.set(st.lag_bytes.unwrap_or(0) as f64);
        self.lag_seconds.set(st.lag_seconds);
        self.applied_offset
            .set(st.applied_offset.unwrap_or(0) as f64);
        self.source_offset.set(st.source_offset.unwrap_or(0) as f64);
        self.spool_bytes.set(st.spool_bytes as f64);
        self.verify_pending.set(st.verify.pending as f64);
        self.snapshot_percent
            .set(st.snapshot.percent.unwrap_or(0.0));
        self.spool_disk_bytes.set(st.source.spool_disk_bytes as f64);
        self.spool_full
            .set(f64::from(u8::from(st.source.spool_full)));
        self.keys_applied.absolute(st.keys_applied);
        self.commands_applied.absolute(st.commands_applied);
        self.emulated.absolute(st.emulated);
        let t = &st.target;
        self.target_reconnects.absolute(t.reconnects);
        self.moved.absolute(t.moved);
        self.ask.absolute(t.ask);
        self.retry.absolute(t.retry);
        self.checkpoints.absolute(t.checkpoints);
        self.skipped_applied.absolute(t.skipped_applied);
        self.split.absolute(t.split_transactions);
        self.refreshes.absolute(t.refreshes);
        self.reprobed.absolute(t.reprobed);
        self.wait_timeouts.absolute(t.wait_timeouts);
        self.rate_limited.set(f64::from(u8::from(t.rate_limited)));
        self.rate_limited_wait
            .set(t.rate_limited_ms as f64 / 1000.0);
        self.verify_checked.absolute(st.verify.checked);
        self.verify_mismatches.absolute(st.verify.mismatches);
        self.spool_disk_written
            .absolute(st.source.spool_disk_bytes_written);
        self.handshake_warnings
            .absolute(st.source.handshake_warnings);
        for l in &st.links {
            self.record_link(l);
        }
        // Keys left out by the filter are expected and not logged one by
        // one: counted here, from the translator's totals (the other
        // reasons are counted where they are logged, `events::KeySkipped`).
        for reason in ["filtered_db", "filtered_key"] {
            if let Some(n) = st.skipped.get(reason) {
                counter!(KEYS_SKIPPED, "reason" => reason).absolute(*n);
            }
        }
    }
}

impl StatusMetrics {
    /// The gauges of one source link.
    fn record_link(&self, l: &LinkSection) {
        let shard = l.name.clone();
        let set = |name: &'static str, v: f64| gauge!(name, "shard" => shard.clone()).set(v);
        set(LINK_APPLIED_OFFSET, l.applied_offset.unwrap_or(0) as f64);
        set(LINK_SOURCE_OFFSET, l.source_offset.unwrap_or(0) as f64);
        set(LINK_LAG_BYTES, l.lag_bytes.unwrap_or(0) as f64);
        set(LINK_CONNECTED, f64::from(u8::from(l.connected)));
        set(LINK_RECONNECTS, l.reconnects as f64);
        set(LINK_SPOOL_BYTES, l.spool_bytes as f64);
        // A standalone source's one link names no address (its config does).
        let Some(source) = l.source.clone() else {
            return;
        };
        let mut seen = self.link_sources.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(old) = seen.get(&shard)
            && *old != source
        {
            gauge!(LINK_INFO, "shard" => shard.clone(), "source" => old.clone()).set(0.0);
        }
        gauge!(LINK_INFO, "shard" => shard.clone(), "source" => source.clone()).set(1.0);
        seen.insert(shard, source);
    }
}

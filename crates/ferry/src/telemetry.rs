//! Metrics of `ferry run`, through the `metrics` facade and rendered by
//! `metrics-exporter-prometheus` into the daemon's own `/metrics` handler
//! (one port for `/`, `/status` and `/metrics`).
//!
//! Two ways a number gets here:
//! * at the event site, through a typed event of [`crate::events`] whose
//!   `emit()` logs a line and counts (keys not carried, source reconnects,
//!   stops);
//! * from the status snapshot the daemon assembles (at most every 20 ms):
//!   gauges, and counters owned by library crates (the replica link, the
//!   cluster writer, the applier's totals) set with `Counter::absolute`.
//!
//! Metric names are the ones `deploy/prometheus/ferry-alerts.yaml` and
//! `deploy/grafana/ferry-dashboard.json` query (`tests/e2e/deploy_files.rs`
//! reads the `"ferry_…"` names of this file). Labels never carry key names.

use std::sync::OnceLock;

use anyhow::{Context, Result};
use metrics::{counter, describe_counter, describe_gauge};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

/// 0 connecting, 1 snapshot, 2 streaming, 3 stopped, 4 error.
pub const PHASE: &str = "ferry_phase";
/// Bytes of the source's stream not yet applied to the target.
pub const LAG_BYTES: &str = "ferry_lag_bytes";
/// Age of the oldest received byte not yet applied.
pub const LAG_SECONDS: &str = "ferry_lag_seconds";
/// Source offset applied to the target.
pub const APPLIED_OFFSET: &str = "ferry_applied_offset";
/// The source's `master_repl_offset`.
pub const SOURCE_OFFSET: &str = "ferry_source_offset";
/// Snapshot keys written.
pub const KEYS_APPLIED: &str = "ferry_keys_applied_total";
/// Stream commands written.
pub const COMMANDS_APPLIED: &str = "ferry_commands_applied_total";
/// Cross-slot stream commands replayed by emulation.
pub const COMMANDS_EMULATED: &str = "ferry_commands_emulated_total";
/// Bytes waiting in the spool.
pub const SPOOL_BYTES: &str = "ferry_spool_bytes";
/// Reconnects, by `side` (`source`, `target`).
pub const RECONNECTS: &str = "ferry_reconnects_total";
/// Target replies redirected or retried, by `kind` (`moved`, `ask`, `retry`).
pub const TARGET_ERRORS: &str = "ferry_target_errors_total";
/// Transactions committed with a checkpoint.
pub const CHECKPOINTS: &str = "ferry_checkpoints_total";
/// Ops not sent because the target had committed them before a restart.
pub const SKIPPED_APPLIED: &str = "ferry_skipped_applied_total";
/// Source transactions whose keys span slots.
pub const TRANSACTIONS_SPLIT: &str = "ferry_transactions_split_total";
/// Topology refreshes of the target.
pub const TARGET_REFRESHES: &str = "ferry_target_refreshes_total";
/// Committed transactions probed again after a lost connection.
pub const TARGET_REPROBED: &str = "ferry_target_reprobed_total";
/// `WAIT`s no replica answered in time.
pub const TARGET_WAIT_TIMEOUTS: &str = "ferry_target_wait_timeouts_total";
/// 1 while `target.max_ops_per_sec`/`max_bytes_per_sec` holds writes back.
pub const TARGET_RATE_LIMITED: &str = "ferry_target_rate_limited";
/// Seconds writes waited for the target rate limit, since the start (a
/// gauge: the `metrics` counters hold whole numbers only).
pub const TARGET_RATE_LIMITED_WAIT: &str = "ferry_target_rate_limited_wait_seconds";
/// Keys or commands not carried, by `reason`.
pub const KEYS_SKIPPED: &str = "ferry_keys_skipped_total";
/// Sampled verify: keys compared and settled.
pub const VERIFY_CHECKED: &str = "ferry_verify_checked_total";
/// Sampled verify: confirmed mismatches.
pub const VERIFY_MISMATCHES: &str = "ferry_verify_mismatches_total";
/// Sampled verify: samples waiting for the applied offset.
pub const VERIFY_PENDING: &str = "ferry_verify_pending";
/// Snapshot done, in percent.
pub const SNAPSHOT_PERCENT: &str = "ferry_snapshot_percent";
/// Spool bytes on disk.
pub const SPOOL_DISK_BYTES: &str = "ferry_spool_disk_bytes";
/// 1 while the spool is at its cap (ferry stopped reading the source).
pub const SPOOL_FULL: &str = "ferry_spool_full";
/// Bytes written to spool segment files.
pub const SPOOL_DISK_WRITTEN: &str = "ferry_spool_disk_written_bytes_total";
/// Error replies tolerated during source handshakes.
pub const HANDSHAKE_WARNINGS: &str = "ferry_source_handshake_warnings_total";
/// Per source link (label `shard`): offset applied to the target.
pub const LINK_APPLIED_OFFSET: &str = "ferry_link_applied_offset";
/// Per source link: its source master's `master_repl_offset`.
pub const LINK_SOURCE_OFFSET: &str = "ferry_link_source_offset";
/// Per source link: source offset minus applied offset.
pub const LINK_LAG_BYTES: &str = "ferry_link_lag_bytes";
/// Per source link: 1 while connected to its source node.
pub const LINK_CONNECTED: &str = "ferry_link_connected";
/// Per source link: reconnects to its source node.
pub const LINK_RECONNECTS: &str = "ferry_link_reconnects";
/// Per source link: bytes waiting in its spool.
pub const LINK_SPOOL_BYTES: &str = "ferry_link_spool_bytes";
/// Per source link: 1, labelled `shard` and `source` (the address in use;
/// 0 for an address the link no longer uses).
pub const LINK_INFO: &str = "ferry_link_info";

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// Installs the process-wide recorder (once) and describes every metric.
pub fn install() -> Result<()> {
    if HANDLE.get().is_some() {
        return Ok(());
    }
    let recorder = PrometheusBuilder::new().build_recorder();
    let handle = recorder.handle();
    metrics::set_global_recorder(recorder).context("installing the metrics recorder")?;
    let _ = HANDLE.set(handle);
    describe();
    Ok(())
}

/// The Prometheus text exposition of every metric.
pub fn render() -> String {
    HANDLE
        .get()
        .map(PrometheusHandle::render)
        .unwrap_or_default()
}

fn describe() {
    for (name, help) in [
        (
            PHASE,
            "0 connecting, 1 snapshot, 2 streaming, 3 stopped, 4 error",
        ),
        (LAG_BYTES, "source offset minus applied offset"),
        (
            LAG_SECONDS,
            "age of the oldest received byte not yet applied",
        ),
        (APPLIED_OFFSET, "source offset applied to the target"),
        (SOURCE_OFFSET, "the source's master_repl_offset"),
        (SPOOL_BYTES, "bytes waiting in the spool (disk included)"),
        (VERIFY_PENDING, "sampled verify: samples waiting to settle"),
        (SNAPSHOT_PERCENT, "snapshot done, in percent"),
        (SPOOL_DISK_BYTES, "spool bytes on disk"),
        (SPOOL_FULL, "1 while the spool is at its cap"),
        (
            TARGET_RATE_LIMITED,
            "1 while the target rate limit holds writes back",
        ),
        (
            TARGET_RATE_LIMITED_WAIT,
            "seconds writes waited for the target rate limit since the start",
        ),
        (LINK_APPLIED_OFFSET, "per source link: offset applied"),
        (
            LINK_SOURCE_OFFSET,
            "per source link: the source's master_repl_offset",
        ),
        (
            LINK_LAG_BYTES,
            "per source link: source minus applied offset",
        ),
        (LINK_CONNECTED, "per source link: 1 while connected"),
        (LINK_RECONNECTS, "per source link: reconnects"),
        (LINK_SPOOL_BYTES, "per source link: bytes in its spool"),
        (
            LINK_INFO,
            "per source link: 1 with the source address in use (label source)",
        ),
    ] {
        describe_gauge!(name, help);
    }
    for (name, help) in [
        (KEYS_APPLIED, "snapshot keys written"),
        (COMMANDS_APPLIED, "stream commands written"),
        (
            COMMANDS_EMULATED,
            "cross-slot stream commands replayed by emulation",
        ),
        (RECONNECTS, "reconnects, by side"),
        (
            TARGET_ERRORS,
            "target replies redirected or retried, by kind",
        ),
        (CHECKPOINTS, "transactions committed with a checkpoint"),
        (
            SKIPPED_APPLIED,
            "ops the target had committed before a restart",
        ),
        (
            TRANSACTIONS_SPLIT,
            "source transactions whose keys span slots",
        ),
        (TARGET_REFRESHES, "topology refreshes of the target"),
        (TARGET_REPROBED, "committed transactions probed again"),
        (TARGET_WAIT_TIMEOUTS, "WAITs no replica answered in time"),
        (KEYS_SKIPPED, "keys or commands not carried, by reason"),
        (VERIFY_CHECKED, "sampled verify: keys compared and settled"),
        (VERIFY_MISMATCHES, "sampled verify: confirmed mismatches"),
        (SPOOL_DISK_WRITTEN, "bytes written to spool segment files"),
        (
            HANDSHAKE_WARNINGS,
            "error replies tolerated in source handshakes",
        ),
    ] {
        describe_counter!(name, help);
    }
    // Counted at their event sites: present (at 0) from the start.
    counter!(RECONNECTS, "side" => "source").absolute(0);
}

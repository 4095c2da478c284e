//! Typed events of the daemon: one struct per event, whose `emit()` writes
//! the log line and updates the metric together, so the two cannot drift
//! apart. Key names and reasons in free text go to the log line only; metric
//! labels are fixed, short vocabularies (`reason`, `side`).

use metrics::counter;

use crate::telemetry;

/// A key or command ferry cannot carry (module aux data, an unreplayable
/// command, a value the target cannot hold, …): logged with what it was,
/// counted by reason.
#[derive(Debug)]
pub struct KeySkipped<'a> {
    /// Short, fixed reason (`unsupported_value`, `unreplayable`, …).
    pub reason: &'static str,
    /// The key, or what was not carried.
    pub what: &'a str,
}

impl KeySkipped<'_> {
    /// Log a warning and count `ferry_keys_skipped_total{reason}`.
    pub fn emit(self) {
        tracing::warn!(reason = self.reason, what = self.what, "not carried");
        counter!(telemetry::KEYS_SKIPPED, "reason" => self.reason).increment(1);
    }
}

/// The replica link lost its connection to the source and reconnects.
#[derive(Debug)]
pub struct SourceReconnecting<'a> {
    /// Why the connection was lost.
    pub reason: &'a str,
}

impl SourceReconnecting<'_> {
    /// Log a warning and count `ferry_reconnects_total{side="source"}`.
    pub fn emit(self) {
        tracing::warn!(reason = self.reason, "source connection lost: reconnecting");
        counter!(telemetry::RECONNECTS, "side" => "source").increment(1);
    }
}

/// SIGINT or SIGTERM: ferry drains and stops.
#[derive(Debug)]
pub struct StopRequested;

impl StopRequested {
    /// Log the stop.
    pub fn emit(self) {
        tracing::info!("stopping: finishing in-flight writes and saving the position");
    }
}

/// A second signal during the drain: ferry exits at once.
#[derive(Debug)]
pub struct ForcedExit;

impl ForcedExit {
    /// Log the forced exit.
    pub fn emit(self) {
        tracing::warn!(
            "second signal: exiting now; in-flight writes are not confirmed \
             (a restart resumes from the last saved position)"
        );
    }
}

/// ferry stops on an error (shown in `/status` as `error` while it drains).
#[derive(Debug)]
pub struct StoppedOnError<'a> {
    /// The error chain.
    pub error: &'a str,
}

impl StoppedOnError<'_> {
    /// Log the error.
    pub fn emit(self) {
        tracing::error!(error = self.error, "stopping on an error");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn skip_events_count_by_reason_without_the_key() {
        let recorder = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
        let handle = recorder.handle();
        metrics::with_local_recorder(&recorder, || {
            KeySkipped {
                reason: "unreplayable",
                what: "secret-key-name",
            }
            .emit();
            SourceReconnecting { reason: "reset" }.emit();
        });
        let text = handle.render();
        assert!(
            text.contains("ferry_keys_skipped_total{reason=\"unreplayable\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("ferry_reconnects_total{side=\"source\"} 1"),
            "{text}"
        );
        assert!(!text.contains("secret-key-name"), "{text}");
    }
}

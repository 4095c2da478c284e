//! The daemon's main loop: link events into the applier, the applied
//! offset back to the link, and a status snapshot (for `/status`,
//! `/metrics`, the sampler and the once-a-second line) at most every
//! [`STATUS_EVERY`].

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Result;
use ferry_replica::{Link, LinkEvent, LinkEvents};
use tokio_util::sync::CancellationToken;

use super::status::{Applied, Assembler, Status};
use super::status_metrics::StatusMetrics;
use crate::apply::Applier;
use crate::events;
use crate::sampler::SamplerStats;

/// Events come in batches (what the link decoded from one read); the
/// status is rebuilt at most this often, not per key.
pub const STATUS_EVERY: Duration = Duration::from_millis(20);

/// Where the loop publishes what it knows.
pub struct Publish {
    /// The document `/status` serves.
    pub status: Arc<Mutex<Status>>,
    /// Sampled verify's counters.
    pub sampler: Arc<SamplerStats>,
    /// `verify.sample_per_second`.
    pub sample_per_second: u32,
    /// Gauges and counters set from each snapshot (`None`: one shard of
    /// a cluster source; the combined status records them).
    pub metrics: Option<StatusMetrics>,
    /// Assembly state (lag in seconds, snapshot progress).
    pub assembler: Assembler,
    /// Print the once-a-second status line (not for one shard of several).
    pub print_line: bool,
}

impl Publish {
    /// Assembles a status from the parts, records its metrics and
    /// publishes it.
    pub fn snapshot(&mut self, link: &Link, applier: &Applier) -> Status {
        let c = applier.counters();
        let applied = Applied {
            keys: c.keys_applied,
            commands: c.commands_applied,
            emulated: c.emulated,
            skipped: c.skipped.iter().map(|(k, v)| (k.to_string(), *v)).collect(),
            snapshot_keys: c.snapshot_keys,
            moved_slot_dropped: c.moved_slot_dropped,
        };
        let two_way = applier
            .two_way()
            .then_some(crate::run::status::TwoWayStatus {
                echo_commands: c.echo_commands,
                conflicts: c.conflicts,
            });
        let mut st = self.assembler.assemble(
            &link.status(),
            applied,
            applier.writer_stats(),
            self.sampler.status(self.sample_per_second),
        );
        st.two_way = two_way;
        self.publish(st.clone());
        st
    }

    /// Records and publishes `st`.
    pub fn publish(&self, st: Status) {
        if let Some(m) = &self.metrics {
            m.record(&st);
        }
        if let Ok(mut s) = self.status.lock() {
            *s = st;
        }
    }
}

/// Runs until `stop` is cancelled, the link ends, or an error; then the
/// caller drains.
pub async fn run(
    applier: &mut Applier,
    link: &Link,
    events: &mut LinkEvents,
    publish: &mut Publish,
    stop: &CancellationToken,
) -> Result<()> {
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    let mut last_print = Instant::now();
    let mut batch: Vec<LinkEvent> = Vec::with_capacity(1024);
    let mut last_status = Instant::now() - STATUS_EVERY;
    loop {
        let mut ticked = false;
        tokio::select! {
            _ = stop.cancelled() => return Ok(()),
            more = events.recv_many(&mut batch) => {
                if !more {
                    return Ok(());
                }
                let assembler = &mut publish.assembler;
                applier
                    .apply_batch(&mut batch, |reason| {
                        events::SourceReconnecting { reason }.emit();
                        assembler.reconnecting(reason);
                    })
                    .await?;
            },
            _ = tick.tick() => ticked = true,
        }
        if let Some(a) = applier.applied() {
            link.applied(a);
        }
        if let Some(e) = applier.writer_error() {
            return Err(anyhow::Error::new(e).context("target cluster"));
        }
        if !ticked && last_status.elapsed() < STATUS_EVERY {
            continue;
        }
        last_status = Instant::now();
        let st = publish.snapshot(link, applier);
        // The TTL hold's fix-up runs from here once the stream caught up.
        applier
            .progress(
                st.snapshot.percent,
                st.lag_seconds,
                st.source_offset.or(st.received_offset),
            )
            .await?;
        if publish.print_line && last_print.elapsed() >= Duration::from_secs(1) {
            last_print = Instant::now();
            println!("{}", st.line());
        }
    }
}

//! The source watcher of a cluster source ([`crate::source_watch`]) wired
//! to the shard pipelines: every selected shard's [`SlotGate`] and link.
//!
//! ```text
//! shards.json before this start (ranges when last seen) ─┐
//! shards.json now (names, node ids, ranges now)  ────────┼─▶ KnownShard per shard
//! selected shards (source.partition)             ────────┘   (followed = selected)
//! Gate(shard, slots)   -> gate.set_ranges(slots)
//! Resync(shard)        -> link.resync(reason); shards.json: the shard's ranges := its gate's
//! ```
//!
//! A shard that gained slots while ferry was stopped is resynced once the
//! source is quiet: its recorded ranges (from the previous start) lack
//! them. Recording the ranges when a resync is requested keeps the next
//! start from resyncing the same gain again.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ferry_ops::{KnownShard, ShardRecord, SlotGate, SlotSet};
use ferry_replica::LinkHandle;

use crate::config::{Config, parse_endpoint};
use crate::source_watch::{ShardControl, WatchConfig};

/// Poll period of the watcher.
const INTERVAL: Duration = Duration::from_secs(1);
/// Bound on each connect and reply of a poll.
const TIMEOUT: Duration = Duration::from_secs(3);

/// One shard pipeline the watcher drives.
pub struct Driven {
    /// The shard's gate.
    pub gate: Arc<SlotGate>,
    /// Its link.
    pub link: LinkHandle,
}

/// [`ShardControl`] over the running pipelines.
pub struct Control {
    shards: HashMap<String, Driven>,
    record: Mutex<ShardRecord>,
    state_dir: PathBuf,
    slots: Mutex<HashMap<String, SlotSet>>,
}

impl Control {
    /// The pipelines by shard name, and the record saved at this start.
    pub fn new(
        shards: HashMap<String, Driven>,
        record: ShardRecord,
        state_dir: PathBuf,
    ) -> Control {
        Control {
            shards,
            record: Mutex::new(record),
            state_dir,
            slots: Mutex::new(HashMap::new()),
        }
    }
}

impl ShardControl for Control {
    fn set_slots(&self, shard: &str, slots: &SlotSet) {
        if let Some(d) = self.shards.get(shard) {
            d.gate.set_ranges(&slots.ranges());
        }
        self.slots
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(shard.to_owned(), slots.clone());
    }

    fn resync(&self, shard: &str, reason: &str) {
        let Some(d) = self.shards.get(shard) else {
            return;
        };
        d.link.resync(reason.to_owned());
        let ranges = self
            .slots
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(shard)
            .map(SlotSet::ranges);
        let mut record = self.record.lock().unwrap_or_else(|e| e.into_inner());
        if let (Some(r), Some(ranges)) =
            (record.shards.iter_mut().find(|r| r.name == shard), ranges)
        {
            r.ranges = ranges;
            if let Err(e) = super::cluster::save_record(&self.state_dir, &record) {
                tracing::warn!(shard, error = %e, "shards.json not updated after a resync request (the next start resyncs the shard again)");
            }
        }
    }
}

/// The watcher's view of every shard of the source: `before` is the
/// record as this start found it, `now` as reconciled with the source.
pub fn known_shards(
    before: Option<&ShardRecord>,
    now: &ShardRecord,
    selected: &[String],
) -> Vec<KnownShard> {
    now.shards
        .iter()
        .map(|r| {
            let last = before
                .and_then(|b| b.shards.iter().find(|o| o.name == r.name))
                .map_or(&r.ranges, |o| &o.ranges);
            KnownShard {
                name: r.name.clone(),
                node_ids: r.nodes.clone(),
                slots: SlotSet::from_ranges(last),
                followed: selected.contains(&r.name),
            }
        })
        .collect()
}

/// How the watcher reaches the source: the configured node first, then
/// `seeds` (every node discovered at start).
pub fn watch_config(cfg: &Config, seeds: Vec<String>) -> anyhow::Result<WatchConfig> {
    let src = parse_endpoint(&cfg.source.url)?;
    let mut all = vec![src.addr()];
    all.extend(seeds.into_iter().filter(|s| *s != src.addr()));
    Ok(WatchConfig {
        seeds: all,
        auth: src.auth,
        tls: cfg.source.tls_config(),
        interval: INTERVAL,
        timeout: TIMEOUT,
    })
}

#[cfg(test)]
mod tests {
    use ferry_ops::RecordedShard;
    use ferry_ops::source_shards::SHARDS_FORMAT;

    use super::*;

    fn rec(shards: &[(&str, &[(u16, u16)])]) -> ShardRecord {
        ShardRecord {
            format: SHARDS_FORMAT.into(),
            partition: None,
            shards: shards
                .iter()
                .map(|(n, r)| RecordedShard {
                    name: (*n).into(),
                    ranges: r.to_vec(),
                    nodes: vec![format!("{n}-id")],
                    addrs: Vec::new(),
                })
                .collect(),
        }
    }

    #[test]
    fn known_shards_start_from_the_ranges_of_the_previous_start() {
        let before = rec(&[("shard-0", &[(0, 5460)]), ("shard-5461", &[(5461, 16383)])]);
        let now = rec(&[
            ("shard-0", &[(0, 6000)]),
            ("shard-5461", &[(6001, 16383)]),
            ("shard-x", &[]),
        ]);
        let k = known_shards(Some(&before), &now, &["shard-0".into()]);
        assert_eq!(k.len(), 3);
        assert_eq!(k[0].slots.to_string(), "0-5460", "gain while stopped kept");
        assert!(k[0].followed && !k[1].followed);
        assert_eq!(k[1].node_ids, ["shard-5461-id"]);
        assert_eq!(k[2].slots.to_string(), "-");
        let first = known_shards(None, &now, &[]);
        assert_eq!(
            first[0].slots.to_string(),
            "0-6000",
            "first start: nothing gained"
        );
    }
}

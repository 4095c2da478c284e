//! The watcher against real source clusters: a `redis-cli --cluster
//! reshard` (Redis 7.0) and an atomic slot migration (Valkey 9) end in
//! the new gates and exactly one resync of the gaining shard.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ferry_ops::{SlotSet, SourceWatch};
use ferry_testkit::{Cluster, Flavor};
use tokio_util::sync::CancellationToken;

use super::*;

#[derive(Default)]
struct Recorder {
    gates: Mutex<HashMap<String, String>>,
    resyncs: Mutex<Vec<(String, String)>>,
}

impl ShardControl for Recorder {
    fn set_slots(&self, shard: &str, slots: &SlotSet) {
        self.gates
            .lock()
            .unwrap()
            .insert(shard.to_owned(), slots.to_string());
    }
    fn resync(&self, shard: &str, reason: &str) {
        self.resyncs
            .lock()
            .unwrap()
            .push((shard.to_owned(), reason.to_owned()));
    }
}

async fn wait_for(what: &str, timeout: Duration, mut ok: impl FnMut() -> bool) {
    let start = Instant::now();
    while !ok() {
        assert!(start.elapsed() < timeout, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

const SETTLE: Duration = Duration::from_secs(2);

async fn moved_slots_resync_the_gaining_shard(flavor: Flavor, atomic: bool) {
    let cluster = Arc::new(Cluster::start(flavor, 3).unwrap_or_else(|e| panic!("{e}")));
    let rec = Arc::new(Recorder::default());
    let status = Arc::new(WatchStatus::default());
    let cancel = CancellationToken::new();
    let config = WatchConfig {
        // A dead seed first: the watcher moves on to the next one.
        seeds: vec!["127.0.0.1:1".into(), cluster.nodes[0].addr()],
        auth: Auth::default(),
        tls: None,
        interval: Duration::from_millis(200),
        timeout: Duration::from_secs(2),
    };
    let task = tokio::spawn(run(
        config,
        SourceWatch::new(SETTLE),
        rec.clone(),
        status.clone(),
        cancel.clone(),
    ));
    wait_for("3 gates", Duration::from_secs(10), || {
        rec.gates.lock().unwrap().len() == 3
    })
    .await;
    let from = cluster.master_of_slot(0).unwrap();
    let to = cluster.master_of_slot(16383).unwrap();
    let c = cluster.clone();
    let mover = tokio::task::spawn_blocking(move || {
        if atomic {
            c.migrate_slots_atomic(from, to, 0, 999, Duration::from_secs(120))
        } else {
            c.reshard(from, to, 1000, Duration::from_secs(120))
                .map(drop)
        }
    });
    let mut saw_resharding = false;
    while !mover.is_finished() {
        saw_resharding |= status.resharding();
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    mover.await.unwrap().unwrap_or_else(|e| panic!("{e}"));
    wait_for("one resync", Duration::from_secs(30), || {
        saw_resharding |= status.resharding();
        !rec.resyncs.lock().unwrap().is_empty()
    })
    .await;
    assert!(saw_resharding, "resharding was never reported");
    tokio::time::sleep(SETTLE + Duration::from_secs(1)).await;
    let resyncs = rec.resyncs.lock().unwrap().clone();
    assert_eq!(resyncs.len(), 1, "{resyncs:?}");
    assert_eq!(resyncs[0].0, "shard-10923");
    assert!(resyncs[0].1.ends_with("gained slots 0-999"), "{resyncs:?}");
    let gates = rec.gates.lock().unwrap().clone();
    assert_eq!(gates["shard-0"], "1000-5460");
    assert_eq!(gates["shard-5461"], "5461-10922");
    assert_eq!(gates["shard-10923"], "0-999,10923-16383");
    assert!(!status.resharding());
    assert!(status.pending().is_empty() && status.unfollowed().is_empty());
    assert_eq!(status.resyncs(), 1);
    cancel.cancel();
    task.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis70_reshard_is_followed() {
    moved_slots_resync_the_gaining_shard(Flavor::Redis70, false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn valkey9_atomic_migration_is_followed() {
    moved_slots_resync_the_gaining_shard(Flavor::Valkey9, true).await;
}

//! `ClusterWriter::delete_slots` / `keys_in_slots` (what replaces
//! `FLUSHALL` for one shard of a cluster source) against a real 3-master
//! cluster and a standalone server: every key of the given slots goes,
//! more than one `GETKEYSINSLOT` batch per slot included; keys of other
//! slots and keys `keep` protects stay.

use std::time::Duration;

use ferry_cluster::{ClusterWriter, TargetMode, WriterConfig};
use ferry_ops::key_slot;
use ferry_testkit::{Cluster, Flavor, Server};

const FLAVOR: Flavor = Flavor::Redis70;
const BOUND: Duration = Duration::from_secs(60);

/// Keys `k:0..n`, plus 2500 keys of one slot (`{big}:i`: more than one
/// batch of 1000), plus a reserved key in the same slot.
fn keys(n: usize) -> Vec<String> {
    let mut out: Vec<String> = (0..n).map(|i| format!("k:{i}")).collect();
    out.extend((0..2500).map(|i| format!("{{big}}:{i}")));
    out.push("__ferry:ckpt:shard-0:{big}".into());
    out
}

/// The slots deleted: 0..=5460 plus the slot of `{big}`.
fn doomed(slot: u16) -> bool {
    slot <= 5460 || slot == key_slot(b"{big}")
}

fn keep(k: &[u8]) -> bool {
    ferry_ops::is_reserved(k)
}

async fn check(w: &mut ClusterWriter, exists: impl Fn(&str) -> bool, all: &[String]) {
    let slots: Vec<u16> = (0..ferry_ops::SLOTS).filter(|s| doomed(*s)).collect();
    let before = tokio::time::timeout(BOUND, w.keys_in_slots(&slots, &keep))
        .await
        .expect("in time")
        .expect("keys_in_slots");
    assert!(before > 0);
    let deleted = tokio::time::timeout(BOUND, w.delete_slots(&slots, 7, &keep))
        .await
        .expect("in time")
        .expect("delete_slots");
    let want: usize = all
        .iter()
        .filter(|k| doomed(key_slot(k.as_bytes())) && !keep(k.as_bytes()))
        .count();
    assert_eq!(deleted, want as u64);
    for k in all {
        let gone = doomed(key_slot(k.as_bytes())) && !keep(k.as_bytes());
        assert_eq!(exists(k), !gone, "{k}");
    }
    let after = w.keys_in_slots(&slots, &keep).await.expect("keys_in_slots");
    assert_eq!(after, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deletes_every_key_of_the_slots_on_a_cluster() {
    let cluster = Cluster::start(FLAVOR, 3).expect("cluster");
    let all = keys(3000);
    for k in &all {
        let node = cluster.node_for_key(k.as_bytes());
        let _: () = redis::cmd("SET")
            .arg(k)
            .arg(1)
            .query(&mut node.conn())
            .expect("SET");
    }
    let mut w = ClusterWriter::connect_with(&cluster.seed_url(), WriterConfig::default())
        .await
        .expect("writer");
    let exists = |k: &str| {
        let n: i64 = redis::cmd("EXISTS")
            .arg(k)
            .query(&mut cluster.node_for_key(k.as_bytes()).conn())
            .expect("EXISTS");
        n == 1
    };
    check(&mut w, exists, &all).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deletes_every_key_of_the_slots_on_a_standalone_server() {
    let server = Server::start(FLAVOR).expect("server");
    let all = keys(3000);
    let mut c = server.conn();
    for k in &all {
        let _: () = redis::cmd("SET").arg(k).arg(1).query(&mut c).expect("SET");
    }
    let config = WriterConfig {
        mode: TargetMode::Standalone,
        ..WriterConfig::default()
    };
    let mut w = ClusterWriter::connect_with(&server.url(), config)
        .await
        .expect("writer");
    let exists = |k: &str| {
        let n: i64 = redis::cmd("EXISTS")
            .arg(k)
            .query(&mut server.conn())
            .expect("EXISTS");
        n == 1
    };
    check(&mut w, exists, &all).await;
}

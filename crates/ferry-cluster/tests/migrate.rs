//! A slot migrated by hand while the writer writes into it: ASK during the
//! migration window, MOVED after it; nothing lost, nothing reordered.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::{get_all, op};
use ferry_cluster::{CheckpointConfig, ClusterWriter, WriterConfig};
use ferry_ops::key_slot;
use ferry_testkit::{Cluster, Flavor};

const BOUND: Duration = Duration::from_secs(60);

fn cmd(server: &ferry_testkit::Server, args: &[&str]) -> redis::Value {
    let mut c = redis::cmd(args[0]);
    for a in &args[1..] {
        c.arg(*a);
    }
    c.query(&mut server.conn())
        .unwrap_or_else(|e| panic!("{} {args:?}: {e}", server.addr()))
}

fn text(v: redis::Value) -> String {
    match v {
        redis::Value::BulkString(b) => String::from_utf8(b).unwrap(),
        redis::Value::SimpleString(s) => s,
        other => panic!("{other:?}"),
    }
}

/// Moves `slot` from `from` to `to` the way `redis-cli --cluster reshard`
/// does, slowly (batches of 20 keys, 20 ms apart) so writes hit the window.
fn migrate(cluster: &Cluster, slot: u16, from: usize, to: usize) {
    let (src, dst) = (&cluster.nodes[from], &cluster.nodes[to]);
    let src_id = text(cmd(src, &["CLUSTER", "MYID"]));
    let dst_id = text(cmd(dst, &["CLUSTER", "MYID"]));
    let s = slot.to_string();
    cmd(dst, &["CLUSTER", "SETSLOT", &s, "IMPORTING", &src_id]);
    cmd(src, &["CLUSTER", "SETSLOT", &s, "MIGRATING", &dst_id]);
    std::thread::sleep(Duration::from_millis(200));
    let start = Instant::now();
    loop {
        assert!(start.elapsed() < BOUND, "migration did not finish");
        let keys: Vec<String> = redis::cmd("CLUSTER")
            .arg("GETKEYSINSLOT")
            .arg(slot)
            .arg(20)
            .query(&mut src.conn())
            .unwrap();
        if keys.is_empty() {
            break;
        }
        let mut m = redis::cmd("MIGRATE");
        m.arg("127.0.0.1")
            .arg(dst.port())
            .arg("")
            .arg(0)
            .arg(5000)
            .arg("KEYS")
            .arg(&keys);
        let _: redis::Value = m.query(&mut src.conn()).unwrap();
        std::thread::sleep(Duration::from_millis(20));
    }
    // Target first, then source, then the others (as redis-cli does).
    cmd(dst, &["CLUSTER", "SETSLOT", &s, "NODE", &dst_id]);
    cmd(src, &["CLUSTER", "SETSLOT", &s, "NODE", &dst_id]);
    for (i, n) in cluster.nodes.iter().enumerate() {
        if i != from && i != to {
            cmd(n, &["CLUSTER", "SETSLOT", &s, "NODE", &dst_id]);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_slot_migrated_mid_stream_loses_and_reorders_nothing() {
    migrated_mid_stream(false).await;
}

/// The same with per-slot transactions and checkpoints: a transaction
/// refused with ASK waits for the migration's end and commits whole on the
/// new owner.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_slot_migrated_mid_stream_with_checkpoints_loses_and_reorders_nothing() {
    migrated_mid_stream(true).await;
}

async fn migrated_mid_stream(checkpoints: bool) {
    let _guard = common::LOCK.lock().await;
    let cluster = Cluster::shared(Flavor::Redis70);
    cluster.flushall();
    let slot = key_slot(b"{mig}");
    let map = cluster.slot_map();
    let owner_port = map
        .iter()
        .find(|(lo, hi, _)| (*lo..=*hi).contains(&slot))
        .unwrap()
        .2;
    let from = cluster
        .nodes
        .iter()
        .position(|n| n.port() == owner_port)
        .unwrap();
    let to = (from + 1) % cluster.nodes.len();

    let config = WriterConfig {
        checkpoint: checkpoints.then(CheckpointConfig::default),
        ..WriterConfig::default()
    };
    let mut w = ClusterWriter::connect_with(&cluster.seed_url(), config)
        .await
        .unwrap();
    let done = Arc::new(AtomicBool::new(false));
    // Some keys exist before the migration starts.
    for i in 0..500u64 {
        let k = format!("{{mig}}:old:{i}");
        w.submit(op(&[b"SET", k.as_bytes(), b"x"], i))
            .await
            .unwrap();
    }
    for i in 0..100u64 {
        let k = format!("{{mig}}:p:{i}");
        w.submit(op(&[b"SET", k.as_bytes(), b"x"], 500))
            .await
            .unwrap();
    }
    w.flush().await.unwrap();

    let migration = {
        let done = Arc::clone(&done);
        tokio::task::spawn_blocking(move || {
            migrate(Cluster::shared(Flavor::Redis70), slot, from, to);
            done.store(true, Ordering::SeqCst);
        })
    };
    let mut offset = 1000u64;
    let mut n = 0u64;
    let mut after = 0u64;
    let start = Instant::now();
    while after < 2000 {
        assert!(start.elapsed() < BOUND, "writes did not finish");
        offset += 1;
        let v = n.to_string();
        let set_key = format!("{{mig}}:k:{n}");
        w.submit(op(&[b"SET", set_key.as_bytes(), v.as_bytes()], offset))
            .await
            .unwrap();
        w.submit(op(&[b"RPUSH", b"{mig}:list", v.as_bytes()], offset))
            .await
            .unwrap();
        let old = format!("{{mig}}:old:{}", n % 500);
        w.submit(op(&[b"APPEND", old.as_bytes(), b"y"], offset))
            .await
            .unwrap();
        // Multi-key, one key old (migrating) and one new: TRYAGAIN while
        // the two are on different sides.
        let (p, q) = (format!("{{mig}}:p:{}", n % 100), format!("{{mig}}:q:{n}"));
        w.submit(op(
            &[
                b"MSET",
                p.as_bytes(),
                v.as_bytes(),
                q.as_bytes(),
                v.as_bytes(),
            ],
            offset,
        ))
        .await
        .unwrap();
        let other = format!("other:{n}");
        w.submit(op(&[b"SET", other.as_bytes(), v.as_bytes()], offset))
            .await
            .unwrap();
        n += 1;
        if n % 20 == 0 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        if done.load(Ordering::SeqCst) {
            after += 1;
        }
    }
    tokio::time::timeout(BOUND, w.flush())
        .await
        .expect("flush in time")
        .unwrap();
    migration.await.unwrap();
    let stats = w.stats();
    eprintln!("{n} rounds, {stats:?}");
    assert_eq!(w.applied_offset(), offset);
    assert!(stats.moved >= 1, "{stats:?}");
    assert!(stats.ask >= 1, "{stats:?}");
    if !checkpoints {
        assert!(stats.retries >= 1, "TRYAGAIN seen: {stats:?}");
    }

    // The slot now lives on `to`, with everything in order.
    let dst = &cluster.nodes[to];
    let list: Vec<u64> = redis::cmd("LRANGE")
        .arg("{mig}:list")
        .arg(0)
        .arg(-1)
        .query(&mut dst.conn())
        .unwrap();
    assert_eq!(list, (0..n).collect::<Vec<_>>());
    let mut keys: Vec<String> = (0..n).map(|i| format!("{{mig}}:k:{i}")).collect();
    keys.extend((0..n).map(|i| format!("other:{i}")));
    keys.extend((0..n).map(|i| format!("{{mig}}:q:{i}")));
    keys.extend((0..100).map(|i| format!("{{mig}}:p:{i}")));
    let got = get_all(cluster, &keys);
    for i in 0..n {
        for k in [format!("{{mig}}:k:{i}"), format!("other:{i}")] {
            assert_eq!(got[&k].as_deref(), Some(i.to_string().as_str()), "{k}");
        }
    }
    for i in 0..n {
        let k = format!("{{mig}}:q:{i}");
        assert_eq!(got[&k].as_deref(), Some(i.to_string().as_str()), "{k}");
    }
    for i in 0..100 {
        let last = (0..n).rev().find(|r| r % 100 == i).unwrap();
        let k = format!("{{mig}}:p:{i}");
        assert_eq!(got[&k].as_deref(), Some(last.to_string().as_str()), "{k}");
    }
    // APPEND is not idempotent: each old key got exactly its share of "y".
    let olds: Vec<String> = (0..500).map(|i| format!("{{mig}}:old:{i}")).collect();
    let got = get_all(cluster, &olds);
    for i in 0..500u64 {
        let appends = (0..n).filter(|r| r % 500 == i).count();
        let want = format!("x{}", "y".repeat(appends));
        assert_eq!(got[&olds[i as usize]].as_deref(), Some(want.as_str()));
    }
    w.close().await.unwrap();
}

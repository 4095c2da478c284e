//! The cluster writer across a live reshard: `redis-cli --cluster reshard`
//! moves 2000 slots (keys included, by `MIGRATE`) from one master to
//! another of a real Redis 7.0 3-master cluster while the writer replays a
//! paced stream of per-key ordered writes: `RPUSH l:<k> <n>` (n counting up
//! per list) over 2000 lists and `INCR c:<k>` over 200 counters. When the
//! reshard is done and the writer flushed, every list must be exactly
//! 0, 1, ..., n-1 (no loss, no duplicate, no reordering) and every counter
//! must equal the number of INCRs sent; the writer must have followed
//! redirects and never failed.
//!
//! Bounded: the load stops at 3M ops or 90 s, the reshard is killed after
//! 120 s.

mod common;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::op;
use ferry_cluster::{ClusterWriter, WriterConfig};
use ferry_ops::key_slot;
use ferry_testkit::{Cluster, Flavor, Server, run_bounded};

const FLAVOR: Flavor = Flavor::Redis70;
const LISTS: u64 = 2000;
const COUNTERS: u64 = 200;
const SLOTS_MOVED: u32 = 2000;
/// Bounds on the load.
const MAX_OPS: u64 = 3_000_000;
const LOAD_BOUND: Duration = Duration::from_secs(90);
/// Bound on the reshard.
const RESHARD_BOUND: Duration = Duration::from_secs(120);

fn my_id(server: &Server) -> String {
    redis::cmd("CLUSTER")
        .arg("MYID")
        .query(&mut server.conn())
        .expect("CLUSTER MYID")
}

fn slots_of(cluster: &Cluster, port: u16) -> u32 {
    cluster
        .slot_map()
        .iter()
        .filter(|(_, _, p)| *p == port)
        .map(|(lo, hi, _)| u32::from(hi - lo) + 1)
        .sum()
}

/// The server of `cluster` that serves `key` now.
fn owner<'a>(cluster: &'a Cluster, map: &[(u16, u16, u16)], key: &str) -> &'a Server {
    let slot = key_slot(key.as_bytes());
    let port = map
        .iter()
        .find(|(lo, hi, _)| (*lo..=*hi).contains(&slot))
        .map(|(_, _, p)| *p)
        .expect("slot served");
    cluster
        .nodes
        .iter()
        .find(|n| n.port() == port)
        .expect("known port")
}

/// The generated stream: per list the next value, per counter the INCRs
/// sent, and the last offset.
struct Load {
    next: Vec<u64>,
    incrs: Vec<u64>,
    offset: u64,
}

impl Load {
    /// Submits `n` RPUSHes (round robin over the lists) and an INCR every
    /// fifth op.
    async fn batch(&mut self, w: &mut ClusterWriter, n: u64) {
        for _ in 0..n {
            self.offset += 1;
            let k = self.offset % LISTS;
            let v = self.next[k as usize];
            self.next[k as usize] += 1;
            let key = format!("l:{k}");
            w.submit(op(
                &[b"RPUSH", key.as_bytes(), v.to_string().as_bytes()],
                self.offset,
            ))
            .await
            .expect("submit");
            if self.offset % 5 == 0 {
                let c = self.offset % COUNTERS;
                self.incrs[c as usize] += 1;
                let key = format!("c:{c}");
                w.submit(op(&[b"INCR", key.as_bytes()], self.offset))
                    .await
                    .expect("submit");
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn per_key_order_survives_a_live_reshard_of_2000_slots() {
    let cluster = Cluster::start(FLAVOR, 3).expect("cluster");
    let (from, to) = (&cluster.nodes[0], &cluster.nodes[1]);
    let (from_slots, to_slots) = (
        slots_of(&cluster, from.port()),
        slots_of(&cluster, to.port()),
    );
    let mut w = ClusterWriter::connect_with(&cluster.seed_url(), WriterConfig::default())
        .await
        .expect("connect");

    // Some data in every list before the reshard starts, so MIGRATE has
    // keys to move while they are being written.
    let mut load = Load {
        next: vec![0; LISTS as usize],
        incrs: vec![0; COUNTERS as usize],
        offset: 0,
    };
    load.batch(&mut w, 20 * LISTS).await;
    w.flush().await.expect("flush before the reshard");

    let done = Arc::new(AtomicBool::new(false));
    let reshard = {
        let (seed, from_id, to_id) = (from.addr(), my_id(from), my_id(to));
        let done = Arc::clone(&done);
        std::thread::spawn(move || {
            let mut cmd = std::process::Command::new(Flavor::cli_binary().expect("redis-cli"));
            cmd.args(["--cluster", "reshard", &seed]);
            cmd.args(["--cluster-from", &from_id, "--cluster-to", &to_id]);
            cmd.args(["--cluster-slots", &SLOTS_MOVED.to_string(), "--cluster-yes"]);
            let started = Instant::now();
            let result = run_bounded(&mut cmd, RESHARD_BOUND);
            done.store(true, Ordering::Release);
            (result, started.elapsed())
        })
    };

    // The load, paced (about 100k ops/s at most), until the reshard is done.
    let start = Instant::now();
    while !done.load(Ordering::Acquire) && start.elapsed() < LOAD_BOUND && load.offset < MAX_OPS {
        load.batch(&mut w, 1000).await;
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // A little more after it, on the new map.
    load.batch(&mut w, 10 * LISTS).await;
    let sent = load.offset;
    tokio::time::timeout(Duration::from_secs(60), w.flush())
        .await
        .expect("flush in time")
        .expect("flush: the writer never failed");
    let (result, took) = reshard.join().expect("reshard thread");
    let output = result.expect("redis-cli --cluster reshard");
    let stats = w.stats();
    eprintln!(
        "reshard of {SLOTS_MOVED} slots took {:.1} s; {sent} ops, writer {stats:?}",
        took.as_secs_f64()
    );
    assert!(
        output.contains("Moving slot"),
        "reshard did not move slots: {output}"
    );
    cluster
        .wait_converged(Duration::from_secs(30))
        .expect("converged after the reshard");
    assert_eq!(slots_of(&cluster, from.port()), from_slots - SLOTS_MOVED);
    assert_eq!(slots_of(&cluster, to.port()), to_slots + SLOTS_MOVED);
    assert!(
        stats.moved + stats.ask > 0,
        "the writer saw no redirect: {stats:?}"
    );
    assert_eq!(w.applied_offset(), load.offset);

    // Every list exactly 0..n, every counter exact.
    let map = cluster.slot_map();
    let mut per_node: HashMap<u16, Vec<String>> = HashMap::new();
    for k in 0..LISTS {
        let key = format!("l:{k}");
        per_node
            .entry(owner(&cluster, &map, &key).port())
            .or_default()
            .push(key);
    }
    let mut checked = 0;
    for (port, keys) in per_node {
        let node = cluster.nodes.iter().find(|n| n.port() == port).unwrap();
        let mut conn = node.conn();
        for chunk in keys.chunks(100) {
            let mut pipe = redis::pipe();
            for key in chunk {
                pipe.cmd("LRANGE").arg(key).arg(0).arg(-1);
            }
            let lists: Vec<Vec<u64>> = pipe.query(&mut conn).expect("LRANGE");
            for (key, list) in chunk.iter().zip(lists) {
                let k: usize = key[2..].parse().unwrap();
                let want: Vec<u64> = (0..load.next[k]).collect();
                if list != want {
                    let first_bad = list.iter().zip(&want).position(|(a, b)| a != b);
                    panic!(
                        "{key}: {} values, want {}; first difference at {first_bad:?}",
                        list.len(),
                        want.len()
                    );
                }
                checked += 1;
            }
        }
    }
    assert_eq!(checked, LISTS);
    for c in 0..COUNTERS {
        let key = format!("c:{c}");
        let got: Option<u64> = redis::cmd("GET")
            .arg(&key)
            .query(&mut owner(&cluster, &map, &key).conn())
            .expect("GET");
        assert_eq!(got.unwrap_or(0), load.incrs[c as usize], "{key}");
    }
    w.close().await.expect("close");
}

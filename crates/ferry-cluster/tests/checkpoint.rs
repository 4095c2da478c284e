//! Per-master checkpoints and resume, against a real 3-master Redis 7.0
//! cluster.

mod common;

use std::collections::BTreeMap;
use std::hash::{BuildHasher, RandomState};
use std::time::{Duration, Instant};

use common::{LOCK, node_for, op};
use ferry_cluster::{CheckpointConfig, ClusterWriter, Op, WriterConfig};
use ferry_testkit::{Cluster, Flavor};

const FLAVOR: Flavor = Flavor::Redis70;
const TEST_BOUND: Duration = Duration::from_secs(60);
/// Source commands; each is an `INCR` and an `RPUSH` sharing one offset.
const N: u64 = 30_000;
const COUNTERS: u64 = 100;
const LISTS: u64 = 20;

fn offset(i: u64) -> u64 {
    1_000 + 10 * i
}

fn ctr(i: u64) -> String {
    format!("ctr:{{{}}}", i % COUNTERS)
}

fn list(i: u64) -> String {
    format!("l:{{{}}}", i % LISTS)
}

/// The two ops of source command `i`.
fn ops(i: u64) -> [Op; 2] {
    let (c, l, v) = (ctr(i), list(i), i.to_string());
    [
        op(&[b"INCR", c.as_bytes()], offset(i)),
        op(&[b"RPUSH", l.as_bytes(), v.as_bytes()], offset(i)),
    ]
}

fn config(every: Duration, skip: bool) -> WriterConfig {
    WriterConfig {
        checkpoint: Some(CheckpointConfig {
            every,
            ..CheckpointConfig::default()
        }),
        skip_applied: skip,
        ..WriterConfig::default()
    }
}

async fn writer(cluster: &Cluster, config: WriterConfig) -> ClusterWriter {
    tokio::time::timeout(
        TEST_BOUND,
        ClusterWriter::connect_with(&cluster.seed_url(), config),
    )
    .await
    .expect("connect in time")
    .expect("connect")
}

fn random(below: u64) -> u64 {
    RandomState::new().hash_one(Instant::now()) % below
}

/// The checkpoint of the master serving `key` (0 if it has none).
fn owner_checkpoint(cluster: &Cluster, ckpts: &BTreeMap<String, u64>, key: &str) -> u64 {
    let port = node_for(cluster, key).port();
    ckpts
        .iter()
        .find(|(addr, _)| addr.ends_with(&format!(":{port}")))
        .map_or(0, |(_, v)| *v)
}

/// Runs a writer with checkpoints in its own runtime, submits commands
/// `0..k`, waits `linger`, then drops the runtime: the engine and its
/// connections die wherever they are, as in `kill -9`.
fn crash_after(cluster: &Cluster, k: u64, every: Duration, linger: Duration) {
    let seed = cluster.seed_url();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let mut w = ClusterWriter::connect_with(&seed, config(every, false))
                .await
                .unwrap();
            for i in 0..k {
                for o in ops(i) {
                    w.submit(o).await.unwrap();
                }
            }
            tokio::time::sleep(linger).await;
            std::mem::forget(w);
        });
        // Drop every task (engine, pipelines) where it stands.
        rt.shutdown_timeout(Duration::from_secs(5));
    })
    .join()
    .unwrap();
    // What the old connections had already sent is executed by the nodes
    // before a restarted process would look (as after a real kill -9).
    std::thread::sleep(Duration::from_millis(200));
}

/// (a) Crash at a random point, resume with `skip_applied` from
/// `min_checkpoint`, replay everything after it. Nothing may be lost and
/// nothing at or below a master's checkpoint may be applied twice; ops the
/// crashed writer applied after its last stored checkpoint are replayed
/// (at-least-once window, see the writer's module docs): counted and bounded.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn crash_then_resume_loses_nothing_and_replays_only_past_checkpoints() {
    let _guard = LOCK.lock().await;
    let cluster = Cluster::shared(FLAVOR);
    let mut total_dups = 0;
    let mut runs = Vec::new();
    for round in 0..3 {
        cluster.flushall();
        let k = N / 6 + random(N * 2 / 3);
        let linger = Duration::from_millis(random(40));
        let started = Instant::now();
        crash_after(cluster, k, Duration::from_millis(20), linger);
        let crashed = started.elapsed();

        let mut w = writer(cluster, config(Duration::from_millis(20), true)).await;
        let ckpts = w.checkpoints().clone();
        let min = w.min_checkpoint().unwrap_or(0);
        let resume = Instant::now();
        let run = async {
            for i in (0..N).filter(|&i| offset(i) > min) {
                for o in ops(i) {
                    w.submit(o).await.unwrap();
                }
            }
            w.flush().await.unwrap();
        };
        tokio::time::timeout(TEST_BOUND, run)
            .await
            .expect("replay in time");
        let resumed = resume.elapsed();
        assert_eq!(w.applied_offset(), offset(N - 1));
        let stats = w.stats();

        let mut dups = 0;
        for l in 0..LISTS {
            let key = list(l);
            let got: Vec<u64> = redis::cmd("LRANGE")
                .arg(&key)
                .arg(0)
                .arg(-1)
                .query(&mut node_for(cluster, &key).conn())
                .unwrap();
            let want: Vec<u64> = (0..N).filter(|i| i % LISTS == l).collect();
            let c = owner_checkpoint(cluster, &ckpts, &key);
            // The replay sends exactly want[q..]; before it, the node held a
            // prefix want[..p] with p >= q (nothing lost, nothing at or
            // below the checkpoint twice).
            let q = want
                .iter()
                .position(|&i| offset(i) > c)
                .unwrap_or(want.len());
            let tail = want.len() - q;
            assert!(
                got.len() >= want.len(),
                "{key}: lost ops ({} < {})",
                got.len(),
                want.len()
            );
            let (head, rest) = got.split_at(got.len() - tail);
            assert_eq!(rest, &want[q..], "{key}: replayed tail");
            assert!(head.len() >= q, "{key}: lost ops below checkpoint {c}");
            assert_eq!(head, &want[..head.len()], "{key}: applied prefix");
            // Only ops the crashed writer had submitted can be duplicates.
            assert!(head.iter().all(|&i| i < k), "{key}");
            dups += head.len() - q;
        }
        for j in 0..COUNTERS {
            let key = ctr(j);
            let got: u64 = redis::cmd("GET")
                .arg(&key)
                .query(&mut node_for(cluster, &key).conn())
                .unwrap();
            let want = (0..N).filter(|i| i % COUNTERS == j).count() as u64;
            let c = owner_checkpoint(cluster, &ckpts, &key);
            let window = (0..k)
                .filter(|i| i % COUNTERS == j && offset(*i) > c)
                .count() as u64;
            assert!(got >= want, "{key}: {got} < {want}: lost ops");
            assert!(got <= want + window, "{key}: {got} > {want} + {window}");
            dups += (got - want) as usize;
        }
        total_dups += dups;
        runs.push(format!(
            "round {round}: crash after {k} cmds (+{} ms linger, {} ms), checkpoints {ckpts:?}, \
             min {min}, resume replayed {} ops / skipped {} in {} ms, duplicates {dups}",
            linger.as_millis(),
            crashed.as_millis(),
            stats.acked,
            stats.skipped,
            resumed.as_millis()
        ));
        w.close().await.unwrap();
    }
    for r in &runs {
        eprintln!("{r}");
    }
    eprintln!("duplicates (ops applied after the last stored checkpoint): {total_dups}");
}

/// After a clean stop the checkpoints are exact: replaying the whole
/// stream from the start with `skip_applied` applies every command exactly
/// once. Also (b): one key per master, on that master, removable.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn clean_stop_then_full_replay_is_exactly_once_and_keys_live_on_their_node() {
    let _guard = LOCK.lock().await;
    let cluster = Cluster::shared(FLAVOR);
    cluster.flushall();
    let k = N / 3 + random(N / 3);
    let ping = |o| Op::all_masters(vec![bytes::Bytes::from_static(b"PING")], o);

    let mut w = writer(cluster, config(Duration::from_millis(200), false)).await;
    assert!(w.checkpoints().is_empty());
    assert_eq!(w.min_checkpoint(), None);
    let keys = w.checkpoint_keys().clone();
    assert_eq!(keys.len(), 3, "{keys:?}");
    let start = Instant::now();
    for i in 0..k {
        for o in ops(i) {
            w.submit(o).await.unwrap();
        }
        if i == k / 2 {
            w.submit(ping(offset(i))).await.unwrap();
        }
    }
    w.close().await.unwrap();
    let first = start.elapsed();

    // (b) every master has its key, on itself (a plain GET on that node
    // would answer MOVED otherwise), holding the last offset.
    for (addr, key) in &keys {
        let node = cluster
            .nodes
            .iter()
            .find(|n| n.addr() == *addr)
            .expect("a known master");
        let got: String = redis::cmd("GET")
            .arg(key)
            .query(&mut node.conn())
            .unwrap_or_else(|e| panic!("{key} on {addr}: {e}"));
        assert_eq!(got, offset(k - 1).to_string(), "{key} on {addr}");
        assert!(key.starts_with("ferry:ckpt:{"), "{key}");
    }

    let mut w = writer(cluster, config(Duration::from_millis(200), true)).await;
    assert_eq!(w.checkpoint_keys(), &keys);
    assert_eq!(w.checkpoints().len(), 3);
    assert!(w.checkpoints().values().all(|&v| v == offset(k - 1)));
    assert_eq!(w.min_checkpoint(), Some(offset(k - 1)));
    let start = Instant::now();
    for i in 0..N {
        for o in ops(i) {
            w.submit(o).await.unwrap();
        }
        if i == k / 2 || i == k + 1 {
            w.submit(ping(offset(i))).await.unwrap();
        }
    }
    w.flush().await.unwrap();
    let replay = start.elapsed();
    let stats = w.stats();
    assert_eq!(stats.skipped, 2 * k + 3, "{stats:?}");
    assert_eq!(stats.acked, 2 * (N - k) + 3, "{stats:?}");
    assert!(stats.checkpoints >= 3, "{stats:?}");
    assert_eq!(w.applied_offset(), offset(N - 1));

    for j in 0..COUNTERS {
        let key = ctr(j);
        let got: u64 = redis::cmd("GET")
            .arg(&key)
            .query(&mut node_for(cluster, &key).conn())
            .unwrap();
        assert_eq!(
            got,
            (0..N).filter(|i| i % COUNTERS == j).count() as u64,
            "{key}"
        );
    }
    for l in 0..LISTS {
        let key = list(l);
        let got: Vec<u64> = redis::cmd("LRANGE")
            .arg(&key)
            .arg(0)
            .arg(-1)
            .query(&mut node_for(cluster, &key).conn())
            .unwrap();
        let want: Vec<u64> = (0..N).filter(|i| i % LISTS == l).collect();
        assert_eq!(got, want, "{key}");
    }

    // Cleanup after cutover.
    assert_eq!(w.remove_checkpoints().await.unwrap(), 3);
    w.flush().await.unwrap();
    for (addr, key) in &keys {
        let node = cluster.nodes.iter().find(|n| n.addr() == *addr).unwrap();
        let n: u64 = redis::cmd("EXISTS")
            .arg(key)
            .query(&mut node.conn())
            .unwrap();
        assert_eq!(n, 0, "{key} on {addr}");
    }
    w.close().await.unwrap();
    let total: u64 = cluster
        .nodes
        .iter()
        .map(|n| redis::cmd("DBSIZE").query::<u64>(&mut n.conn()).unwrap())
        .sum();
    assert_eq!(total, COUNTERS + LISTS, "only user keys left");
    eprintln!(
        "clean stop: {k} cmds with checkpoints in {} ms; full replay of {N} cmds with skip in {} \
         ms; {stats:?}",
        first.as_millis(),
        replay.as_millis()
    );
}

/// A writer without checkpoint config writes no keys.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn no_checkpoint_config_writes_no_keys() {
    let _guard = LOCK.lock().await;
    let cluster = Cluster::shared(FLAVOR);
    cluster.flushall();
    let mut w = writer(cluster, WriterConfig::default()).await;
    for i in 0..1000 {
        for o in ops(i) {
            w.submit(o).await.unwrap();
        }
    }
    w.close().await.unwrap();
    let total: u64 = cluster
        .nodes
        .iter()
        .map(|n| redis::cmd("DBSIZE").query::<u64>(&mut n.conn()).unwrap())
        .sum();
    assert_eq!(total, COUNTERS + LISTS);
}

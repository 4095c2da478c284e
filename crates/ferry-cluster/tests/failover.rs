//! The cluster writer across a target failover, against a real Redis 7.0
//! cluster of 3 masters + 3 replicas (one per test, `cluster-node-timeout`
//! 1000 ms): a graceful `CLUSTER FAILOVER`, and a master killed so that its
//! replica is promoted. A stream of `RPUSH l:{i%50} i` and `SET k:i i` runs
//! through the writer the whole time; it must finish without error and
//! every list must stay in order.
//!
//! With a killed master, Redis itself may lose writes the master
//! acknowledged but had not yet replicated (asynchronous replication), and
//! ops it applied and replicated whose replies were lost with the
//! connection are sent again (duplicates). So that test asserts order only
//! (the first occurrences of the values of a list are increasing, and
//! every value is one that was written) and reports how many values were
//! lost or duplicated. The graceful failover waits for the replica to catch
//! up, so that test asserts exactly: no gap, no duplicate, every key.

mod common;

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::{get_all, op};
use ferry_cluster::{ClusterWriter, WriterConfig};
use ferry_testkit::{Cluster, Flavor, Server, port_of_slot, role};

const FLAVOR: Flavor = Flavor::Redis70;
/// Bound on each test, bring-up included.
const TEST_BOUND: Duration = Duration::from_secs(30);
const LISTS: u64 = 50;

/// 3 masters with `replicas` replicas each (`cluster-node-timeout`
/// 1000 ms), converged.
fn start_cluster(replicas: usize) -> Cluster {
    Cluster::start_with_replicas(FLAVOR, 3, replicas).expect("3 masters with replicas")
}

/// (master index, its replica's index), both other than node 0 (node 0
/// stays up: the tests read the slot map from it).
fn pick_pair(cluster: &Cluster) -> (usize, usize) {
    cluster
        .master_replica_pair()
        .expect("a master/replica pair without node 0")
}

/// Writes `RPUSH l:{i%50} i` + `SET k:i i` for i = 0, 1, ... until `stop`
/// (paced, so the stream spans the failover); returns how many i.
async fn write_stream(
    mut w: ClusterWriter,
    stop: Arc<AtomicBool>,
    count: Arc<AtomicU64>,
) -> (u64, ferry_cluster::WriterStats) {
    let mut i = 0u64;
    while !stop.load(Ordering::Relaxed) {
        for _ in 0..20 {
            let (l, k, v) = (
                format!("l:{{{}}}", i % LISTS),
                format!("k:{i}"),
                i.to_string(),
            );
            w.submit(op(&[b"RPUSH", l.as_bytes(), v.as_bytes()], i))
                .await
                .unwrap_or_else(|e| panic!("submit RPUSH {i}: {e}"));
            w.submit(op(&[b"SET", k.as_bytes(), v.as_bytes()], i))
                .await
                .unwrap_or_else(|e| panic!("submit SET {i}: {e}"));
            i += 1;
        }
        count.store(i, Ordering::Relaxed);
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    w.flush().await.unwrap_or_else(|e| panic!("flush: {e}"));
    let stats = w.stats();
    w.close().await.expect("close");
    (i, stats)
}

#[derive(Debug, Default)]
struct Report {
    lost: u64,
    duplicated: u64,
    out_of_order: Vec<String>,
    keys_missing: u64,
}

/// Checks every list and key after `n` writes.
fn check(cluster: &Cluster, n: u64) -> Report {
    let mut report = Report::default();
    let map = cluster.slot_map();
    for j in 0..LISTS {
        let key = format!("l:{{{j}}}");
        let slot = ferry_ops::key_slot(key.as_bytes());
        let port = port_of_slot(&map, slot).expect("slot served");
        let node = cluster
            .nodes
            .iter()
            .find(|n| n.port() == port)
            .expect("known");
        let values: Vec<u64> = redis::cmd("LRANGE")
            .arg(&key)
            .arg(0)
            .arg(-1)
            .query(&mut node.conn())
            .expect("LRANGE");
        let mut seen = HashSet::new();
        let mut max: Option<u64> = None;
        for v in values {
            if v % LISTS != j || v >= n {
                report.out_of_order.push(format!("{key}: stray value {v}"));
            } else if !seen.insert(v) {
                report.duplicated += 1;
            } else if max.is_some_and(|m| v < m) {
                report
                    .out_of_order
                    .push(format!("{key}: {v} first seen after {}", max.unwrap_or(0)));
            } else {
                max = Some(v);
            }
        }
        let expected = (0..n).filter(|i| i % LISTS == j).count() as u64;
        report.lost += expected - seen.len() as u64;
    }
    let keys: Vec<String> = (0..n).map(|i| format!("k:{i}")).collect();
    let got = get_all(cluster, &keys);
    for (i, k) in keys.iter().enumerate() {
        if got[k].as_deref() != Some(i.to_string().as_str()) {
            report.keys_missing += 1;
        }
    }
    report
}

/// How the writer commits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Plain pipelined ops.
    Plain,
    /// Per-slot transactions with checkpoints.
    Checkpoints,
    /// Checkpoints, and ops acknowledged only once `WAIT 1` confirms them.
    WaitReplicas,
}

fn config(mode: Mode) -> WriterConfig {
    WriterConfig {
        checkpoint: (mode != Mode::Plain).then(ferry_cluster::CheckpointConfig::default),
        wait_replicas: (mode == Mode::WaitReplicas).then_some(Duration::from_millis(100)),
        connect_timeout: Duration::from_secs(1),
        reconnect_for: Duration::from_secs(15),
        retry_for: Duration::from_secs(15),
        backoff_max: Duration::from_millis(200),
        ..WriterConfig::default()
    }
}

/// Runs the stream, calls `fail` once some writes are in, waits for
/// `recovered`, lets the stream run 500 ms more, and checks.
async fn run(
    cluster: Cluster,
    mode: Mode,
    fail: impl FnOnce(&mut Cluster) + Send + 'static,
    recovered: impl Fn(&Cluster) -> bool + Send + 'static,
) -> (Cluster, u64, ferry_cluster::WriterStats) {
    let w = ClusterWriter::connect_with(&cluster.seed_url(), config(mode))
        .await
        .expect("connect");
    assert_eq!(w.masters().len(), 3);
    let stop = Arc::new(AtomicBool::new(false));
    let count = Arc::new(AtomicU64::new(0));
    let task = tokio::spawn(write_stream(w, Arc::clone(&stop), Arc::clone(&count)));
    while count.load(Ordering::Relaxed) < 2000 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let t0 = Instant::now();
    let before = count.load(Ordering::Relaxed);
    let cluster = tokio::task::spawn_blocking(move || {
        let mut cluster = cluster;
        fail(&mut cluster);
        cluster
            .wait_until("failover", Duration::from_secs(15), |c| recovered(c))
            .expect("failover");
        cluster
    })
    .await
    .expect("failover");
    eprintln!(
        "failover done in {:.2} s ({} writes before it, {} by now)",
        t0.elapsed().as_secs_f64(),
        before,
        count.load(Ordering::Relaxed)
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::Relaxed);
    let (n, stats) = task.await.expect("writer task");
    eprintln!(
        "writer finished {:.2} s after the failover began: {n} writes, {stats:?}",
        t0.elapsed().as_secs_f64()
    );
    (cluster, n, stats)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn graceful_failover_keeps_every_write_in_order() {
    graceful_failover(Mode::Plain).await;
}

/// With `wait_replicas`, the demoted master refuses the pipelined `WAIT`
/// (`ERR WAIT cannot be used with replica instances`, or `UNBLOCKED` when
/// the demotion happens during it): a topology change, not an error; its
/// unconfirmed transactions are probed on the new master (issue 17).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn graceful_failover_with_wait_replicas_keeps_every_write_once() {
    graceful_failover(Mode::WaitReplicas).await;
}

async fn graceful_failover(mode: Mode) {
    let start = Instant::now();
    let body = async {
        let cluster = tokio::task::spawn_blocking(|| start_cluster(1))
            .await
            .expect("bring-up");
        eprintln!(
            "6-node cluster up in {:.2} s",
            start.elapsed().as_secs_f64()
        );
        let (master, replica) = pick_pair(&cluster);
        let (cluster, n, stats) = run(
            cluster,
            mode,
            move |c| {
                let _: String = redis::cmd("CLUSTER")
                    .arg("FAILOVER")
                    .query(&mut c.nodes[replica].conn())
                    .expect("CLUSTER FAILOVER");
            },
            move |c| {
                role(&c.nodes[replica]).as_deref() == Some("master")
                    && role(&c.nodes[master]).as_deref() == Some("slave")
                    && c.all_ok(None)
            },
        )
        .await;
        let report = tokio::task::spawn_blocking(move || check(&cluster, n))
            .await
            .expect("check");
        eprintln!("graceful: {report:?}");
        assert!(report.out_of_order.is_empty(), "{report:?}");
        assert_eq!(report.lost, 0, "{report:?}");
        assert_eq!(report.duplicated, 0, "{report:?}");
        assert_eq!(report.keys_missing, 0, "{report:?}");
        assert_eq!(stats.acked, 2 * n);
    };
    tokio::time::timeout(TEST_BOUND, body)
        .await
        .expect("test within its bound");
    eprintln!("graceful test took {:.2} s", start.elapsed().as_secs_f64());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn killed_master_is_replaced_and_writes_stay_in_order() {
    killed_master(Mode::Plain).await;
}

/// With per-slot transactions and checkpoints, a transaction whose reply
/// was lost with the killed master is probed on the promoted replica and
/// resent only if it is not there: nothing is duplicated (values can still
/// be lost to asynchronous replication).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn killed_master_with_checkpoints_duplicates_nothing() {
    killed_master(Mode::Checkpoints).await;
}

/// With `wait_replicas`, a transaction counts as acknowledged only once a
/// replica has it; those the killed master had committed but not
/// replicated are probed on the promoted replica and resent: nothing is
/// lost and nothing is duplicated.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn killed_master_with_wait_replicas_loses_nothing() {
    killed_master(Mode::WaitReplicas).await;
}

async fn killed_master(mode: Mode) {
    let start = Instant::now();
    let body = async {
        // With `wait_replicas` the promoted replica needs a replica of its
        // own to confirm anything: 2 per master.
        let replicas = if mode == Mode::WaitReplicas { 2 } else { 1 };
        let cluster = tokio::task::spawn_blocking(move || start_cluster(replicas))
            .await
            .expect("bring-up");
        eprintln!(
            "{}-node cluster up in {:.2} s",
            cluster.nodes.len(),
            start.elapsed().as_secs_f64()
        );
        let (master, replica) = pick_pair(&cluster);
        let (cluster, n, stats) = run(
            cluster,
            mode,
            move |c| c.nodes[master].kill(),
            // With 2 replicas, either may win the election: wait until
            // the dead master serves no slot any more.
            move |c| {
                let dead = c.nodes[master].port();
                (replicas > 1 || role(&c.nodes[replica]).as_deref() == Some("master"))
                    && c.all_ok(Some(master))
                    && c.slot_map().iter().all(|(_, _, p)| *p != dead)
            },
        )
        .await;
        let report = tokio::task::spawn_blocking(move || check(&cluster, n))
            .await
            .expect("check");
        // Lost and duplicated values are Redis's asynchronous replication
        // at work (see the module docs), not the writer's: report them.
        eprintln!(
            "killed master: {} list values lost, {} duplicated, {} of {n} keys missing; {report:?}",
            report.lost, report.duplicated, report.keys_missing
        );
        assert!(report.out_of_order.is_empty(), "{report:?}");
        if mode != Mode::Plain {
            assert_eq!(report.duplicated, 0, "{report:?} {stats:?}");
        }
        if mode == Mode::WaitReplicas {
            assert_eq!(report.lost, 0, "{report:?} {stats:?}");
            assert_eq!(report.keys_missing, 0, "{report:?} {stats:?}");
        }
        assert!(stats.refreshes >= 1, "{stats:?}");
        assert_eq!(stats.acked, 2 * n);
    };
    tokio::time::timeout(TEST_BOUND, body)
        .await
        .expect("test within its bound");
    eprintln!("kill test took {:.2} s", start.elapsed().as_secs_f64());
}

/// `wait_replicas` on a master that has lost its replica: its transactions
/// commit but are never confirmed, so the applied offset stays behind
/// (`WAIT` timeouts counted); a cut connection meanwhile makes the writer
/// probe them again (committed: not resent); once a new replica attaches,
/// everything is confirmed. Every list and key ends exact.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn unconfirmed_transactions_wait_for_a_replica_and_survive_a_cut() {
    let start = Instant::now();
    let body = async {
        let mut cluster = tokio::task::spawn_blocking(|| start_cluster(1))
            .await
            .expect("bring-up");
        let (master, replica) = pick_pair(&cluster);
        cluster.nodes[replica].kill();
        let connected_replicas = |c: &Cluster| {
            ferry_testkit::info_field(&c.nodes[master].info("replication"), "connected_slaves")
        };
        cluster
            .wait_until(
                "the master to lose its replica",
                Duration::from_secs(10),
                |c| connected_replicas(c).as_deref() == Some("0"),
            )
            .expect("replica gone");
        let mut w = ClusterWriter::connect_with(&cluster.seed_url(), config(Mode::WaitReplicas))
            .await
            .expect("connect");
        let n = 3000u64;
        for i in 0..n {
            let (l, k, v) = (
                format!("l:{{{}}}", i % LISTS),
                format!("k:{i}"),
                i.to_string(),
            );
            w.submit(op(&[b"RPUSH", l.as_bytes(), v.as_bytes()], i + 1))
                .await
                .expect("submit");
            w.submit(op(&[b"SET", k.as_bytes(), v.as_bytes()], i + 1))
                .await
                .expect("submit");
        }
        w.mark_complete(n).await.expect("complete");
        // Not confirmed: the flush cannot finish, the offset stays behind.
        let flushed = tokio::time::timeout(Duration::from_millis(1500), w.flush()).await;
        assert!(
            flushed.is_err(),
            "flushed without a replica: {:?}",
            w.stats()
        );
        assert!(w.applied_offset() < n, "applied {}", w.applied_offset());
        assert!(w.stats().wait_timeouts > 0, "{:?}", w.stats());
        // Cut the writer's connection to that master.
        let _: i64 = redis::cmd("CLIENT")
            .arg("KILL")
            .arg("TYPE")
            .arg("normal")
            .query(&mut cluster.nodes[master].conn())
            .expect("CLIENT KILL");
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert!(w.stats().reprobed > 0, "{:?}", w.stats());
        assert!(w.applied_offset() < n, "applied {}", w.applied_offset());
        // A new replica for the master.
        let cluster = tokio::task::spawn_blocking(move || {
            let node = Server::builder(FLAVOR)
                .cluster(true)
                .arg("cluster-node-timeout", "1000")
                .start()
                .expect("new node");
            let m = &cluster.nodes[master];
            let _: () = redis::cmd("CLUSTER")
                .arg("MEET")
                .arg("127.0.0.1")
                .arg(m.port())
                .query(&mut node.conn())
                .expect("CLUSTER MEET");
            let id: String = redis::cmd("CLUSTER")
                .arg("MYID")
                .query(&mut m.conn())
                .expect("MYID");
            let start = Instant::now();
            while redis::cmd("CLUSTER")
                .arg("REPLICATE")
                .arg(&id)
                .query::<()>(&mut node.conn())
                .is_err()
            {
                assert!(start.elapsed() < Duration::from_secs(10), "REPLICATE");
                std::thread::sleep(Duration::from_millis(100));
            }
            cluster.nodes.push(node);
            cluster
        })
        .await
        .expect("new replica");
        tokio::time::timeout(Duration::from_secs(20), w.flush())
            .await
            .expect("flush once a replica confirms")
            .expect("flush");
        assert_eq!(w.applied_offset(), n);
        let stats = w.stats();
        w.close().await.expect("close");
        let report = tokio::task::spawn_blocking(move || check(&cluster, n))
            .await
            .expect("check");
        eprintln!("unconfirmed: {report:?} {stats:?}");
        assert!(report.out_of_order.is_empty(), "{report:?}");
        assert_eq!(report.lost, 0, "{report:?}");
        assert_eq!(report.duplicated, 0, "{report:?}");
        assert_eq!(report.keys_missing, 0, "{report:?}");
        assert_eq!(stats.acked, 2 * n);
    };
    tokio::time::timeout(Duration::from_secs(60), body)
        .await
        .expect("test within its bound");
    eprintln!(
        "unconfirmed test took {:.2} s",
        start.elapsed().as_secs_f64()
    );
}

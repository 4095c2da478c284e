//! Fault tests (issue 7): `ferry run` from a Redis 7.0 source into a
//! 3-master cluster while a random workload of every type writes to the
//! source, with a fault injected during streaming. Each ends with lag 0,
//! `ferry verify` exit 0, and every counter of the workload equal to the
//! value the source acknowledged (one lost or doubled `INCRBY` shows).
//!
//! Every test is bounded: the workload by count and time, every wait by a
//! deadline.

use std::collections::BTreeMap;
use std::thread;
use std::time::{Duration, Instant};

use ferry_testkit::workload::{Workload, WorkloadOptions};
use ferry_testkit::{Cluster, FaultProxy, Flavor, Server};

mod common;
use common::daemon::{Setup, stat, wait_caught_up, wait_phase};

/// Runs the workload on `src` for `seconds` in a thread; returns it when
/// done (with its checker).
fn workload(src: &Server, seed: u64, seconds: u64, max: u64) -> thread::JoinHandle<Workload> {
    let mut conn = src.conn();
    thread::spawn(move || {
        let mut wl = Workload::new(WorkloadOptions {
            seed,
            ..WorkloadOptions::default()
        });
        wl.run(&mut conn, Duration::from_secs(seconds), max)
            .expect("workload");
        wl
    })
}

/// Every counter the workload acknowledged has that value in the cluster.
fn assert_counters(cluster: &Cluster, expected: &BTreeMap<String, i64>) {
    assert!(!expected.is_empty(), "the workload wrote no counters");
    let mut wrong = Vec::new();
    for (key, want) in expected {
        // Ask every node; only the owner answers (the others reply MOVED),
        // whatever address it announces.
        let got: Option<i64> = cluster
            .nodes
            .iter()
            .find_map(|n| redis::cmd("GET").arg(key).query(&mut n.conn()).ok())
            .unwrap_or_else(|| panic!("no node serves {key}"));
        if got != Some(*want) {
            wrong.push(format!("{key}: target {got:?}, source acknowledged {want}"));
        }
    }
    assert!(
        wrong.is_empty(),
        "{} of {} counters differ: {:?}",
        wrong.len(),
        expected.len(),
        &wrong[..wrong.len().min(10)]
    );
}

/// The link to the source is cut three times and paused once during
/// streaming: each time ferry resumes with `+CONTINUE` (no new snapshot)
/// and nothing is lost or applied twice.
#[test]
fn source_link_cuts_resume_without_loss() {
    let src = Server::start(Flavor::Redis70).expect("source");
    let cluster = Cluster::start(Flavor::Redis70, 3).expect("cluster");
    let proxy = FaultProxy::start(src.addr()).expect("proxy");
    let setup = Setup::new(
        &format!("redis://{}", proxy.addr()),
        &cluster.seed_url(),
        "",
    );
    // Some data before ferry starts (the snapshot), then live writes.
    Workload::new(WorkloadOptions {
        seed: 99,
        ..WorkloadOptions::default()
    })
    .run(&mut src.conn(), Duration::from_secs(5), 5_000)
    .expect("initial data");
    let _ferry = setup.run();
    wait_phase(&setup.http, "streaming", Duration::from_secs(60));
    let full_before = stat(&src, "sync_full");
    let partial_before = stat(&src, "sync_partial_ok");

    let wl = workload(&src, 1, 12, 400_000);
    for i in 0..3 {
        thread::sleep(Duration::from_millis(1500));
        assert!(proxy.cut() > 0 || i > 0, "no connection to cut");
    }
    thread::sleep(Duration::from_millis(500));
    proxy.pause(true);
    thread::sleep(Duration::from_secs(2));
    proxy.pause(false);
    let wl = wl.join().expect("workload thread");
    assert!(
        wl.commands() > 1_000,
        "workload too small: {}",
        wl.commands()
    );

    // Wait for the last reconnect to finish, then for lag 0.
    let deadline = Instant::now() + Duration::from_secs(60);
    while setup.status().is_none_or(|s| s["phase"] != "streaming") {
        assert!(Instant::now() < deadline, "ferry not streaming again");
        thread::sleep(Duration::from_millis(100));
    }
    wait_caught_up(&src, &setup.http, Duration::from_secs(90));
    assert_eq!(
        stat(&src, "sync_full"),
        full_before,
        "a cut caused a new full sync"
    );
    assert!(
        stat(&src, "sync_partial_ok") >= partial_before + 3,
        "expected 3 partial resyncs, source saw {}",
        stat(&src, "sync_partial_ok") - partial_before
    );
    setup.assert_verified();
    assert_counters(&cluster, wl.expected_counters());
}

/// One target master stops taking writes for 3 s, three times, while the
/// source keeps writing: ferry's spool absorbs it, the source never drops
/// the link, memory stays bounded, and the target catches up exactly.
#[test]
fn slow_target_spools_and_drains_without_loss() {
    let src = Server::start(Flavor::Redis70).expect("source");
    let cluster = Cluster::start(Flavor::Redis70, 3).expect("cluster");
    let setup = Setup::new(&src.url(), &cluster.seed_url(), "");
    let mut ferry = setup.run();
    wait_phase(&setup.http, "streaming", Duration::from_secs(60));
    let full_before = stat(&src, "sync_full");
    let partial_before = stat(&src, "sync_partial_ok");

    let wl = workload(&src, 2, 12, 1_000_000);
    let mut max_spool = 0u64;
    let mut max_lag = 0.0f64;
    for round in 0..3 {
        thread::sleep(Duration::from_millis(700));
        let node = &cluster.nodes[round % cluster.nodes.len()];
        redis::cmd("CLIENT")
            .arg("PAUSE")
            .arg(3000)
            .arg("WRITE")
            .query::<()>(&mut node.conn())
            .expect("CLIENT PAUSE");
        let until = Instant::now() + Duration::from_millis(3200);
        while Instant::now() < until {
            if let Some(st) = setup.status() {
                max_spool = max_spool.max(st["spool_bytes"].as_u64().unwrap_or(0));
                max_lag = max_lag.max(st["lag_seconds"].as_f64().unwrap_or(0.0));
            }
            thread::sleep(Duration::from_millis(100));
        }
    }
    let wl = wl.join().expect("workload thread");
    wait_caught_up(&src, &setup.http, Duration::from_secs(90));
    assert!(
        max_lag >= 1.0,
        "the paused target did not hold ferry back (max lag {max_lag} s)"
    );
    assert!(
        max_spool > 0,
        "nothing was spooled while the target was paused"
    );
    assert_eq!(stat(&src, "sync_full"), full_before, "the source resynced");
    assert_eq!(
        stat(&src, "sync_partial_ok"),
        partial_before,
        "the link was dropped"
    );
    let st = setup.status().expect("status");
    assert_eq!(st["reconnects"], 0, "{st}");
    let rss = ferry.peak_rss_kib().expect("VmHWM");
    assert!(rss < 300 * 1024, "ferry peak RSS {rss} KiB");
    setup.assert_verified();
    assert_counters(&cluster, wl.expected_counters());
    assert_eq!(ferry.stop(), Some(0), "{}", ferry.log());
}

/// Node 0 of the target announces a fault proxy's port as its own
/// (`cluster-announce-port`), so ferry reaches it only through the proxy;
/// returns the proxy once every node reports the new address.
fn proxy_target_node(cluster: &Cluster) -> FaultProxy {
    let node = &cluster.nodes[0];
    let proxy = FaultProxy::start(node.addr()).expect("proxy");
    let port = proxy.addr().port();
    redis::cmd("CONFIG")
        .arg("SET")
        .arg("cluster-announce-port")
        .arg(port)
        .query::<()>(&mut node.conn())
        .expect("CONFIG SET cluster-announce-port");
    let deadline = Instant::now() + Duration::from_secs(30);
    let needle = format!(":{port}@");
    loop {
        let all = cluster.nodes.iter().all(|n| {
            redis::cmd("CLUSTER")
                .arg("NODES")
                .query::<String>(&mut n.conn())
                .is_ok_and(|s| s.contains(&needle))
        });
        if all {
            return proxy;
        }
        assert!(Instant::now() < deadline, "announce port not propagated");
        thread::sleep(Duration::from_millis(100));
    }
}

/// The connection to one target master is cut three times and paused once
/// during streaming: ferry reconnects and resends what was not
/// acknowledged, and nothing is lost or applied twice.
#[test]
fn target_link_cuts_resume_without_loss() {
    let src = Server::start(Flavor::Redis70).expect("source");
    let cluster = Cluster::start(Flavor::Redis70, 3).expect("cluster");
    let proxy = proxy_target_node(&cluster);
    let setup = Setup::new(
        &src.url(),
        &format!("redis://{}", cluster.nodes[1].addr()),
        "",
    );
    let mut ferry = setup.run();
    wait_phase(&setup.http, "streaming", Duration::from_secs(60));
    assert!(
        proxy.wait_connections(1, Duration::from_secs(10)),
        "ferry did not connect through the proxy"
    );

    let wl = workload(&src, 3, 10, 400_000);
    for _ in 0..3 {
        thread::sleep(Duration::from_millis(1500));
        proxy.cut();
    }
    thread::sleep(Duration::from_millis(500));
    proxy.pause(true);
    thread::sleep(Duration::from_secs(2));
    proxy.pause(false);
    let wl = wl.join().expect("workload thread");
    if let Some(code) = ferry.wait_exit(Duration::from_secs(1)) {
        panic!("ferry exited with {code}: {}", ferry.log());
    }
    wait_caught_up(&src, &setup.http, Duration::from_secs(90));
    let st = setup.status().expect("status");
    assert!(
        st["target"]["reconnects"].as_u64().unwrap_or(0) >= 3,
        "expected target reconnects: {st}"
    );
    setup.assert_verified();
    assert_counters(&cluster, wl.expected_counters());
}

/// One target master runs out of memory (`maxmemory`, `noeviction`): ferry
/// stops with an error naming the node and the key; after the limit is
/// raised, a restarted ferry completes with nothing lost or doubled.
#[test]
fn target_out_of_memory_stops_clearly_and_resumes_after_the_limit_is_raised() {
    let src = Server::start(Flavor::Redis70).expect("source");
    let cluster = Cluster::start(Flavor::Redis70, 3).expect("cluster");
    let setup = Setup::new(&src.url(), &cluster.seed_url(), "");
    let mut ferry = setup.run();
    wait_phase(&setup.http, "streaming", Duration::from_secs(60));
    let small = &cluster.nodes[1];
    let used: u64 = ferry_testkit::info_field(&small.info("memory"), "used_memory")
        .and_then(|v| v.parse().ok())
        .expect("used_memory");
    for (k, v) in [
        ("maxmemory", (used + 2 * 1024 * 1024).to_string()),
        ("maxmemory-policy", "noeviction".to_string()),
    ] {
        redis::cmd("CONFIG")
            .arg("SET")
            .arg(k)
            .arg(v)
            .query::<()>(&mut small.conn())
            .expect("CONFIG SET");
    }
    let wl = workload(&src, 4, 8, 300_000);
    // About 3 MB per master: more than the small one takes.
    let mut c = src.conn();
    for i in 0..200 {
        redis::cmd("SET")
            .arg(format!("wl:big:{i}"))
            .arg(vec![b'x'; 50_000])
            .query::<()>(&mut c)
            .expect("SET big");
    }
    let code = ferry.wait_exit(Duration::from_secs(60));
    let log = ferry.log();
    assert_eq!(code, Some(1), "ferry did not stop on OOM: {log}");
    assert!(
        log.contains(&small.addr()) && log.contains("OOM") && log.contains("(key "),
        "the error must name the node, the key and OOM: {log}"
    );
    let wl = wl.join().expect("workload thread");

    redis::cmd("CONFIG")
        .arg("SET")
        .arg("maxmemory")
        .arg("0")
        .query::<()>(&mut small.conn())
        .expect("CONFIG SET maxmemory 0");
    let _ferry = setup.run();
    wait_phase(&setup.http, "streaming", Duration::from_secs(60));
    wait_caught_up(&src, &setup.http, Duration::from_secs(90));
    setup.assert_verified();
    assert_counters(&cluster, wl.expected_counters());
}

/// ferry is down while the source writes more than its backlog holds: on
/// restart the source refuses `+CONTINUE`, ferry takes a new snapshot by
/// itself, says why, and the target ends equal to the source (keys deleted
/// meanwhile are gone from the target too).
#[test]
fn backlog_exceeded_while_down_falls_back_to_a_full_resync() {
    let src = Server::builder(Flavor::Redis70)
        .arg("repl-backlog-size", "16kb")
        .start()
        .expect("source");
    let cluster = Cluster::start(Flavor::Redis70, 3).expect("cluster");
    let setup = Setup::new(&src.url(), &cluster.seed_url(), "");
    let mut ferry = setup.run();
    wait_phase(&setup.http, "streaming", Duration::from_secs(60));
    let mut wl = Workload::new(WorkloadOptions {
        seed: 5,
        ..WorkloadOptions::default()
    });
    wl.run(&mut src.conn(), Duration::from_secs(3), 20_000)
        .expect("workload");
    wait_caught_up(&src, &setup.http, Duration::from_secs(60));
    assert_eq!(ferry.stop(), Some(0), "{}", ferry.log());
    let full_before = stat(&src, "sync_full");

    // Far more than 16 KB of writes, including deletes, while ferry is down.
    wl.run(&mut src.conn(), Duration::from_secs(3), 20_000)
        .expect("workload");
    redis::cmd("DEL")
        .arg("wl:s:1")
        .arg("wl:s:2")
        .arg("wl:l:3")
        .query::<()>(&mut src.conn())
        .expect("DEL");

    let ferry = setup.run();
    wait_phase(&setup.http, "streaming", Duration::from_secs(60));
    wait_caught_up(&src, &setup.http, Duration::from_secs(90));
    assert_eq!(stat(&src, "sync_full"), full_before + 1, "no new full sync");
    let log = ferry.log();
    assert!(
        log.to_lowercase().contains("full"),
        "ferry must say why it takes a new snapshot: {log}"
    );
    setup.assert_verified();
    assert_counters(&cluster, wl.expected_counters());
    for key in ["wl:s:1", "wl:s:2", "wl:l:3"] {
        let exists: bool = cluster
            .nodes
            .iter()
            .map(|n| {
                redis::cmd("EXISTS")
                    .arg(key)
                    .query::<i64>(&mut n.conn())
                    .unwrap_or(0)
            })
            .sum::<i64>()
            > 0;
        assert!(
            !exists,
            "{key} was deleted on the source but survives in the target"
        );
    }
}

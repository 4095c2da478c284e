//! TTL hold: keys whose TTL the source keeps refreshing survive a snapshot
//! that lasts longer than their TTL (a real replica never loses them).
//!
//! A Redis 7.0 source with 200 k keys (`DEBUG POPULATE`), read through a
//! proxy throttled to 1.5 MB/s while the snapshot is read (so it takes
//! several seconds on any machine), plus 1000 strings and 1000 hashes with a 1.5 s TTL,
//! refreshed every 250 ms (`PEXPIRE`, replicated as `PEXPIREAT`), a counter
//! field bumped in every tenth hash, all through the snapshot and after,
//! into a 3-master Redis 7.0 cluster. Once the refresher has given every
//! key a last, longer TTL and lag is 0, every sliding key is on the target
//! with the source's value and expiry time (`PEXPIRETIME`, within 50 ms).
//! The same into a standalone target, and when ferry is killed with `kill -9` in the snapshot phase and
//! restarted (a fresh full sync), and when it is killed after the snapshot,
//! before the fix-up ran (a partial resync: the fix-up runs from the names
//! file).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use ferry_testkit::proxy::FaultProxy;
use ferry_testkit::{Cluster, Flavor, Server};

use crate::common::daemon::{Setup, stat, status, wait_caught_up, wait_phase};

/// Sliding keys of each kind.
const SLIDING: usize = 1000;
/// Their TTL, refreshed every `REFRESH`.
const TTL_MS: u64 = 3000;
const REFRESH: Duration = Duration::from_millis(250);
/// The TTL the refresher leaves on every key when it stops.
const LAST_TTL_MS: u64 = 120_000;
/// Bulk keys without TTL.
const BULK: usize = 200_000;
/// Source → ferry bytes per second while the snapshot is read.
const THROTTLE: u64 = 750_000;

fn sliding_keys() -> impl Iterator<Item = String> {
    (0..SLIDING).flat_map(|i| [format!("sess:{i}"), format!("win:{i}")])
}

fn source() -> Server {
    let src = Server::start(Flavor::Redis70).expect("source");
    let mut c = src.conn();
    redis::cmd("CONFIG")
        .arg("SET")
        .arg("repl-backlog-size")
        .arg("64mb")
        .query::<()>(&mut c)
        .expect("backlog");
    ferry_testkit::fixtures::populate_big_debug(&mut c, BULK, 16).expect("DEBUG POPULATE");
    let mut p = redis::pipe();
    for i in 0..SLIDING {
        p.cmd("SET")
            .arg(format!("sess:{i}"))
            .arg(format!("user-{i}"))
            .arg("PX")
            .arg(TTL_MS)
            .ignore();
        p.cmd("HSET")
            .arg(format!("win:{i}"))
            .arg("owner")
            .arg(i)
            .arg("n")
            .arg(0)
            .ignore();
        p.cmd("PEXPIRE")
            .arg(format!("win:{i}"))
            .arg(TTL_MS)
            .ignore();
    }
    p.query::<()>(&mut c).expect("sliding keys");
    src
}

/// Refreshes every sliding key's TTL every `REFRESH` and bumps the counter
/// of every tenth hash, until `stop` (or 90 s); then gives every key
/// `LAST_TTL_MS`. Returns the number of rounds.
fn refresher(src: &Server, stop: Arc<AtomicBool>, rounds: Arc<AtomicU64>) -> JoinHandle<()> {
    let mut c = src.conn();
    std::thread::spawn(move || {
        let deadline = Instant::now() + Duration::from_secs(90);
        while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
            let mut p = redis::pipe();
            for key in sliding_keys() {
                p.cmd("PEXPIRE").arg(&key).arg(TTL_MS);
            }
            for i in (0..SLIDING).step_by(10) {
                p.cmd("HINCRBY")
                    .arg(format!("win:{i}"))
                    .arg("n")
                    .arg(1)
                    .ignore();
            }
            let refreshed: Vec<i64> = p.query(&mut c).expect("refresh");
            // PEXPIRE answers 0 for a key that no longer exists: the source
            // itself let it expire, so this run proves nothing about ferry.
            let lost = refreshed.iter().filter(|r| **r == 0).count();
            assert!(
                lost == 0,
                "the source expired {lost} sliding keys itself: the refresher stalled \
                 for more than the {TTL_MS} ms TTL (machine overloaded?)"
            );
            rounds.fetch_add(1, Ordering::Relaxed);
            std::thread::sleep(REFRESH);
        }
        let mut p = redis::pipe();
        for key in sliding_keys() {
            p.cmd("PEXPIRE").arg(&key).arg(LAST_TTL_MS).ignore();
        }
        p.query::<()>(&mut c).expect("last refresh");
    })
}

/// What a sliding key is: its value (GET or HGETALL) and expiry time.
fn read(c: &mut redis::Connection, key: &str) -> (String, i64) {
    let value = if key.starts_with("sess:") {
        redis::cmd("GET")
            .arg(key)
            .query::<Option<String>>(c)
            .expect("GET")
            .unwrap_or_else(|| "<missing>".into())
    } else {
        let mut h: Vec<(String, String)> =
            redis::cmd("HGETALL").arg(key).query(c).expect("HGETALL");
        h.sort();
        format!("{h:?}")
    };
    let at: i64 = redis::cmd("PEXPIRETIME")
        .arg(key)
        .query(c)
        .expect("PEXPIRETIME");
    (value, at)
}

/// A cluster, or one server (`target.mode` auto-detects it).
enum Target {
    Cluster(Cluster),
    Standalone(Box<Server>),
}

impl Target {
    fn url(&self) -> String {
        match self {
            Target::Cluster(c) => c.seed_url(),
            Target::Standalone(s) => s.url(),
        }
    }

    fn node_for_key(&self, key: &[u8]) -> &Server {
        match self {
            Target::Cluster(c) => c.node_for_key(key),
            Target::Standalone(s) => s,
        }
    }
}

/// Keys that differ: on the source vs on the target.
fn differences(src: &Server, cluster: &Target) -> Vec<String> {
    let mut s = src.conn();
    let mut conns: std::collections::HashMap<u16, redis::Connection> = Default::default();
    let mut out = Vec::new();
    for key in sliding_keys() {
        let node = cluster.node_for_key(key.as_bytes());
        let t = conns.entry(node.port()).or_insert_with(|| node.conn());
        let (sv, sat) = read(&mut s, &key);
        let (tv, tat) = read(t, &key);
        if sv != tv || sat <= 0 || (sat - tat).abs() > 50 {
            out.push(format!("{key}: source {sv} @{sat}, target {tv} @{tat}"));
        }
    }
    out
}

/// Waits until the sliding keys match (the fix-up runs once caught up).
fn assert_sliding_keys_carried(src: &Server, cluster: &Target, setup: &Setup, log: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let diff = differences(src, cluster);
        if diff.is_empty() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{} of {} sliding keys differ, e.g.\n{}\nstatus {:?}\n{log}",
            diff.len(),
            2 * SLIDING,
            diff[..diff.len().min(5)].join("\n"),
            setup.status()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// When ferry is killed.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Kill {
    Never,
    InSnapshot,
    AfterSnapshot,
}

fn run(kill: Kill, standalone: bool) {
    let src = source();
    // Refreshing from the start: the keys live only 1.5 s.
    let (stop, rounds) = (
        Arc::new(AtomicBool::new(false)),
        Arc::new(AtomicU64::new(0)),
    );
    let load = refresher(&src, stop.clone(), rounds.clone());
    let cluster = if standalone {
        Target::Standalone(Box::new(
            Server::start(Flavor::Redis70).expect("standalone target"),
        ))
    } else {
        Target::Cluster(Cluster::start(Flavor::Redis70, 3).expect("cluster"))
    };
    let proxy = FaultProxy::start(src.addr()).expect("proxy");
    proxy.throttle(THROTTLE);
    let setup = Setup::new(&format!("redis://{}", proxy.addr()), &cluster.url(), "");
    let mut daemon = setup.run();
    if kill == Kill::InSnapshot {
        let st = wait_phase(&setup.http, "snapshot", Duration::from_secs(60));
        let deadline = Instant::now() + Duration::from_secs(60);
        while status(&setup.http)
            .and_then(|s| s["keys_applied"].as_u64())
            .unwrap_or(0)
            < 20_000
        {
            assert!(Instant::now() < deadline, "no snapshot progress: {st:?}");
            std::thread::sleep(Duration::from_millis(20));
        }
        daemon.kill9();
        // Longer than the TTL: keys written before the kill would expire.
        std::thread::sleep(Duration::from_millis(2 * TTL_MS));
        daemon = setup.run();
    }
    let snapshot_started = Instant::now();
    let st = wait_phase(&setup.http, "streaming", Duration::from_secs(120));
    let snapshot = snapshot_started.elapsed();
    if kill == Kill::AfterSnapshot {
        // Nothing more from the source (its offset, polled through the
        // proxy too, stalls): the fix-up cannot run, while what is spooled
        // is applied and position.json (saved once a second) records a
        // stream position.
        proxy.pause(true);
        std::thread::sleep(Duration::from_millis(2500));
        let log = daemon.log();
        assert!(!log.contains("true expiries restored"), "too late: {log}");
        daemon.kill9();
        std::thread::sleep(Duration::from_millis(2 * TTL_MS));
        let partial = stat(&src, "sync_partial_ok");
        proxy.throttle(0);
        proxy.pause(false);
        daemon = setup.run();
        wait_phase(&setup.http, "streaming", Duration::from_secs(60));
        assert_eq!(
            stat(&src, "sync_partial_ok"),
            partial + 1,
            "a restart after the snapshot resumes the stream"
        );
    }
    proxy.throttle(0);
    assert!(
        snapshot > Duration::from_millis(2 * TTL_MS),
        "the snapshot must outlast the TTL to test anything ({snapshot:?}, {st:?})"
    );
    // Keep refreshing a little after the snapshot, then stop.
    std::thread::sleep(Duration::from_secs(2));
    stop.store(true, Ordering::Relaxed);
    load.join().expect("refresher");
    wait_caught_up(&src, &setup.http, Duration::from_secs(60));
    assert_sliding_keys_carried(&src, &cluster, &setup, &daemon.log());
    let log = daemon.log();
    assert!(log.contains("true expiries restored"), "{log}");
    eprintln!(
        "snapshot phase {snapshot:?}, {} refresh rounds",
        rounds.load(Ordering::Relaxed)
    );
}

#[test]
fn sliding_ttls_survive_a_long_snapshot() {
    run(Kill::Never, false);
}

#[test]
fn sliding_ttls_survive_a_kill_9_in_the_snapshot() {
    run(Kill::InSnapshot, false);
}

#[test]
fn sliding_ttls_survive_a_kill_9_before_the_fix_up() {
    run(Kill::AfterSnapshot, false);
}

#[test]
fn sliding_ttls_survive_a_long_snapshot_into_a_standalone_target() {
    run(Kill::Never, true);
}

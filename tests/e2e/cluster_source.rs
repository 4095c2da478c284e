//! A cluster source (issue 13): one pipeline per source shard. Real
//! servers: a 3-master source cluster with one replica per master, into a
//! 4-master cluster or a standalone server; mixed types, a bounded random
//! single-slot write workload during the sync, `kill -9` of ferry, two
//! processes sharing the shards. The target is compared with the union of
//! every source master's dump, key by key and by value.

use std::collections::{BTreeMap, HashMap};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use ferry_testkit::{Cluster, Flavor, Server, SlotRange, info_field, port_of_slot};

use crate::common::Norm;
use crate::common::daemon::{Daemon, FERRY};
use crate::e2e_support::{assert_same, dataset};

mod functions;
mod wiring;

const FLAVOR: Flavor = Flavor::Redis70;
/// Bound of every wait for a catch-up.
const CATCH_UP: Duration = Duration::from_secs(120);

/// A config and its HTTP address in a temp dir (`Run::with_source`).
pub(crate) type Run = crate::common::daemon::Setup;

/// The cluster's current masters.
pub(crate) fn masters(c: &Cluster) -> Vec<&Server> {
    c.nodes
        .iter()
        .filter(|n| ferry_testkit::role(n).as_deref() == Some("master"))
        .collect()
}

/// A server's `master_repl_offset` (0 when unknown).
pub(crate) fn repl_offset(s: &Server) -> u64 {
    info_field(&s.info("replication"), "master_repl_offset")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn sync_full(s: &Server) -> u64 {
    info_field(&s.info("stats"), "sync_full")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// Waits until `/status` has `links` links, each applied up to the
/// `master_repl_offset` of the node it reads from, with lag 0.
fn wait_all_caught_up(c: &Cluster, run: &Run, links: usize, daemon: &Daemon) {
    let deadline = Instant::now() + CATCH_UP;
    loop {
        let st = run.status();
        let ok = st.as_ref().is_some_and(|st| {
            let ls = st["links"].as_array().cloned().unwrap_or_default();
            ls.len() == links
                && ls.iter().all(|l| {
                    let node = l["source"].as_str().unwrap_or("");
                    let Some(n) = c.nodes.iter().find(|n| n.addr() == node) else {
                        return false;
                    };
                    l["applied_offset"].as_u64() == Some(repl_offset(n))
                        && l["lag_bytes"].as_u64() == Some(0)
                        && l["phase"] == "streaming"
                })
        });
        if ok {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "not caught up in {CATCH_UP:?}: {st:#?}\n{}",
            daemon.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Connections to a cluster's masters by slot (the slot map read once).
struct Router<'a> {
    cluster: &'a Cluster,
    map: Vec<SlotRange>,
    conns: HashMap<u16, redis::Connection>,
}

impl<'a> Router<'a> {
    fn new(cluster: &'a Cluster) -> Router<'a> {
        Router {
            cluster,
            map: cluster.slot_map(),
            conns: HashMap::new(),
        }
    }

    fn conn(&mut self, key: &str) -> &mut redis::Connection {
        let slot = ferry_ops::key_slot(key.as_bytes());
        let port = port_of_slot(&self.map, slot).expect("slot served");
        let cluster = self.cluster;
        self.conns.entry(port).or_insert_with(|| {
            cluster
                .nodes
                .iter()
                .find(|n| n.port() == port)
                .expect("node")
                .conn()
        })
    }

    /// Like [`Router::conn`], `None` when the node does not answer.
    fn try_conn(&mut self, key: &str) -> Option<&mut redis::Connection> {
        let slot = ferry_ops::key_slot(key.as_bytes());
        let port = port_of_slot(&self.map, slot)?;
        if !self.conns.contains_key(&port) {
            let node = self.cluster.nodes.iter().find(|n| n.port() == port)?;
            self.conns.insert(port, node.try_conn().ok()?);
        }
        self.conns.get_mut(&port)
    }

    fn run(&mut self, key: &str, cmd: &mut redis::Cmd) {
        let _: redis::Value = cmd.query(self.conn(key)).expect("source write");
    }
}

/// Every type, some with TTLs, spread over every slot range.
fn fill(c: &Cluster, keys: usize) {
    let mut r = Router::new(c);
    for i in 0..keys {
        let k = |t: &str| format!("{t}:{i}");
        r.run(&k("s"), redis::cmd("SET").arg(k("s")).arg(format!("v{i}")));
        if i % 5 == 0 {
            r.run(
                &k("s"),
                redis::cmd("PEXPIRE").arg(k("s")).arg(3_600_000 + i as u64),
            );
        }
        r.run(
            &k("h"),
            redis::cmd("HSET")
                .arg(k("h"))
                .arg("a")
                .arg(i)
                .arg("b")
                .arg("x"),
        );
        r.run(
            &k("l"),
            redis::cmd("RPUSH").arg(k("l")).arg(1).arg(2).arg(i),
        );
        r.run(&k("t"), redis::cmd("SADD").arg(k("t")).arg("m").arg(i));
        r.run(
            &k("z"),
            redis::cmd("ZADD")
                .arg(k("z"))
                .arg(1.5)
                .arg("a")
                .arg(i)
                .arg("b"),
        );
        if i % 50 == 0 {
            r.run(
                &k("x"),
                redis::cmd("XADD").arg(k("x")).arg("*").arg("f").arg(i),
            );
        }
    }
}

/// A bounded random single-slot write workload (counters, lists, strings,
/// hashes, deletes, and a `MULTI`/`EXEC` on one slot): at most `max_ops`
/// batches or `seconds`. Returns the batches run.
fn workload(c: &Cluster, seed: u64, seconds: u64, max_ops: u64) -> u64 {
    workload_until(c, seed, &AtomicBool::new(false), seconds, max_ops)
}

/// [`workload`] that also stops once `stop` is set.
fn workload_until(c: &Cluster, seed: u64, stop: &AtomicBool, seconds: u64, max_ops: u64) -> u64 {
    let mut r = Router::new(c);
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let mut x = seed | 1;
    let mut n = 0;
    while n < max_ops && Instant::now() < deadline && !stop.load(Ordering::Relaxed) {
        // xorshift: reproducible and dependency-free.
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let i = x % 97;
        match x % 6 {
            0 => r.run(
                &format!("w:c:{i}"),
                redis::cmd("INCR").arg(format!("w:c:{i}")),
            ),
            1 => r.run(
                &format!("w:l:{i}"),
                redis::cmd("RPUSH").arg(format!("w:l:{i}")).arg(n),
            ),
            2 => r.run(
                &format!("w:s:{i}"),
                redis::cmd("SET").arg(format!("w:s:{i}")).arg(n),
            ),
            3 => r.run(
                &format!("w:h:{i}"),
                redis::cmd("HINCRBY")
                    .arg(format!("w:h:{i}"))
                    .arg(format!("f{}", n % 5))
                    .arg(1),
            ),
            4 => r.run(&format!("s:{i}"), redis::cmd("DEL").arg(format!("s:{i}"))),
            _ => {
                let key = format!("{{w:m:{i}}}");
                let conn = r.conn(&key);
                let _: () = redis::pipe()
                    .atomic()
                    .cmd("INCR")
                    .arg(format!("{key}:a"))
                    .ignore()
                    .cmd("RPUSH")
                    .arg(format!("{key}:b"))
                    .arg(n)
                    .ignore()
                    .query(conn)
                    .expect("multi");
            }
        }
        n += 1;
    }
    n
}

/// The union of the datasets of `servers`.
fn union(servers: &[&Server]) -> BTreeMap<(u64, Bytes), Norm> {
    let mut all = BTreeMap::new();
    for s in servers {
        all.extend(dataset(s));
    }
    all
}

fn assert_target_equals_source(src: &Cluster, dst: &[&Server]) {
    let want = union(&masters(src));
    assert!(want.len() > 1000, "{} keys", want.len());
    let got = union(dst);
    assert_same(&want, &got);
}

fn source_cluster() -> Cluster {
    Cluster::start_with_replicas(FLAVOR, 3, 1).expect("3-master source with replicas")
}

/// 3 source masters (one replica each) into 4 target masters, from the
/// masters or from the replicas.
fn three_into_four(read_from: &str) {
    let src = source_cluster();
    let dst = Cluster::start(FLAVOR, 4).expect("4-master target");
    fill(&src, 400);
    let run = Run::with_source(
        &src.nodes[0].url(),
        &format!(", read_from: {read_from}"),
        &dst.seed_url(),
        "",
    );
    let daemon = run.run();
    // Writes during the snapshot and on into the stream of every shard.
    let stop = AtomicBool::new(false);
    let ops = std::thread::scope(|s| {
        let w = s.spawn(|| workload_until(&src, 1, &stop, 60, 200_000));
        wait_streaming(&run, 3, &daemon);
        std::thread::sleep(Duration::from_millis(1500));
        stop.store(true, Ordering::Relaxed);
        w.join().expect("workload")
    });
    assert!(ops > 100, "{ops} ops");
    wait_all_caught_up(&src, &run, 3, &daemon);
    let st = run.status().expect("status");
    let names: Vec<&str> = st["links"]
        .as_array()
        .expect("links")
        .iter()
        .map(|l| l["name"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(names, ["shard-0", "shard-5461", "shard-10923"], "{st:#}");
    for l in st["links"].as_array().expect("links") {
        let node = l["source"].as_str().expect("source");
        let server = src.nodes.iter().find(|n| n.addr() == node).expect("node");
        let role = ferry_testkit::role(server);
        let want = if read_from == "replica" {
            "slave"
        } else {
            "master"
        };
        assert_eq!(role.as_deref(), Some(want), "{l:#}");
        assert!(l["slots"].as_str().is_some_and(|s| !s.is_empty()));
        assert!(l["replid"].as_str().is_some_and(|s| s.len() == 40), "{l:#}");
    }
    assert_eq!(st["phase"], "streaming");
    assert_eq!(st["lag_bytes"], 0);
    assert_target_equals_source(&src, &masters(&dst));
    // Each shard's checkpoints are in its own namespace.
    let mut ckpts = std::collections::BTreeSet::new();
    for m in masters(&dst) {
        let keys: Vec<String> = redis::cmd("KEYS")
            .arg("__ferry:ckpt:*")
            .query(&mut m.conn())
            .expect("keys");
        for k in keys {
            ckpts.insert(k.split(':').nth(2).unwrap_or("").to_string());
        }
    }
    assert_eq!(
        ckpts.into_iter().collect::<Vec<_>>(),
        ["shard-0", "shard-10923", "shard-5461"]
    );
}

#[test]
fn three_masters_into_four_from_masters() {
    three_into_four("master");
}

#[test]
fn three_masters_into_four_from_replicas() {
    three_into_four("replica");
}

/// Waits until every link of `/status` streams (the full syncs are over).
fn wait_streaming(run: &Run, links: usize, daemon: &Daemon) {
    let deadline = Instant::now() + CATCH_UP;
    loop {
        let st = run.status();
        let ok = st.as_ref().is_some_and(|st| {
            let ls = st["links"].as_array().cloned().unwrap_or_default();
            ls.len() == links && ls.iter().all(|l| l["phase"] == "streaming")
        });
        if ok {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "not streaming in {CATCH_UP:?}: {st:#?}\n{}",
            daemon.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Two `kill -9` of ferry while the workload streams: every shard resumes
/// with `+CONTINUE` (no source master counts another full sync) and the
/// checkpoints skip what the target has, so counters and lists (`INCR`,
/// `RPUSH`, `HINCRBY`, a `MULTI`) end equal to the source: exactly once.
#[test]
fn kill9_twice_while_streaming_is_exactly_once_without_full_sync() {
    let src = source_cluster();
    let dst = Cluster::start(FLAVOR, 3).expect("target");
    fill(&src, 300);
    let run = Run::with_source(&src.nodes[0].url(), "", &dst.seed_url(), "");
    let mut daemon = run.run();
    wait_streaming(&run, 3, &daemon);
    let full_before: Vec<u64> = masters(&src).iter().map(|m| sync_full(m)).collect();
    std::thread::scope(|s| {
        let w = s.spawn(|| workload(&src, 7, 12, 60_000));
        for _ in 0..2 {
            std::thread::sleep(Duration::from_millis(1500));
            daemon.kill9();
            std::thread::sleep(Duration::from_millis(300));
            daemon = run.run();
        }
        w.join().expect("workload")
    });
    wait_all_caught_up(&src, &run, 3, &daemon);
    let full_after: Vec<u64> = masters(&src).iter().map(|m| sync_full(m)).collect();
    assert_eq!(full_before, full_after, "a source master took a full sync");
    assert_target_equals_source(&src, &masters(&dst));
    let st = run.status().expect("status");
    assert!(
        st["target"]["skipped_applied"].as_u64().unwrap_or(0) > 0
            || st["commands_applied"].as_u64().unwrap_or(0) > 0,
        "{st:#}"
    );
}

/// A cluster source into one standalone server (consolidation).
#[test]
fn cluster_source_into_a_standalone_target() {
    let src = Cluster::start(FLAVOR, 3).expect("source");
    let dst = Server::start(FLAVOR).expect("standalone target");
    fill(&src, 400);
    let run = Run::with_source(&src.nodes[0].url(), ", mode: cluster", &dst.url(), "");
    let daemon = run.run();
    let stop = AtomicBool::new(false);
    std::thread::scope(|s| {
        let w = s.spawn(|| workload_until(&src, 3, &stop, 60, 200_000));
        wait_streaming(&run, 3, &daemon);
        std::thread::sleep(Duration::from_millis(1000));
        stop.store(true, Ordering::Relaxed);
        w.join().expect("workload")
    });
    wait_all_caught_up(&src, &run, 3, &daemon);
    assert_eq!(
        run.status().expect("status")["targets"][0]["mode"],
        "standalone"
    );
    assert_target_equals_source(&src, &[&dst]);
}

/// `FLUSHALL` on one source master while streaming deletes only that
/// shard's slots on the target; then a forced full sync of one shard
/// (its saved position removed) deletes its slots first (a key deleted on
/// the source meanwhile does not survive) and leaves the other shards
/// streaming with `+CONTINUE`.
#[test]
fn flushall_of_one_master_and_a_full_sync_of_one_shard_touch_only_its_slots() {
    let src = Cluster::start(FLAVOR, 3).expect("source");
    let dst = Cluster::start(FLAVOR, 3).expect("target");
    fill(&src, 400);
    let run = Run::with_source(&src.nodes[0].url(), "", &dst.seed_url(), "");
    let mut daemon = run.run();
    wait_all_caught_up(&src, &run, 3, &daemon);
    // FLUSHALL on the master of slot 0 only.
    let first = src
        .nodes
        .iter()
        .find(|n| port_of_slot(&src.slot_map(), 0) == Some(n.port()))
        .expect("master of slot 0");
    let _: () = redis::cmd("FLUSHALL")
        .query(&mut first.conn())
        .expect("flushall");
    // A client loads a function library on every master: each shard's
    // stream carries it, and every copy must apply.
    for m in masters(&src) {
        let _: String = redis::cmd("FUNCTION")
            .arg("LOAD")
            .arg("#!lua name=ferrylib\nredis.register_function('ferry_one', function() return 1 end)")
            .query(&mut m.conn())
            .expect("FUNCTION LOAD");
    }
    workload(&src, 11, 2, 2_000);
    wait_all_caught_up(&src, &run, 3, &daemon);
    assert_target_equals_source(&src, &masters(&dst));
    let st = run.status().expect("status");
    assert!(st["emulated"].as_u64().unwrap_or(0) >= 1, "{st:#}");
    for m in masters(&dst) {
        let n: i64 = redis::cmd("FCALL")
            .arg("ferry_one")
            .arg(0)
            .query(&mut m.conn())
            .expect("the function on every target master");
        assert_eq!(n, 1);
    }

    // Stop, forget shard-5461's position, change the source meanwhile.
    assert_eq!(daemon.stop(), Some(0), "{}", daemon.log());
    let pos = run.dir.path().join("state/shards/shard-5461/position.json");
    std::fs::remove_file(&pos).expect("position of shard-5461");
    let mid = src
        .nodes
        .iter()
        .find(|n| port_of_slot(&src.slot_map(), 5461) == Some(n.port()))
        .expect("master of slot 5461");
    let full_before: Vec<(String, u64)> = masters(&src)
        .iter()
        .map(|m| (m.addr(), sync_full(m)))
        .collect();
    let mut r = Router::new(&src);
    let mut deleted = 0;
    for i in 0..400 {
        let key = format!("s:{i}");
        if port_of_slot(&r.map, ferry_ops::key_slot(key.as_bytes())) == Some(mid.port()) {
            r.run(&key, redis::cmd("DEL").arg(&key));
            deleted += 1;
        }
    }
    assert!(deleted > 10, "{deleted}");
    let daemon = run.run();
    wait_all_caught_up(&src, &run, 3, &daemon);
    assert_target_equals_source(&src, &masters(&dst));
    for (addr, before) in full_before {
        let m = src.nodes.iter().find(|n| n.addr() == addr).expect("node");
        let want = if addr == mid.addr() {
            before + 1
        } else {
            before
        };
        assert_eq!(sync_full(m), want, "{addr}\n{}", daemon.log());
    }
    assert!(
        daemon.log().contains("full sync of this source shard"),
        "{}",
        daemon.log()
    );
    for l in daemon.log().lines().filter(|l| l.contains("slots deleted")) {
        eprintln!("{l}");
    }
}

/// Two processes (`partition count: 2`) share a 3-shard source: one takes
/// shard-0 and shard-10923, the other shard-5461. The second, killed and
/// restarted alone, resumes its own shard with `+CONTINUE`.
#[test]
fn two_processes_share_the_shards_and_one_restarts_alone() {
    let src = Cluster::start(FLAVOR, 3).expect("source");
    let dst = Cluster::start(FLAVOR, 4).expect("target");
    fill(&src, 400);
    let a = Run::with_source(
        &src.nodes[0].url(),
        ", partition: { index: 0, count: 2 }",
        &dst.seed_url(),
        "",
    );
    let b = Run::with_source(
        &src.nodes[1].url(),
        ", partition: { index: 1, count: 2 }",
        &dst.seed_url(),
        "",
    );
    let da = a.run();
    let mut db = b.run();
    workload(&src, 5, 2, 5_000);
    wait_all_caught_up(&src, &a, 2, &da);
    wait_all_caught_up(&src, &b, 1, &db);
    let links = |r: &Run| -> Vec<String> {
        r.status().expect("status")["links"]
            .as_array()
            .expect("links")
            .iter()
            .map(|l| l["name"].as_str().unwrap_or("").to_string())
            .collect()
    };
    assert_eq!(links(&a), ["shard-0", "shard-10923"]);
    assert_eq!(links(&b), ["shard-5461"]);
    assert_target_equals_source(&src, &masters(&dst));
    let full_before: Vec<u64> = masters(&src).iter().map(|m| sync_full(m)).collect();
    std::thread::scope(|s| {
        let w = s.spawn(|| workload(&src, 9, 5, 20_000));
        std::thread::sleep(Duration::from_millis(1000));
        db.kill9();
        std::thread::sleep(Duration::from_millis(1500));
        db = b.run();
        w.join().expect("workload")
    });
    wait_all_caught_up(&src, &a, 2, &da);
    wait_all_caught_up(&src, &b, 1, &db);
    assert_eq!(links(&b), ["shard-5461"]);
    let full_after: Vec<u64> = masters(&src).iter().map(|m| sync_full(m)).collect();
    assert_eq!(full_before, full_after);
    assert_target_equals_source(&src, &masters(&dst));
    // Another count on the same state_dir is refused.
    let bad = std::fs::read_to_string(&b.cfg)
        .expect("cfg")
        .replace("count: 2", "count: 3");
    drop(db);
    std::fs::write(&b.cfg, bad).expect("cfg");
    let out = Command::new(FERRY)
        .args(["run", "--config"])
        .arg(&b.cfg)
        .output()
        .expect("ferry run");
    assert_ne!(out.status.code(), Some(0));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("partition"), "{err}");
}

/// The workload of [`workload`], tolerant of a source failover: a refused
/// write (connection lost, `MOVED`, `CLUSTERDOWN`) re-reads the slot map
/// and goes on. Bounded by `seconds` and `max_ops`.
fn workload_through_failovers(c: &Cluster, seed: u64, seconds: u64, max_ops: u64) -> u64 {
    let mut r = Router::new(c);
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let mut x = seed | 1;
    let mut n = 0;
    while n < max_ops && Instant::now() < deadline {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let i = x % 97;
        let (key, mut cmd) = match x % 4 {
            0 => (format!("w:c:{i}"), redis::cmd("INCR")),
            1 => (format!("w:l:{i}"), redis::cmd("RPUSH")),
            2 => (format!("w:s:{i}"), redis::cmd("SET")),
            _ => (format!("s:{i}"), redis::cmd("DEL")),
        };
        cmd.arg(&key);
        if x % 4 == 1 || x % 4 == 2 {
            cmd.arg(n);
        }
        let ok = r
            .try_conn(&key)
            .is_some_and(|c| cmd.query::<redis::Value>(c).is_ok());
        if !ok {
            std::thread::sleep(Duration::from_millis(50));
            r = Router::new(c);
        }
        n += 1;
    }
    n
}

fn kill9_pid(pid: u32) {
    let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
}

/// A graceful `CLUSTER FAILOVER` of one source shard and a killed master
/// of another (its replica promoted) under load: each shard's link finds
/// its shard's new master and goes on there; the target ends equal to the
/// source as the new masters see it; the third shard's link is never
/// interrupted.
#[test]
fn source_failovers_graceful_and_killed_master_under_load() {
    let src = source_cluster();
    let dst = Cluster::start(FLAVOR, 3).expect("target");
    fill(&src, 300);
    let run = Run::with_source(&src.nodes[0].url(), "", &dst.seed_url(), "");
    let daemon = run.run();
    wait_streaming(&run, 3, &daemon);
    let pairs = src.master_replica_pairs();
    assert!(pairs.len() >= 2, "{pairs:?}");
    let (m1, r1) = pairs[0];
    let (m2, r2) = pairs[1];
    let touched = [src.nodes[m1].addr(), src.nodes[m2].addr()];
    let st = run.status().expect("status");
    let other = st["links"]
        .as_array()
        .expect("links")
        .iter()
        .find(|l| !touched.iter().any(|t| l["source"] == t.as_str()))
        .expect("an untouched shard")["name"]
        .as_str()
        .expect("name")
        .to_string();
    let reconnects_of = |st: &serde_json::Value| {
        st["links"]
            .as_array()
            .and_then(|ls| ls.iter().find(|l| l["name"] == other.as_str()))
            .and_then(|l| l["reconnects"].as_u64())
    };
    let before = reconnects_of(&st);
    std::thread::scope(|s| {
        let w = s.spawn(|| workload_through_failovers(&src, 21, 25, 200_000));
        std::thread::sleep(Duration::from_millis(1500));
        let _: () = redis::cmd("CLUSTER")
            .arg("FAILOVER")
            .query(&mut src.nodes[r1].conn())
            .expect("CLUSTER FAILOVER");
        src.wait_role_change(r1, Some(m1), None, Duration::from_secs(60))
            .expect("graceful failover");
        std::thread::sleep(Duration::from_millis(1500));
        kill9_pid(src.nodes[m2].pid());
        src.wait_role_change(r2, None, Some(m2), Duration::from_secs(60))
            .expect("replica promoted");
        std::thread::sleep(Duration::from_millis(1500));
        w.join().expect("workload")
    });
    wait_all_caught_up(&src, &run, 3, &daemon);
    let st = run.status().expect("status");
    let sources: Vec<&str> = st["links"]
        .as_array()
        .expect("links")
        .iter()
        .map(|l| l["source"].as_str().unwrap_or(""))
        .collect();
    for promoted in [r1, r2] {
        assert!(
            sources.contains(&src.nodes[promoted].addr().as_str()),
            "{sources:?}\n{}",
            daemon.log()
        );
    }
    assert_eq!(
        reconnects_of(&st),
        before,
        "the third shard was interrupted"
    );
    assert_target_equals_source(&src, &masters(&dst));
    let log = daemon.log();
    // Restarted with source.url naming the dead node: the shards are
    // found through the nodes recorded in shards.json.
    let mut daemon = daemon;
    assert_eq!(daemon.stop(), Some(0), "{}", daemon.log());
    let text = std::fs::read_to_string(&run.cfg).expect("cfg");
    let text = text.replace(&src.nodes[0].url(), &src.nodes[m2].url());
    std::fs::write(&run.cfg, text).expect("cfg");
    let daemon = run.run();
    workload_through_failovers(&src, 33, 2, 2_000);
    wait_all_caught_up(&src, &run, 3, &daemon);
    assert_target_equals_source(&src, &masters(&dst));
    for l in log
        .lines()
        .filter(|l| l.contains("another node") || l.contains("full sync") || l.contains("resum"))
    {
        eprintln!("{l}");
    }
}

/// `source.partition` with a standalone source is refused (two processes
/// would both migrate it), naming the setting.
#[test]
fn a_partition_of_a_standalone_source_is_refused() {
    let src = Server::start(FLAVOR).expect("source");
    let dst = Server::start(FLAVOR).expect("target");
    let run = Run::with_source(
        &src.url(),
        ", partition: { index: 0, count: 2 }",
        &dst.url(),
        "",
    );
    let out = Command::new(FERRY)
        .args(["run", "--config"])
        .arg(&run.cfg)
        .output()
        .expect("ferry run");
    assert_ne!(out.status.code(), Some(0));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("source.partition") && err.contains("standalone"),
        "{err}"
    );
}

//! Resharding of a cluster source during the migration (issue 13 item 4).
//! Real servers: a 3-master source cluster into a 3-master target, a
//! bounded write workload (SET/INCR/RPUSH/DEL over many slots) while
//! `redis-cli --cluster reshard` moves 1200 slots between two source
//! masters; then keys of moved slots are deleted and written on their new
//! master. After the settle and the gaining shard's resync, the target
//! equals the union of every source master's keys, a key deleted after its
//! migration stays deleted, and no key is lost.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use bytes::Bytes;
use ferry_testkit::{Cluster, Flavor, Server, SlotRange, port_of_slot};

use crate::common::Norm;
use crate::common::daemon::{Daemon, status};
use crate::e2e_support::{assert_same, dataset};

/// Bound of every wait for the migration to settle and catch up.
const CATCH_UP: Duration = Duration::from_secs(180);
/// Slots moved by the reshard.
const MOVED: usize = 1200;

/// A single-key client that follows `MOVED` (re-reads the slot map) and
/// `ASK` (`ASKING` + the command on the importing node), as a cluster
/// client does while slots move.
struct Client<'a> {
    cluster: &'a Cluster,
    map: Vec<SlotRange>,
    conns: HashMap<u16, redis::Connection>,
}

impl<'a> Client<'a> {
    fn new(cluster: &'a Cluster) -> Client<'a> {
        Client {
            cluster,
            map: cluster.slot_map(),
            conns: HashMap::new(),
        }
    }

    fn conn(&mut self, port: u16) -> &mut redis::Connection {
        let cluster = self.cluster;
        self.conns.entry(port).or_insert_with(|| {
            cluster
                .nodes
                .iter()
                .find(|n| n.port() == port)
                .expect("node of the port")
                .conn()
        })
    }

    fn run(&mut self, key: &str, cmd: &redis::Cmd) -> redis::Value {
        let slot = ferry_ops::key_slot(key.as_bytes());
        let mut port = port_of_slot(&self.map, slot).expect("slot served");
        for _ in 0..20 {
            match cmd.query::<redis::Value>(self.conn(port)) {
                Ok(v) => return v,
                Err(e) if e.code() == Some("MOVED") => {
                    self.map = self.cluster.slot_map();
                    port = redirect_port(&e);
                }
                Err(e) if e.code() == Some("ASK") => {
                    let to = redirect_port(&e);
                    let mut p = redis::pipe();
                    p.cmd("ASKING").ignore().add_command(cmd.clone());
                    match p.query::<Vec<redis::Value>>(self.conn(to)) {
                        Ok(mut v) => return v.pop().unwrap_or(redis::Value::Nil),
                        Err(e) if e.code() == Some("TRYAGAIN") => {}
                        Err(e) => panic!("{key}: ASK to {to}: {e}"),
                    }
                }
                Err(e) if e.code() == Some("TRYAGAIN") => {}
                Err(e) => panic!("{key}: {e}"),
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("{key}: too many redirects");
    }
}

/// The port of a `MOVED`/`ASK` error's node (`(addr, slot)`).
fn redirect_port(e: &redis::RedisError) -> u16 {
    let (addr, _slot) = e.redirect_node().expect("redirect node");
    addr.rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .expect("redirect port")
}

use crate::cluster_source::{Run, masters, repl_offset};

/// Waits until resharding is over and every link applied its node's
/// offset with lag 0.
fn wait_settled(c: &Cluster, run: &Run, daemon: &Daemon) -> serde_json::Value {
    let deadline = Instant::now() + CATCH_UP;
    loop {
        let st = status(&run.http);
        let ok = st.as_ref().is_some_and(|st| {
            let ls = st["links"].as_array().cloned().unwrap_or_default();
            st["source_watch"]["resharding"] == false
                && ls.len() == 3
                && ls.iter().all(|l| {
                    let node = l["source"].as_str().unwrap_or("");
                    c.nodes.iter().find(|n| n.addr() == node).is_some_and(|n| {
                        l["applied_offset"].as_u64() == Some(repl_offset(n))
                            && l["lag_bytes"].as_u64() == Some(0)
                            && l["phase"] == "streaming"
                    })
                })
        });
        if ok {
            return st.expect("status");
        }
        assert!(
            Instant::now() < deadline,
            "not settled in {CATCH_UP:?}: {st:#?}\n{}",
            daemon.log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn fill(c: &Cluster, keys: usize) {
    let mut cl = Client::new(c);
    for i in 0..keys {
        let k = format!("s:{i}");
        cl.run(&k, redis::cmd("SET").arg(&k).arg(format!("v{i}")));
        let h = format!("h:{i}");
        cl.run(&h, redis::cmd("HSET").arg(&h).arg("a").arg(i));
    }
}

/// At most `max_ops` writes or `seconds`: counters, lists, strings and
/// deletes over 3000 keys in every slot range.
fn workload(c: &Cluster, seed: u64, seconds: u64, max_ops: u64) -> u64 {
    let mut cl = Client::new(c);
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let mut x = seed | 1;
    let mut n = 0;
    while n < max_ops && Instant::now() < deadline {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let i = x % 3000;
        match x % 5 {
            0 => cl.run(&format!("c:{i}"), redis::cmd("INCR").arg(format!("c:{i}"))),
            1 => cl.run(
                &format!("l:{i}"),
                redis::cmd("RPUSH").arg(format!("l:{i}")).arg(n),
            ),
            2 => cl.run(
                &format!("s:{i}"),
                redis::cmd("SET").arg(format!("s:{i}")).arg(n),
            ),
            3 => cl.run(&format!("s:{i}"), redis::cmd("DEL").arg(format!("s:{i}"))),
            _ => cl.run(
                &format!("h:{i}"),
                redis::cmd("HINCRBY").arg(format!("h:{i}")).arg("n").arg(1),
            ),
        };
        n += 1;
    }
    n
}

fn union(servers: &[&Server]) -> BTreeMap<(u64, Bytes), Norm> {
    let mut all = BTreeMap::new();
    for s in servers {
        all.extend(dataset(s));
    }
    all
}

/// How the slots are moved.
#[derive(Clone, Copy)]
enum Mover {
    /// `redis-cli --cluster reshard` (`MIGRATE` key by key).
    RedisCli,
    /// Valkey 9 `CLUSTER MIGRATESLOTS`.
    Atomic,
}

fn reshard_under_load(flavor: Flavor, mover: Mover) {
    let src = Cluster::start(flavor, 3).expect("3-master source");
    let dst = Cluster::start(flavor, 3).expect("3-master target");
    fill(&src, 3000);
    let run = Run::with_source(
        &src.nodes[0].url(),
        ", reshard_settle_ms: 2000",
        &dst.seed_url(),
        "",
    );
    let daemon = run.run();
    wait_settled(&src, &run, &daemon);
    let from = src.master_of_slot(0).expect("owner of slot 0");
    let to = src.master_of_slot(16383).expect("owner of slot 16383");
    let moving = std::sync::atomic::AtomicBool::new(true);
    let started = Instant::now();
    let (ops, saw_resharding) = std::thread::scope(|s| {
        let w = s.spawn(|| workload(&src, 11, 25, 60_000));
        // `/status` says `resharding` while the slots move (bounded by the move).
        let watch = s.spawn(|| {
            let mut seen = false;
            while moving.load(std::sync::atomic::Ordering::Relaxed) && !seen {
                seen = status(&run.http).is_some_and(|st| st["source_watch"]["resharding"] == true);
                std::thread::sleep(Duration::from_millis(50));
            }
            seen
        });
        std::thread::sleep(Duration::from_millis(500));
        match mover {
            Mover::RedisCli => src
                .reshard(from, to, MOVED, Duration::from_secs(180))
                .map(drop),
            Mover::Atomic => {
                src.migrate_slots_atomic(from, to, 0, MOVED as u16 - 1, Duration::from_secs(180))
            }
        }
        .unwrap_or_else(|e| panic!("{e}"));
        let moved_in = started.elapsed();
        let ops = w.join().expect("workload");
        moving.store(false, std::sync::atomic::Ordering::Relaxed);
        eprintln!("{MOVED} slots moved in {moved_in:?} under {ops} writes");
        (ops, watch.join().expect("status poller"))
    });
    assert!(ops > 1000, "{ops} ops");
    assert!(saw_resharding, "/status never said resharding");
    assert_eq!(src.master_of_slot(0), Some(to));
    assert_eq!(src.master_of_slot(MOVED as u16 - 1), Some(to));
    // After the move: delete some keys of moved slots, write others.
    let mut cl = Client::new(&src);
    let mut deleted = Vec::new();
    for i in 0..3000 {
        let k = format!("s:{i}");
        if usize::from(ferry_ops::key_slot(k.as_bytes())) < MOVED && deleted.len() < 50 {
            cl.run(&k, redis::cmd("SET").arg(&k).arg("before-delete"));
            cl.run(&k, redis::cmd("DEL").arg(&k));
            deleted.push(k);
        }
    }
    assert_eq!(deleted.len(), 50, "keys of moved slots");
    for i in 0..200 {
        let k = format!("after:{i}");
        cl.run(&k, redis::cmd("SET").arg(&k).arg(i));
    }
    let quiet = Instant::now();
    let st = wait_settled(&src, &run, &daemon);
    eprintln!(
        "settled (resync done, caught up) {:?} after the last write",
        quiet.elapsed()
    );
    assert!(
        st["moved_slot_dropped"].as_u64().unwrap_or(0) > 0,
        "no op of a moved slot was dropped: {st:#}"
    );
    assert!(
        st["source_watch"]["resyncs"].as_u64().unwrap_or(0) >= 1,
        "{st:#}"
    );
    let want = union(&masters(&src));
    assert!(want.len() > 3000, "{} keys", want.len());
    let got = union(&masters(&dst));
    assert_same(&want, &got);
    for k in &deleted {
        let n: u64 = redis::cmd("EXISTS")
            .arg(k)
            .query(&mut dst.node_for_key(k.as_bytes()).conn())
            .expect("exists");
        assert_eq!(n, 0, "{k} deleted after its migration came back");
    }
}

#[test]
fn redis_cli_reshard_under_load_ends_with_the_target_equal_to_the_source() {
    reshard_under_load(Flavor::Redis70, Mover::RedisCli);
}

#[test]
fn valkey9_atomic_migration_under_load_ends_with_the_target_equal_to_the_source() {
    reshard_under_load(Flavor::Valkey9, Mover::Atomic);
}

/// Slots moved while ferry is stopped: on restart the gaining shard's
/// recorded slots (`shards.json`) lack them, so it is resynced once the
/// source is quiet; the target ends equal to the source.
#[test]
fn a_reshard_while_ferry_is_stopped_is_resynced_on_restart() {
    let src = Cluster::start(Flavor::Redis70, 3).expect("3-master source");
    let dst = Cluster::start(Flavor::Redis70, 3).expect("3-master target");
    fill(&src, 2000);
    let run = Run::with_source(
        &src.nodes[0].url(),
        ", reshard_settle_ms: 2000",
        &dst.seed_url(),
        "",
    );
    let mut daemon = run.run();
    wait_settled(&src, &run, &daemon);
    assert_eq!(daemon.stop(), Some(0), "{}", daemon.log());
    let from = src.master_of_slot(0).expect("owner of slot 0");
    let to = src.master_of_slot(16383).expect("owner of slot 16383");
    src.reshard(from, to, 600, Duration::from_secs(180))
        .unwrap_or_else(|e| panic!("{e}"));
    let ops = workload(&src, 5, 5, 5_000);
    assert!(ops > 100, "{ops} ops");
    let daemon = run.run();
    let st = wait_settled(&src, &run, &daemon);
    assert_eq!(st["source_watch"]["resyncs"], 1, "{st:#}");
    let want = union(&masters(&src));
    let got = union(&masters(&dst));
    assert_same(&want, &got);
}

//! Cross-slot commands replayed by emulation (`ferry_ops::emulate`): a Redis
//! 7.0 source receives, while ferry streams into a 3-master Redis 7.0
//! cluster, `RENAME`, `RENAMENX`, `COPY`, `SMOVE`, `LMOVE`, `RPOPLPUSH`,
//! `SUNIONSTORE`, `ZUNIONSTORE ... WEIGHTS`, `SDIFFSTORE`, `ZRANGESTORE`,
//! `PFMERGE`, `BITOP` and `GEOSEARCHSTORE` whose keys span slots, mixed
//! with ordinary writes to the same keys (some inside `MULTI`/`EXEC`). At the end `ferry verify` exits 0
//! and nothing was counted `unreplayable` but a cross-slot `SORT ... STORE`
//! (still reported, by name). Also: `kill -9` of ferry twice
//! in the middle of such a load, restarted each time; verify exits 0.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use ferry_testkit::{Cluster, Flavor, Server};

use crate::common::daemon::{Daemon, Setup, wait_caught_up, wait_phase};

/// Every cross-slot shape, once per round, with ordinary writes around.
/// Key families never change type, so no command fails on the source.
fn round(c: &mut redis::Connection, i: u64) {
    let (a, b) = (i % 7, (i + 3) % 7);
    let mut p = redis::pipe();
    // Ordinary writes to the keys the cross-slot commands use.
    p.cmd("SET").arg(format!("str:{i}")).arg(i).ignore();
    p.cmd("APPEND")
        .arg(format!("acc:{a}"))
        .arg(format!("{i},"))
        .ignore();
    p.cmd("PEXPIRE")
        .arg(format!("str:{i}"))
        .arg(3_600_000)
        .ignore();
    p.cmd("RPUSH")
        .arg(format!("list:{a}"))
        .arg(i)
        .arg(i + 1)
        .ignore();
    p.cmd("SADD")
        .arg(format!("set:{a}"))
        .arg(i % 13)
        .arg(i % 17)
        .ignore();
    p.cmd("ZADD")
        .arg(format!("zset:{a}"))
        .arg(i % 11)
        .arg(format!("m{}", i % 19))
        .ignore();
    p.cmd("PFADD")
        .arg(format!("hll:{a}"))
        .arg(format!("e{i}"))
        .ignore();
    p.cmd("SETBIT")
        .arg(format!("bits:{a}"))
        .arg(i % 64)
        .arg(1)
        .ignore();
    p.cmd("GEOADD")
        .arg(format!("geo:{a}"))
        .arg(13.0 + (i % 10) as f64 / 10.0)
        .arg(38.0 + (i % 7) as f64 / 10.0)
        .arg(format!("p{}", i % 23))
        .ignore();
    // Cross-slot (the names hash to different slots; one that happens to
    // share a slot is simply routed as it is).
    p.cmd("RENAME")
        .arg(format!("str:{i}"))
        .arg(format!("moved:{}", i % 40))
        .ignore();
    p.cmd("SET").arg(format!("nx:{i}")).arg(i).ignore();
    p.cmd("RENAMENX")
        .arg(format!("nx:{i}"))
        .arg(format!("nxdst:{i}"))
        .ignore();
    p.cmd("COPY")
        .arg(format!("acc:{a}"))
        .arg(format!("copy:{b}"))
        .arg("REPLACE")
        .ignore();
    p.cmd("SMOVE")
        .arg(format!("set:{a}"))
        .arg(format!("set:{b}"))
        .arg(i % 13)
        .ignore();
    p.cmd("LMOVE")
        .arg(format!("list:{a}"))
        .arg(format!("list:{b}"))
        .arg("LEFT")
        .arg("RIGHT")
        .ignore();
    p.cmd("RPOPLPUSH")
        .arg(format!("list:{b}"))
        .arg(format!("list:{a}"))
        .ignore();
    p.cmd("SUNIONSTORE")
        .arg(format!("su:{a}"))
        .arg(format!("set:{a}"))
        .arg(format!("set:{b}"))
        .ignore();
    p.cmd("SDIFFSTORE")
        .arg(format!("sd:{a}"))
        .arg(format!("set:{b}"))
        .arg(format!("set:{a}"))
        .ignore();
    p.cmd("ZUNIONSTORE")
        .arg(format!("zu:{a}"))
        .arg(2)
        .arg(format!("zset:{a}"))
        .arg(format!("zset:{b}"))
        .arg("WEIGHTS")
        .arg(1)
        .arg(3)
        .ignore();
    p.cmd("ZRANGESTORE")
        .arg(format!("zr:{b}"))
        .arg(format!("zset:{a}"))
        .arg(0)
        .arg(4)
        .ignore();
    p.cmd("PFMERGE")
        .arg(format!("hm:{a}"))
        .arg(format!("hll:{a}"))
        .arg(format!("hll:{b}"))
        .ignore();
    p.cmd("BITOP")
        .arg("OR")
        .arg(format!("bo:{a}"))
        .arg(format!("bits:{a}"))
        .arg(format!("bits:{b}"))
        .ignore();
    p.cmd("GEOSEARCHSTORE")
        .arg(format!("gs:{b}"))
        .arg(format!("geo:{a}"))
        .arg("FROMLONLAT")
        .arg(13.5)
        .arg(38.3)
        .arg("BYRADIUS")
        .arg(200)
        .arg("km")
        .arg("ASC")
        .arg("STOREDIST")
        .ignore();
    // Inside a source transaction, between ordinary writes.
    p.cmd("MULTI").ignore();
    p.cmd("INCR").arg(format!("txc:{a}")).ignore();
    p.cmd("COPY")
        .arg(format!("txc:{a}"))
        .arg(format!("txcopy:{b}"))
        .arg("REPLACE")
        .ignore();
    p.cmd("SUNIONSTORE")
        .arg(format!("txsu:{b}"))
        .arg(format!("set:{a}"))
        .arg(format!("set:{b}"))
        .ignore();
    p.cmd("INCR").arg(format!("txc:{b}")).ignore();
    p.cmd("EXEC").ignore();
    // And more ordinary writes after them, to the same keys.
    p.cmd("SADD")
        .arg(format!("set:{b}"))
        .arg(100 + i % 5)
        .ignore();
    p.cmd("LPUSH").arg(format!("list:{b}")).arg(i).ignore();
    p.cmd("INCR")
        .arg(format!("moved:{}", (i + 20) % 40))
        .ignore();
    p.query::<()>(c).expect("round");
}

/// Rounds until `stop`, `seconds` or `max`; returns how many ran.
fn load(src: &Server, stop: &AtomicBool, seconds: u64, max: u64) -> u64 {
    let mut c = src.conn();
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let mut n = 0;
    while !stop.load(Ordering::Relaxed) && Instant::now() < deadline && n < max {
        round(&mut c, n);
        n += 1;
    }
    n
}

fn source() -> Server {
    Server::builder(Flavor::Redis70)
        .arg("repl-backlog-size", "256mb")
        .start()
        .expect("source")
}

fn seed(src: &Server) {
    let mut c = src.conn();
    for i in 0..7 {
        round(&mut c, 10_000 + i);
    }
}

fn unreplayable(st: &serde_json::Value) -> u64 {
    st["skipped"]["unreplayable"].as_u64().unwrap_or(0)
}

#[test]
fn cross_slot_commands_are_emulated_while_streaming() {
    let src = source();
    seed(&src);
    let cluster = Cluster::start(Flavor::Redis70, 3).expect("cluster");
    let setup = Setup::new(&src.url(), &cluster.seed_url(), "");
    let daemon: Daemon = setup.run();
    wait_phase(&setup.http, "streaming", Duration::from_secs(60));
    let stop = AtomicBool::new(false);
    let rounds = load(&src, &stop, 60, 120);
    // Still not replayable on a cluster: counted and logged (then deleted
    // on the source, so the datasets stay equal).
    let mut c = src.conn();
    let sorted: u64 = redis::cmd("SORT")
        .arg("list:1")
        .arg("STORE")
        .arg("sorted:x")
        .query(&mut c)
        .expect("SORT STORE");
    assert!(sorted > 0, "list:1 is empty");
    redis::cmd("DEL")
        .arg("sorted:x")
        .query::<()>(&mut c)
        .expect("DEL");
    wait_caught_up(&src, &setup.http, Duration::from_secs(120));
    let st = setup.status().expect("status");
    let out = setup.assert_verified();
    assert_eq!(unreplayable(&st), 1, "{st}\n{}", daemon.log());
    let log = daemon.log();
    let not_carried: Vec<&str> = log.lines().filter(|l| l.contains("not carried")).collect();
    assert_eq!(not_carried.len(), 1, "{log}");
    assert!(not_carried[0].contains("SORT"), "{log}");
    let emulated = st["emulated"].as_u64().unwrap_or(0);
    // 13 cross-slot commands a round; a few may share a slot by chance.
    assert!(
        emulated >= rounds * 10,
        "emulated {emulated} in {rounds} rounds: {st}"
    );
    eprintln!(
        "{rounds} rounds, {emulated} commands emulated; verify: {}",
        out.trim()
    );
}

#[test]
fn kill_9_during_a_cross_slot_load_then_verify() {
    let src = source();
    seed(&src);
    let cluster = Cluster::start(Flavor::Redis70, 3).expect("cluster");
    let setup = Setup::new(&src.url(), &cluster.seed_url(), "");
    let mut daemon = setup.run();
    wait_phase(&setup.http, "streaming", Duration::from_secs(60));
    let stop = AtomicBool::new(false);
    let rounds = std::thread::scope(|scope| {
        let loader = scope.spawn(|| load(&src, &stop, 30, 100_000));
        for _ in 0..2 {
            std::thread::sleep(Duration::from_millis(1500));
            daemon.kill9();
            daemon = setup.run();
            wait_phase(&setup.http, "streaming", Duration::from_secs(60));
        }
        std::thread::sleep(Duration::from_millis(1000));
        stop.store(true, Ordering::Relaxed);
        loader.join().expect("load thread")
    });
    wait_caught_up(&src, &setup.http, Duration::from_secs(180));
    let st = setup.status().expect("status");
    let out = setup.assert_verified();
    assert_eq!(st["keys_applied"], 0, "a restart resynced: {st}");
    // Commands replayed after a restart whose writes the target already
    // committed are recognised (no read of keys changed since).
    assert_eq!(unreplayable(&st), 0, "{st}\n{}", daemon.log());
    eprintln!(
        "{rounds} rounds with 2 kills; emulated {} after the last restart; verify: {}",
        st["emulated"],
        out.trim()
    );
}

fn cmd(server: &Server, args: &[&str]) -> redis::Value {
    let mut c = redis::cmd(args[0]);
    for a in &args[1..] {
        c.arg(*a);
    }
    c.query(&mut server.conn())
        .unwrap_or_else(|e| panic!("{} {args:?}: {e}", server.addr()))
}

fn node_id(server: &Server) -> String {
    match cmd(server, &["CLUSTER", "MYID"]) {
        redis::Value::BulkString(b) => String::from_utf8(b).expect("id"),
        redis::Value::SimpleString(s) => s,
        other => panic!("{other:?}"),
    }
}

/// The writer's side reads (what emulation reads with) follow `-ASK` while
/// a slot migrates and `-MOVED` after, updating `node_for_slot`; they
/// refuse anything but `DUMP`/`PTTL`/`LINDEX`.
#[test]
fn side_reads_follow_ask_and_moved() {
    use bytes::Bytes;
    use ferry_cluster::{Auth, ClusterWriter};
    use ferry_resp::Value;

    let cluster = Cluster::start(Flavor::Redis70, 3).expect("cluster");
    let key = "side:read";
    let slot = ferry_ops::key_slot(key.as_bytes());
    let owner = cluster.node_for_key(key.as_bytes());
    let from = cluster
        .nodes
        .iter()
        .position(|n| n.port() == owner.port())
        .expect("owner");
    let to = (from + 1) % cluster.nodes.len();
    let (src, dst) = (&cluster.nodes[from], &cluster.nodes[to]);
    cmd(src, &["SET", key, "v1", "PX", "3600000"]);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let args = |name: &str| vec![Bytes::from(name.to_owned()), Bytes::from(key)];
    rt.block_on(async {
        let mut w = ClusterWriter::connect(&cluster.seed_url(), Auth::none())
            .await
            .expect("writer");
        assert_eq!(w.node_for_slot(slot), Some(src.addr()));
        let dump = w.read(slot, &args("DUMP")).await.expect("DUMP");
        assert!(matches!(dump, Value::Bulk(_)), "{dump:?}");
        let refused = w
            .read(
                slot,
                &[Bytes::from("SET"), Bytes::from(key), Bytes::from("x")],
            )
            .await;
        assert!(refused.is_err(), "{refused:?}");

        // Migration window: the key already moved, the slot not yet: ASK.
        let (src_id, dst_id) = (node_id(src), node_id(dst));
        let s = slot.to_string();
        cmd(dst, &["CLUSTER", "SETSLOT", &s, "IMPORTING", &src_id]);
        cmd(src, &["CLUSTER", "SETSLOT", &s, "MIGRATING", &dst_id]);
        let port = dst.port().to_string();
        cmd(src, &["MIGRATE", "127.0.0.1", &port, key, "0", "5000"]);
        let dump = w.read(slot, &args("DUMP")).await.expect("DUMP after ASK");
        assert!(matches!(dump, Value::Bulk(_)), "{dump:?}");
        assert_eq!(
            w.node_for_slot(slot),
            Some(src.addr()),
            "ASK moved the slot"
        );

        // Migration done: MOVED, and the handle's map follows.
        for n in [dst, src] {
            cmd(n, &["CLUSTER", "SETSLOT", &s, "NODE", &dst_id]);
        }
        for (i, n) in cluster.nodes.iter().enumerate() {
            if i != from && i != to {
                cmd(n, &["CLUSTER", "SETSLOT", &s, "NODE", &dst_id]);
            }
        }
        let pttl = w.read(slot, &args("PTTL")).await.expect("PTTL after MOVED");
        assert!(matches!(pttl, Value::Integer(t) if t > 0), "{pttl:?}");
        assert_eq!(w.node_for_slot(slot), Some(dst.addr()));
    });
}

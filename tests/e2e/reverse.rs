//! Reverse sync and two-way sync (issue 14), against real servers.
//!
//! * A standalone target is exactly-once across `kill -9` (checkpoint key
//!   in db 0, each transaction selecting its way there and back).
//! * Rollback, standalone ↔ standalone: forward run → `ferry cutover
//!   --reverse R.yaml` → forward stopped → `ferry run --config R.yaml`
//!   continues the new side's stream (no full sync) into the old side,
//!   across a `kill -9`; a position pushed out of the backlog is refused.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use ferry_testkit::{Cluster, Flavor, Server, XorShift64};

use crate::common::daemon::{Daemon, FERRY, Setup, source_offset, stat, status, wait_caught_up};
use crate::e2e_support::{assert_same, dataset, run_expecting_exit};

/// A bounded load of non-idempotent writes over dbs 0–2 (so the stream
/// carries `SELECT`s), keys under `ns`, in pipelines of 50, until `stop`
/// or the bounds. Returns the number of commands sent by clients.
pub(crate) fn load_dbs(
    server: &Server,
    stop: &AtomicBool,
    seconds: u64,
    max: u64,
    ns: &str,
    seed: u64,
) -> u64 {
    let mut c = server.conn();
    let mut rng = XorShift64(seed);
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let mut n = 0u64;
    while !stop.load(Ordering::Relaxed) && Instant::now() < deadline && n < max {
        let mut p = redis::pipe();
        let db = rng.next() % 3;
        p.cmd("SELECT").arg(db).ignore();
        for _ in 0..50 {
            let r = rng.next();
            let v = n.to_string();
            match r % 5 {
                0 => p.cmd("INCR").arg(format!("{ns}cnt:{}", r % 20)),
                1 => p.cmd("RPUSH").arg(format!("{ns}list:{}", r % 10)).arg(&v),
                2 => p
                    .cmd("APPEND")
                    .arg(format!("{ns}str:{}", r % 10))
                    .arg(format!("{v},")),
                3 => p
                    .cmd("HINCRBY")
                    .arg(format!("{ns}h:{}", r % 5))
                    .arg(format!("f{}", r % 4))
                    .arg(1),
                _ => p
                    .cmd("MULTI")
                    .cmd("INCR")
                    .arg(format!("{ns}{{tx}}:a"))
                    .cmd("RPUSH")
                    .arg(format!("{ns}{{tx}}:l"))
                    .arg(&v)
                    .cmd("EXEC"),
            };
            p.ignore();
            n += 1;
        }
        p.query::<()>(&mut c).expect("load");
    }
    n
}

/// Waits (bounded) until the daemon on `http` streams.
pub(crate) fn wait_streaming(http: &str, log: &dyn Fn() -> String) {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let st = status(http);
        if st
            .as_ref()
            .is_some_and(|s| s["phase"] == "streaming" && s["applied_offset"].as_u64().is_some())
        {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "not streaming: {st:?}\n{}",
            log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Keys under ferry's reserved prefix in each of dbs 0–2 of `server`.
fn reserved_per_db(server: &Server) -> Vec<usize> {
    let mut c = server.conn();
    (0..3)
        .map(|db| {
            redis::cmd("SELECT")
                .arg(db)
                .query::<()>(&mut c)
                .expect("SELECT");
            let keys: Vec<String> = redis::cmd("KEYS")
                .arg("__ferry:*")
                .query(&mut c)
                .expect("KEYS");
            keys.len()
        })
        .collect()
}

#[test]
fn standalone_target_kill_9_twice_applies_every_command_once() {
    let src = Server::builder(Flavor::Redis70)
        .arg("repl-backlog-size", "64mb")
        .start()
        .expect("source");
    let dst = Server::start(Flavor::Redis70).expect("target");
    let mut c = src.conn();
    ferry_testkit::fixtures::populate_mixed(&mut c, 5_000).expect("seed");
    let setup = Setup::new(&src.url(), &dst.url(), "");
    let mut daemon = setup.run();
    wait_streaming(&setup.http, &|| daemon.log());

    let stop = AtomicBool::new(false);
    let mut kills = Vec::new();
    let ops = std::thread::scope(|scope| {
        let loader = scope.spawn(|| load_dbs(&src, &stop, 10, 300_000, "", 7));
        for _ in 0..2 {
            std::thread::sleep(Duration::from_millis(1500));
            let before = status(&setup.http).and_then(|s| s["applied_offset"].as_u64());
            daemon.kill9();
            kills.push(format!("kill -9 at applied {before:?}"));
            daemon = setup.run();
            wait_streaming(&setup.http, &|| daemon.log());
        }
        std::thread::sleep(Duration::from_millis(1000));
        stop.store(true, Ordering::Relaxed);
        loader.join().expect("load thread")
    });
    assert!(ops > 1000, "load too small: {ops}");
    wait_caught_up(&src, &setup.http, Duration::from_secs(90));
    let st = status(&setup.http).expect("status");
    assert_eq!(st["keys_applied"], 0, "a restart resynced: {st}");
    assert_same(&dataset(&src), &dataset(&dst));
    setup.assert_verified();
    // ferry's keys: in db 0 only.
    let ours = reserved_per_db(&dst);
    assert!(ours[0] > 0 && ours[1] == 0 && ours[2] == 0, "{ours:?}");
    eprintln!(
        "{ops} commands, {}; target {}",
        kills.join("; "),
        st["target"]
    );
}

/// `ferry <args> --config <cfg> [more]`: exit code and stdout + stderr.
pub(crate) fn ferry(args: &[&str], cfg: &Path, more: &[&str]) -> (Option<i32>, String) {
    let out = Command::new(FERRY)
        .args(args)
        .arg("--config")
        .arg(cfg)
        .args(more)
        .output()
        .expect("ferry");
    (
        out.status.code(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// `ferry run --config <cfg>`, stderr to `<cfg>.<n>.log`.
pub(crate) fn run(cfg: &Path) -> Daemon {
    let mut n = 0;
    let log = loop {
        let l = cfg.with_extension(format!("{n}.log"));
        if !l.exists() {
            break l;
        }
        n += 1;
    };
    let child = Command::new(FERRY)
        .args(["run", "--config"])
        .arg(cfg)
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log).expect("log file"))
        .spawn()
        .expect("start ferry run");
    Daemon { child, log }
}

/// The `http.listen` of a config file.
pub(crate) fn http_of(cfg: &Path) -> String {
    let text = std::fs::read_to_string(cfg).expect("config");
    let v: serde_yaml_ng::Value = serde_yaml_ng::from_str(&text).expect("yaml");
    v["http"]["listen"]
        .as_str()
        .expect("http.listen")
        .to_owned()
}

/// Forward run `old → new` until caught up, then `ferry cutover --reverse`:
/// the forward setup (still running) and the reverse file.
fn forward_then_cutover(
    old: &Server,
    new_url: &str,
    extra: &str,
) -> (Setup, Daemon, PathBuf, String) {
    let setup = Setup::new(&old.url(), new_url, extra);
    let daemon = setup.run();
    wait_streaming(&setup.http, &|| daemon.log());
    wait_caught_up(old, &setup.http, Duration::from_secs(60));
    let r = setup.dir.path().join("reverse.yaml");
    let (code, out) = ferry(
        &["cutover"],
        &setup.cfg,
        &["--reverse", r.to_str().expect("path")],
    );
    assert_eq!(code, Some(0), "cutover --reverse: {out}\n{}", daemon.log());
    assert!(out.contains("reverse configuration written"), "{out}");
    // R.yaml listens on the forward port + 1, which tests running in
    // parallel may hold: a free port instead.
    let text = std::fs::read_to_string(&r).expect("R.yaml");
    let fresh = format!("listen: 127.0.0.1:{}", ferry_testkit::free_port());
    let text: Vec<String> = text
        .lines()
        .map(|l| match l.find("listen: ") {
            Some(i) => format!("{}{fresh}", &l[..i]),
            None => l.to_owned(),
        })
        .collect();
    std::fs::write(&r, text.join("\n") + "\n").expect("R.yaml");
    (setup, daemon, r, out)
}

#[test]
fn rollback_standalone_continues_the_new_side_into_the_old_across_kill_9() {
    rollback_standalone(false);
}

#[test]
fn rollback_standalone_with_a_replica_on_the_new_side() {
    rollback_standalone(true);
}

fn rollback_standalone(replica: bool) {
    let old = Server::start(Flavor::Redis70).expect("old");
    // Without a replica cutover --reverse must create the new side's
    // backlog (big enough for the load while the reverse ferry is down).
    let new = Server::builder(Flavor::Redis70)
        .arg("repl-backlog-size", "64mb")
        .start()
        .expect("new");
    let _replica = replica.then(|| {
        let r = Server::start(Flavor::Redis70).expect("replica");
        redis::cmd("REPLICAOF")
            .arg("127.0.0.1")
            .arg(new.port())
            .query::<()>(&mut r.conn())
            .expect("REPLICAOF");
        let deadline = Instant::now() + Duration::from_secs(30);
        while !new.info("replication").contains("state=online") {
            assert!(Instant::now() < deadline, "replica not online");
            std::thread::sleep(Duration::from_millis(50));
        }
        r
    });
    ferry_testkit::fixtures::populate_mixed(&mut old.conn(), 5_000).expect("seed");
    let (setup, mut forward, r, out) = forward_then_cutover(&old, &new.url(), "");
    assert_eq!(
        out.contains("created a replication backlog on"),
        !replica,
        "{out}"
    );
    let text = std::fs::read_to_string(&r).expect("R.yaml");
    assert!(
        text.contains("start_positions") && text.contains("repl-backlog-ttl"),
        "{text}"
    );
    assert_eq!(forward.stop(), Some(0), "forward stop: {}", forward.log());
    let full_before = stat(&new, "sync_full");

    let http = http_of(&r);
    let mut reverse = run(&r);
    wait_streaming(&http, &|| reverse.log());
    let stop = AtomicBool::new(false);
    let ops = std::thread::scope(|scope| {
        let loader = scope.spawn(|| load_dbs(&new, &stop, 8, 200_000, "n:", 11));
        std::thread::sleep(Duration::from_millis(2000));
        reverse.kill9();
        reverse = run(&r);
        wait_streaming(&http, &|| reverse.log());
        loader.join().expect("load")
    });
    assert!(ops > 1000, "load too small: {ops}");
    wait_caught_up(&new, &http, Duration::from_secs(90));
    let st = status(&http).expect("status");
    assert_eq!(
        st["keys_applied"], 0,
        "the reverse run took a snapshot: {st}"
    );
    assert_eq!(
        stat(&new, "sync_full"),
        full_before,
        "a full sync of the new side"
    );
    assert_same(&dataset(&new), &dataset(&old));
    let (code, out) = ferry(&["verify"], &r, &[]);
    assert_eq!(code, Some(0), "verify R.yaml: {out}");
    drop(setup);
}

#[test]
fn rollback_refuses_a_position_pushed_out_of_the_backlog() {
    let old = Server::start(Flavor::Redis70).expect("old");
    let new = Server::builder(Flavor::Redis70)
        .arg("repl-backlog-size", "16kb")
        .start()
        .expect("new");
    ferry_testkit::fixtures::populate_mixed(&mut old.conn(), 1_000).expect("seed");
    let (_setup, mut forward, r, _) = forward_then_cutover(&old, &new.url(), "");
    assert_eq!(forward.stop(), Some(0));
    let before = dataset(&old);
    // 200 kB of writes on the new side: far past its 16 kB backlog.
    let mut c = new.conn();
    for i in 0..200 {
        redis::cmd("SET")
            .arg(format!("big:{i}"))
            .arg("x".repeat(1000))
            .query::<()>(&mut c)
            .expect("SET");
    }
    let out = run_expecting_exit(&r, Duration::from_secs(60));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains("no longer in the backlog")
            && err.contains(&new.addr())
            && err.contains("start_positions to allow a full sync"),
        "{err}"
    );
    assert_same(&before, &dataset(&old));
}

/// One side of a migration: a server or a cluster.
#[derive(Clone, Copy)]
pub(crate) enum Side<'a> {
    /// A standalone server.
    One(&'a Server),
    /// A cluster (every node a master).
    Many(&'a Cluster),
}

impl Side<'_> {
    fn node_for(&self, key: &str) -> &Server {
        match self {
            Side::One(s) => s,
            Side::Many(c) => c.node_for_key(key.as_bytes()),
        }
    }

    fn masters(&self) -> Vec<&Server> {
        match self {
            Side::One(s) => vec![*s],
            Side::Many(c) => c
                .nodes
                .iter()
                .filter(|n| n.info("replication").contains("role:master"))
                .collect(),
        }
    }

    /// The sum of the masters' `master_repl_offset` (what `/status` sums
    /// for a cluster source).
    fn offset(&self) -> u64 {
        self.masters().iter().map(|m| source_offset(m)).sum()
    }

    /// Each master's `sync_full`.
    fn full_syncs(&self) -> Vec<u64> {
        self.masters()
            .iter()
            .map(|m| stat(m, "sync_full"))
            .collect()
    }
}

/// A bounded load of `INCR <p>cnt:<i>` and `RPUSH <p>list:<i>` in db 0 (no
/// transactions: one client command, one replicated command), in
/// pipelines of 50 (per node), until `stop` or the bounds: (INCRs,
/// RPUSHes) sent.
pub(crate) fn load_counted(
    side: Side<'_>,
    stop: &AtomicBool,
    seconds: u64,
    max: u64,
    p: &str,
) -> (u64, u64) {
    let mut conns: Vec<(u16, redis::Connection)> = Vec::new();
    let mut rng = XorShift64(0x1234_5678 ^ p.len() as u64 ^ u64::from(p.as_bytes()[0]));
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let (mut incrs, mut pushes) = (0u64, 0u64);
    while !stop.load(Ordering::Relaxed) && Instant::now() < deadline && incrs + pushes < max {
        let mut pipes: Vec<(u16, redis::Pipeline)> = Vec::new();
        for _ in 0..50 {
            let r = rng.next();
            let key = if r % 2 == 0 {
                format!("{p}cnt:{}", r % 64)
            } else {
                format!("{p}list:{}", r % 16)
            };
            let node = side.node_for(&key);
            let port = node.port();
            if !conns.iter().any(|(p, _)| *p == port) {
                conns.push((port, node.conn()));
            }
            if !pipes.iter().any(|(p, _)| *p == port) {
                pipes.push((port, redis::pipe()));
            }
            let pipe = &mut pipes.iter_mut().find(|(p, _)| *p == port).expect("pipe").1;
            if r % 2 == 0 {
                pipe.cmd("INCR").arg(&key);
                incrs += 1;
            } else {
                pipe.cmd("RPUSH").arg(&key).arg(r % 1000);
                pushes += 1;
            }
            pipe.ignore();
        }
        for (port, pipe) in &pipes {
            let c = &mut conns.iter_mut().find(|(p, _)| p == port).expect("conn").1;
            pipe.query::<()>(c).expect("load");
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    (incrs, pushes)
}

/// (sum of `<p>cnt:*` values, sum of `<p>list:*` lengths) on `side`.
fn totals(side: Side<'_>, p: &str) -> (u64, u64) {
    let (mut sum, mut len) = (0, 0);
    for i in 0..64 {
        let key = format!("{p}cnt:{i}");
        let v: Option<u64> = redis::cmd("GET")
            .arg(&key)
            .query(&mut side.node_for(&key).conn())
            .expect("GET");
        sum += v.unwrap_or(0);
    }
    for i in 0..16 {
        let key = format!("{p}list:{i}");
        let n: u64 = redis::cmd("LLEN")
            .arg(&key)
            .query(&mut side.node_for(&key).conn())
            .expect("LLEN");
        len += n;
    }
    (sum, len)
}

/// Waits (bounded) until the ferry on `http` has applied its source's
/// offset (`side`), twice in a row 300 ms apart.
fn wait_applied(side: Side<'_>, http: &str) {
    wait_all_applied(&[(side, http)]);
}

/// [`wait_applied`] for several ferries at once (each one's writes move
/// the other's source).
fn wait_all_applied(ferries: &[(Side<'_>, &str)]) {
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut stable = 0;
    while stable < 2 {
        let done = ferries.iter().all(|(side, http)| {
            let applied = status(http).and_then(|s| s["applied_offset"].as_u64());
            applied == Some(side.offset())
        });
        stable = if done { stable + 1 } else { 0 };
        assert!(
            Instant::now() < deadline,
            "not caught up: {:?}",
            ferries
                .iter()
                .map(|(side, http)| (
                    status(http).map(|s| s["applied_offset"].clone()),
                    side.offset()
                ))
                .collect::<Vec<_>>()
        );
        std::thread::sleep(Duration::from_millis(300));
    }
}

/// Both ferries running (`mode: two_way`), `a:*` written on the old side
/// and `b:*` on the new, then the same with a `kill -9` of each: both
/// sides equal, every client command applied once on each side (no echo:
/// counters and list lengths equal what clients sent).
fn two_way_between(old: &Server, new: Side<'_>, new_url: &str) {
    let (setup, mut forward, r, _) = forward_then_cutover(old, new_url, "mode: two_way\n");
    let rhttp = http_of(&r);
    let mut reverse = run(&r);
    wait_streaming(&rhttp, &|| reverse.log());
    let old_side = Side::One(old);

    let stop = AtomicBool::new(false);
    let (la, lb) = std::thread::scope(|scope| {
        let ta = scope.spawn(|| load_counted(old_side, &stop, 15, 150_000, "a:"));
        let tb = scope.spawn(|| load_counted(new, &stop, 15, 150_000, "b:"));
        (ta.join().expect("a"), tb.join().expect("b"))
    });
    wait_all_applied(&[(old_side, &setup.http), (new, &rhttp)]);
    let sf = status(&setup.http).expect("forward status");
    let sr = status(&rhttp).expect("reverse status");
    // No echo: each ferry applied exactly what its side's clients sent,
    // and left out exactly what the other ferry wrote there.
    assert_eq!(sf["commands_applied"], la.0 + la.1, "forward: {sf}");
    assert_eq!(sr["commands_applied"], lb.0 + lb.1, "reverse: {sr}");
    assert_eq!(sf["two_way"]["echo_commands"], lb.0 + lb.1, "forward: {sf}");
    assert_eq!(sr["two_way"]["echo_commands"], la.0 + la.1, "reverse: {sr}");
    assert_eq!(sf["two_way"]["conflicts"], 0, "{sf}");
    for s in [old_side, new] {
        assert_eq!(totals(s, "a:"), la);
        assert_eq!(totals(s, "b:"), lb);
    }

    // The same with a kill -9 of each ferry.
    let stop = AtomicBool::new(false);
    let (la2, lb2) = std::thread::scope(|scope| {
        let ta = scope.spawn(|| load_counted(old_side, &stop, 15, 150_000, "a:"));
        let tb = scope.spawn(|| load_counted(new, &stop, 15, 150_000, "b:"));
        std::thread::sleep(Duration::from_millis(3000));
        forward.kill9();
        forward = setup.run();
        wait_streaming(&setup.http, &|| forward.log());
        std::thread::sleep(Duration::from_millis(3000));
        reverse.kill9();
        reverse = run(&r);
        wait_streaming(&rhttp, &|| reverse.log());
        (ta.join().expect("a"), tb.join().expect("b"))
    });
    wait_all_applied(&[(old_side, &setup.http), (new, &rhttp)]);
    let want_a = (la.0 + la2.0, la.1 + la2.1);
    let want_b = (lb.0 + lb2.0, lb.1 + lb2.1);
    for s in [old_side, new] {
        assert_eq!(totals(s, "a:"), want_a, "a:*");
        assert_eq!(totals(s, "b:"), want_b, "b:*");
    }
    if let Side::One(n) = new {
        assert_same(&dataset(old), &dataset(n));
    }
    setup.assert_verified();
    let (code, out) = ferry(&["verify"], &r, &[]);
    assert_eq!(code, Some(0), "verify R.yaml: {out}");
    eprintln!(
        "two-way: a {la:?}+{la2:?}, b {lb:?}+{lb2:?}; forward {}, reverse {}",
        status(&setup.http).map_or(serde_json::Value::Null, |s| s["two_way"].clone()),
        status(&rhttp).map_or(serde_json::Value::Null, |s| s["two_way"].clone()),
    );
}

#[test]
fn two_way_standalone_both_sides_equal_and_no_echo_across_kill_9() {
    let old = Server::builder(Flavor::Redis70)
        .arg("repl-backlog-size", "64mb")
        .start()
        .expect("old");
    let new = Server::builder(Flavor::Redis70)
        .arg("repl-backlog-size", "64mb")
        .start()
        .expect("new");
    ferry_testkit::fixtures::populate_mixed(&mut old.conn(), 2_000).expect("seed");
    two_way_between(&old, Side::One(&new), &new.url());
}

#[test]
fn two_way_refused_when_the_forward_ferry_is_one_way() {
    let old = Server::start(Flavor::Redis70).expect("old");
    let new = Server::start(Flavor::Redis70).expect("new");
    ferry_testkit::fixtures::populate_mixed(&mut old.conn(), 500).expect("seed");
    // Forward one-way, reverse file edited to two-way: refused.
    let (_setup, _forward, r, _) = forward_then_cutover(&old, &new.url(), "");
    let text = std::fs::read_to_string(&r).expect("R.yaml");
    std::fs::write(&r, format!("mode: two_way\n{text}")).expect("write");
    let out = run_expecting_exit(&r, Duration::from_secs(30));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains("the opposite direction is not") && err.contains("__ferry:two_way"),
        "{err}"
    );
}

/// A 3-master cluster (no replicas: cutover --reverse creates each
/// master's backlog) with a backlog big enough for the load while the
/// reverse ferry is down.
fn new_cluster() -> Cluster {
    Cluster::start_with(Flavor::Redis70, 3, |b| b.arg("repl-backlog-size", "64mb"))
        .expect("cluster")
}

#[test]
fn rollback_from_a_3_master_cluster_into_the_old_server_across_kill_9() {
    // No replicas: cutover --reverse creates each master's backlog.
    rollback_from_cluster(&new_cluster(), 3);
}

#[test]
fn rollback_from_a_3_master_cluster_with_replicas_across_kill_9() {
    // A replica per master: the backlogs exist already.
    let cluster = Cluster::start_with_replicas_and(Flavor::Redis70, 3, 1, |b| {
        b.arg("repl-backlog-size", "64mb")
    })
    .expect("cluster");
    rollback_from_cluster(&cluster, 0);
}

/// Forward run into `cluster`, `cutover --reverse` (which must create
/// `backlogs_created` backlogs), then the reverse run under a load on the
/// new side with a `kill -9`: the old server ends equal, with no full sync
/// of any new master.
fn rollback_from_cluster(cluster: &Cluster, backlogs_created: usize) {
    let old = Server::start(Flavor::Redis70).expect("old");
    ferry_testkit::fixtures::populate_mixed(&mut old.conn(), 5_000).expect("seed");
    let new = Side::Many(cluster);
    let (setup, mut forward, r, out) = forward_then_cutover(&old, &cluster.seed_url(), "");
    assert_eq!(
        out.matches("created a replication backlog on").count(),
        backlogs_created,
        "{out}"
    );
    assert_eq!(out.matches("recorded ").count(), 3, "{out}");
    assert_eq!(forward.stop(), Some(0), "forward stop: {}", forward.log());
    let full_before = new.full_syncs();
    let before_a = totals(Side::One(&old), "b:");
    assert_eq!(before_a, (0, 0));

    let http = http_of(&r);
    let mut reverse = run(&r);
    wait_streaming(&http, &|| reverse.log());
    let stop = AtomicBool::new(false);
    let sent = std::thread::scope(|scope| {
        let loader = scope.spawn(|| load_counted(new, &stop, 20, 400_000, "b:"));
        std::thread::sleep(Duration::from_millis(8000));
        reverse.kill9();
        reverse = run(&r);
        wait_streaming(&http, &|| reverse.log());
        loader.join().expect("load")
    });
    assert!(sent.0 + sent.1 > 1000, "load too small: {sent:?}");
    wait_applied(new, &http);
    let st = status(&http).expect("status");
    assert_eq!(
        st["keys_applied"], 0,
        "the reverse run took a snapshot: {st}"
    );
    assert_eq!(new.full_syncs(), full_before, "a full sync of a new master");
    assert_eq!(totals(new, "b:"), sent);
    assert_eq!(
        totals(Side::One(&old), "b:"),
        sent,
        "old side after the reverse run"
    );
    let (code, out) = ferry(&["verify"], &r, &[]);
    assert_eq!(code, Some(0), "verify R.yaml: {out}\n{}", reverse.log());
    drop(setup);
}

#[test]
fn two_way_standalone_old_and_3_master_cluster_no_echo_across_kill_9() {
    let old = Server::builder(Flavor::Redis70)
        .arg("repl-backlog-size", "64mb")
        .start()
        .expect("old");
    ferry_testkit::fixtures::populate_mixed(&mut old.conn(), 2_000).expect("seed");
    let cluster = new_cluster();
    two_way_between(&old, Side::Many(&cluster), &cluster.seed_url());
}

#[test]
fn one_way_refuses_a_source_written_by_a_two_way_ferry() {
    let old = Server::start(Flavor::Redis70).expect("old");
    let new = Server::start(Flavor::Redis70).expect("new");
    redis::cmd("SET")
        .arg("__ferry:two_way")
        .arg("two_way")
        .query::<()>(&mut old.conn())
        .expect("marker");
    let setup = Setup::new(&old.url(), &new.url(), "");
    let out = run_expecting_exit(&setup.cfg, Duration::from_secs(30));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains("is written by a ferry in mode: two_way") && err.contains(&old.addr()),
        "{err}"
    );
    let n: u64 = redis::cmd("DBSIZE").query(&mut new.conn()).expect("DBSIZE");
    assert_eq!(n, 0, "nothing written to the target");
}

//! Exactly-once replay across crashes of `ferry run`: a Redis 7.0 source
//! under a random non-idempotent write load, a 3-master Redis 7.0 cluster;
//! `kill -9` of ferry twice while writes are in flight, restarted each
//! time. When the load stops, lag reaches 0, `ferry verify` exits 0 and
//! counters, lists, strings, hashes, sets, zsets and streams are equal,
//! with their expiry times, also for keys whose type changes under plain
//! (replay-safe) writes (`workload.rs`). Also: a full
//! resync after the source restarts with a new replication id leaves the
//! target equal to the new source.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use ferry_testkit::{Cluster, Flavor, Server, free_port};

use crate::common::daemon::{FERRY, status};

mod workload;
use workload::{compare, load, load_in};

const RESERVED: &str = "__ferry:";

/// Kills the daemon when the test ends, whatever happens.
struct Daemon(Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start(cfg: &Path, log: &Path) -> Daemon {
    start_with(cfg, log, &[])
}

fn start_with(cfg: &Path, log: &Path, extra: &[&str]) -> Daemon {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .expect("log file");
    Daemon(
        Command::new(FERRY)
            .args(["run", "--config"])
            .arg(cfg)
            .args(extra)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start ferry run"),
    )
}

/// `kill -9` (std's `Child::kill` sends SIGKILL on Unix).
fn kill_9(d: &mut Daemon) {
    d.0.kill().expect("SIGKILL");
    d.0.wait().expect("reaped");
}

fn src_offset(src: &Server) -> u64 {
    ferry_testkit::info_field(&src.info("replication"), "master_repl_offset")
        .and_then(|v| v.parse::<u64>().ok())
        .expect("master_repl_offset")
}

fn log_tail(log: &Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(30)..].join("\n")
}

/// Wait (bounded) until the daemon streams with an applied offset.
fn wait_streaming(http: &str, log: &Path) {
    let deadline = Instant::now() + Duration::from_secs(60);
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
            log_tail(log)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Wait (bounded) until everything the source wrote is applied.
fn wait_caught_up(src: &Server, http: &str, log: &Path) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let st = status(http);
        let applied = st.as_ref().and_then(|s| s["applied_offset"].as_u64());
        if applied == Some(src_offset(src))
            && st.as_ref().and_then(|s| s["lag_bytes"].as_u64()) == Some(0)
        {
            return st.expect("status");
        }
        assert!(
            Instant::now() < deadline,
            "lag did not reach 0: {st:?}, source {}\n{}",
            src_offset(src),
            log_tail(log)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn config(dir: &Path, src: &Server, cluster: &Cluster, http: &str) -> PathBuf {
    let cfg = dir.join("ferry.yaml");
    std::fs::write(
        &cfg,
        format!(
            "source: {{ url: \"{}\" }}\ntarget: {{ url: \"{}\", checkpoints: true }}\nstate_dir: \"{}\"\nhttp: {{ listen: \"{http}\" }}\n",
            src.url(),
            cluster.seed_url(),
            dir.join("state").display()
        ),
    )
    .expect("config");
    cfg
}

/// Keys in the target outside the reserved prefix, and under it.
fn target_keys(cluster: &Cluster) -> (usize, usize) {
    let (mut user, mut ours) = (0, 0);
    for node in &cluster.nodes {
        let keys: Vec<String> = redis::cmd("KEYS")
            .arg("*")
            .query(&mut node.conn())
            .expect("KEYS");
        for k in keys {
            if k.starts_with(RESERVED) {
                ours += 1;
            } else {
                user += 1;
            }
        }
    }
    (user, ours)
}

fn dbsize(src: &Server) -> usize {
    redis::cmd("DBSIZE").query(&mut src.conn()).expect("DBSIZE")
}

fn ferry(args: &[&str], cfg: &Path) -> (Option<i32>, String) {
    let out = Command::new(FERRY)
        .args(args)
        .arg("--config")
        .arg(cfg)
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

#[test]
fn kill_9_twice_during_streaming_applies_every_command_once() {
    const MAX_LOAD: u64 = 4_000_000;
    // A backlog that holds the whole load: restarts continue (+CONTINUE).
    let src = Server::builder(Flavor::Redis70)
        .arg("repl-backlog-size", "256mb")
        .start()
        .expect("source");
    let mut c = src.conn();
    // 200k keys of mixed types for the snapshot (issue 5's end-to-end test).
    ferry_testkit::fixtures::populate_mixed(&mut c, 200_000).expect("seed");
    // A source key under ferry's reserved prefix is not carried.
    redis::cmd("SET")
        .arg("__ferry:from-source")
        .arg(1)
        .query::<()>(&mut c)
        .expect("reserved");
    let cluster = Cluster::start(Flavor::Redis70, 3).expect("cluster");
    let dir = tempfile::tempdir().expect("tmp");
    let http = format!("127.0.0.1:{}", free_port());
    let cfg = config(dir.path(), &src, &cluster, &http);
    let log = dir.path().join("ferry.log");
    let mut daemon = start(&cfg, &log);
    wait_streaming(&http, &log);

    // The load runs in this thread's scope; the kills happen from another.
    let stop = AtomicBool::new(false);
    let mut kills = Vec::new();
    let ops = std::thread::scope(|scope| {
        // The count bound is far above what the load reaches before
        // `stop` (checked below): the load must still run at the second
        // kill and after it (a cheaper ferry leaves the loader more CPU;
        // 400 k ops once ran out before the second kill).
        let loader = scope.spawn(|| load(&src, &stop, 10, MAX_LOAD));
        for round in 0..2 {
            std::thread::sleep(Duration::from_millis(1500));
            let before = status(&http);
            kill_9(&mut daemon);
            kills.push(format!(
                "kill -9 #{round} at applied {:?}, source {}",
                before.as_ref().and_then(|s| s["applied_offset"].as_u64()),
                src_offset(&src)
            ));
            daemon = start(&cfg, &log);
            wait_streaming(&http, &log);
        }
        std::thread::sleep(Duration::from_millis(1000));
        stop.store(true, Ordering::Relaxed);
        loader.join().expect("load thread")
    });
    assert!(ops > 1000, "load too small: {ops}");
    assert!(
        ops < MAX_LOAD,
        "the load ran out before the kills were done: {ops} ops"
    );
    redis::cmd("SET")
        .arg("__ferry:live")
        .arg(1)
        .query::<()>(&mut c)
        .expect("reserved");

    let st = wait_caught_up(&src, &http, &log);
    assert_eq!(st["skipped"]["reserved_prefix"], 1, "{st}");
    assert!(
        st["target"]["split_transactions"].as_u64() > Some(0),
        "{st}"
    );
    let present = compare(&src, &cluster);
    let (verify_code, verify_out) = ferry(&["verify"], &cfg);
    assert_eq!(verify_code, Some(0), "verify: {verify_out}");
    let (user, ours) = target_keys(&cluster);
    assert_eq!(
        user,
        dbsize(&src) - 2,
        "keys in the target (besides ferry's own; 2 reserved source keys not carried)"
    );
    assert!(ours > 0, "no checkpoint keys in the target");
    for key in ["__ferry:from-source", "__ferry:live"] {
        let n: u64 = redis::cmd("EXISTS")
            .arg(key)
            .query(&mut cluster.node_for_key(key.as_bytes()).conn())
            .expect("EXISTS");
        assert_eq!(n, 0, "{key} was carried");
    }
    // The last process continued the stream (no snapshot keys written).
    assert_eq!(st["keys_applied"], 0, "a restart resynced: {st}");

    // Cleanup removes ferry's keys only (stop the daemon first).
    drop(daemon);
    let (code, out) = ferry(&["cleanup"], &cfg);
    assert_eq!(code, Some(0), "cleanup: {out}");
    assert!(out.contains(&format!("removed {ours} keys")), "{out}");
    assert_eq!(target_keys(&cluster), (user, 0));
    eprintln!(
        "{ops} source commands, {present} keys compared equal, {} checkpoint keys removed; {}; \
         target: {}",
        ours,
        kills.join("; "),
        st["target"]
    );
}

/// `kill -9` in the middle of the snapshot: the restart takes a new full
/// sync (the position was not saved yet) and, the target having been empty
/// at the first start, flushes it first; the end state equals the source.
#[test]
fn kill_9_during_the_snapshot_then_a_fresh_full_sync() {
    let src = Server::start(Flavor::Redis70).expect("source");
    let mut c = src.conn();
    let value = "v".repeat(100);
    for batch in 0..5 {
        let mut p = redis::pipe();
        for i in 0..10_000 {
            p.cmd("SET")
                .arg(format!("snap:{}", batch * 10_000 + i))
                .arg(&value)
                .ignore();
        }
        p.query::<()>(&mut c).expect("populate");
    }
    let cluster = Cluster::start(Flavor::Redis70, 3).expect("cluster");
    let dir = tempfile::tempdir().expect("tmp");
    let http = format!("127.0.0.1:{}", free_port());
    let cfg = config(dir.path(), &src, &cluster, &http);
    let log = dir.path().join("ferry.log");
    let mut daemon = start(&cfg, &log);
    let deadline = Instant::now() + Duration::from_secs(60);
    let phase = loop {
        let st = status(&http);
        let keys = st
            .as_ref()
            .and_then(|s| s["keys_applied"].as_u64())
            .unwrap_or(0);
        let phase = st
            .as_ref()
            .map(|s| s["phase"].to_string())
            .unwrap_or_default();
        if keys > 2_000 || phase.contains("streaming") {
            break phase;
        }
        assert!(Instant::now() < deadline, "no snapshot progress: {st:?}");
        std::thread::sleep(Duration::from_millis(10));
    };
    kill_9(&mut daemon);
    // Deleted on the source while ferry is down: must not survive.
    for i in 0..1000 {
        redis::cmd("DEL")
            .arg(format!("snap:{i}"))
            .query::<()>(&mut c)
            .expect("DEL");
    }
    let daemon = start(&cfg, &log);
    wait_streaming(&http, &log);
    let stop = AtomicBool::new(false);
    load(&src, &stop, 1, 5_000);
    wait_caught_up(&src, &http, &log);
    compare(&src, &cluster);
    let (code, out) = ferry(&["verify"], &cfg);
    assert_eq!(code, Some(0), "verify: {out}");
    let (user, _) = target_keys(&cluster);
    assert_eq!(
        user,
        dbsize(&src),
        "killed in phase {phase}\n{}",
        log_tail(&log)
    );
    if phase.contains("snapshot") {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        assert!(text.contains("flushing the target"), "{text}");
    }
    drop(daemon);
    eprintln!("killed in phase {phase}; {user} keys equal after the restart");
}

#[test]
fn full_resync_after_a_source_restart_leaves_the_target_equal_to_the_new_source() {
    full_resync(false);
}

/// A target that held keys when ferry first started is not flushed on a
/// resync: its own keys stay, and a warning says stale keys may remain.
#[test]
fn full_resync_into_a_target_not_empty_at_start_keeps_its_keys_and_warns() {
    full_resync(true);
}

fn full_resync(nonempty: bool) {
    let mut src = Server::start(Flavor::Redis70).expect("source");
    let port = src.port();
    let mut c = src.conn();
    for i in 0..500 {
        redis::cmd("SET")
            .arg(format!("old:{i}"))
            .arg(i)
            .query::<()>(&mut c)
            .expect("seed");
    }
    let cluster = Cluster::start(Flavor::Redis70, 3).expect("cluster");
    let dir = tempfile::tempdir().expect("tmp");
    let http = format!("127.0.0.1:{}", free_port());
    let cfg = config(dir.path(), &src, &cluster, &http);
    let log = dir.path().join("ferry.log");
    if nonempty {
        redis::cmd("SET")
            .arg("foreign:1")
            .arg("theirs")
            .query::<()>(&mut cluster.node_for_key(b"foreign:1").conn())
            .expect("foreign key");
    }
    let _daemon = start_with(&cfg, &log, &["--allow-nonempty-target"]);
    wait_streaming(&http, &log);
    let stop = AtomicBool::new(false);
    load(&src, &stop, 1, 5_000);
    wait_caught_up(&src, &http, &log);
    let replid = ferry_testkit::info_field(&src.info("replication"), "master_replid");

    // The source restarts empty on the same port: a new replication id.
    src.kill();
    drop(c);
    let src = Server::builder(Flavor::Redis70)
        .port(port)
        .start()
        .expect("restarted source");
    let new_replid = ferry_testkit::info_field(&src.info("replication"), "master_replid");
    assert_ne!(replid, new_replid);
    let mut c = src.conn();
    for i in 0..300 {
        redis::cmd("SET")
            .arg(format!("new:{i}"))
            .arg(i)
            .query::<()>(&mut c)
            .expect("new data");
    }
    // New key names: into a target that is not flushed, the old keys stay,
    // and a command replayed onto a stale key of the same name would differ
    // whenever the new snapshot was taken before the command created it.
    load_in(&src, &stop, 1, 3_000, "n:");
    wait_caught_up(&src, &http, &log);
    if !nonempty {
        // (Not flushed, the target keeps old keys the new source lacks.)
        compare(&src, &cluster);
    }
    let (code, out) = ferry(&["verify"], &cfg);
    if nonempty {
        // The stale and the foreign keys are reported as target-only keys,
        // and nothing else differs.
        assert_eq!(code, Some(1), "verify: {out}");
        for line in out.lines().filter(|l| l.starts_with("differs:")) {
            assert!(
                line.contains("present on the target, not on the source"),
                "verify: {line}"
            );
        }
    } else {
        assert_eq!(code, Some(0), "verify: {out}");
    }
    let (user, _) = target_keys(&cluster);
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    if nonempty {
        let foreign: Option<String> = redis::cmd("GET")
            .arg("foreign:1")
            .query(&mut cluster.node_for_key(b"foreign:1").conn())
            .expect("GET");
        assert_eq!(foreign.as_deref(), Some("theirs"));
        assert!(user > dbsize(&src), "old keys remain: {user}");
        assert!(
            text.contains("stale keys") || text.contains("may remain"),
            "{text}"
        );
    } else {
        assert_eq!(
            user,
            dbsize(&src),
            "the target holds keys the new source does not (old:*)\n{}",
            log_tail(&log)
        );
        assert!(text.contains("flushing the target"), "{text}");
    }
}

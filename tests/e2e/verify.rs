//! `ferry verify` against real servers: a Redis 7.0 source and a 3-master
//! cluster written directly with the same data (no `ferry run` needed).
//! The grouped report (one key of each reason) with either first check
//! (`DEBUG DIGEST-VALUE`, or values where `DEBUG` is disabled), status
//! lines when stderr is not a terminal, `--rate` (a lower bound on time),
//! `--sample`, `--resume` after a run killed mid-way, and sources of other
//! versions (whose digests of equal zsets differ).

use std::collections::BTreeMap;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use ferry_testkit::{Cluster, Flavor, Server};

use crate::common::daemon::{FERRY, Setup};

/// Every command in `cmds` (keyed by the key it writes) on the source and
/// on the target master owning the key, pipelined per server.
fn both(src: &Server, cluster: &Cluster, cmds: &[(String, redis::Cmd)]) {
    let mut p = redis::pipe();
    for (_, c) in cmds {
        p.add_command(c.clone()).ignore();
    }
    p.query::<()>(&mut src.conn()).expect("source writes");
    let mut per: BTreeMap<u16, (&Server, redis::Pipeline)> = BTreeMap::new();
    for (k, c) in cmds {
        let node = cluster.node_for_key(k.as_bytes());
        per.entry(node.port())
            .or_insert_with(|| (node, redis::pipe()))
            .1
            .add_command(c.clone())
            .ignore();
    }
    for (node, p) in per.values() {
        p.query::<()>(&mut node.conn()).expect("target writes");
    }
}

/// `n` keys `k:<i>` of every type (some with a TTL), the same on both sides.
fn fill(src: &Server, cluster: &Cluster, n: usize) {
    // The same deadline on both sides, however long the writes take.
    let at = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_millis() as u64
        + 86_400_000;
    let mut cmds = Vec::new();
    for i in 0..n {
        let k = format!("k:{i}");
        let c = match i % 6 {
            0 => redis::cmd("HSET")
                .arg(&k)
                .arg("f")
                .arg(i)
                .arg("g")
                .arg("x")
                .clone(),
            1 => redis::cmd("ZADD")
                .arg(&k)
                .arg(0.1)
                .arg("a")
                .arg(i)
                .arg("b")
                .clone(),
            2 => redis::cmd("SADD").arg(&k).arg("x").arg(i).arg("z").clone(),
            3 => redis::cmd("RPUSH").arg(&k).arg("a").arg(i).clone(),
            4 => redis::cmd("SET").arg(&k).arg(i).arg("PXAT").arg(at).clone(),
            _ => redis::cmd("SET").arg(&k).arg(format!("value-{i}")).clone(),
        };
        cmds.push((k, c));
        if cmds.len() == 5000 {
            both(src, cluster, &cmds);
            cmds.clear();
        }
    }
    both(src, cluster, &cmds);
}

fn run(setup: &Setup, args: &[&str]) -> (Option<i32>, String, String, Duration) {
    let t = Instant::now();
    let out: Output = Command::new(FERRY)
        .args(["verify", "--config"])
        .arg(&setup.cfg)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("ferry verify");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
        t.elapsed(),
    )
}

fn setup(src: &Server, cluster: &Cluster) -> Setup {
    Setup::new(&src.url(), &cluster.seed_url(), "")
}

/// One key of each reason, each listed under its group; the same report
/// whether values are first compared by digest or (DEBUG disabled on the
/// source, as by default since Redis 7.0) by value.
#[test]
fn grouped_report_one_key_of_each_reason_with_and_without_debug() {
    for debug in ["yes", "no"] {
        let src = Server::builder(Flavor::Redis70)
            .arg("enable-debug-command", debug)
            .start()
            .expect("source");
        let cluster = Cluster::start(Flavor::Redis70, 3).expect("cluster");
        fill(&src, &cluster, 600);
        let s = setup(&src, &cluster);
        let (code, out, err, _) = run(&s, &[]);
        assert_eq!(code, Some(0), "debug {debug}: {out}{err}");
        assert!(out.contains("600 keys compared, 0 differ"), "{out}");
        let digest = !err.contains("DEBUG DIGEST-VALUE is not allowed");
        assert_eq!(digest, debug == "yes", "{err}");

        let t = |k: &str| cluster.node_for_key(k.as_bytes()).conn();
        let q =
            |c: &mut redis::Cmd, conn: &mut redis::Connection| c.query::<()>(conn).expect("write");
        // missing: only on the source.
        q(redis::cmd("SET").arg("only:src").arg(1), &mut src.conn());
        // extra: only on the target.
        q(redis::cmd("SET").arg("only:dst").arg(1), &mut t("only:dst"));
        // type: a string on the source, a list on the target.
        q(redis::cmd("DEL").arg("k:5"), &mut t("k:5"));
        q(redis::cmd("RPUSH").arg("k:5").arg("x"), &mut t("k:5"));
        // value: one hash field differs.
        q(
            redis::cmd("HSET").arg("k:0").arg("g").arg("y"),
            &mut t("k:0"),
        );
        // ttl: same value, no TTL on the target.
        q(redis::cmd("PERSIST").arg("k:4"), &mut t("k:4"));
        // Same values in another order or notation are no difference.
        q(
            redis::cmd("ZADD")
                .arg("k:1")
                .arg("0.10000000000000001")
                .arg("a"),
            &mut t("k:1"),
        );

        let (code, out, err, _) = run(&s, &["--show", "3"]);
        assert_eq!(code, Some(1), "debug {debug}: {out}{err}");
        assert!(
            out.contains("differences by reason: missing 1, extra 1, type 1, value 1, ttl 1"),
            "{out}"
        );
        for (group, line) in [
            (
                "missing (on the source, not on the target): 1 keys",
                "differs: \"only:src\": missing on the target (string on the source)",
            ),
            (
                "extra (on the target, not on the source): 1 keys",
                "differs: \"only:dst\": present on the target, not on the source",
            ),
            (
                "type differs: 1 keys",
                "differs: \"k:5\": type string on the source, list on the target",
            ),
            ("value differs: 1 keys", "differs: \"k:0\": value differs"),
            ("ttl differs: 1 keys", "differs: \"k:4\": ttl "),
        ] {
            let at = out
                .find(group)
                .unwrap_or_else(|| panic!("no {group:?} in {out}"));
            assert!(
                out[at..]
                    .lines()
                    .nth(1)
                    .is_some_and(|l| l.starts_with(line)),
                "{group}: {out}"
            );
        }
        assert!(
            out.contains("verify: 601 keys compared, 5 differ (1 only on the target), 0 source keys outside the filter"),
            "{out}"
        );
    }
}

/// Not a terminal: a status line every `--status-every` seconds on stderr;
/// `--rate` makes the run last at least keys ÷ rate.
#[test]
fn status_lines_when_not_a_tty_and_rate_bounds_the_speed() {
    let src = Server::start(Flavor::Redis70).expect("source");
    let cluster = Cluster::start(Flavor::Redis70, 3).expect("cluster");
    fill(&src, &cluster, 3000);
    let s = setup(&src, &cluster);
    let (code, out, err, took) = run(&s, &["--rate", "1000", "--status-every", "1"]);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(out.contains("3000 keys compared, 0 differ"), "{out}");
    // 3000 source keys (and as many target keys) at 1000 keys/s: 3 s at
    // the very least.
    assert!(took >= Duration::from_secs(3), "{took:?}");
    let lines: Vec<&str> = err
        .lines()
        .filter(|l| l.starts_with("verify: ") && l.contains("keys/s, ETA"))
        .collect();
    assert!(lines.len() >= 2, "{err}");
    assert!(lines[0].contains("/3000 source keys"), "{err}");
    println!("{took:?}\n{err}");
}

/// `--sample N` compares N random keys inside the filter, and finds a
/// difference that every key has.
#[test]
fn sample_checks_n_random_keys() {
    let src = Server::start(Flavor::Redis70).expect("source");
    let cluster = Cluster::start(Flavor::Redis70, 3).expect("cluster");
    fill(&src, &cluster, 3000);
    let s = Setup::new(
        &src.url(),
        &cluster.seed_url(),
        "filter: { include_prefixes: [\"k:\"] }\n",
    );
    let mut c = src.conn();
    for i in 0..200 {
        redis::cmd("SET")
            .arg(format!("other:{i}"))
            .arg(i)
            .query::<()>(&mut c)
            .expect("set");
    }
    let (code, out, err, _) = run(&s, &["--sample", "500"]);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(out.contains("verify: 500 keys compared, 0 differ"), "{out}");
    // Every string of the target differs: a sample finds some.
    for i in (5..3000).step_by(6) {
        let k = format!("k:{i}");
        redis::cmd("APPEND")
            .arg(&k)
            .arg("!")
            .query::<()>(&mut cluster.node_for_key(k.as_bytes()).conn())
            .expect("append");
    }
    let (code, out, err, _) = run(&s, &["--sample", "300"]);
    assert_eq!(code, Some(1), "{out}{err}");
    assert!(out.contains("verify: 300 keys compared"), "{out}");
    assert!(out.contains("value differs: "), "{out}");
}

/// A run killed mid-way (`kill -9`) and continued with `--resume` reports
/// what one uninterrupted run reports.
#[test]
fn resume_after_a_killed_run_gives_the_same_report() {
    let src = Server::start(Flavor::Redis70).expect("source");
    let cluster = Cluster::start(Flavor::Redis70, 3).expect("cluster");
    fill(&src, &cluster, 12_000);
    redis::cmd("SET")
        .arg("k:7")
        .arg("changed")
        .query::<()>(&mut cluster.node_for_key(b"k:7").conn())
        .expect("set");
    let s = setup(&src, &cluster);
    let (code, whole, err, _) = run(&s, &[]);
    assert_eq!(code, Some(1), "{whole}{err}");
    let state = s.dir.path().join("state").join("verify.json");
    assert!(!state.exists(), "a complete run removes its state");

    // A slow run, killed once its saved state has counted some keys.
    let mut child = Command::new(FERRY)
        .args(["verify", "--config"])
        .arg(&s.cfg)
        .args(["--rate", "2000"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("ferry verify");
    let deadline = Instant::now() + Duration::from_secs(60);
    let saved = loop {
        let text = std::fs::read_to_string(&state).unwrap_or_default();
        let st: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
        let seen = st["tally"]["compared"].as_u64().unwrap_or(0);
        if seen > 0 {
            break seen;
        }
        assert!(Instant::now() < deadline, "no progress saved: {text}");
        assert!(
            child.try_wait().expect("wait").is_none(),
            "verify ended early"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    child.kill().expect("kill -9");
    child.wait().expect("reap");
    assert!(saved < 12_000, "killed after {saved} keys");

    let (code, resumed, err, _) = run(&s, &["--resume"]);
    assert_eq!(code, Some(1), "{resumed}{err}");
    assert!(err.contains("verify: resuming"), "{err}");
    assert_eq!(resumed, whole, "resumed after {saved} keys");
    assert!(!state.exists());
    println!("killed after {saved} keys saved; resumed report:\n{resumed}");
}

/// Another server version as the source (Redis 6.2, Redis 7.4, Valkey 9)
/// into a Redis 7.0 cluster: equal values of every type are equal for
/// `ferry verify` whether or not both versions digest them alike (where
/// they do not, the values are fetched and compared semantically), and a
/// changed score is still found. Prints which types' digests differ.
#[test]
fn other_source_versions_compare_by_value_whatever_their_digests() {
    let cluster = Cluster::start(Flavor::Redis70, 3).expect("cluster");
    for flavor in [Flavor::Redis62, Flavor::RedisStack74, Flavor::Valkey9] {
        cluster.flushall();
        let src = Server::start(flavor).expect("source");
        let mut cmds = Vec::new();
        for i in 0..40 {
            let k = |t: &str| format!("{t}:{i}");
            cmds.push((
                k("h"),
                redis::cmd("HSET")
                    .arg(k("h"))
                    .arg("f")
                    .arg(i)
                    .arg("g")
                    .arg("x")
                    .clone(),
            ));
            cmds.push((
                k("z"),
                redis::cmd("ZADD")
                    .arg(k("z"))
                    .arg(0.1)
                    .arg("a")
                    .arg(1e-7)
                    .arg("b")
                    .arg(1.0 / 3.0)
                    .arg(i)
                    .clone(),
            ));
            cmds.push((
                k("s"),
                redis::cmd("SADD").arg(k("s")).arg("x").arg(i).clone(),
            ));
            cmds.push((
                k("l"),
                redis::cmd("RPUSH").arg(k("l")).arg("a").arg(i).clone(),
            ));
            cmds.push((
                k("x"),
                redis::cmd("XADD")
                    .arg(k("x"))
                    .arg("1-1")
                    .arg("f")
                    .arg(i)
                    .clone(),
            ));
            cmds.push((k("str"), redis::cmd("SET").arg(k("str")).arg(i).clone()));
        }
        both(&src, &cluster, &cmds);
        let mut differing = std::collections::BTreeSet::new();
        for (k, _) in &cmds {
            let d = |c: &mut redis::Connection| -> Vec<String> {
                redis::cmd("DEBUG")
                    .arg("DIGEST-VALUE")
                    .arg(k)
                    .query(c)
                    .expect("digest")
            };
            if d(&mut src.conn()) != d(&mut cluster.node_for_key(k.as_bytes()).conn()) {
                differing.insert(k.split(':').next().unwrap_or("").to_string());
            }
        }
        println!("{flavor:?} → Redis 7.0: types whose digests differ: {differing:?}");
        let s = setup(&src, &cluster);
        let (code, out, err, _) = run(&s, &[]);
        assert_eq!(code, Some(0), "{flavor:?}: {out}{err}");
        assert!(
            out.contains("240 keys compared, 0 differ"),
            "{flavor:?}: {out}"
        );
        redis::cmd("ZADD")
            .arg("z:3")
            .arg(0.1000001)
            .arg("a")
            .query::<()>(&mut cluster.node_for_key(b"z:3").conn())
            .expect("zadd");
        let (code, out, err, _) = run(&s, &[]);
        assert_eq!(code, Some(1), "{flavor:?}: {out}{err}");
        assert!(
            out.contains("differs: \"z:3\": value differs"),
            "{flavor:?}: {out}"
        );
    }
}

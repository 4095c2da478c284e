//! Operating a cluster source shared by two processes (issue 13): a
//! 3-master source cluster into a 4-master target, two `ferry run`s with
//! `FERRY_PARTITION_INDEX`/`FERRY_PARTITION_COUNT` from the environment
//! (as a StatefulSet sets them). Then, against the real servers and
//! daemons: `ferry status --http a,b` (a row per link, the total),
//! `ferry verify` (every source master), the sampled verify (keys of every
//! master this process carries), `/metrics` per link, `ferry cutover
//! --http a,b` (every master paused, every link waited for, unpaused), a
//! cutover missing a partition (refused, naming the master, nothing
//! paused), and `ferry cleanup` (every `__ferry:` key of every target
//! master, the per-shard checkpoints included). And one process's sampled
//! verify finding changed keys of every source master.

use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use ferry_testkit::{Cluster, Flavor, Server, info_field, port_of_slot};

use crate::cluster_verify::fill_source;
use crate::common::daemon::{Daemon, FERRY, Setup, http_get, status};

const CATCH_UP: Duration = Duration::from_secs(120);

fn repl_offset(s: &Server) -> u64 {
    info_field(&s.info("replication"), "master_repl_offset")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// `ferry run` on `setup` as partition `index` of `count`.
fn start(setup: &Setup, index: u32, count: u32) -> Daemon {
    let log = setup.dir.path().join(format!("run-{index}.log"));
    let child = Command::new(FERRY)
        .args(["run", "--config"])
        .arg(&setup.cfg)
        .env("FERRY_PARTITION_INDEX", index.to_string())
        .env("FERRY_PARTITION_COUNT", count.to_string())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).expect("log file"))
        .spawn()
        .expect("start ferry run");
    Daemon { child, log }
}

/// Waits until the daemons' links together are `links`, each streaming
/// and applied up to its source master's offset.
fn wait_caught_up(src: &Cluster, setups: &[&Setup], daemons: &[&Daemon], links: usize) {
    let deadline = Instant::now() + CATCH_UP;
    loop {
        let all: Vec<serde_json::Value> = setups
            .iter()
            .map(|s| status(&s.http).unwrap_or_default())
            .collect();
        let ls: Vec<&serde_json::Value> = all
            .iter()
            .flat_map(|st| st["links"].as_array().into_iter().flatten())
            .collect();
        let ok = ls.len() == links
            && ls.iter().all(|l| {
                let node = l["source"].as_str().unwrap_or("");
                src.nodes.iter().any(|n| {
                    n.addr() == node
                        && l["applied_offset"].as_u64() == Some(repl_offset(n))
                        && l["phase"] == "streaming"
                })
            });
        if ok {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "not caught up in {CATCH_UP:?}: {all:#?}\n{}",
            daemons.iter().map(|d| d.log()).collect::<String>()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn ferry(args: &[&str]) -> (Option<i32>, String, String) {
    let out: Output = Command::new(FERRY)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("ferry");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A write on `node` answers at once (its writes are not paused).
fn assert_not_paused(node: &Server) {
    let t = Instant::now();
    redis::cmd("SET")
        .arg("ops:probe")
        .arg(1)
        .query::<()>(&mut node.conn())
        .ok();
    assert!(
        t.elapsed() < Duration::from_millis(800),
        "a write on {} waited {:?}: still paused",
        node.addr(),
        t.elapsed()
    );
}

/// The address of the master serving `slot`.
fn master_of(c: &Cluster, slot: u16) -> String {
    let port = port_of_slot(&c.slot_map(), slot).expect("slot served");
    format!("127.0.0.1:{port}")
}

/// `__ferry:` keys on each master of `c`.
fn reserved_keys(c: &Cluster) -> Vec<String> {
    let mut out = Vec::new();
    for n in &c.nodes {
        let keys: Vec<String> = redis::cmd("KEYS")
            .arg("__ferry:*")
            .query(&mut n.conn())
            .expect("keys");
        out.extend(keys);
    }
    out
}

#[test]
fn two_partitions_status_verify_cutover_metrics_cleanup() {
    let src = Cluster::start(Flavor::Redis70, 3).expect("source cluster");
    let dst = Cluster::start(Flavor::Redis70, 4).expect("target cluster");
    fill_source(&src, 3000);
    let extra = "verify: { sample_per_second: 50 }\n";
    let s0 = Setup::new(&src.seed_url(), &dst.seed_url(), extra);
    let s1 = Setup::new(&src.seed_url(), &dst.seed_url(), extra);
    let mut d0 = start(&s0, 0, 2);
    let mut d1 = start(&s1, 1, 2);
    wait_caught_up(&src, &[&s0, &s1], &[&d0, &d1], 3);
    // Writes while streaming, on every master.
    fill_source(&src, 3500);
    wait_caught_up(&src, &[&s0, &s1], &[&d0, &d1], 3);
    let http = format!("{},{}", s0.http, s1.http);
    let cfg = s0.cfg.to_str().expect("path");

    // One screen: a row per link of both processes, and the total.
    let (code, out, err) = ferry(&["status", "--http", &http]);
    assert_eq!(code, Some(0), "{out}{err}");
    for shard in ["shard-0", "shard-5461", "shard-10923"] {
        assert_eq!(
            out.lines()
                .filter(|l| l.split_whitespace().nth(1) == Some(shard))
                .count(),
            1,
            "{shard}: {out}"
        );
    }
    assert!(out.contains("3 links on 2 processes; lag 0 bytes"), "{out}");

    // The whole source against the target.
    let (code, out, err) = ferry(&["verify", "--config", cfg]);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(out.contains("3500 keys compared, 0 differ"), "{out}");
    assert!(err.contains("scanning its 3 masters"), "{err}");

    // The sampled verify of each process draws keys of its own masters.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let v: Vec<serde_json::Value> = [&s0, &s1]
            .iter()
            .map(|s| status(&s.http).unwrap_or_default()["verify"].clone())
            .collect();
        for x in &v {
            assert_eq!(x["mismatches"].as_u64(), Some(0), "{v:?}");
        }
        if v.iter().all(|x| x["checked"].as_u64().unwrap_or(0) >= 20) {
            break;
        }
        assert!(Instant::now() < deadline, "sampled verify idle: {v:?}");
        std::thread::sleep(Duration::from_millis(200));
    }

    // Per-link metrics: a shard label, the source address on the info series.
    let metrics = http_get(&s0.http, "/metrics").expect("/metrics");
    let shard0 = master_of(&src, 0);
    for line in [
        "ferry_link_lag_bytes{shard=\"shard-0\"} 0".to_string(),
        "ferry_link_connected{shard=\"shard-10923\"} 1".to_string(),
        format!("ferry_link_info{{shard=\"shard-0\",source=\"{shard0}\"}} 1"),
    ] {
        assert!(metrics.contains(&line), "{line} not in:\n{metrics}");
    }
    assert!(!metrics.contains("shard=\"shard-5461\""), "{metrics}");

    // A cutover that misses partition 1 is refused before pausing anything.
    let (code, out, err) = ferry(&["cutover", "--config", cfg, "--http", &s0.http]);
    assert_eq!(code, Some(2), "{out}{err}");
    let master_5461 = master_of(&src, 5461);
    assert!(
        err.contains("no ferry link follows source master(s)") && err.contains(&master_5461),
        "{err}"
    );
    for n in &src.nodes {
        assert_not_paused(n);
    }

    // Both partitions: every master paused, every link in sync, unpaused.
    let (code, out, err) = ferry(&["cutover", "--config", cfg, "--http", &http]);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(out.starts_with("in sync at "), "{out}");
    println!("cutover of both partitions: {out}");
    for n in &src.nodes {
        assert!(out.contains(&format!("{} at offset ", n.addr())), "{out}");
        assert_not_paused(n);
    }

    // Stopped: cleanup removes every checkpoint of every shard.
    assert_eq!(d0.stop(), Some(0), "{}", d0.log());
    assert_eq!(d1.stop(), Some(0), "{}", d1.log());
    let before = reserved_keys(&dst);
    assert!(
        before
            .iter()
            .any(|k| k.starts_with("__ferry:ckpt:shard-0:"))
            && before
                .iter()
                .any(|k| k.starts_with("__ferry:ckpt:shard-5461:")),
        "{before:?}"
    );
    let (code, out, err) = ferry(&["cleanup", "--config", cfg]);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(
        out.contains(&format!("removed {} keys", before.len())),
        "{out} ({} keys before)",
        before.len()
    );
    assert_eq!(reserved_keys(&dst), Vec::<String>::new());
    let (code, out, err) = ferry(&["verify", "--config", cfg]);
    assert_eq!(code, Some(0), "after cleanup: {out}{err}");
}

/// The sampled verify of a cluster source draws keys from every source
/// master: with every string key changed on the target, the daemon logs
/// mismatches of keys owned by each of the three source masters.
#[test]
fn sampled_verify_of_a_cluster_source_checks_every_master() {
    let src = Cluster::start(Flavor::Redis70, 3).expect("source cluster");
    let dst = Cluster::start(Flavor::Redis70, 4).expect("target cluster");
    fill_source(&src, 3000);
    let s = Setup::new(
        &src.seed_url(),
        &dst.seed_url(),
        "verify: { sample_per_second: 200 }\n",
    );
    let mut d = s.run();
    wait_caught_up(&src, &[&s], &[&d], 3);
    for i in (4..3000).step_by(5) {
        let k = format!("k:{i}");
        redis::cmd("APPEND")
            .arg(&k)
            .arg("!")
            .query::<()>(&mut dst.node_for_key(k.as_bytes()).conn())
            .expect("append");
    }
    let deadline = Instant::now() + Duration::from_secs(90);
    let masters = loop {
        let log = d.log();
        let masters: std::collections::BTreeSet<String> = log
            .lines()
            .filter(|l| l.contains("sampled verify: mismatch"))
            .filter_map(|l| l.split("key=").nth(1))
            .map(|k| k.split_whitespace().next().unwrap_or("").trim_matches('"'))
            .map(|k| src.node_for_key(k.as_bytes()).addr())
            .collect();
        if masters.len() == 3 {
            break masters;
        }
        assert!(
            Instant::now() < deadline,
            "mismatches found on {masters:?} only:\n{log}"
        );
        std::thread::sleep(Duration::from_millis(300));
    };
    let st = status(&s.http).expect("status");
    assert!(
        st["verify"]["mismatches"].as_u64().unwrap_or(0) >= 3,
        "{st}"
    );
    println!(
        "mismatches logged for keys of {masters:?}: {}",
        st["verify"]
    );
    assert_eq!(d.stop(), Some(0), "{}", d.log());
}

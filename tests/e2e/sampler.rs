//! Sampled verify during streaming (`verify.sample_per_second`), end to end:
//! a Redis 7.0 source under a live write load migrated into a 3-master
//! cluster counts no mismatch (keys that change under load are re-checked
//! once the target has caught up, not counted); a key then altered directly
//! in the target is found, counted in `/status` and `/metrics`, and logged
//! with its key.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use ferry_testkit::{Cluster, Flavor, Server, free_port};

use crate::common::daemon::{FERRY, http_get, status};

/// Kills the daemon when the test ends, whatever happens.
struct Daemon(Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Wait (bounded) until `cond` holds for the daemon's /status.
fn wait_status(http: &str, what: &str, secs: u64, cond: impl Fn(&serde_json::Value) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let st = status(http);
        if st.as_ref().is_some_and(&cond) {
            return;
        }
        assert!(Instant::now() < deadline, "{what}: last /status {st:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A bounded write load: overwrites, counters, lists, hashes, TTLs.
fn load(src: &Server, seconds: u64, max_ops: u64) -> u64 {
    let mut c = src.conn();
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let mut n = 0u64;
    while Instant::now() < deadline && n < max_ops {
        let mut p = redis::pipe();
        p.cmd("SET").arg(format!("k:{}", n % 200)).arg(n).ignore();
        p.cmd("INCR").arg(format!("counter:{}", n % 5)).ignore();
        p.cmd("RPUSH")
            .arg(format!("list:{}", n % 7))
            .arg(n)
            .ignore();
        p.cmd("HSET")
            .arg(format!("h:{}", n % 11))
            .arg(format!("f{}", n % 13))
            .arg(n)
            .ignore();
        p.cmd("PEXPIRE")
            .arg(format!("k:{}", (n + 1) % 200))
            .arg(86_400_000)
            .ignore();
        p.query::<()>(&mut c).expect("load");
        n += 1;
    }
    n
}

#[test]
fn sampled_verify_counts_no_mismatch_under_load_and_finds_a_tampered_key() {
    let src = Server::start(Flavor::Redis70).expect("source");
    let mut c = src.conn();
    for i in 0..200 {
        redis::cmd("SET")
            .arg(format!("k:{i}"))
            .arg(i)
            .query::<()>(&mut c)
            .expect("set");
    }
    let cluster = Cluster::start(Flavor::Redis70, 3).expect("cluster");
    let dir = tempfile::tempdir().expect("tmp");
    let http = format!("127.0.0.1:{}", free_port());
    let cfg = dir.path().join("ferry.yaml");
    std::fs::write(
        &cfg,
        format!(
            "source: {{ url: \"{}\" }}\ntarget: {{ url: \"{}\" }}\nstate_dir: \"{}\"\n\
             http: {{ listen: \"{http}\" }}\nverify: {{ sample_per_second: 100, ttl_tolerance_ms: 2000 }}\n",
            src.url(),
            cluster.seed_url(),
            dir.path().join("state").display()
        ),
    )
    .expect("config");
    let log = dir.path().join("ferry.log");
    let _daemon = Daemon(
        Command::new(FERRY)
            .args(["run", "--config"])
            .arg(&cfg)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("log file"))
            .spawn()
            .expect("start ferry run"),
    );
    wait_status(&http, "streaming", 60, |s| s["phase"] == "streaming");

    // Under load: samples of keys that change are re-checked, not counted.
    let ops = load(&src, 4, 50_000);
    assert!(ops > 100, "load too small: {ops}");
    wait_status(&http, "200 keys sampled", 60, |s| {
        s["verify"]["checked"].as_u64().unwrap_or(0) >= 200
    });
    // Caught up: nothing of the load is still to be applied (it would
    // overwrite the tampering below).
    let src_offset = ferry_testkit::info_field(&src.info("replication"), "master_repl_offset")
        .and_then(|v| v.parse::<u64>().ok())
        .expect("master_repl_offset");
    wait_status(&http, "caught up", 60, |s| {
        s["applied_offset"].as_u64() == Some(src_offset)
    });
    let st = status(&http).expect("status");
    println!("after the load: {}", st["verify"]);
    assert_eq!(st["verify"]["mismatches"], 0, "{st}");

    // Alter 20 keys directly in the target: the sampler finds them.
    for i in 0..20 {
        let key = format!("k:{}", 100 + i);
        redis::cmd("SET")
            .arg(&key)
            .arg("tampered")
            .query::<()>(&mut cluster.node_for_key(key.as_bytes()).conn())
            .expect("tamper");
    }
    let found = std::panic::catch_unwind(|| {
        wait_status(&http, "a mismatch found", 60, |s| {
            s["verify"]["mismatches"].as_u64().unwrap_or(0) > 0
        })
    });
    if found.is_err() {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        let tail: Vec<&str> = text.lines().rev().take(30).collect();
        panic!(
            "no mismatch found; verify: {}\nlog tail:\n{}",
            status(&http).map_or("-".into(), |s| s["verify"].to_string()),
            tail.into_iter().rev().collect::<Vec<_>>().join("\n")
        );
    }
    let st = status(&http).expect("status");
    println!("after tampering: {}", st["verify"]);
    let last = st["verify"]["last_mismatch"].as_str().unwrap_or("");
    assert!(
        last.contains("k:1") && last.contains("value differs"),
        "{st}"
    );

    let metrics = http_get(&http, "/metrics").expect("metrics");
    let value = |name: &str| -> u64 {
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
            .unwrap_or_else(|| panic!("{name} not in /metrics:\n{metrics}"))
    };
    assert!(value("ferry_verify_mismatches_total") > 0);
    assert!(value("ferry_verify_checked_total") >= 200);

    let text = std::fs::read_to_string(&log).expect("log");
    let line = text
        .lines()
        .find(|l| l.contains("sampled verify: mismatch"))
        .unwrap_or_else(|| panic!("no mismatch logged:\n{text}"));
    assert!(line.contains("k:1"), "{line}");
}

/// A config for `src` → `cluster` with extra YAML lines.
fn config(
    dir: &std::path::Path,
    src: &Server,
    cluster: &Cluster,
    http: &str,
    extra: &str,
) -> std::path::PathBuf {
    let cfg = dir.join("ferry.yaml");
    std::fs::write(
        &cfg,
        format!(
            "source: {{ url: \"{}\" }}\ntarget: {{ url: \"{}\" }}\nstate_dir: \"{}\"\nhttp: {{ listen: \"{http}\" }}\n{extra}",
            src.url(),
            cluster.seed_url(),
            dir.join("state").display()
        ),
    )
    .expect("config");
    cfg
}

fn verify(cfg: &std::path::Path) -> (Option<i32>, String) {
    let out = Command::new(FERRY)
        .args(["verify", "--config"])
        .arg(cfg)
        .output()
        .expect("verify");
    (
        out.status.code(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// `ferry verify` lists keys only the target has (inside the filter), and
/// never ferry's own `__ferry:` keys. `/status` shows the snapshot's size
/// from a disk-based transfer and the key total from `INFO keyspace`.
#[test]
fn verify_reports_target_only_keys_and_snapshot_totals() {
    let src = Server::builder(Flavor::Redis70)
        .arg("repl-diskless-sync", "no")
        .start()
        .expect("source");
    let mut c = src.conn();
    for i in 0..500 {
        redis::cmd("SET")
            .arg(format!("app:{i}"))
            .arg(i)
            .query::<()>(&mut c)
            .expect("set");
    }
    let cluster = Cluster::start(Flavor::Redis70, 3).expect("cluster");
    let dir = tempfile::tempdir().expect("tmp");
    let http = format!("127.0.0.1:{}", free_port());
    let cfg = config(
        dir.path(),
        &src,
        &cluster,
        &http,
        "filter: { include_prefixes: [\"app:\"] }\nverify: { sample_per_second: 0 }\n",
    );
    let _daemon = Daemon(
        Command::new(FERRY)
            .args(["run", "--config"])
            .arg(&cfg)
            .stdout(Stdio::null())
            .spawn()
            .expect("start ferry run"),
    );
    wait_status(&http, "streaming", 60, |s| {
        s["phase"] == "streaming" && s["lag_bytes"] == 0
    });
    let st = status(&http).expect("status");
    let sn = &st["snapshot"];
    assert_eq!(sn["transfer"], "disk", "{st}");
    assert_eq!(sn["keys_total"], 500, "{st}");
    assert_eq!(sn["percent"], 100.0, "{st}");
    let total = sn["bytes_total"].as_u64().expect("bytes_total");
    assert!(total > 500 * 5, "{st}");
    assert_eq!(sn["bytes_done"].as_u64(), Some(total), "{st}");

    let (code, text) = verify(&cfg);
    assert_eq!(code, Some(0), "{text}");
    // ferry's own keys and keys outside the filter are not differences.
    for (key, tag) in [("__ferry:ckpt:{0}", "a"), ("other:x", "b")] {
        redis::cmd("SET")
            .arg(key)
            .arg(tag)
            .query::<()>(&mut cluster.node_for_key(key.as_bytes()).conn())
            .expect("set");
    }
    let (code, text) = verify(&cfg);
    assert_eq!(code, Some(0), "{text}");
    // A key only the target has, inside the filter, is one.
    redis::cmd("SET")
        .arg("app:stray")
        .arg(1)
        .query::<()>(&mut cluster.node_for_key(b"app:stray").conn())
        .expect("set");
    let (code, text) = verify(&cfg);
    assert_eq!(code, Some(1), "{text}");
    assert!(
        text.contains("app:stray") && text.contains("present on the target, not on the source"),
        "{text}"
    );
    assert!(text.contains("1 differ (1 only on the target)"), "{text}");
    assert!(
        !text.contains("__ferry") && !text.contains("other:x"),
        "{text}"
    );
}

/// A diskless transfer has no size: `/status` says so.
#[test]
fn diskless_snapshot_has_no_byte_total() {
    let src = Server::builder(Flavor::Redis70)
        .arg("repl-diskless-sync", "yes")
        .start()
        .expect("source");
    let mut c = src.conn();
    for i in 0..100 {
        redis::cmd("SET")
            .arg(format!("d:{i}"))
            .arg(i)
            .query::<()>(&mut c)
            .expect("set");
    }
    let cluster = Cluster::start(Flavor::Redis70, 3).expect("cluster");
    let dir = tempfile::tempdir().expect("tmp");
    let http = format!("127.0.0.1:{}", free_port());
    let cfg = config(dir.path(), &src, &cluster, &http, "");
    let _daemon = Daemon(
        Command::new(FERRY)
            .args(["run", "--config"])
            .arg(&cfg)
            .stdout(Stdio::null())
            .spawn()
            .expect("start ferry run"),
    );
    wait_status(&http, "streaming", 60, |s| s["phase"] == "streaming");
    let st = status(&http).expect("status");
    assert_eq!(st["snapshot"]["transfer"], "diskless", "{st}");
    assert!(st["snapshot"]["bytes_total"].is_null(), "{st}");
    assert!(
        st["snapshot"]["bytes_done"].as_u64().unwrap_or(0) > 0,
        "{st}"
    );
    assert_eq!(st["snapshot"]["keys_total"], 100, "{st}");
    let out = Command::new(FERRY)
        .args(["status", "--http", &http])
        .output()
        .expect("status");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("size unknown (diskless)"), "{text}");
}

//! `ferry run` end to end: a Redis 7.0 source holding every type, a live
//! write load during the sync, a 3-master Redis 7.0 cluster as target. When
//! the load stops, lag must reach zero and every key of the source must be
//! in the cluster with the same type, value and TTL. Once with `RESTORE` of
//! raw payloads, once rebuilding keys with commands.

use std::collections::BTreeMap;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use ferry_rdb::decode_all;
use ferry_testkit::fixtures::{self, FixtureOptions};
use ferry_testkit::{Cluster, Flavor, Server, free_port};

use crate::common::daemon::{FERRY, http_get, status};
use crate::common::{Norm, normalize};

/// Kills the daemon when the test ends, whatever happens.
struct Daemon(Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Wait (at most 60 s) until the daemon on `http` has applied everything the
/// source has written and reports zero lag.
fn wait_caught_up(src: &Server, http: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    let src_offset = || {
        ferry_testkit::info_field(&src.info("replication"), "master_repl_offset")
            .and_then(|v| v.parse::<u64>().ok())
            .expect("master_repl_offset")
    };
    loop {
        let st = status(http);
        let applied = st.as_ref().and_then(|s| s["applied_offset"].as_u64());
        if applied == Some(src_offset())
            && st.as_ref().and_then(|s| s["lag_bytes"].as_u64()) == Some(0)
        {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "lag did not reach 0: {st:?}, source {}",
            src_offset()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A bounded write load of every kind a replication stream carries.
fn load(src: &Server, seconds: u64, max_ops: u64) -> u64 {
    let mut c = src.conn();
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let mut n = 0u64;
    while Instant::now() < deadline && n < max_ops {
        let i = n;
        let mut p = redis::pipe();
        p.cmd("SET")
            .arg(format!("load:s:{}", i % 500))
            .arg(i)
            .ignore();
        p.cmd("INCR")
            .arg(format!("load:counter:{}", i % 7))
            .ignore();
        p.cmd("RPUSH")
            .arg(format!("load:list:{}", i % 11))
            .arg(i)
            .ignore();
        p.cmd("HSET")
            .arg(format!("load:h:{}", i % 13))
            .arg(format!("f{}", i % 17))
            .arg(i)
            .ignore();
        p.cmd("ZADD")
            .arg("load:z")
            .arg(i % 97)
            .arg(format!("m{i}"))
            .ignore();
        p.cmd("XADD")
            .arg("load:stream")
            .arg("*")
            .arg("n")
            .arg(i)
            .ignore();
        p.cmd("MSET")
            .arg(format!("load:a:{i}"))
            .arg(1)
            .arg(format!("load:b:{i}"))
            .arg(2)
            .ignore();
        p.cmd("DEL")
            .arg(format!("load:a:{}", i.saturating_sub(3)))
            .arg(format!("load:b:{}", i.saturating_sub(5)))
            .ignore();
        p.cmd("PEXPIRE")
            .arg(format!("load:s:{}", (i + 1) % 500))
            .arg(86_400_000)
            .ignore();
        p.cmd("MULTI").ignore();
        p.cmd("INCR").arg("{tx}:a").ignore();
        p.cmd("INCR").arg("{tx}:b").ignore();
        p.cmd("EXEC").ignore();
        p.query::<()>(&mut c).expect("load");
        n += 1;
    }
    n
}

fn dataset(items: &[ferry_rdb::Item]) -> BTreeMap<(u64, Bytes), Norm> {
    normalize(items)
        .into_iter()
        .filter(|((_, k), _)| !k.starts_with(b"__ferry:"))
        .collect()
}

fn migrate(restore: &str) {
    let src = Server::start(Flavor::Redis70).expect("source");
    let info = fixtures::populate_with(
        &mut src.conn(),
        FixtureOptions::new(Flavor::Redis70).single_db(),
    )
    .expect("populate");
    assert!(info.keys > 20);
    let cluster = Cluster::start(Flavor::Redis70, 3).expect("cluster");
    let dir = tempfile::tempdir().expect("tmp");
    let http = format!("127.0.0.1:{}", free_port());
    let cfg = dir.path().join("ferry.yaml");
    std::fs::write(
        &cfg,
        format!(
            "source: {{ url: \"{}\" }}\ntarget: {{ url: \"{}\" }}\nstate_dir: \"{}\"\nhttp: {{ listen: \"{http}\" }}\nsnapshot: {{ restore: {restore} }}\n",
            src.url(),
            cluster.seed_url(),
            dir.path().join("state").display()
        ),
    )
    .expect("config");
    let _daemon = Daemon(
        Command::new(FERRY)
            .args(["run", "--config"])
            .arg(&cfg)
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start ferry run"),
    );

    // Writes during the snapshot and the stream.
    let ops = load(&src, 3, 20_000);
    assert!(ops > 100, "load too small: {ops}");

    // Lag reaches zero.
    wait_caught_up(&src, &http);
    let st = status(&http).expect("status");
    assert_eq!(st["phase"], "streaming");
    let metrics = http_get(&http, "/metrics").expect("metrics");
    assert!(metrics.contains("ferry_lag_bytes 0"), "{metrics}");

    // Same data.
    let want = dataset(&decode_all(&src.dump_rdb().expect("dump")).expect("decode source"));
    let mut got = BTreeMap::new();
    for node in &cluster.nodes {
        got.extend(dataset(
            &decode_all(&node.dump_rdb().expect("dump")).expect("decode node"),
        ));
    }
    for (k, v) in &want {
        assert_eq!(got.get(k), Some(v), "restore={restore}: key {k:?}");
    }
    assert_eq!(
        got.len(),
        want.len(),
        "restore={restore}: extra keys in the target"
    );

    // `ferry verify` agrees, and notices a difference.
    let verify = || {
        Command::new(FERRY)
            .args(["verify", "--config"])
            .arg(&cfg)
            .output()
            .expect("verify")
    };
    let out = verify();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "verify: {text} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains(" 0 differ"), "{text}");
    let owner = cluster.node_for_key(b"load:s:1");
    redis::cmd("SET")
        .arg("load:s:1")
        .arg("tampered")
        .query::<()>(&mut owner.conn())
        .expect("tamper");
    let out = verify();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "verify after tampering: {text}");
    assert!(text.contains("load:s:1"), "{text}");

    // `ferry status` and `ferry cutover`.
    let out = Command::new(FERRY)
        .args(["status", "--http", &http])
        .output()
        .expect("status");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && text.contains("streaming"), "{text}");
    cutover_in_sync(&cfg);
}

/// `ferry cutover --config cfg` exits 0 saying it is in sync.
fn cutover_in_sync(cfg: &std::path::Path) {
    let out = Command::new(FERRY)
        .args(["cutover", "--config"])
        .arg(cfg)
        .output()
        .expect("cutover");
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "cutover: {text} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("in sync at offset"), "{text}");
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

#[test]
fn filter_carries_only_the_selected_prefix_and_refuses_other_dbs_by_default() {
    let src = Server::start(Flavor::Redis70).expect("source");
    let mut c = src.conn();
    for i in 0..200 {
        redis::cmd("SET")
            .arg(format!("app1:k{i}"))
            .arg(i)
            .query::<()>(&mut c)
            .expect("set");
        redis::cmd("SET")
            .arg(format!("app2:k{i}"))
            .arg(i)
            .query::<()>(&mut c)
            .expect("set");
    }
    redis::cmd("SELECT")
        .arg(3)
        .query::<()>(&mut c)
        .expect("select");
    redis::cmd("SET")
        .arg("app1:in-db3")
        .arg(1)
        .query::<()>(&mut c)
        .expect("set");
    redis::cmd("SELECT")
        .arg(0)
        .query::<()>(&mut c)
        .expect("select");
    let cluster = Cluster::start(Flavor::Redis70, 3).expect("cluster");
    let dir = tempfile::tempdir().expect("tmp");

    // db 3 holds keys and filter.dbs is not set: refuse, naming the option.
    let cfg = config(dir.path(), &src, &cluster, "", "");
    let out = Command::new(FERRY)
        .args(["run", "--config"])
        .arg(&cfg)
        .output()
        .expect("run");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("filter.dbs") && err.contains("db 3"),
        "{err}"
    );

    let http = format!("127.0.0.1:{}", free_port());
    let cfg = config(
        dir.path(),
        &src,
        &cluster,
        &http,
        "filter: { include_prefixes: [\"app1:\"], dbs: [0] }\n",
    );
    let _daemon = Daemon(
        Command::new(FERRY)
            .args(["run", "--config"])
            .arg(&cfg)
            .stdout(Stdio::null())
            .spawn()
            .expect("run"),
    );
    for i in 0..100 {
        redis::cmd("INCR")
            .arg(format!("app1:live{}", i % 10))
            .query::<()>(&mut c)
            .expect("incr");
        redis::cmd("INCR")
            .arg(format!("app2:live{}", i % 10))
            .query::<()>(&mut c)
            .expect("incr");
        redis::cmd("DEL")
            .arg(format!("app1:k{i}"))
            .arg(format!("app2:k{i}"))
            .query::<()>(&mut c)
            .expect("del");
    }
    wait_caught_up(&src, &http);
    let mut got = Vec::new();
    for node in &cluster.nodes {
        let keys: Vec<String> = redis::cmd("KEYS")
            .arg("*")
            .query(&mut node.conn())
            .expect("keys");
        got.extend(keys.into_iter().filter(|k| !k.starts_with("__ferry:")));
    }
    got.sort();
    let mut want: Vec<String> = (100..200)
        .map(|i| format!("app1:k{i}"))
        .chain((0..10).map(|i| format!("app1:live{i}")))
        .collect();
    want.sort();
    assert_eq!(got, want);
    let st = status(&http).expect("status");
    assert!(
        st["skipped"]["filtered_key"].as_u64().unwrap_or(0) > 0,
        "{st}"
    );
}

#[test]
fn run_migrates_snapshot_and_live_writes_with_restore() {
    migrate("auto");
}

#[test]
fn run_migrates_snapshot_and_live_writes_with_commands() {
    migrate("never");
}

#[test]
fn bad_configs_fail_with_a_clear_message() {
    let dir = tempfile::tempdir().expect("tmp");
    let cases = [
        (
            "source: { url: \"redis://127.0.0.1:1\" }\ntarget: { url: \"redis://127.0.0.1:2\" }\nstate_dri: x\n",
            "state_dri",
        ),
        ("source: { url: \"redis://127.0.0.1:1\" }\n", "target"),
        (
            "source: { url: \"redis://127.0.0.1:1\" }\ntarget: { url: \"redis://127.0.0.1:1\" }\n",
            "same server",
        ),
        (
            "source: { url: \"redis://127.0.0.1:1\" }\ntarget: { url: \"redis://127.0.0.1:2\" }\n",
            "cannot connect to the target",
        ),
    ];
    for (i, (text, want)) in cases.iter().enumerate() {
        let f = dir.path().join(format!("c{i}.yaml"));
        std::fs::write(&f, text).expect("write");
        let out = Command::new(FERRY)
            .args(["run", "--config"])
            .arg(&f)
            .output()
            .expect("run");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{want}: exit 0");
        assert!(err.contains(want), "{want}: stderr {err}");
    }
    // A target that already holds keys is refused unless allowed.
    let src = Server::start(Flavor::Redis70).expect("server");
    let cluster = Cluster::start(Flavor::Redis70, 3).expect("cluster");
    redis::cmd("SET")
        .arg("already")
        .arg("here")
        .query::<()>(&mut cluster.node_for_key(b"already").conn())
        .expect("set");
    let cfg = config(dir.path(), &src, &cluster, "", "");
    let out = Command::new(FERRY)
        .args(["run", "--config"])
        .arg(&cfg)
        .output()
        .expect("run");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("--allow-nonempty-target"),
        "{err}"
    );
    drop((src, cluster));

    // A standalone server is not a cluster (with `mode: cluster`; `auto`
    // migrates into it, see `standalone.rs`).
    let s = Server::start(Flavor::Redis70).expect("server");
    let src = Server::start(Flavor::Redis70).expect("server");
    let f = dir.path().join("standalone.yaml");
    std::fs::write(
        &f,
        format!(
            "source: {{ url: \"{}\" }}\ntarget: {{ url: \"{}\", mode: cluster }}\nhttp: {{ listen: \"\" }}\n",
            src.url(),
            s.url()
        ),
    )
    .expect("write");
    let out = Command::new(FERRY)
        .args(["run", "--config"])
        .arg(&f)
        .output()
        .expect("run");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.to_lowercase().contains("cluster"), "{err}");
}

#[test]
fn run_migrates_from_a_tls_source() {
    let dir = tempfile::tempdir().expect("tmp");
    let pki = ferry_tls::test_pki::TestPki::generate(dir.path());
    let tls_port = free_port();
    let src = Server::builder(Flavor::Redis70)
        .raw_args(pki.redis_args(tls_port, false))
        .start()
        .expect("TLS source");
    let mut c = src.conn();
    for i in 0..300 {
        redis::cmd("SET")
            .arg(format!("t:{i}"))
            .arg(i)
            .query::<()>(&mut c)
            .expect("set");
    }
    let cluster = Cluster::start(Flavor::Redis70, 3).expect("cluster");
    let http = format!("127.0.0.1:{}", free_port());
    let cfg = dir.path().join("tls.yaml");
    std::fs::write(
        &cfg,
        format!(
            "source: {{ url: \"rediss://127.0.0.1:{tls_port}\", tls: {{ ca_file: \"{}\", server_name: localhost }} }}\n\
             target: {{ url: \"{}\" }}\nstate_dir: \"{}\"\nhttp: {{ listen: \"{http}\" }}\n",
            pki.ca_cert.display(),
            cluster.seed_url(),
            dir.path().join("state").display()
        ),
    )
    .expect("config");
    let _daemon = Daemon(
        Command::new(FERRY)
            .args(["run", "--config"])
            .arg(&cfg)
            .stdout(Stdio::null())
            .spawn()
            .expect("run"),
    );
    for i in 0..100 {
        redis::cmd("INCR")
            .arg("t:counter")
            .query::<()>(&mut c)
            .expect("incr");
        let _ = i;
    }
    wait_caught_up(&src, &http);
    let mut total = 0u64;
    for node in &cluster.nodes {
        total += redis::cmd("DBSIZE")
            .query::<u64>(&mut node.conn())
            .expect("dbsize");
    }
    assert_eq!(total, 301);
    let owner = cluster.node_for_key(b"t:counter");
    let v: u64 = redis::cmd("GET")
        .arg("t:counter")
        .query(&mut owner.conn())
        .expect("get");
    assert_eq!(v, 100);
    // The cutover reaches the source over the same TLS settings (CA file,
    // server name) as the link.
    cutover_in_sync(&cfg);
}

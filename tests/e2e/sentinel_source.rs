//! A Sentinel source (issue 13): `ferry run` with `source.sentinel` (three
//! real sentinels watching a master with two replicas) into a 3-master
//! target cluster, while a bounded workload writes `INCR` counters and
//! `RPUSH`es of unique values (so exactly-once is checkable):
//!
//! 1. ferry asks the sentinels for the master, full-syncs it and streams;
//! 2. `SENTINEL FAILOVER` during streaming: the sentinels promote a
//!    replica and publish `+switch-master`; ferry follows the new master
//!    and continues with `+CONTINUE` (the new master logs ferry's partial
//!    resync and no full sync for it; ferry's history in `target.json`
//!    stays the same);
//! 3. the workload goes on against the new master; lag 0; every key of the
//!    new master equals the target's (counters and lists exact, and equal to
//!    what the workload wrote); `ferry verify --config` (which asks the
//!    sentinels too) exits 0.
//!
//! The workload pauses around the failover itself: Sentinel promotes a
//! replica without stopping the old master, so a write the old master takes
//! in that moment is lost by the source itself (and ferry, which got it,
//! then correctly takes a full sync of the new master). What the old master
//! does send in that moment without clients' writes (the sentinels' `PUBLISH
//! __sentinel__:hello`, replication `PING`s) carries no data: the link
//! resumes before it, and the new master continues.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use ferry_testkit::{Cluster, Flavor, SentinelGroup, Server, free_port, info_field};

use crate::common::daemon::{Setup, wait_caught_up, wait_phase};

const COUNTERS: u64 = 40;
const LISTS: u64 = 15;
/// Commands per workload phase.
const PHASE_OPS: u64 = 1500;

/// What the workload wrote, to check the source and the target against.
#[derive(Default)]
struct Expected {
    counters: BTreeMap<String, i64>,
    lists: BTreeMap<String, Vec<String>>,
}

/// Writes `ops` commands to `server`: `INCR c:<i>` and `RPUSH l:<i> v<n>`.
fn write_phase(server: &Server, first: u64, ops: u64, exp: &Mutex<Expected>, stop: &AtomicBool) {
    let mut c = server.conn();
    for n in first..first + ops {
        if stop.load(Ordering::Relaxed) {
            return;
        }
        let mut e = exp.lock().unwrap();
        if n % 3 == 0 {
            let key = format!("l:{{{}}}", (n / 3) % LISTS);
            let v = format!("v{n}");
            let _: i64 = redis::cmd("RPUSH")
                .arg(&key)
                .arg(&v)
                .query(&mut c)
                .expect("RPUSH");
            e.lists.entry(key).or_default().push(v);
        } else {
            let key = format!("c:{}", n % COUNTERS);
            let _: i64 = redis::cmd("INCR").arg(&key).query(&mut c).expect("INCR");
            *e.counters.entry(key).or_default() += 1;
        }
    }
}

fn offset(s: &Server, field: &str) -> Option<u64> {
    info_field(&s.info("replication"), field).and_then(|v| v.parse().ok())
}

/// Waits until every replica has everything the master has.
fn replicas_in_sync(group: &SentinelGroup, master: &Server) {
    let until = Instant::now() + Duration::from_secs(20);
    loop {
        let at = offset(master, "master_repl_offset");
        let synced = group
            .servers
            .iter()
            .filter(|s| s.port() != master.port())
            .all(|r| offset(r, "slave_repl_offset") == at);
        if synced {
            return;
        }
        assert!(Instant::now() < until, "replicas did not catch up");
        thread::sleep(Duration::from_millis(50));
    }
}

/// A `ferry run` setup whose source is the sentinels `addrs` of master
/// `src` (`sentinel_extra`: more fields of `source.sentinel`).
fn sentinel_setup(addrs: &[String], target_url: &str, sentinel_extra: &str) -> Setup {
    let dir = tempfile::tempdir().expect("tmp");
    let http = format!("127.0.0.1:{}", free_port());
    let cfg = dir.path().join("ferry.yaml");
    let sentinels = addrs
        .iter()
        .map(|a| format!("\"{a}\""))
        .collect::<Vec<_>>()
        .join(", ");
    std::fs::write(
        &cfg,
        format!(
            "source:\n  sentinel: {{ master_name: src, addresses: [{sentinels}]{sentinel_extra} }}\n\
             target: {{ url: \"{target_url}\" }}\nstate_dir: \"{}\"\nhttp: {{ listen: \"{http}\" }}\n",
            dir.path().join("state").display()
        ),
    )
    .expect("config");
    Setup { dir, cfg, http }
}

fn history(setup: &Setup) -> String {
    let text = std::fs::read_to_string(setup.dir.path().join("state").join("target.json"))
        .expect("target.json");
    let v: serde_json::Value = serde_json::from_str(&text).expect("json");
    v["history"].as_str().expect("history").to_string()
}

/// Every key of `src` (SCAN) equals the target's; counters and lists as
/// the workload wrote them.
fn assert_target_equals(src: &Server, target: &Cluster, exp: &Expected) {
    let mut c = src.conn();
    let keys: Vec<String> = redis::cmd("KEYS").arg("*").query(&mut c).expect("KEYS");
    assert_eq!(
        keys.len() as u64,
        COUNTERS + LISTS,
        "the source has every key the workload wrote"
    );
    let mut target_keys = 0;
    for node in &target.nodes {
        let ks: Vec<String> = redis::cmd("KEYS")
            .arg("*")
            .query(&mut node.conn())
            .expect("KEYS");
        target_keys += ks.iter().filter(|k| !k.starts_with("__ferry:")).count();
    }
    assert_eq!(target_keys, keys.len(), "target key count");
    for key in keys {
        let mut t = target.node_for_key(key.as_bytes()).conn();
        if key.starts_with("c:") {
            let s: i64 = redis::cmd("GET").arg(&key).query(&mut c).expect("GET");
            let d: i64 = redis::cmd("GET").arg(&key).query(&mut t).expect("GET");
            assert_eq!(d, s, "{key} on the target");
            assert_eq!(Some(&s), exp.counters.get(&key), "{key} on the source");
        } else {
            let s: Vec<String> = redis::cmd("LRANGE")
                .arg(&key)
                .arg(0)
                .arg(-1)
                .query(&mut c)
                .expect("LRANGE");
            let d: Vec<String> = redis::cmd("LRANGE")
                .arg(&key)
                .arg(0)
                .arg(-1)
                .query(&mut t)
                .expect("LRANGE");
            assert_eq!(d, s, "{key} on the target");
            assert_eq!(Some(&s), exp.lists.get(&key), "{key} on the source");
        }
    }
}

#[test]
fn sentinel_failover_under_load_continues_on_the_new_master() {
    let extra = [
        ("repl-diskless-sync", "yes"),
        ("repl-ping-replica-period", "1"),
    ];
    let group = SentinelGroup::start(Flavor::Redis70, "src", 2, 3, &extra).expect("sentinels");
    let target = Cluster::start(Flavor::Redis70, 3).expect("target");
    let exp = Arc::new(Mutex::new(Expected::default()));
    let stop = Arc::new(AtomicBool::new(false));
    let old = &group.servers[0];
    // Before ferry starts: in the snapshot.
    write_phase(old, 0, 300, &exp, &stop);

    let setup = sentinel_setup(&group.sentinel_addrs(), &target.seed_url(), "");
    let daemon = setup.run();
    wait_phase(&setup.http, "streaming", Duration::from_secs(60));

    // Streaming under load.
    write_phase(old, 300, PHASE_OPS, &exp, &stop);
    wait_caught_up(old, &setup.http, Duration::from_secs(60));
    let history_before = history(&setup);
    let st = setup.status().expect("status");
    assert_eq!(st["links"][0]["source"], old.addr(), "{st}");

    // The failover (writes paused: see the module docs).
    replicas_in_sync(&group, old);
    let t0 = Instant::now();
    let new_addr = group.failover().expect("SENTINEL FAILOVER");
    let new = group
        .servers
        .iter()
        .find(|s| s.addr() == new_addr)
        .expect("the new master is one of ours");
    assert_ne!(new.port(), old.port());

    // ferry follows it (+switch-master, or the old master dropping it).
    let until = Instant::now() + Duration::from_secs(60);
    loop {
        let st = setup.status();
        let on_new = st.as_ref().is_some_and(|s| {
            s["links"][0]["source"] == new_addr.as_str() && s["links"][0]["connected"] == true
        });
        if on_new {
            break;
        }
        assert!(
            Instant::now() < until,
            "ferry did not follow the new master {new_addr}: {st:?}\n{}",
            daemon.log()
        );
        thread::sleep(Duration::from_millis(100));
    }
    let followed = t0.elapsed();
    let log = daemon.log();
    assert!(
        log.contains("+switch-master"),
        "ferry did not follow +switch-master:\n{log}"
    );
    assert!(
        !log.contains("sentinel subscription"),
        "the +switch-master subscription failed (its keepalive pings, every 5 s idle):\n{log}"
    );
    assert!(
        !log.contains("PUBLISH is filtered"),
        "the sentinels' hellos were reported as skipped:\n{log}"
    );
    write_phase(new, 300 + PHASE_OPS, PHASE_OPS, &exp, &stop);
    wait_caught_up(new, &setup.http, Duration::from_secs(60));

    // +CONTINUE: no full sync of ferry's link on the new master.
    let log = std::fs::read_to_string(new.dir().join("server.log")).expect("server.log");
    let ferry_replica = "127.0.0.1:<unknown-replica-port>";
    assert!(
        log.contains(&format!(
            "Partial resynchronization request from {ferry_replica} accepted"
        )),
        "the new master did not continue ferry's link:\n{log}"
    );
    assert!(
        !log.contains(&format!("Full resync requested by replica {ferry_replica}")),
        "the new master fully synced ferry's link:\n{log}"
    );
    assert_eq!(
        history(&setup),
        history_before,
        "ferry started a new history"
    );

    let exp = exp.lock().unwrap();
    assert_target_equals(new, &target, &exp);
    let verify = setup.assert_verified();
    let line = verify
        .lines()
        .find(|l| l.starts_with("verify:"))
        .unwrap_or_default();
    eprintln!(
        "FAULT-ROW | Sentinel source: `SENTINEL FAILOVER` during streaming (3 sentinels, 2 replicas) \
         | followed `+switch-master` to the new master, `+CONTINUE` (no full sync) | {:.1} s | {line} |",
        followed.as_secs_f64()
    );
    drop(daemon);
}

/// Passwords on the sentinels and on the data servers, no `source.url`:
/// the sentinels' credentials serve for both (`run`, `verify`, `cutover`).
#[test]
fn sentinel_with_passwords_and_no_source_url() {
    let group =
        SentinelGroup::start_with_password(Flavor::Redis70, "src", 1, 3, &[], Some("s3cret"))
            .expect("sentinels");
    let target = Server::start(Flavor::Redis70).expect("target");
    let exp = Mutex::new(Expected::default());
    let stop = AtomicBool::new(false);
    let master = &group.servers[0];
    write_phase(master, 0, 200, &exp, &stop);
    let setup = sentinel_setup(&group.sentinel_addrs(), &target.url(), ", password: s3cret");
    let daemon = setup.run();
    wait_phase(&setup.http, "streaming", Duration::from_secs(60));
    write_phase(master, 200, 200, &exp, &stop);
    wait_caught_up(master, &setup.http, Duration::from_secs(60));
    let st = setup.status().expect("status");
    assert_eq!(st["links"][0]["source"], master.addr(), "{st}");
    let verify = setup.assert_verified();
    assert!(verify.contains("0 differ"), "{verify}");
    // The cutover finds the master through the sentinels too.
    let out = std::process::Command::new(crate::common::daemon::FERRY)
        .args(["cutover", "--config"])
        .arg(&setup.cfg)
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
    drop(daemon);
}

/// No sentinel answers: `ferry run` and `ferry verify` stop with an error
/// naming every sentinel tried and why.
#[test]
fn no_sentinel_answers_names_each() {
    let target = Server::start(Flavor::Redis70).expect("target");
    let dead = [
        format!("127.0.0.1:{}", free_port()),
        format!("127.0.0.1:{}", free_port()),
    ];
    let setup = sentinel_setup(&dead, &target.url(), "");
    let out = crate::e2e_support::run_expecting_exit(&setup.cfg, Duration::from_secs(30));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains("no sentinel named the master \"src\""),
        "{err}"
    );
    for a in &dead {
        assert!(err.contains(a.as_str()), "{a} not named: {err}");
    }
    let out = setup.verify();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains(&dead[0]) && err.contains(&dead[1]), "{err}");
}

//! `target.max_ops_per_sec` / `target.max_bytes_per_sec` (issue 12,
//! section 2) with real servers: a limited run takes at least the time the
//! limit implies, for the snapshot and for the stream, `/status` and
//! `/metrics` say the limit binds, and the target ends identical
//! (`ferry verify` exits 0).

use std::time::{Duration, Instant};

use ferry_testkit::{Cluster, Flavor, Server};

use crate::common::daemon::{Setup, http_get, status, wait_caught_up, wait_phase};

/// `n` `SET`s in one pipeline.
fn fill(server: &Server, prefix: &str, n: usize, value_len: usize) {
    let mut p = redis::pipe();
    for i in 0..n {
        p.cmd("SET")
            .arg(format!("{prefix}:{i}"))
            .arg("x".repeat(value_len))
            .ignore();
    }
    p.query::<()>(&mut server.conn()).expect("fill");
}

/// A config for `src` → `url` with `limits` added to the target map.
fn setup(src: &Server, url: &str, limits: &str) -> Setup {
    let s = Setup::new(&src.url(), url, "");
    let text = std::fs::read_to_string(&s.cfg).expect("config");
    let text = text.replace(
        &format!("target: {{ url: \"{url}\" }}"),
        &format!("target: {{ url: \"{url}\", {limits} }}"),
    );
    assert!(text.contains(limits), "{text}");
    std::fs::write(&s.cfg, text).expect("config");
    s
}

#[test]
fn ops_limit_paces_snapshot_and_stream_into_a_standalone_target() {
    let dst = Server::start(Flavor::Redis70).expect("target");
    ops_limit(&dst.url(), "standalone");
}

#[test]
fn ops_limit_paces_snapshot_and_stream_into_a_cluster() {
    let dst = Cluster::start(Flavor::Redis70, 3).expect("cluster");
    ops_limit(&dst.seed_url(), "3-master cluster");
}

/// A limited run takes at least the time the limit implies, shows that the
/// limit binds, and ends identical.
fn ops_limit(url: &str, what: &str) {
    const KEYS: usize = 3000;
    const RATE: u64 = 1000;
    let src = Server::start(Flavor::Redis70).expect("source");
    fill(&src, "snap", KEYS, 16);
    let s = setup(&src, url, &format!("max_ops_per_sec: {RATE}"));
    let started = Instant::now();
    let mut d = s.run();
    // While the snapshot is applied, the limit is what binds.
    let mut seen_binding = false;
    let mut metric_binding = false;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let st = status(&s.http);
        if !metric_binding {
            metric_binding = http_get(&s.http, "/metrics")
                .is_some_and(|m| m.contains("ferry_target_rate_limited 1"));
        }
        if let Some(st) = &st {
            seen_binding |= st["target"]["rate_limited"] == true;
            if st["phase"] == "streaming" {
                break;
            }
        }
        assert!(
            Instant::now() < deadline,
            "no streaming: {st:?}\n{}",
            d.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    wait_caught_up(&src, &s.http, Duration::from_secs(60));
    let snapshot_time = started.elapsed();
    // 3000 SETs at 1000/s, less the 0.1 s burst: at least 2.9 s.
    let floor = Duration::from_millis(((KEYS as u64 - RATE / 10) * 1000) / RATE);
    assert!(
        snapshot_time >= floor,
        "snapshot applied in {snapshot_time:?}, the limit allows no less than {floor:?}"
    );
    assert!(seen_binding, "/status never showed target.rate_limited");
    assert!(
        metric_binding,
        "/metrics never showed ferry_target_rate_limited 1"
    );

    // The stream: 1500 more writes take at least 1.4 s to apply.
    let t = Instant::now();
    fill(&src, "live", 1500, 16);
    wait_caught_up(&src, &s.http, Duration::from_secs(60));
    let stream_time = t.elapsed();
    assert!(
        stream_time >= Duration::from_millis(1400),
        "1500 stream commands applied in {stream_time:?} at {RATE}/s"
    );
    let st = wait_phase(&s.http, "streaming", Duration::from_secs(5));
    assert!(
        st["target"]["rate_limited_ms"].as_u64().unwrap_or(0) >= 2000,
        "{st}"
    );
    s.assert_verified();
    d.stop();
    eprintln!(
        "{what}: rate limit {RATE} ops/s: snapshot of {KEYS} keys {snapshot_time:?} (floor {floor:?}), \
         1500 stream commands {stream_time:?}"
    );
}

#[test]
fn bytes_limit_paces_the_snapshot() {
    const KEYS: usize = 400;
    const VALUE: usize = 1000;
    const RATE: u64 = 200_000; // bytes/s: ≈ 400 kB of values → ≥ 1.9 s
    let src = Server::start(Flavor::Redis70).expect("source");
    let dst = Server::start(Flavor::Redis70).expect("target");
    fill(&src, "big", KEYS, VALUE);
    let s = setup(&src, &dst.url(), &format!("max_bytes_per_sec: {RATE}"));
    let started = Instant::now();
    let mut d = s.run();
    wait_phase(&s.http, "streaming", Duration::from_secs(60));
    wait_caught_up(&src, &s.http, Duration::from_secs(60));
    let took = started.elapsed();
    let bytes = (KEYS * VALUE) as u64;
    let floor = Duration::from_millis((bytes - RATE / 10) * 1000 / RATE);
    assert!(
        took >= floor,
        "{bytes} bytes in {took:?} at {RATE} B/s (floor {floor:?})"
    );
    s.assert_verified();
    d.stop();
    eprintln!("rate limit {RATE} B/s: {bytes} value bytes in {took:?} (floor {floor:?})");
}

//! The daemon's own machinery, end to end against real servers on loopback
//! (a Redis 7.0 source, a standalone Redis 7.0 target):
//!
//! * `/metrics` of a running ferry passes `promtool check metrics`
//!   (Debian's `prometheus` package, installed by `.ci/install-servers.sh`)
//!   and carries the names the alert rules use; `/status` has its per-link
//!   and per-target sections.
//! * SIGTERM while streaming under a write load: exit 0 within seconds, the
//!   position saved; a restart resumes from it and the target matches.
//! * A lost source connection is logged with its reason, counted in
//!   `ferry_reconnects_total{side="source"}` and shown per link in `/status`.
//! * A second signal while the drain is stuck (the target's writes paused
//!   with `CLIENT PAUSE`) exits at once with status 130.

use std::io::Write;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use ferry_testkit::{Flavor, Server};

use crate::common::daemon::{Setup, http_get, source_offset, wait_caught_up};

/// Where Debian's `prometheus` package puts promtool.
const PROMTOOL: &str = "/usr/bin/promtool";

/// Writes to `src` until `stop` (at most `max_ops` and 60 s).
fn write_load(src: &Server, stop: Arc<AtomicBool>, max_ops: u64) -> std::thread::JoinHandle<u64> {
    let mut conn = src.conn();
    std::thread::spawn(move || {
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut n = 0;
        while n < max_ops && Instant::now() < deadline && !stop.load(Ordering::Relaxed) {
            redis::pipe()
                .cmd("SET")
                .arg(format!("k:{}", n % 500))
                .arg(n)
                .cmd("INCR")
                .arg("counter")
                .cmd("RPUSH")
                .arg(format!("list:{}", n % 7))
                .arg(n)
                .query::<()>(&mut conn)
                .expect("load");
            n += 1;
        }
        n
    })
}

fn signal(pid: u32, sig: &str) {
    let ok = Command::new("kill")
        .args([sig, &pid.to_string()])
        .status()
        .expect("kill")
        .success();
    assert!(ok, "kill {sig} {pid}");
}

#[test]
fn metrics_pass_promtool_and_status_has_sections() {
    assert!(
        std::path::Path::new(PROMTOOL).exists(),
        "{PROMTOOL} missing: run .ci/install-servers.sh (Debian package prometheus)"
    );
    let src = Server::start(Flavor::Redis70).expect("source");
    let dst = Server::start(Flavor::Redis70).expect("target");
    redis::cmd("SET")
        .arg("a")
        .arg(1)
        .query::<()>(&mut src.conn())
        .expect("set");
    let setup = Setup::new(&src.url(), &dst.url(), "");
    let _d = setup.run();
    wait_caught_up(&src, &setup.http, Duration::from_secs(60));
    let metrics = http_get(&setup.http, "/metrics").expect("/metrics");
    for name in [
        "ferry_phase 2",
        "ferry_lag_bytes",
        "ferry_keys_applied_total 1",
        "ferry_reconnects_total{side=\"source\"} 0",
        "ferry_reconnects_total{side=\"target\"}",
        "ferry_target_errors_total{kind=\"retry\"}",
        "ferry_spool_bytes",
        // Per link (one, named `source`, for a standalone source); the
        // unlabelled series above stay for compatibility.
        "ferry_link_lag_bytes{shard=\"source\"} 0",
        "ferry_link_connected{shard=\"source\"} 1",
        "ferry_link_applied_offset{shard=\"source\"}",
        "ferry_link_reconnects{shard=\"source\"} 0",
        "ferry_link_spool_bytes{shard=\"source\"}",
    ] {
        assert!(metrics.contains(name), "{name} missing from:\n{metrics}");
    }
    let mut check = Command::new(PROMTOOL)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool");
    check
        .stdin
        .take()
        .expect("stdin")
        .write_all(metrics.as_bytes())
        .expect("to promtool");
    let out = check.wait_with_output().expect("promtool output");
    assert!(
        out.status.success(),
        "promtool check metrics: {}{}\n{metrics}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    if std::env::var_os("FERRY_TEST_SHOW_METRICS").is_some() {
        eprintln!("{metrics}");
    }

    // Limits: an oversized request head is refused, not read on and on.
    let mut s = std::net::TcpStream::connect(&setup.http).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let head = format!(
        "GET /status HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
        "a".repeat(64 * 1024)
    );
    let _ = s.write_all(head.as_bytes());
    let mut answer = String::new();
    let _ = std::io::Read::read_to_string(&mut s, &mut answer);
    assert!(answer.starts_with("HTTP/1.1 431"), "{answer:?}");

    let st = setup.status().expect("/status");
    assert_eq!(st["phase"], "streaming");
    assert_eq!(st["links"][0]["name"], "source");
    assert_eq!(st["links"][0]["phase"], "streaming");
    assert_eq!(st["links"][0]["applied_offset"], st["applied_offset"]);
    assert_eq!(st["targets"][0]["mode"], "standalone");
    assert!(st["error"].is_null(), "{st}");
}

#[test]
fn sigterm_while_streaming_saves_the_position_and_a_second_signal_forces_exit() {
    let src = Server::start(Flavor::Redis70).expect("source");
    let dst = Server::start(Flavor::Redis70).expect("target");
    let setup = Setup::new(&src.url(), &dst.url(), "");
    let mut d = setup.run();
    wait_caught_up(&src, &setup.http, Duration::from_secs(60));

    // SIGTERM under a write load: a prompt clean exit, the position saved.
    let stop = Arc::new(AtomicBool::new(false));
    let load = write_load(&src, stop.clone(), 1_000_000);
    std::thread::sleep(Duration::from_millis(700));
    let asked = Instant::now();
    signal(d.child.id(), "-TERM");
    let code = d.wait_exit(Duration::from_secs(15));
    let took = asked.elapsed();
    stop.store(true, Ordering::Relaxed);
    load.join().expect("load thread");
    assert_eq!(code, Some(0), "exit after SIGTERM: {}", d.log());
    assert!(took < Duration::from_secs(10), "SIGTERM took {took:?}");
    assert!(d.log().contains("stopping"), "{}", d.log());
    let position = setup.dir.path().join("state").join("position.json");
    let saved: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&position).expect("position.json"))
            .expect("position JSON");
    let offset = saved["offset"].as_u64().expect("offset");
    assert!(offset > 0 && offset <= source_offset(&src), "{saved}");

    // A restart resumes from it and catches up; the target matches.
    let mut d = setup.run();
    wait_caught_up(&src, &setup.http, Duration::from_secs(60));
    setup.assert_verified();

    // The target stops taking writes: the drain after SIGTERM waits for
    // it; a second signal ends ferry at once.
    redis::cmd("CLIENT")
        .arg("PAUSE")
        .arg(30_000)
        .arg("WRITE")
        .query::<()>(&mut dst.conn())
        .expect("pause the target");
    let stop = Arc::new(AtomicBool::new(false));
    let load = write_load(&src, stop.clone(), 2_000);
    // Wait until ferry holds writes the target does not take.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let st = setup.status();
        let stuck = st.as_ref().is_some_and(|s| {
            s["received_offset"].as_u64().unwrap_or(0) > s["applied_offset"].as_u64().unwrap_or(0)
        });
        if stuck {
            break;
        }
        assert!(Instant::now() < deadline, "no write held: {st:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
    signal(d.child.id(), "-TERM");
    let still_draining = d.wait_exit(Duration::from_millis(1500)).is_none();
    let asked = Instant::now();
    signal(d.child.id(), "-INT");
    let code = d.wait_exit(Duration::from_secs(5));
    stop.store(true, Ordering::Relaxed);
    load.join().expect("load thread");
    let _ = redis::cmd("CLIENT")
        .arg("UNPAUSE")
        .query::<()>(&mut dst.conn());
    assert!(
        still_draining,
        "ferry exited before the second signal: {}",
        d.log()
    );
    assert_eq!(code, Some(130), "after a second signal: {}", d.log());
    assert!(asked.elapsed() < Duration::from_secs(5));
    assert!(d.log().contains("second signal"), "{}", d.log());
}

#[test]
fn a_lost_source_connection_is_logged_with_its_reason_and_counted() {
    let src = Server::start(Flavor::Redis70).expect("source");
    let dst = Server::start(Flavor::Redis70).expect("target");
    let proxy = ferry_testkit::FaultProxy::start(src.addr()).expect("proxy");
    let setup = Setup::new(&format!("redis://{}", proxy.addr()), &dst.url(), "");
    let d = setup.run();
    wait_caught_up(&src, &setup.http, Duration::from_secs(60));
    assert!(proxy.cut() > 0, "no connection to cut");
    // A write after the cut: ferry catches up over a new connection.
    redis::cmd("SET")
        .arg("after")
        .arg("cut")
        .query::<()>(&mut src.conn())
        .expect("set");
    wait_caught_up(&src, &setup.http, Duration::from_secs(60));
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let metrics = http_get(&setup.http, "/metrics").unwrap_or_default();
        let st = setup.status();
        // Counted as the link reports the loss: the metric (from the log
        // events) matches the link's own count.
        let counted = metrics
            .lines()
            .find_map(|l| l.strip_prefix("ferry_reconnects_total{side=\"source\"} "))
            .and_then(|v| v.trim().parse::<u64>().ok());
        let counted = counted.is_some_and(|n| {
            n >= 1
                && st
                    .as_ref()
                    .is_some_and(|s| s["reconnects"].as_u64() == Some(n))
        });
        let reason = st.as_ref().and_then(|s| {
            s["links"][0]["last_reconnect_reason"]
                .as_str()
                .map(str::to_string)
        });
        if counted && reason.is_some() && d.log().contains("source connection lost") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "reconnect not reported: {reason:?}\n{metrics}\n{}",
            d.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

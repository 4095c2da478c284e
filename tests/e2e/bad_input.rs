//! Bad configurations and environments: `ferry run` (and `ferry verify`)
//! stop with a non-zero exit and a message that names the problem. Real
//! servers on loopback; every run is bounded in time.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use ferry_testkit::{Cluster, Flavor, Server, free_port};

const FERRY: &str = env!("CARGO_BIN_EXE_ferry");

/// Runs `ferry <cmd> --config cfg`, killing it after 60 s; (exit code, stdout+stderr).
fn ferry(cmd: &str, cfg: &Path) -> (Option<i32>, String) {
    let mut child = Command::new(FERRY)
        .args([cmd, "--config"])
        .arg(cfg)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start ferry");
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(s) = child.try_wait().expect("wait") {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("ferry {cmd} still running after 60 s: it should have stopped with an error");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut out = String::new();
    child
        .stdout
        .take()
        .expect("stdout")
        .read_to_string(&mut out)
        .expect("read");
    child
        .stderr
        .take()
        .expect("stderr")
        .read_to_string(&mut out)
        .expect("read");
    (status.code(), out)
}

fn config(dir: &Path, name: &str, source: &str, target: &str, extra: &str) -> PathBuf {
    let f = dir.join(name);
    std::fs::write(
        &f,
        format!(
            "source: {{ url: \"{source}\" }}\ntarget: {{ url: \"{target}\" }}\nstate_dir: \"{}\"\n\
             http: {{ listen: \"\" }}\n{extra}",
            dir.join(format!("{name}.state")).display()
        ),
    )
    .expect("write config");
    f
}

/// `ferry run` fails (non-zero) and its output contains every one of `want`.
fn assert_fails(cmd: &str, cfg: &Path, want: &[&str]) -> String {
    let (code, out) = ferry(cmd, cfg);
    assert!(
        code.is_some_and(|c| c != 0),
        "ferry {cmd} exited {code:?}:\n{out}"
    );
    for w in want {
        assert!(out.contains(w), "ferry {cmd}: {w:?} not in:\n{out}");
    }
    println!("ferry {cmd}: {}", out.lines().last().unwrap_or(""));
    out
}

#[test]
fn config_errors_name_the_field() {
    let dir = tempfile::tempdir().expect("tmp");
    // Wrong type, with its field and line.
    let f = config(
        dir.path(),
        "type.yaml",
        "redis://127.0.0.1:1",
        "redis://127.0.0.1:2",
        "filter: { dbs: \"zero\" }\n",
    );
    assert_fails("run", &f, &["dbs", "line 5"]);
    // An unknown key in a new section.
    let f = config(
        dir.path(),
        "unknown.yaml",
        "redis://127.0.0.1:1",
        "redis://127.0.0.1:2",
        "verify: { samples: 3 }\n",
    );
    assert_fails("run", &f, &["samples"]);
    // restore: a value it does not know.
    let f = config(
        dir.path(),
        "restore.yaml",
        "redis://127.0.0.1:1",
        "redis://127.0.0.1:2",
        "snapshot: { restore: sometimes }\n",
    );
    assert_fails("run", &f, &["sometimes", "always"]);
    // An empty token would let anybody in.
    let f = config(
        dir.path(),
        "token.yaml",
        "redis://127.0.0.1:1",
        "redis://127.0.0.1:2",
        "",
    );
    let text = std::fs::read_to_string(&f)
        .expect("read")
        .replace("http: { listen: \"\" }", "http: { token: \"\" }");
    std::fs::write(&f, text).expect("write");
    assert_fails("run", &f, &["http.token is empty"]);
}

#[test]
fn source_equal_to_target() {
    let dir = tempfile::tempdir().expect("tmp");
    let cluster = Cluster::start(Flavor::Redis70, 3).expect("cluster");
    let seed = cluster.seed_url();
    // The same URL.
    let f = config(dir.path(), "same.yaml", &seed, &seed, "");
    assert_fails("run", &f, &["same server"]);
    assert_fails("verify", &f, &["same server"]);
    // The same server spelt differently: caught by its run_id.
    let node = &cluster.nodes[1];
    let f = config(
        dir.path(),
        "alias.yaml",
        &format!("redis://{}/", node.addr()),
        &seed,
        "",
    );
    assert_fails(
        "run",
        &f,
        &["source and target are the same server", &node.addr()],
    );
}

#[test]
fn unreachable_source_or_target() {
    let dir = tempfile::tempdir().expect("tmp");
    let src = Server::start(Flavor::Redis70).expect("source");
    let cluster = Cluster::start(Flavor::Redis70, 3).expect("cluster");
    let closed = format!("127.0.0.1:{}", free_port());
    let f = config(
        dir.path(),
        "nosrc.yaml",
        &format!("redis://{closed}"),
        &cluster.seed_url(),
        "",
    );
    assert_fails(
        "run",
        &f,
        &["cannot connect to the source", &closed, "refused"],
    );
    assert_fails("verify", &f, &["source", &closed]);
    let f = config(
        dir.path(),
        "nodst.yaml",
        &src.url(),
        &format!("redis://{closed}"),
        "",
    );
    assert_fails(
        "run",
        &f,
        &["cannot connect to the target", &closed, "refused"],
    );
    assert_fails("verify", &f, &["target", &closed]);
}

#[test]
fn wrong_passwords() {
    let dir = tempfile::tempdir().expect("tmp");
    let src = Server::builder(Flavor::Redis70)
        .password("right-src")
        .start()
        .expect("source");
    let cluster =
        Cluster::start_with(Flavor::Redis70, 3, |b| b.password("right-dst")).expect("cluster");
    let seed = cluster.nodes[0].addr();
    let good_dst = format!("redis://:right-dst@{seed}");
    let f = config(
        dir.path(),
        "src.yaml",
        &format!("redis://:wrong@{}", src.addr()),
        &good_dst,
        "",
    );
    let out = assert_fails(
        "run",
        &f,
        &["cannot connect to the source", "AUTH refused", "WRONGPASS"],
    );
    assert!(!out.contains(":wrong@"), "{out}");
    assert_fails("verify", &f, &["source", "WRONGPASS"]);
    let f = config(
        dir.path(),
        "dst.yaml",
        &src.url(),
        &format!("redis://:wrong@{seed}"),
        "",
    );
    assert_fails(
        "run",
        &f,
        &["cannot connect to the target", "AUTH refused", "WRONGPASS"],
    );
    // No password where one is needed.
    let f = config(
        dir.path(),
        "none.yaml",
        &format!("redis://{}", src.addr()),
        &good_dst,
        "",
    );
    assert_fails("run", &f, &["source", "NOAUTH"]);
}

#[test]
fn acl_user_without_psync() {
    let dir = tempfile::tempdir().expect("tmp");
    let src = Server::start(Flavor::Redis70).expect("source");
    redis::cmd("ACL")
        .arg("SETUSER")
        .arg("nopsync")
        .arg("on")
        .arg(">pw")
        .arg("~*")
        .arg("+@all")
        .arg("-psync")
        .arg("-sync")
        .query::<()>(&mut src.conn())
        .expect("ACL SETUSER");
    let cluster = Cluster::start(Flavor::Redis70, 3).expect("cluster");
    let f = config(
        dir.path(),
        "acl.yaml",
        &format!("redis://nopsync:pw@{}", src.addr()),
        &cluster.seed_url(),
        "",
    );
    let out = assert_fails("run", &f, &["NOPERM"]);
    assert!(out.to_lowercase().contains("psync"), "{out}");
}

#[test]
fn restore_always_refuses_a_target_older_than_the_source() {
    let dir = tempfile::tempdir().expect("tmp");
    // Redis 7.4 writes RDB 12; Redis 7.0 reads up to 10.
    let src = Server::start(Flavor::RedisStack74).expect("Redis 7.4 source");
    let cluster = Cluster::start(Flavor::Redis70, 3).expect("cluster");
    let f = config(
        dir.path(),
        "always.yaml",
        &src.url(),
        &cluster.seed_url(),
        "snapshot: { restore: always }\n",
    );
    assert_fails(
        "run",
        &f,
        &[
            "snapshot.restore: always",
            "RDB version 10",
            "RDB version 12",
            "Redis 7.0",
            "Redis 7.4",
        ],
    );
    // Same servers, restore: auto: it starts (keys are rebuilt with commands).
    let http = format!("127.0.0.1:{}", free_port());
    let f = config(dir.path(), "auto.yaml", &src.url(), &cluster.seed_url(), "");
    let text = std::fs::read_to_string(&f)
        .expect("read")
        .replace("listen: \"\"", &format!("listen: \"{http}\""));
    std::fs::write(&f, text).expect("write");
    let mut child = Command::new(FERRY)
        .args(["run", "--config"])
        .arg(&f)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start");
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut streaming = false;
    while Instant::now() < deadline && !streaming {
        std::thread::sleep(Duration::from_millis(100));
        if let Ok(mut s) = std::net::TcpStream::connect(&http) {
            let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
            let _ = std::io::Write::write_all(&mut s, b"GET /status HTTP/1.1\r\n\r\n");
            let mut body = String::new();
            let _ = s.read_to_string(&mut body);
            streaming = body.contains("\"phase\": \"streaming\"");
        }
        assert!(child.try_wait().expect("wait").is_none(), "ferry stopped");
    }
    let _ = child.kill();
    let _ = child.wait();
    assert!(streaming, "restore: auto did not reach streaming");
}

fn http_status(http: &str) -> Option<String> {
    let mut s = std::net::TcpStream::connect(http).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    std::io::Write::write_all(&mut s, b"GET /status HTTP/1.1\r\n\r\n").ok()?;
    let mut body = String::new();
    s.read_to_string(&mut body).ok()?;
    Some(body)
}

/// A new migration with an unreachable source stops at once (above); a
/// restart that resumes from a saved position waits for a source that is
/// down (being restarted) instead.
#[test]
fn resume_waits_for_a_source_that_is_down() {
    let dir = tempfile::tempdir().expect("tmp");
    let src = Server::start(Flavor::Redis70).expect("source");
    redis::cmd("SET")
        .arg("a")
        .arg(1)
        .query::<()>(&mut src.conn())
        .expect("set");
    let cluster = Cluster::start(Flavor::Redis70, 3).expect("cluster");
    let http = format!("127.0.0.1:{}", free_port());
    let f = config(
        dir.path(),
        "resume.yaml",
        &src.url(),
        &cluster.seed_url(),
        "",
    );
    let text = std::fs::read_to_string(&f)
        .expect("read")
        .replace("listen: \"\"", &format!("listen: \"{http}\""));
    std::fs::write(&f, text).expect("write");
    let start = || {
        Command::new(FERRY)
            .args(["run", "--config"])
            .arg(&f)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start")
    };
    let wait_phase = |child: &mut std::process::Child, phase: &str| {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if http_status(&http).is_some_and(|b| b.contains(&format!("\"phase\": \"{phase}\""))) {
                return;
            }
            assert!(child.try_wait().expect("wait").is_none(), "ferry stopped");
            assert!(Instant::now() < deadline, "phase {phase} not reached");
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    // Migrate, then stop cleanly (SIGTERM saves the position).
    let mut child = start();
    wait_phase(&mut child, "streaming");
    std::thread::sleep(Duration::from_millis(1500)); // an ACK, a saved position
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill -TERM");
    let stopped = child.wait().expect("wait");
    assert!(stopped.success(), "ferry exited {stopped:?} on SIGTERM");
    drop(src); // the source goes away

    // Restart: it resumes and waits (connecting) rather than exiting.
    let mut child = start();
    wait_phase(&mut child, "connecting");
    std::thread::sleep(Duration::from_secs(3));
    let still = child.try_wait().expect("wait");
    let _ = child.kill();
    let _ = child.wait();
    assert!(
        still.is_none(),
        "ferry exited {still:?} while the source was down"
    );
}

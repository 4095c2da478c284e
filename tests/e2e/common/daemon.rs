//! Running the `ferry` binary in tests: a daemon killed on drop, its HTTP
//! status, waiting for lag 0, `ferry verify`, configs.

use std::io::Read;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use ferry_testkit::{Server, free_port};

/// The binary under test.
pub const FERRY: &str = env!("CARGO_BIN_EXE_ferry");

/// A config file and its HTTP address, in a temp dir that lives as long as
/// this value.
pub struct Setup {
    pub dir: tempfile::TempDir,
    pub cfg: PathBuf,
    pub http: String,
}

impl Setup {
    /// `source_url` → `target_url`, state in the temp dir, HTTP on a free
    /// port, plus `extra` YAML lines.
    pub fn new(source_url: &str, target_url: &str, extra: &str) -> Setup {
        Setup::with_source(source_url, "", target_url, extra)
    }

    /// Like [`Setup::new`], with `source_extra` added to the `source:` map
    /// (e.g. `", mode: cluster"`).
    pub fn with_source(
        source_url: &str,
        source_extra: &str,
        target_url: &str,
        extra: &str,
    ) -> Setup {
        let dir = tempfile::tempdir().expect("tmp");
        let http = format!("127.0.0.1:{}", free_port());
        let cfg = dir.path().join("ferry.yaml");
        std::fs::write(
            &cfg,
            format!(
                "source: {{ url: \"{source_url}\"{source_extra} }}\ntarget: {{ url: \"{target_url}\" }}\nstate_dir: \"{}\"\nhttp: {{ listen: \"{http}\" }}\n{extra}",
                dir.path().join("state").display()
            ),
        )
        .expect("config");
        Setup { dir, cfg, http }
    }

    /// Start `ferry run` on this config; its stderr goes to `run-<n>.log`.
    pub fn run(&self) -> Daemon {
        let n = std::fs::read_dir(self.dir.path())
            .map(|d| d.count())
            .unwrap_or(0);
        let log = self.dir.path().join(format!("run-{n}.log"));
        let child = Command::new(FERRY)
            .args(["run", "--config"])
            .arg(&self.cfg)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("log file"))
            .spawn()
            .expect("start ferry run");
        Daemon { child, log }
    }

    /// `ferry verify` on this config.
    pub fn verify(&self) -> Output {
        Command::new(FERRY)
            .args(["verify", "--config"])
            .arg(&self.cfg)
            .output()
            .expect("ferry verify")
    }

    /// `ferry verify` must exit 0; returns its stdout.
    pub fn assert_verified(&self) -> String {
        let out = self.verify();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        assert_eq!(
            out.status.code(),
            Some(0),
            "ferry verify: {text}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        text
    }

    /// The `/status` document.
    pub fn status(&self) -> Option<serde_json::Value> {
        status(&self.http)
    }
}

/// A `ferry run` process, killed on drop.
pub struct Daemon {
    pub child: Child,
    pub log: PathBuf,
}

impl Daemon {
    /// `kill -9`.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM, then wait (at most 20 s) for a clean exit; returns the code.
    pub fn stop(&mut self) -> Option<i32> {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(Some(s)) = self.child.try_wait() {
                return s.code();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        self.kill9();
        None
    }

    /// Waits (at most `timeout`) for the process to exit; returns its code.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<i32> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Ok(Some(s)) = self.child.try_wait() {
                return s.code();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }

    /// Peak resident memory (VmHWM) in KiB, while it runs.
    pub fn peak_rss_kib(&self) -> Option<u64> {
        let s = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).ok()?;
        s.lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
    }

    /// Its stderr so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// GET `path` from `addr`: the body.
pub fn http_get(addr: &str, path: &str) -> Option<String> {
    let mut s = TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    std::io::Write::write_all(
        &mut s,
        format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes(),
    )
    .ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    out.split_once("\r\n\r\n").map(|(_, b)| b.to_string())
}

/// The `/status` document of the daemon on `addr`.
pub fn status(addr: &str) -> Option<serde_json::Value> {
    serde_json::from_str(&http_get(addr, "/status")?).ok()
}

/// The source's `master_repl_offset`.
pub fn source_offset(src: &Server) -> u64 {
    ferry_testkit::info_field(&src.info("replication"), "master_repl_offset")
        .and_then(|v| v.parse::<u64>().ok())
        .expect("master_repl_offset")
}

/// Waits (at most `timeout`) until the daemon on `http` has applied
/// everything the source has written and reports zero lag.
pub fn wait_caught_up(src: &Server, http: &str, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    loop {
        let st = status(http);
        let applied = st.as_ref().and_then(|s| s["applied_offset"].as_u64());
        if applied == Some(source_offset(src))
            && st.as_ref().and_then(|s| s["lag_bytes"].as_u64()) == Some(0)
        {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "lag did not reach 0 in {timeout:?}: {st:?}, source {}",
            source_offset(src)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Waits (at most `timeout`) until `/status` shows `phase`.
pub fn wait_phase(http: &str, phase: &str, timeout: Duration) -> serde_json::Value {
    let deadline = Instant::now() + timeout;
    loop {
        let st = status(http);
        if let Some(st) = st.as_ref().filter(|s| s["phase"] == phase) {
            return st.clone();
        }
        assert!(
            Instant::now() < deadline,
            "phase {phase} not reached in {timeout:?}: {st:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// An `INFO stats` counter of `server`.
pub fn stat(server: &Server, field: &str) -> u64 {
    ferry_testkit::info_field(&server.info("stats"), field)
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// The path of a file in `dir`.
pub fn path_in(dir: &Path, name: &str) -> PathBuf {
    dir.join(name)
}

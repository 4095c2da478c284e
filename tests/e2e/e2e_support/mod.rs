//! Helpers for the end-to-end tests of the target side (`target_tls`,
//! `standalone`, `big_values`): run the `ferry` binary, read its status,
//! wait for it to catch up, compare datasets by value.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::io::Read;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use ferry_testkit::Server;

use crate::common::{Norm, normalize};

/// The `ferry` binary under test.
pub const FERRY: &str = env!("CARGO_BIN_EXE_ferry");

/// A running `ferry run`; killed when dropped.
pub struct Daemon(pub Child);

impl Daemon {
    /// Starts `ferry run --config <cfg>` (stdout discarded, stderr to the
    /// test's stderr).
    pub fn start(cfg: &Path) -> Daemon {
        Daemon(
            Command::new(FERRY)
                .args(["run", "--config"])
                .arg(cfg)
                .stdout(Stdio::null())
                .stderr(Stdio::inherit())
                .spawn()
                .expect("start ferry run"),
        )
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.0.id()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Runs `ferry run --config <cfg>` expecting it to stop by itself within
/// `bound`; its output, or a panic when it keeps running.
pub fn run_expecting_exit(cfg: &Path, bound: Duration) -> Output {
    let mut child = Command::new(FERRY)
        .args(["run", "--config"])
        .arg(cfg)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start ferry run");
    let start = Instant::now();
    while child.try_wait().expect("wait").is_none() {
        if start.elapsed() > bound {
            let _ = child.kill();
            let out = child.wait_with_output().expect("output");
            panic!(
                "ferry run still running after {bound:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    child.wait_with_output().expect("output")
}

/// `ferry verify --config <cfg>`.
pub fn verify(cfg: &Path) -> Output {
    Command::new(FERRY)
        .args(["verify", "--config"])
        .arg(cfg)
        .output()
        .expect("ferry verify")
}

/// Writes a config file: `source`, `target` (YAML flow maps), state dir
/// and HTTP listener, plus `extra` lines.
pub fn write_config(dir: &Path, source: &str, target: &str, http: &str, extra: &str) -> PathBuf {
    let cfg = dir.join("ferry.yaml");
    std::fs::write(
        &cfg,
        format!(
            "source: {source}\ntarget: {target}\nstate_dir: \"{}\"\nhttp: {{ listen: \"{http}\" }}\n{extra}",
            dir.join("state").display()
        ),
    )
    .expect("config");
    cfg
}

/// A GET on the daemon's HTTP listener; the body.
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

/// `/status` as JSON.
pub fn status(addr: &str) -> Option<serde_json::Value> {
    serde_json::from_str(&http_get(addr, "/status")?).ok()
}

/// Waits (at most `bound`) until the daemon on `http` has applied
/// everything the source has written and reports zero lag.
pub fn wait_caught_up(src: &Server, http: &str, bound: Duration) {
    let deadline = Instant::now() + bound;
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

/// Every key of a server's dump, normalized, without ferry's own keys.
pub fn dataset(server: &Server) -> BTreeMap<(u64, Bytes), Norm> {
    let rdb = server.dump_rdb().expect("dump");
    normalize(&ferry_rdb::decode_all(&rdb).expect("decode"))
        .into_iter()
        .filter(|((_, k), _)| !k.starts_with(b"__ferry:"))
        .collect()
}

/// Asserts that `got` holds exactly the keys of `want`, with equal values.
pub fn assert_same(want: &BTreeMap<(u64, Bytes), Norm>, got: &BTreeMap<(u64, Bytes), Norm>) {
    for (k, v) in want {
        assert_eq!(got.get(k), Some(v), "key {k:?}");
    }
    assert_eq!(got.len(), want.len(), "extra keys in the target");
}

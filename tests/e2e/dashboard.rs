//! The dashboard page (`crates/ferry/src/dashboard.html`, served at `/` by
//! `ferry run`) rendered in headless Chromium (Debian's `chromium` package,
//! installed by `.ci/install-servers.sh`).
//!
//! A tiny HTTP server on a free 127.0.0.1 port serves the page and a fake
//! `/status` that changes with every request (snapshot → streaming, lag
//! falling). Chromium runs with a virtual time budget, so the page's
//! once-a-second polling runs several times in a fraction of the wall time;
//! `--dump-dom` shows what the script rendered and `--screenshot` leaves
//! `target/dashboard.png` (and `target/dashboard-unreachable.png` for the
//! daemon-gone case) for a human or a CI artifact. Every Chromium run is
//! bounded by `timeout 60`.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

const CHROMIUM: &str = "/usr/bin/chromium";
/// The page exactly as the daemon serves it (`include_str!` of the same file).
const PAGE: &str = include_str!("../../crates/ferry/src/dashboard.html");

fn page() -> &'static str {
    PAGE
}

/// The fake daemon's behaviour.
#[derive(Clone, Copy)]
enum Mode {
    /// `/status` always answers.
    Live,
    /// `/status` answers this many times, then the connection is dropped
    /// without an answer (the daemon is gone).
    DiesAfter(usize),
    /// `/status` reports phase `error` with an error message.
    Failed,
    /// `/status` answers only with `Authorization: Bearer <TOKEN>` (401
    /// otherwise), as with `http.token`.
    Token,
    /// A cluster source: `links[]` has three source shards, one of them
    /// disconnected.
    Shards,
}

/// The token of `Mode::Token`.
const TOKEN: &str = "s3cret-token";

/// What the fake daemon has served.
#[derive(Default)]
struct Served {
    /// `lag_bytes` of every `/status` answer, in order.
    lag_bytes: Vec<u64>,
    /// `/status` requests refused (in `DiesAfter` mode).
    refused: usize,
    /// `/status` requests without the right token (in `Token` mode).
    unauthorized: usize,
}

/// The error of `Mode::Failed` (no characters that need JSON escaping).
const FAILURE: &str = "target 127.0.0.1:7001: OOM command not allowed when used memory > maxmemory";

fn lag_bytes(n: u64) -> u64 {
    // Falls, with a bump every 4th poll.
    2_400_000 / (n + 2) + if n % 4 == 3 { 150_000 } else { 0 }
}

fn lag_seconds(n: u64) -> f64 {
    // A different shape from the bytes: a slow linear decline with jitter.
    (3.0 - 0.1 * n as f64).max(0.2) + if n % 3 == 0 { 0.4 } else { 0.0 }
}

/// `links[]` of a cluster source of three shards (`Mode::Shards`).
const SHARDS: &str = r#"[
  { "name": "shard-0", "source": "10.0.0.1:6379", "slots": "0-5460", "phase": "streaming",
    "connected": true, "source_offset": 1000, "applied_offset": 990, "lag_bytes": 10, "reconnects": 0 },
  { "name": "shard-5461", "source": "10.0.0.2:6379", "slots": "5461-10922", "phase": "streaming",
    "connected": false, "source_offset": 2000, "applied_offset": 1234, "lag_bytes": 766, "reconnects": 3 },
  { "name": "shard-10923", "source": "10.0.0.3:6379", "slots": "10923-16383", "phase": "streaming",
    "connected": true, "source_offset": 3000, "applied_offset": 3000, "lag_bytes": 0, "reconnects": 0 }
]"#;

/// The n-th `/status` document (0-based), shaped like run.rs's `Status`,
/// with these `links`.
fn status_with_links(n: u64, failed: bool, links: &str) -> String {
    let lag = lag_bytes(n);
    let source = 5_000_000 + n * 50_000;
    let keys_total = 200_000u64;
    let keys = (n * 100_000).min(keys_total);
    let (phase, error) = match (failed, keys < keys_total) {
        (true, _) => ("error", format!("\"{FAILURE}\"")),
        (false, true) => ("snapshot", "null".to_string()),
        (false, false) => ("streaming", "null".to_string()),
    };
    format!(
        r#"{{
  "phase": "{phase}",
  "source_offset": {source},
  "applied_offset": {applied},
  "received_offset": {received},
  "lag_bytes": {lag},
  "lag_seconds": {lag_seconds},
  "keys_applied": {keys},
  "commands_applied": {commands},
  "skipped": {{ "filtered_key": {filtered}, "unsupported_value": 3 }},
  "spool_bytes": {spool},
  "reconnects": 1,
  "error": {error},
  "snapshot": {{ "keys_done": {keys}, "keys_total": {keys_total},
                "bytes_done": {bytes_done}, "bytes_total": 9000000, "transfer": "disk" }},
  "verify": {{ "sample_per_second": 5, "checked": {checked}, "mismatches": 0, "pending": 0,
              "unsettled": 0, "last_mismatch": null }},
  "links": {links}
}}"#,
        checked = 1000 + n * 5,
        applied = source - lag,
        received = source - lag / 4,
        lag_seconds = lag_seconds(n),
        commands = n * 4_000 + (n % 5) * 900,
        filtered = 100 + 10 * n,
        spool = lag * 3,
        bytes_done = (n * 2_700_000).min(9_000_000),
    )
}

/// Starts the fake daemon on a free port; its threads end with the test process.
fn serve(mode: Mode) -> (u16, Arc<Mutex<Served>>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    let port = listener.local_addr().unwrap().port();
    let served = Arc::new(Mutex::new(Served::default()));
    let s = served.clone();
    thread::spawn(move || {
        for sock in listener.incoming() {
            let Ok(sock) = sock else { continue };
            let s = s.clone();
            // One thread per connection: Chromium opens speculative
            // connections that may never send a request.
            thread::spawn(move || handle(sock, mode, &s));
        }
    });
    (port, served)
}

fn handle(mut sock: TcpStream, mode: Mode, served: &Mutex<Served>) {
    let _ = sock.set_read_timeout(Some(Duration::from_secs(10)));
    let mut req = Vec::new();
    let mut buf = [0u8; 4096];
    while !req.windows(4).any(|w| w == b"\r\n\r\n") {
        match sock.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => req.extend_from_slice(&buf[..n]),
        }
    }
    let req = String::from_utf8_lossy(&req);
    let path = req.split_whitespace().nth(1).unwrap_or("/").to_string();
    let route = path.split('?').next().unwrap_or("/");
    let (code, ctype, body) = match route {
        "/" => ("200 OK", "text/html; charset=utf-8", page().to_string()),
        "/status" => {
            let mut s = served.lock().unwrap();
            if matches!(mode, Mode::Token)
                && !req.contains(&format!("\r\nAuthorization: Bearer {TOKEN}\r\n"))
            {
                s.unauthorized += 1;
                drop(s);
                let body = "needs the token\n";
                let _ = sock.write_all(
                    format!(
                        "HTTP/1.1 401 Unauthorized\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                        body.len()
                    )
                    .as_bytes(),
                );
                return;
            }
            let n = s.lag_bytes.len();
            if let Mode::DiesAfter(k) = mode {
                if n >= k {
                    s.refused += 1;
                    drop(s);
                    let _ = sock.shutdown(Shutdown::Both);
                    return;
                }
            }
            s.lag_bytes.push(lag_bytes(n as u64));
            let failed = matches!(mode, Mode::Failed);
            let links = if matches!(mode, Mode::Shards) {
                SHARDS
            } else {
                "[]"
            };
            let body = status_with_links(n as u64, failed, links);
            ("200 OK", "application/json", body)
        }
        _ => ("404 Not Found", "text/plain", "not found\n".to_string()),
    };
    let resp = format!(
        "HTTP/1.1 {code}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nCache-Control: no-store\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = sock.write_all(resp.as_bytes());
}

fn require_chromium() {
    assert!(
        Path::new(CHROMIUM).exists(),
        "{CHROMIUM} is missing: the dashboard test renders the page in headless \
         Chromium. Run `sudo .ci/install-servers.sh` (it installs Debian's \
         `chromium` package, as CI does)."
    );
}

/// Runs headless Chromium on `url` with `extra` flags, bounded by `timeout 60`.
/// `budget_ms` of virtual time pass before the DOM dump or the screenshot:
/// timers fire without waiting, so 40 s of polling take about a second.
fn chromium(url: &str, budget_ms: u32, extra: &[&str]) -> Output {
    let profile = tempfile::tempdir().expect("temporary Chromium profile");
    let started = Instant::now();
    let out = Command::new("timeout")
        .args(["-k", "5", "60", CHROMIUM])
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-dev-shm-usage",
            "--hide-scrollbars",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg("--window-size=1280,900")
        .arg(format!("--virtual-time-budget={budget_ms}"))
        .args(extra)
        .arg(url)
        .env("HOME", profile.path())
        .output()
        .expect("run timeout(1) + chromium");
    assert!(
        out.status.success(),
        "chromium {extra:?} failed ({}) after {:?}\nstderr:\n{}",
        out.status,
        started.elapsed(),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn dump_dom(url: &str) -> String {
    let out = chromium(url, 5_000, &["--dump-dom"]);
    String::from_utf8(out.stdout).expect("DOM is UTF-8")
}

/// A screenshot after 40 s of (virtual) polling, so that the chart has a
/// visible history.
fn screenshot(url: &str, name: &str) -> PathBuf {
    // CARGO_TARGET_TMPDIR is <target>/tmp.
    let target = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .expect("target directory")
        .to_path_buf();
    let file = target.join(name);
    let _ = std::fs::remove_file(&file);
    chromium(url, 40_000, &[&format!("--screenshot={}", file.display())]);
    let png = std::fs::read(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
    assert!(
        png.starts_with(b"\x89PNG"),
        "{} is not a PNG",
        file.display()
    );
    assert!(
        png.len() > 10_000,
        "{} is suspiciously small",
        file.display()
    );
    println!("dashboard screenshot: {}", file.display());
    file
}

/// The text content of the element with this id (no child elements).
fn text_of<'a>(dom: &'a str, id: &str) -> &'a str {
    let at = dom
        .find(&format!("id=\"{id}\""))
        .unwrap_or_else(|| panic!("no #{id} in the DOM:\n{dom}"));
    let open = at + dom[at..].find('>').unwrap() + 1;
    let close = open + dom[open..].find('<').unwrap();
    &dom[open..close]
}

/// The opening tag of the element with this id.
fn tag_of<'a>(dom: &'a str, id: &str) -> &'a str {
    let at = dom.find(&format!("id=\"{id}\"")).unwrap();
    let open = dom[..at].rfind('<').unwrap();
    &dom[open..at + dom[at..].find('>').unwrap() + 1]
}

/// 1234567 → "1,234,567", as the page formats counts.
fn grouped(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[test]
fn page_file_is_a_whole_html_document() {
    let p = page();
    assert!(
        p.starts_with("<!doctype html>"),
        "{}",
        &p[..p.len().min(80)]
    );
    assert!(p.trim_end().ends_with("</html>"));
}

#[test]
fn dashboard_renders_live_status() {
    require_chromium();
    let (port, served) = serve(Mode::Live);
    let dom = dump_dom(&format!("http://127.0.0.1:{port}/"));
    let lags = served.lock().unwrap().lag_bytes.clone();
    println!("/status polled {} times in 5 s of virtual time", lags.len());
    assert!(
        lags.len() >= 5,
        "the page polled /status only {} times in 5 s",
        lags.len()
    );

    assert_eq!(text_of(&dom, "phase"), "streaming", "phase badge");
    assert!(
        tag_of(&dom, "phase").contains("badge streaming"),
        "{}",
        tag_of(&dom, "phase")
    );
    let lag = text_of(&dom, "lag-bytes");
    assert!(
        lags.iter().any(|&l| grouped(l) == lag),
        "lag bytes shown: {lag:?}, served: {lags:?}"
    );
    assert!(text_of(&dom, "lag-seconds").ends_with(" s"), "lag seconds");
    for id in ["keys-rate", "cmds-rate"] {
        let r = text_of(&dom, id);
        assert!(
            r.chars().any(|c| c.is_ascii_digit()),
            "#{id} = {r:?}: no rate from successive polls"
        );
    }
    assert_eq!(text_of(&dom, "snapshot-pct"), "100 %", "snapshot progress");
    let verify = text_of(&dom, "verify-line");
    assert!(
        verify.starts_with("sampled verify: ") && verify.contains("keys checked, 0 mismatches"),
        "{verify}"
    );
    assert!(
        dom.contains(">filtered_key<") && dom.contains(">unsupported_value<"),
        "skipped reasons"
    );
    assert!(
        tag_of(&dom, "unreachable").contains("hidden"),
        "no outage banner while live"
    );
    assert!(
        tag_of(&dom, "error").contains("hidden"),
        "no error box without an error"
    );
    assert!(
        tag_of(&dom, "links-card").contains("hidden"),
        "no per-link table for one link"
    );

    // A fresh fake daemon for the picture, so its history starts at 0.
    let (port, _) = serve(Mode::Live);
    screenshot(&format!("http://127.0.0.1:{port}/"), "dashboard.png");
}

#[test]
fn dashboard_survives_the_daemon_going_away() {
    require_chromium();
    let (port, served) = serve(Mode::DiesAfter(2));
    let dom = dump_dom(&format!("http://127.0.0.1:{port}/"));
    let refused = served.lock().unwrap().refused;
    assert!(
        refused >= 1,
        "the page stopped polling after the daemon went away"
    );
    assert_eq!(text_of(&dom, "phase"), "unreachable");
    assert!(tag_of(&dom, "phase").contains("badge unreachable"));
    assert!(
        !tag_of(&dom, "unreachable").contains("hidden"),
        "outage banner shown"
    );
    assert!(dom.contains("daemon not reachable"));
    // The last values stay on screen (dimmed).
    assert_eq!(text_of(&dom, "lag-bytes"), grouped(lag_bytes(1)));
    assert!(
        tag_of(&dom, "main").contains("stale"),
        "stale values are dimmed"
    );

    // Never reachable: the page still renders, with the banner.
    let (port, _) = serve(Mode::DiesAfter(0));
    let dom = dump_dom(&format!("http://127.0.0.1:{port}/"));
    assert_eq!(text_of(&dom, "phase"), "unreachable");
    assert!(
        !tag_of(&dom, "unreachable").contains("hidden"),
        "outage banner shown"
    );

    // Picture: 25 s of history, then 15 s without an answer.
    let (port, _) = serve(Mode::DiesAfter(25));
    screenshot(
        &format!("http://127.0.0.1:{port}/"),
        "dashboard-unreachable.png",
    );
}

#[test]
fn dashboard_shows_the_error() {
    require_chromium();
    let (port, _) = serve(Mode::Failed);
    let dom = dump_dom(&format!("http://127.0.0.1:{port}/"));
    assert_eq!(text_of(&dom, "phase"), "error");
    assert!(tag_of(&dom, "phase").contains("badge error"));
    assert!(!tag_of(&dom, "error").contains("hidden"), "error box shown");
    assert_eq!(text_of(&dom, "error-text"), FAILURE.replace('>', "&gt;"));
    assert!(tag_of(&dom, "unreachable").contains("hidden"));
}

#[test]
fn dashboard_sends_the_token() {
    require_chromium();
    // Opened as /?token=...: the page sends it as a bearer header.
    let (port, served) = serve(Mode::Token);
    let dom = dump_dom(&format!("http://127.0.0.1:{port}/?token={TOKEN}"));
    let s = served.lock().unwrap();
    assert!(
        s.lag_bytes.len() >= 3,
        "{} authorized polls",
        s.lag_bytes.len()
    );
    assert_eq!(s.unauthorized, 0, "polls without the token");
    drop(s);
    assert_eq!(text_of(&dom, "phase"), "streaming");
    // Without it: the page says what is missing.
    let (port, served) = serve(Mode::Token);
    let dom = dump_dom(&format!("http://127.0.0.1:{port}/"));
    assert!(served.lock().unwrap().unauthorized >= 1);
    assert!(dom.contains("needs the token"), "{dom}");
}

/// A cluster source: one row per source shard (name, address, slots,
/// offsets, lag), a disconnected link marked.
#[test]
fn dashboard_lists_every_link_of_a_cluster_source() {
    require_chromium();
    let (port, _) = serve(Mode::Shards);
    let dom = dump_dom(&format!("http://127.0.0.1:{port}/"));
    assert!(
        !tag_of(&dom, "links-card").contains("hidden"),
        "per-link table shown"
    );
    for (name, addr, slots, lag) in [
        ("shard-0", "10.0.0.1:6379", "0-5460", "10"),
        ("shard-5461", "10.0.0.2:6379", "5461-10922", "766"),
        ("shard-10923", "10.0.0.3:6379", "10923-16383", "0"),
    ] {
        let at = dom
            .find(&format!("id=\"link-{name}\""))
            .unwrap_or_else(|| panic!("no row for {name}:\n{dom}"));
        let row = &dom[at..at + dom[at..].find("</tr>").expect("row end")];
        for cell in [addr, slots, lag] {
            assert!(
                row.contains(&format!(">{cell}</td>")),
                "{name}: {cell} in {row}"
            );
        }
    }
    let down = tag_of(&dom, "link-shard-5461");
    assert!(down.contains("bad"), "{down}");
    assert!(dom.contains("streaming (disconnected)"));
    let (port, _) = serve(Mode::Shards);
    screenshot(&format!("http://127.0.0.1:{port}/"), "dashboard-shards.png");
}

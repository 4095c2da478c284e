//! A RESP sink for the multi-core benchmark (`benches/sink_scaling.sh`): a
//! fake Redis Cluster target that costs (almost) nothing, so the time of a
//! full sync into it is ferry's own.
//!
//! `resp_sink PORT [PORT...]` listens on 127.0.0.1 on every port; each port
//! is one "master" owning an equal share of the 16,384 slots (`CLUSTER
//! SLOTS`; `CLUSTER SHARDS` is refused as unknown, so ferry falls back to
//! `CLUSTER SLOTS` as it does for Redis before 7.0). Every command is
//! answered at once, one thread per connection, replies written in one
//! batch per read:
//!
//! - writes and anything unknown: `+OK`; `PING`: `+PONG`
//! - `MULTI`: `+OK`, then `+QUEUED` per command, `EXEC`: the array of the
//!   queued commands' replies (checkpoint mode's transactions commit)
//! - `GET`: null (no checkpoint key exists: a probe says "not committed"),
//!   `MGET`: nulls, `EXISTS`/`DBSIZE`/`DEL`: `:0`, `PTTL`: `:-2`, `WAIT`: `:1`,
//!   `SCAN`: an empty scan, `DUMP`: null, `MODULE LIST`, `KEYS`: empty arrays
//! - `INFO`: a Redis 7.0 cluster node with an empty keyspace
//!
//! Nothing is stored; only a command's name and first argument are kept
//! while it is answered, so the sink's own CPU per command stays small next
//! to ferry's. It runs until killed and prints the number of commands it
//! answered to stdout every second (`commands <n>`).

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

fn main() {
    let ports: Vec<u16> = std::env::args()
        .skip(1)
        .map(|p| {
            p.parse()
                .unwrap_or_else(|_| fail(&format!("bad port {p:?}")))
        })
        .collect();
    if ports.is_empty() {
        fail("usage: resp_sink PORT [PORT...]");
    }
    let slots = Arc::new(cluster_slots(&ports));
    let count = Arc::new(AtomicU64::new(0));
    for &port in &ports {
        let listener = TcpListener::bind(("127.0.0.1", port))
            .unwrap_or_else(|e| fail(&format!("binding 127.0.0.1:{port}: {e}")));
        let (slots, count) = (Arc::clone(&slots), Arc::clone(&count));
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let (slots, count) = (Arc::clone(&slots), Arc::clone(&count));
                std::thread::spawn(move || serve(stream, port, &slots, &count));
            }
        });
    }
    loop {
        std::thread::sleep(Duration::from_secs(1));
        println!("commands {}", count.load(Ordering::Relaxed));
    }
}

fn fail(msg: &str) -> ! {
    eprintln!("resp_sink: {msg}");
    std::process::exit(2)
}

/// The `CLUSTER SLOTS` reply: the slots split evenly over the ports.
fn cluster_slots(ports: &[u16]) -> Vec<u8> {
    let n = ports.len();
    let mut out = format!("*{n}\r\n").into_bytes();
    for (i, port) in ports.iter().enumerate() {
        let lo = i * 16384 / n;
        let hi = (i + 1) * 16384 / n - 1;
        let id = format!("{:040x}", u64::from(*port));
        out.extend_from_slice(
            format!(
                "*3\r\n:{lo}\r\n:{hi}\r\n*3\r\n$9\r\n127.0.0.1\r\n:{port}\r\n${}\r\n{id}\r\n",
                id.len()
            )
            .as_bytes(),
        );
    }
    out
}

/// Answers one connection until it closes.
fn serve(stream: TcpStream, port: u16, slots: &[u8], count: &AtomicU64) {
    let _ = stream.set_nodelay(true);
    let Ok(mut writer) = stream.try_clone() else {
        return;
    };
    let mut reader = BufReader::with_capacity(256 * 1024, stream);
    let mut out: Vec<u8> = Vec::with_capacity(64 * 1024);
    let mut multi: Option<Vec<u8>> = None;
    let mut queued = 0usize;
    let mut cmd = Cmd::default();
    let mut answered = 0u64;
    loop {
        match read_command(&mut reader, &mut cmd) {
            Ok(true) => {}
            _ => return,
        }
        answered += 1;
        match (cmd.name.as_slice(), multi.as_mut()) {
            (b"MULTI", _) => {
                multi = Some(Vec::new());
                queued = 0;
                out.extend_from_slice(b"+OK\r\n");
            }
            (b"EXEC", Some(replies)) => {
                out.extend_from_slice(format!("*{queued}\r\n").as_bytes());
                out.extend_from_slice(replies);
                multi = None;
            }
            (b"DISCARD", Some(_)) => {
                multi = None;
                out.extend_from_slice(b"+OK\r\n");
            }
            (_, Some(replies)) => {
                reply(&cmd, port, slots, replies);
                queued += 1;
                out.extend_from_slice(b"+QUEUED\r\n");
            }
            (_, None) => reply(&cmd, port, slots, &mut out),
        }
        // Write once nothing more is buffered (one write per read).
        if reader.buffer().is_empty() || out.len() >= 256 * 1024 {
            count.fetch_add(answered, Ordering::Relaxed);
            answered = 0;
            if writer.write_all(&out).is_err() {
                return;
            }
            out.clear();
        }
    }
}

/// One command as the sink sees it: buffers reused from command to command.
#[derive(Default)]
struct Cmd {
    /// Arguments, the name included.
    argc: usize,
    /// The name, upper case.
    name: Vec<u8>,
    /// The first argument, upper case (a subcommand).
    sub: Vec<u8>,
    /// Where the other arguments are read and dropped.
    scratch: Vec<u8>,
}

/// The reply to one command (not `MULTI`/`EXEC`/`DISCARD`).
fn reply(cmd: &Cmd, port: u16, slots: &[u8], out: &mut Vec<u8>) {
    let sub = cmd.sub.as_slice();
    match cmd.name.as_slice() {
        b"PING" => out.extend_from_slice(b"+PONG\r\n"),
        b"GET" | b"DUMP" => out.extend_from_slice(b"$-1\r\n"),
        b"MGET" => {
            out.extend_from_slice(format!("*{}\r\n", cmd.argc - 1).as_bytes());
            for _ in 1..cmd.argc {
                out.extend_from_slice(b"$-1\r\n");
            }
        }
        b"EXISTS" | b"DBSIZE" | b"DEL" | b"UNLINK" => out.extend_from_slice(b":0\r\n"),
        b"PTTL" | b"TTL" => out.extend_from_slice(b":-2\r\n"),
        b"WAIT" => out.extend_from_slice(b":1\r\n"),
        b"SCAN" => out.extend_from_slice(b"*2\r\n$1\r\n0\r\n*0\r\n"),
        b"KEYS" => out.extend_from_slice(b"*0\r\n"),
        b"MODULE" | b"FUNCTION" if sub == b"LIST" => out.extend_from_slice(b"*0\r\n"),
        b"CLUSTER" => match sub {
            b"SLOTS" => out.extend_from_slice(slots),
            b"MYID" => {
                let id = format!("{:040x}", u64::from(port));
                out.extend_from_slice(format!("${}\r\n{id}\r\n", id.len()).as_bytes());
            }
            b"INFO" => bulk(out, b"cluster_state:ok\r\ncluster_enabled:1\r\n"),
            _ => out.extend_from_slice(b"-ERR unknown subcommand\r\n"),
        },
        b"INFO" => bulk(
            out,
            format!(
                "# Server\r\nredis_version:7.0.15\r\nredis_mode:cluster\r\ntcp_port:{port}\r\n\
                 # Replication\r\nrole:master\r\nconnected_slaves:1\r\n\
                 # Cluster\r\ncluster_enabled:1\r\n# Modules\r\n# Keyspace\r\n"
            )
            .as_bytes(),
        ),
        _ => out.extend_from_slice(b"+OK\r\n"),
    }
}

fn bulk(out: &mut Vec<u8>, b: &[u8]) {
    out.extend_from_slice(format!("${}\r\n", b.len()).as_bytes());
    out.extend_from_slice(b);
    out.extend_from_slice(b"\r\n");
}

/// Reads one command (an array of bulk strings, or an inline line) into
/// `cmd`; `Ok(false)` at a clean end of the stream.
fn read_command<R: BufRead>(r: &mut R, cmd: &mut Cmd) -> std::io::Result<bool> {
    cmd.argc = 0;
    cmd.name.clear();
    cmd.sub.clear();
    let line = &mut cmd.scratch;
    line.clear();
    if r.read_until(b'\n', line)? == 0 {
        return Ok(false);
    }
    let text = trim(line);
    let Some(count) = text.strip_prefix(b"*") else {
        // Inline command (redis-cli-style tools may send one).
        let mut words = text.split(|b| *b == b' ').filter(|a| !a.is_empty());
        cmd.name
            .extend(words.next().unwrap_or_default().to_ascii_uppercase());
        cmd.sub
            .extend(words.next().unwrap_or_default().to_ascii_uppercase());
        cmd.argc = 2 + words.count();
        return Ok(true);
    };
    let n = number(count)?;
    for i in 0..n {
        line.clear();
        r.read_until(b'\n', line)?;
        let len = trim(line)
            .strip_prefix(b"$")
            .ok_or_else(|| bad("bulk string expected"))?;
        let len = number(len)?;
        line.resize(len + 2, 0);
        r.read_exact(line)?;
        match i {
            0 => upper_into(&mut cmd.name, &line[..len]),
            1 => upper_into(&mut cmd.sub, &line[..len]),
            _ => {}
        }
    }
    cmd.argc = n;
    Ok(true)
}

fn upper_into(to: &mut Vec<u8>, b: &[u8]) {
    to.extend_from_slice(b);
    to.make_ascii_uppercase();
}

fn trim(line: &[u8]) -> &[u8] {
    line.strip_suffix(b"\r\n")
        .or_else(|| line.strip_suffix(b"\n"))
        .unwrap_or(line)
}

fn number(b: &[u8]) -> std::io::Result<usize> {
    std::str::from_utf8(b)
        .ok()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| bad("bad length"))
}

fn bad(what: &str) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, what)
}

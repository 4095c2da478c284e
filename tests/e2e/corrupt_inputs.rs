//! Bad input (issue 7): corrupt and adversarial RDB files through
//! `ferry rdb`, and a fake source that sends a corrupt snapshot or a corrupt
//! command stream to `ferry run`. Every case must end with a clear error
//! naming what was wrong — never a panic (exit 101), never a crash by
//! signal, never an allocation sized by an untrusted length (each `ferry`
//! runs under `ulimit -v` of 1 GiB), never silence.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Command, Output, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::Duration;

use ferry_rdb::build::RdbWriter;
use ferry_testkit::{Cluster, Flavor, Server, fixtures};

use crate::common::daemon::{FERRY, Setup};

/// Address-space limit for every `ferry` run here (KiB).
const VMEM_KIB: u64 = 1 << 20;

/// `ferry <args>` with `input` on stdin, under the memory limit.
fn ferry_limited(args: &[&str], input: &[u8]) -> Output {
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(format!("ulimit -v {VMEM_KIB}; exec \"$0\" \"$@\""))
        .arg(FERRY)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn ferry");
    let mut stdin = child.stdin.take().expect("stdin");
    let data = input.to_vec();
    let writer = thread::spawn(move || {
        let _ = stdin.write_all(&data);
    });
    let out = child.wait_with_output().expect("ferry output");
    let _ = writer.join();
    out
}

/// The case must fail with exit 1 and a one-line message on stderr that
/// says where (offset) or what (checksum, header, type).
fn assert_clear_error(name: &str, out: &Output) {
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{name}: exit {:?} (101 = panic, None = signal): {err}",
        out.status
    );
    let lines: Vec<_> = err.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "{name}: want one error line: {err}");
    let l = lines[0].to_lowercase();
    assert!(
        l.contains("offset") || l.contains("checksum") || l.contains("not an rdb"),
        "{name}: the error names no position or cause: {err}"
    );
}

/// A real Redis 7.0 dump holding every type it writes.
fn real_dump() -> Vec<u8> {
    let src = Server::start(Flavor::Redis70).expect("source");
    fixtures::populate_with(
        &mut src.conn(),
        fixtures::FixtureOptions::new(Flavor::Redis70).single_db(),
    )
    .expect("populate");
    src.dump_rdb().expect("dump")
}

#[test]
fn corrupt_rdb_files_fail_clearly_within_bounded_memory() {
    let dump = real_dump();
    let n = dump.len();
    let mut cases: Vec<(String, Vec<u8>)> = Vec::new();
    // Truncated at 64 points spread over the file (every section is cut
    // somewhere; the decoder's own tests cut at every byte).
    for i in 0..64 {
        let end = (n - 1) * i / 64;
        cases.push((format!("truncated at {end}"), dump[..end].to_vec()));
    }
    // Flipped bytes (checksum verified: each must be caught).
    let mut x = 0x2545_F491_4F6C_DD1Du64;
    for _ in 0..64 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let pos = 9 + (x as usize) % (n - 9);
        let mut d = dump.clone();
        d[pos] ^= 1 << (x % 8);
        cases.push((format!("bit flipped at {pos}"), d));
    }
    // Lengths of 2^63 where a string length and a list length go.
    let mut w = RdbWriter::new("REDIS", 10);
    w.key(0, b"k").raw(&[0x81]).raw(&(1u64 << 63).to_be_bytes());
    cases.push(("string of 2^63 bytes".into(), w.finish()));
    let mut w = RdbWriter::new("REDIS", 10);
    w.key(18, b"l")
        .raw(&[0x81])
        .raw(&(1u64 << 63).to_be_bytes());
    cases.push(("quicklist of 2^63 nodes".into(), w.finish()));
    let mut w = RdbWriter::new("REDIS", 10);
    w.key(4, b"h").raw(&[0x81]).raw(&(u64::MAX).to_be_bytes());
    cases.push(("hash of 2^64-1 fields".into(), w.finish()));
    // LZF claiming 1 GiB from 2 bytes, and LZF with a back reference
    // before the start.
    let mut w = RdbWriter::new("REDIS", 10);
    w.key(0, b"k")
        .byte(0xC3)
        .len(2)
        .len(1 << 30)
        .raw(&[0, b'a']);
    cases.push(("LZF claiming 1 GiB".into(), w.finish()));
    let mut w = RdbWriter::new("REDIS", 10);
    w.key(0, b"k").byte(0xC3).len(2).len(8).raw(&[0x20, 0x10]);
    cases.push(("LZF reference before the start".into(), w.finish()));
    // Not an RDB at all, and an unknown type byte.
    cases.push((
        "an AOF".into(),
        b"*2\r\n$6\r\nSELECT\r\n$1\r\n0\r\n".to_vec(),
    ));
    let mut w = RdbWriter::new("REDIS", 10);
    w.key(0, b"k").string(b"v").key(99, b"x");
    cases.push(("unknown type 99".into(), w.finish()));

    for (name, data) in &cases {
        for format in ["summary", "resp"] {
            let out = ferry_limited(&["rdb", "-", "--format", format], data);
            assert_clear_error(&format!("{name} ({format})"), &out);
        }
    }
}

/// What the fake source sends after `+FULLRESYNC`.
#[derive(Clone)]
enum Payload {
    /// A `$<len>` snapshot.
    Snapshot(Vec<u8>),
    /// A valid empty snapshot, then these bytes as the command stream.
    Stream(Vec<u8>),
}

/// A source that speaks just enough of the protocol for `ferry run`: it
/// answers PING/AUTH/REPLCONF/INFO/DBSIZE, and PSYNC with `+FULLRESYNC`
/// and `payload`. Runs until the returned flag is set.
fn fake_source(payload: Payload) -> (String, Arc<AtomicBool>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr").to_string();
    listener.set_nonblocking(true).expect("nonblocking");
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    thread::spawn(move || {
        while !flag.load(Ordering::Relaxed) {
            match listener.accept() {
                Ok((sock, _)) => {
                    let p = payload.clone();
                    let f = flag.clone();
                    thread::spawn(move || serve(sock, p, f));
                }
                Err(_) => thread::sleep(Duration::from_millis(20)),
            }
        }
    });
    (addr, stop)
}

fn serve(mut sock: TcpStream, payload: Payload, stop: Arc<AtomicBool>) {
    let _ = sock.set_read_timeout(Some(Duration::from_millis(200)));
    let mut buf: Vec<u8> = Vec::new();
    let mut chunk = [0u8; 4096];
    while !stop.load(Ordering::Relaxed) {
        match sock.read(&mut chunk) {
            Ok(0) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(_) => continue,
        }
        while let Ok(Some((frame, used))) = ferry_resp::decode(&buf) {
            buf.drain(..used);
            let args: Vec<Vec<u8>> = match frame {
                ferry_resp::Value::Array(items) => items
                    .into_iter()
                    .filter_map(|f| match f {
                        ferry_resp::Value::Bulk(b) => Some(b.to_vec()),
                        _ => None,
                    })
                    .collect(),
                _ => continue,
            };
            let name = args
                .first()
                .map(|a| String::from_utf8_lossy(a).to_uppercase())
                .unwrap_or_default();
            // A master never answers a replica's ACK.
            if name == "REPLCONF" && args.get(1).is_some_and(|a| a.eq_ignore_ascii_case(b"ACK")) {
                continue;
            }
            let reply: Vec<u8> = match name.as_str() {
                "PING" => b"+PONG\r\n".to_vec(),
                "AUTH" | "REPLCONF" | "CLIENT" => b"+OK\r\n".to_vec(),
                "DBSIZE" => b":0\r\n".to_vec(),
                "INFO" => {
                    let text = "# Server\r\nredis_version:7.0.15\r\n# Replication\r\nrole:master\r\nmaster_repl_offset:0\r\n# Keyspace\r\n";
                    format!("${}\r\n{text}\r\n", text.len()).into_bytes()
                }
                "PSYNC" | "SYNC" => {
                    let mut out = format!("+FULLRESYNC {} 0\r\n", "a".repeat(40)).into_bytes();
                    let (rdb, stream) = match &payload {
                        Payload::Snapshot(rdb) => (rdb.clone(), Vec::new()),
                        Payload::Stream(s) => (RdbWriter::new("REDIS", 10).finish(), s.clone()),
                    };
                    out.extend_from_slice(format!("${}\r\n", rdb.len()).as_bytes());
                    out.extend_from_slice(&rdb);
                    out.extend_from_slice(&stream);
                    out
                }
                _ => b"-ERR unknown command\r\n".to_vec(),
            };
            if sock.write_all(&reply).is_err() {
                return;
            }
        }
    }
}

/// `ferry run` against a fake source sending `payload`: it must stop by
/// itself with exit 1 and an error containing `want`.
fn run_against(cluster: &Cluster, payload: Payload, want: &str) {
    cluster.flushall();
    let (addr, stop) = fake_source(payload);
    let setup = Setup::new(&format!("redis://{addr}"), &cluster.seed_url(), "");
    let mut ferry = setup.run();
    let code = ferry.wait_exit(Duration::from_secs(30));
    stop.store(true, Ordering::Relaxed);
    let log = ferry.log();
    assert_eq!(code, Some(1), "ferry run must stop with exit 1: {log}");
    assert!(log.contains(want), "the error must say {want:?}: {log}");
    assert!(!log.contains("panicked"), "{log}");
}

#[test]
fn corrupt_snapshot_from_the_source_stops_ferry_clearly() {
    let mut w = RdbWriter::new("REDIS", 10);
    w.key(0, b"k").string(b"v").key(99, b"x");
    let cluster = Cluster::start(Flavor::Redis70, 3).expect("cluster");
    run_against(&cluster, Payload::Snapshot(w.finish()), "offset");
    let mut rdb = RdbWriter::new("REDIS", 10);
    rdb.key(0, b"k").string(b"v");
    let mut d = rdb.finish();
    let last = d.len() - 1;
    d[last] ^= 0x55;
    run_against(&cluster, Payload::Snapshot(d), "checksum");
}

#[test]
fn corrupt_command_stream_from_the_source_stops_ferry_clearly() {
    // A bulk length that is not a number, after one good command.
    let cluster = Cluster::start(Flavor::Redis70, 3).expect("cluster");
    run_against(
        &cluster,
        Payload::Stream(b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\nv\r\n*1\r\n$x\r\n".to_vec()),
        "offset",
    );
}

/// Empty keys (a list of empty quicklist nodes, an empty set), which a
/// server skips when loading, are skipped by `ferry run` too: counted as
/// `empty_key` in `/status`, the rest carried, and the snapshot's
/// `keys_done` counts every key handled once streaming.
#[test]
fn empty_keys_in_a_snapshot_are_skipped_and_counted() {
    let mut w = RdbWriter::new("REDIS", 10);
    w.select_db(0);
    w.key(0, b"k").string(b"v");
    w.key(18, b"empty-list").list_quicklist2(&[vec![], vec![]]);
    w.key(2, b"empty-set").set_plain(&[]);
    let target = Server::start(Flavor::Redis70).expect("target");
    let (addr, stop) = fake_source(Payload::Snapshot(w.finish()));
    let setup = Setup::new(&format!("redis://{addr}"), &target.url(), "");
    let mut ferry = setup.run();
    let st = match std::panic::catch_unwind(|| {
        crate::common::daemon::wait_phase(&setup.http, "streaming", Duration::from_secs(30))
    }) {
        Ok(st) => st,
        Err(_) => panic!("not streaming: {}", ferry.log()),
    };
    // The status is rebuilt every 20 ms: wait for the counters of the end.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let mut st = st;
    while st["snapshot"]["keys_done"] != 3 && std::time::Instant::now() < deadline {
        thread::sleep(Duration::from_millis(100));
        st = crate::common::daemon::status(&setup.http).unwrap_or(st);
    }
    stop.store(true, Ordering::Relaxed);
    let log = ferry.log();
    ferry.stop();
    assert_eq!(st["skipped"]["empty_key"], 2, "{st}\n{log}");
    assert_eq!(st["keys_applied"], 1, "{st}");
    assert_eq!(st["snapshot"]["keys_done"], 3, "{st}");
    assert!(
        log.contains("empty-set"),
        "each skipped key is logged: {log}"
    );
    let v: String = redis::cmd("GET")
        .arg("k")
        .query(&mut target.conn())
        .expect("GET");
    assert_eq!(v, "v");
    let n: u64 = redis::cmd("DBSIZE")
        .query(&mut target.conn())
        .expect("DBSIZE");
    assert_eq!(n, 1);
}

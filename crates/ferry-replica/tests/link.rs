//! The tokio link against real servers: full sync (disk and diskless) and
//! stream with exact offsets and applied ACKs, resume after a restart,
//! a stalled consumer spooling to disk (a tight output-buffer limit, and a
//! 20 s stall under heavy writes at the default limits), the spool cap,
//! GETACK/WAIT, handshake warnings, credentials and ACL, a loading / a
//! replica-without-master / a full source (retried), newline keepalives,
//! a promoted source (+CONTINUE with a new id), Valkey 9.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ferry_rdb::{Flavor as RdbFlavor, Item};
use ferry_replica::{
    Auth, HandshakeError, Link, LinkConfig, LinkError, LinkEvent, LinkHandle, LinkStatus, Position,
    StreamEvent,
};
use ferry_testkit::{Flavor, Server, info_field};
use tokio_util::sync::CancellationToken;

/// Captures `tracing` output of the whole test binary (the link logs from
/// tokio worker threads, so a thread-local subscriber would miss it).
mod logs {
    use std::io::Write;
    use std::sync::{Mutex, OnceLock};

    static BUF: Mutex<Vec<u8>> = Mutex::new(Vec::new());

    struct Sink;

    impl Write for Sink {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            BUF.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// Installs the capturing subscriber (once per process).
    pub fn capture() {
        static ONCE: OnceLock<()> = OnceLock::new();
        ONCE.get_or_init(|| {
            let _ = tracing_subscriber::fmt()
                .with_writer(|| Sink)
                .with_ansi(false)
                .try_init();
        });
    }

    /// Everything logged so far.
    pub fn captured() -> String {
        String::from_utf8_lossy(&BUF.lock().unwrap()).into_owned()
    }
}

/// Bound of every wait in these tests.
const WAIT: Duration = Duration::from_secs(15);

fn config(server: &Server, dir: &std::path::Path) -> LinkConfig {
    let mut cfg = LinkConfig::new(server.addr(), dir);
    cfg.ack_interval = Duration::from_millis(250);
    cfg.timeout = Duration::from_secs(10);
    cfg.listening_port = Some(7777);
    cfg
}

/// A consumer that reports every event as applied at once, unless stalled.
struct Consumer {
    events: Arc<Mutex<Vec<LinkEvent>>>,
    stall: Arc<AtomicBool>,
}

impl Consumer {
    fn spawn(handle: LinkHandle, mut rx: ferry_replica::LinkEvents) -> Consumer {
        let events = Arc::new(Mutex::new(Vec::new()));
        let stall = Arc::new(AtomicBool::new(false));
        let (ev, st) = (events.clone(), stall.clone());
        tokio::spawn(async move {
            while let Some(e) = rx.recv().await {
                while st.load(Ordering::Relaxed) {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                match &e {
                    LinkEvent::SnapshotEnd { applied } | LinkEvent::Stream { applied, .. } => {
                        handle.applied(*applied)
                    }
                    _ => {}
                }
                ev.lock().unwrap().push(e);
            }
        });
        Consumer { events, stall }
    }

    fn snapshot(&self) -> Vec<LinkEvent> {
        self.events.lock().unwrap().clone()
    }

    fn last_stream_offset(&self) -> Option<u64> {
        self.events
            .lock()
            .unwrap()
            .iter()
            .rev()
            .find_map(|e| match e {
                LinkEvent::Stream { event, .. } => Some(event.end_offset()),
                LinkEvent::SnapshotEnd { applied } => Some(applied.offset),
                _ => None,
            })
    }

    async fn wait_snapshot(&self) {
        wait_for("the snapshot", || {
            self.has(|e| matches!(e, LinkEvent::SnapshotEnd { .. }))
        })
        .await;
    }

    fn has(&self, f: impl Fn(&LinkEvent) -> bool) -> bool {
        self.events.lock().unwrap().iter().any(f)
    }
}

/// Polls `cond` every 20 ms until it holds; panics with `what` after [`WAIT`].
async fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    let until = Instant::now() + WAIT;
    while !cond() {
        assert!(Instant::now() < until, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn info_u64(server: &Server, section: &str, field: &str) -> u64 {
    info_field(&server.info(section), field)
        .unwrap_or_else(|| panic!("no {field}"))
        .parse()
        .expect("number")
}

fn master_offset(server: &Server) -> u64 {
    info_u64(server, "replication", "master_repl_offset")
}

/// ~1000 keys of mixed types, some with a TTL.
fn populate(server: &Server) {
    let mut conn = server.conn();
    let mut pipe = redis::pipe();
    for i in 0..1000 {
        let k = format!("key:{i}");
        match i % 5 {
            0 => pipe.cmd("SET").arg(&k).arg(i),
            1 => pipe.cmd("RPUSH").arg(&k).arg("a").arg("b").arg(i),
            2 => pipe.cmd("HSET").arg(&k).arg("f").arg(i).arg("g").arg("x"),
            3 => pipe.cmd("SADD").arg(&k).arg("m").arg(i),
            _ => pipe.cmd("ZADD").arg(&k).arg(1.5).arg("m").arg(i).arg("n"),
        };
        if i % 7 == 0 {
            pipe.cmd("EXPIRE").arg(&k).arg(3600);
        }
    }
    pipe.query::<redis::Value>(&mut conn).expect("populate");
}

fn write_some(server: &Server, tag: &str, n: usize) -> Vec<String> {
    let mut conn = server.conn();
    let mut expected = Vec::new();
    for i in 0..n {
        redis::cmd("SET")
            .arg(format!("{tag}:{i}"))
            .arg(i)
            .query::<()>(&mut conn)
            .expect("SET");
        redis::cmd("INCR")
            .arg(format!("{tag}:ctr"))
            .query::<i64>(&mut conn)
            .expect("INCR");
        expected.push(format!("SET {tag}:{i} {i}"));
        expected.push(format!("INCR {tag}:ctr"));
    }
    expected
}

fn data_commands(events: &[LinkEvent]) -> Vec<String> {
    events
        .iter()
        .filter_map(|e| match e {
            LinkEvent::Stream {
                event: StreamEvent::Command { cmd, .. },
                ..
            } => Some(
                cmd.args
                    .iter()
                    .map(|a| String::from_utf8_lossy(a).into_owned())
                    .collect::<Vec<_>>()
                    .join(" "),
            ),
            _ => None,
        })
        .collect()
}

fn keys(events: &[LinkEvent]) -> usize {
    events
        .iter()
        .filter(|e| matches!(e, LinkEvent::Rdb(Item::Key(_))))
        .count()
}

/// Waits until the last delivered offset equals the source's, then until
/// the source shows our replica online at that offset (applied ACK).
async fn caught_up(server: &Server, consumer: &Consumer) -> u64 {
    let mut at = 0;
    wait_for("the stream to reach master_repl_offset", || {
        at = master_offset(server);
        consumer.last_stream_offset() == Some(at)
    })
    .await;
    wait_for("INFO replication to show the applied offset", || {
        let info = server.info("replication");
        let at = master_offset(server);
        consumer.last_stream_offset() == Some(at)
            && info.contains(&format!("port=7777,state=online,offset={at},"))
    })
    .await;
    master_offset(server)
}

async fn full_sync(diskless: bool) {
    logs::capture();
    let server = Server::builder(Flavor::Redis70)
        .arg("repl-diskless-sync", if diskless { "yes" } else { "no" })
        .arg("repl-diskless-sync-delay", "0")
        .start()
        .expect("server");
    populate(&server);
    let dir = tempfile::tempdir().expect("tmp");
    let (link, rx) = Link::start(config(&server, dir.path()), CancellationToken::new()).unwrap();
    let consumer = Consumer::spawn(link.handle(), rx);
    consumer.wait_snapshot().await;
    let events = consumer.snapshot();
    assert!(matches!(events[0], LinkEvent::FullSync { epoch: 1, .. }));
    assert_eq!(keys(&events), 1000);

    let expected = write_some(&server, "w", 25);
    let at = caught_up(&server, &consumer).await;
    assert_eq!(data_commands(&consumer.snapshot()), expected);
    let status: LinkStatus = link.status();
    assert!(status.connected);
    assert_eq!(status.received_offset, Some(at));
    assert_eq!(status.applied_offset, Some(at));
    assert_eq!(status.spool_disk_bytes, 0);
    // A consumer that keeps up: the spool never wrote a segment file.
    assert_eq!(
        (
            status.spool_segments_written,
            status.spool_disk_bytes_written
        ),
        (0, 0)
    );
    // Redis 7.0 refuses `REPLCONF version`: tolerated, counted, logged.
    assert_eq!(
        status.handshake_warnings,
        1,
        "{:?}",
        link.handshake_warnings()
    );
    let warnings = link.handshake_warnings();
    assert_eq!(warnings[0].request, "REPLCONF version");
    assert!(warnings[0].message.starts_with("ERR"), "{warnings:?}");
    let logged = logs::captured();
    assert!(
        logged.contains("WARN") && logged.contains("REPLCONF version answered -ERR"),
        "{logged}"
    );
    wait_for("the INFO poller", || {
        link.status().source_offset == Some(at)
    })
    .await;
    assert!(
        !consumer.has(|e| matches!(e, LinkEvent::Reconnecting { .. })),
        "{:?}",
        consumer.snapshot()
    );
    link.shutdown().await.expect("clean shutdown");
    let saved = Position::load(&dir.path().join("position.json"))
        .unwrap()
        .expect("saved");
    assert_eq!(saved.offset, at);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redis70_disk_full_sync_then_stream() {
    full_sync(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redis70_diskless_full_sync_then_stream() {
    full_sync(true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn restart_resumes_with_continue_exactly_once() {
    let server = Server::builder(Flavor::Redis70)
        .arg("repl-diskless-sync", "yes")
        .arg("repl-diskless-sync-delay", "0")
        .start()
        .expect("server");
    populate(&server);
    let dir = tempfile::tempdir().expect("tmp");
    let (link, rx) = Link::start(config(&server, dir.path()), CancellationToken::new()).unwrap();
    let consumer = Consumer::spawn(link.handle(), rx);
    consumer.wait_snapshot().await;
    let mut before = write_some(&server, "a", 10);
    // The stream is in db 2 when ferry stops.
    let mut conn = server.conn();
    redis::cmd("SELECT").arg(2).query::<()>(&mut conn).unwrap();
    redis::cmd("SET")
        .arg("in2:before")
        .arg("x")
        .query::<()>(&mut conn)
        .unwrap();
    before.push("SET in2:before x".into());
    caught_up(&server, &consumer).await;
    assert_eq!(data_commands(&consumer.snapshot()), before);
    link.shutdown().await.expect("shutdown");

    let full = info_u64(&server, "stats", "sync_full");
    let partial = info_u64(&server, "stats", "sync_partial_ok");
    // Writes while ferry is down: first in db 2, which the source does not
    // announce again (no SELECT: the saved position carries the db), then
    // db 0, then db 2 again.
    redis::cmd("SET")
        .arg("in2:down")
        .arg("y")
        .query::<()>(&mut conn)
        .unwrap();
    let mut expected = vec!["SET in2:down y".to_string()];
    expected.extend(write_some(&server, "b", 10));
    redis::cmd("SELECT").arg(2).query::<()>(&mut conn).unwrap();
    redis::cmd("SET")
        .arg("in2")
        .arg("x")
        .query::<()>(&mut conn)
        .unwrap();
    expected.push("SET in2 x".into());

    let (link, rx) = Link::start(config(&server, dir.path()), CancellationToken::new()).unwrap();
    let consumer = Consumer::spawn(link.handle(), rx);
    let more = write_some(&server, "c", 5);
    expected.extend(more);
    caught_up(&server, &consumer).await;
    let events = consumer.snapshot();
    assert!(
        matches!(events[0], LinkEvent::Continue { .. }),
        "{:?}",
        events[0]
    );
    assert_eq!(data_commands(&events), expected);
    let first = events
        .iter()
        .find_map(|e| match e {
            LinkEvent::Stream { event, .. } if !matches!(event, StreamEvent::Ping { .. }) => {
                Some(event.clone())
            }
            _ => None,
        })
        .expect("a stream event");
    assert!(
        matches!(&first, StreamEvent::Command { cmd, db: 2, .. } if &cmd.args[1][..] == b"in2:down"),
        "{first:?}"
    );
    assert_eq!(info_u64(&server, "stats", "sync_full"), full);
    assert_eq!(info_u64(&server, "stats", "sync_partial_ok"), partial + 1);
    link.shutdown().await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn stalled_consumer_spools_to_disk_without_losing_the_link() {
    let server = Server::builder(Flavor::Redis70)
        .arg("repl-diskless-sync", "yes")
        .arg("repl-diskless-sync-delay", "0")
        .start()
        .expect("server");
    redis::cmd("CONFIG")
        .arg("SET")
        .arg("client-output-buffer-limit")
        .arg("replica 256kb 128kb 5")
        .query::<()>(&mut server.conn())
        .unwrap();
    let dir = tempfile::tempdir().expect("tmp");
    let mut cfg = config(&server, dir.path());
    cfg.spool.memory_bytes = 64 << 10;
    cfg.spool.segment_bytes = 1 << 20;
    cfg.channel_capacity = 64;
    let spool_dir = cfg.spool.dir.clone();
    let (link, rx) = Link::start(cfg, CancellationToken::new()).unwrap();
    let consumer = Consumer::spawn(link.handle(), rx);
    consumer.wait_snapshot().await;
    caught_up(&server, &consumer).await;

    consumer.stall.store(true, Ordering::Relaxed);
    let stalled_at = Instant::now();
    let addr_server = server.url();
    let writer = tokio::task::spawn_blocking(move || {
        let client = redis::Client::open(addr_server).unwrap();
        let mut conn = client.get_connection().unwrap();
        let value = vec![b'v'; 1000];
        // 20 000 × ~1 KB = ~20 MB, in pipelines of 200.
        for batch in 0..100 {
            let mut pipe = redis::pipe();
            for i in 0..200 {
                pipe.cmd("SET")
                    .arg(format!("big:{batch}:{i}"))
                    .arg(&value[..])
                    .ignore();
            }
            pipe.query::<()>(&mut conn).unwrap();
        }
    });
    let mut max_disk = 0;
    while stalled_at.elapsed() < Duration::from_secs(5) {
        max_disk = max_disk.max(link.status().spool_disk_bytes);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    writer.await.unwrap();
    max_disk = max_disk.max(link.status().spool_disk_bytes);
    consumer.stall.store(false, Ordering::Relaxed);
    assert!(max_disk > 0, "the spool never spilled to disk");
    caught_up(&server, &consumer).await;
    let reconnects: Vec<_> = consumer
        .snapshot()
        .into_iter()
        .filter(|e| matches!(e, LinkEvent::Reconnecting { .. }))
        .collect();
    assert!(
        reconnects.is_empty(),
        "the link was dropped: {reconnects:?}"
    );
    assert_eq!(data_commands(&consumer.snapshot()).len(), 20_000);
    assert_eq!(info_u64(&server, "stats", "sync_full"), 1);
    let status = link.status();
    assert_eq!((status.reconnects, status.spool_disk_bytes), (0, 0));
    let left: Vec<_> = std::fs::read_dir(&spool_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(left.is_empty(), "segments left: {left:?}");
    link.shutdown().await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn wrong_password_is_fatal_and_a_replication_only_acl_user_syncs() {
    let server = Server::builder(Flavor::Redis70)
        .password("p")
        .start()
        .expect("server");
    let dir = tempfile::tempdir().expect("tmp");
    let mut cfg = config(&server, dir.path());
    cfg.auth = Auth::password("wrong");
    let started = Instant::now();
    let (link, _rx) = Link::start(cfg.clone(), CancellationToken::new()).unwrap();
    let r = tokio::time::timeout(WAIT, link.finish())
        .await
        .expect("ends");
    assert!(
        matches!(
            r,
            Err(LinkError::Handshake(HandshakeError::WrongPassword { .. }))
        ),
        "{r:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(3));

    // `AUTH <password>` (no user) with the right one syncs.
    cfg.auth = Auth::password("p");
    let plain_dir = tempfile::tempdir().expect("tmp");
    let mut plain = cfg.clone();
    plain.state_dir = plain_dir.path().to_path_buf();
    plain.spool.dir = plain_dir.path().join("spool");
    let (link, rx) = Link::start(plain, CancellationToken::new()).unwrap();
    let consumer = Consumer::spawn(link.handle(), rx);
    consumer.wait_snapshot().await;
    // PING's -NOAUTH before AUTH is expected, not a warning.
    assert_eq!(
        link.status().handshake_warnings,
        1,
        "{:?}",
        link.handshake_warnings()
    );
    link.shutdown().await.expect("shutdown");

    // A user without +psync: a clear, fatal permission error.
    redis::cmd("ACL")
        .arg(&["SETUSER", "nopsync", "on", ">pw", "+replconf", "+ping"])
        .query::<()>(&mut server.conn())
        .unwrap();
    cfg.auth = Auth::user("nopsync", "pw");
    let (link, _rx) = Link::start(cfg.clone(), CancellationToken::new()).unwrap();
    let r = tokio::time::timeout(WAIT, link.finish())
        .await
        .expect("ends");
    assert!(
        matches!(
            &r,
            Err(LinkError::Handshake(HandshakeError::NoPermission {
                command: "PSYNC",
                ..
            }))
        ),
        "{r:?}"
    );
    assert!(!r.unwrap_err().retriable());

    redis::cmd("ACL")
        .arg(&[
            "SETUSER",
            "repl",
            "on",
            ">pw",
            "+psync",
            "+replconf",
            "+ping",
        ])
        .query::<()>(&mut server.conn())
        .unwrap();
    cfg.auth = Auth::user("repl", "pw");
    let (link, rx) = Link::start(cfg, CancellationToken::new()).unwrap();
    let consumer = Consumer::spawn(link.handle(), rx);
    consumer.wait_snapshot().await;
    let expected = write_some(&server, "acl", 3);
    wait_for("the stream", || {
        data_commands(&consumer.snapshot()).len() == expected.len()
    })
    .await;
    assert_eq!(data_commands(&consumer.snapshot()), expected);
    // The user may not run INFO: the source offset stays unknown.
    assert_eq!(link.status().source_offset, None);
    link.shutdown().await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn valkey9_diskless_sends_valkey080() {
    let server = Server::builder(Flavor::Valkey9)
        .arg("repl-diskless-sync", "yes")
        .arg("repl-diskless-sync-delay", "0")
        .start()
        .expect("server");
    populate(&server);
    // A hash with a field TTL: without `REPLCONF version` a Valkey 9
    // source drops the link on every full sync with one.
    let mut conn = server.conn();
    redis::cmd("HSET")
        .arg("ttlhash")
        .arg(&["a", "1", "b", "2"])
        .query::<()>(&mut conn)
        .unwrap();
    redis::cmd("HEXPIRE")
        .arg("ttlhash")
        .arg(3600)
        .arg("FIELDS")
        .arg(1)
        .arg("a")
        .query::<redis::Value>(&mut conn)
        .unwrap();
    let dir = tempfile::tempdir().expect("tmp");
    let (link, rx) = Link::start(config(&server, dir.path()), CancellationToken::new()).unwrap();
    let consumer = Consumer::spawn(link.handle(), rx);
    consumer.wait_snapshot().await;
    let events = consumer.snapshot();
    assert!(
        events
            .iter()
            .any(|e| matches!(e, LinkEvent::Rdb(Item::Key(k)) if &k.header.key[..] == b"ttlhash")),
        "the hash with a field TTL"
    );
    assert!(!consumer.has(|e| matches!(e, LinkEvent::Reconnecting { .. })));
    assert_eq!(
        events[1],
        LinkEvent::Rdb(Item::Header {
            flavor: RdbFlavor::Valkey,
            version: 80
        })
    );
    assert_eq!(keys(&events), 1001);
    // Valkey 9 accepts `REPLCONF version`.
    assert_eq!(link.status().handshake_warnings, 0);
    assert!(link.handshake_warnings().is_empty());
    let expected = write_some(&server, "v", 5);
    caught_up(&server, &consumer).await;
    assert_eq!(data_commands(&consumer.snapshot()), expected);
    link.shutdown().await.expect("shutdown");
}

/// Counts what a stalled consumer finally receives, without holding the
/// values: SET keys in order, and every stream offset.
#[derive(Default)]
struct Tally {
    set_keys: Vec<u64>,
    last_offset: Option<u64>,
    offsets_increase: bool,
    reconnects: Vec<String>,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn stall_20s_under_heavy_writes_at_default_output_buffer_limits() {
    /// Stall length (the scenario).
    const STALL: Duration = Duration::from_secs(20);
    /// Write load bound: at most this many 1 KB SETs, for at most STALL.
    /// (300 MB: more than the 256 MB hard limit, so a replica that stopped
    /// reading would be dropped.)
    const MAX_WRITES: u64 = 300_000;
    let server = Server::builder(Flavor::Redis70)
        .arg("repl-diskless-sync", "yes")
        .arg("repl-diskless-sync-delay", "0")
        .start()
        .expect("server");
    // The defaults, untouched: replica 256mb hard, 64mb/60s soft.
    let limits: Vec<String> = redis::cmd("CONFIG")
        .arg("GET")
        .arg("client-output-buffer-limit")
        .query(&mut server.conn())
        .unwrap();
    assert!(
        limits[1].contains("slave 268435456 67108864 60"),
        "{limits:?}"
    );
    let dir = tempfile::tempdir().expect("tmp");
    let mut cfg = config(&server, dir.path());
    cfg.spool.memory_bytes = 1 << 20;
    cfg.spool.segment_bytes = 8 << 20;
    cfg.channel_capacity = 64;
    // The source pings every 10 s once the writes stop.
    cfg.timeout = Duration::from_secs(30);
    let spool_dir = cfg.spool.dir.clone();
    assert!(
        spool_dir.starts_with(dir.path()),
        "segments go under the state dir"
    );
    let (link, mut rx) = Link::start(cfg, CancellationToken::new()).unwrap();
    let handle = link.handle();
    let stall = Arc::new(AtomicBool::new(false));
    let tally = Arc::new(Mutex::new(Tally {
        offsets_increase: true,
        ..Tally::default()
    }));
    let snapshot_done = Arc::new(AtomicBool::new(false));
    {
        let (stall, tally, done) = (stall.clone(), tally.clone(), snapshot_done.clone());
        tokio::spawn(async move {
            while let Some(e) = rx.recv().await {
                while stall.load(Ordering::Relaxed) {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                let mut t = tally.lock().unwrap();
                match &e {
                    LinkEvent::SnapshotEnd { applied } => {
                        done.store(true, Ordering::Relaxed);
                        t.last_offset = Some(applied.offset);
                        handle.applied(*applied);
                    }
                    LinkEvent::Stream { event, applied } => {
                        let end = event.end_offset();
                        if t.last_offset.is_some_and(|o| end <= o) {
                            t.offsets_increase = false;
                        }
                        t.last_offset = Some(end);
                        if let StreamEvent::Command { cmd, .. } = event
                            && cmd.args[0].eq_ignore_ascii_case(b"SET")
                            && let Some(n) = std::str::from_utf8(&cmd.args[1])
                                .ok()
                                .and_then(|k| k.strip_prefix("s:"))
                                .and_then(|n| n.parse().ok())
                        {
                            t.set_keys.push(n);
                        }
                        handle.applied(*applied);
                    }
                    LinkEvent::Reconnecting { reason } => t.reconnects.push(reason.clone()),
                    _ => {}
                }
            }
        });
    }
    wait_for("the snapshot", || snapshot_done.load(Ordering::Relaxed)).await;
    // A diskless source lists the replica online once its fork exited.
    wait_for("the replica online", || {
        server
            .info("replication")
            .contains("port=7777,state=online")
    })
    .await;
    let full = info_u64(&server, "stats", "sync_full");
    let partial = info_u64(&server, "stats", "sync_partial_ok");

    stall.store(true, Ordering::Relaxed);
    let stalled_at = Instant::now();
    // Let an event already past the stall check finish.
    tokio::time::sleep(Duration::from_millis(100)).await;
    // The ACKs report what was applied, never what was received.
    let applied_before = tally.lock().unwrap().last_offset;
    let (mut acked_beyond_applied, mut acks_seen, mut max_lag) = (None, 0, 0u64);
    let url = server.url();
    let writer = tokio::task::spawn_blocking(move || {
        let client = redis::Client::open(url).unwrap();
        let mut conn = client.get_connection().unwrap();
        let value = vec![b'v'; 1000];
        let started = Instant::now();
        let mut n = 0u64;
        // Spread over most of the stall: a sustained load, not one burst.
        let pace = STALL.mul_f64(0.9).as_secs_f64() / MAX_WRITES as f64;
        while n < MAX_WRITES && started.elapsed() < STALL {
            let due = Duration::from_secs_f64(n as f64 * pace);
            if let Some(wait) = due.checked_sub(started.elapsed()) {
                std::thread::sleep(wait);
            }
            let mut pipe = redis::pipe();
            for _ in 0..500 {
                pipe.cmd("SET")
                    .arg(format!("s:{n}"))
                    .arg(&value[..])
                    .ignore();
                n += 1;
            }
            pipe.query::<()>(&mut conn).unwrap();
        }
        (n, started.elapsed())
    });
    let (mut max_disk, mut max_files, mut listed_always) = (0u64, 0usize, true);
    while stalled_at.elapsed() < STALL {
        let status = link.status();
        max_disk = max_disk.max(status.spool_disk_bytes);
        assert!(!status.spool_full, "the cap was reached");
        let files = std::fs::read_dir(&spool_dir)
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .is_ok_and(|e| e.path().extension().is_some_and(|x| x == "spool"))
            })
            .count();
        max_files = max_files.max(files);
        let repl = server.info("replication");
        if !repl.contains("port=7777,state=online") {
            eprintln!("not listed: {repl}");
            listed_always = false;
        }
        let acked = repl
            .split("port=7777,state=online,offset=")
            .nth(1)
            .and_then(|r| r.split(',').next())
            .and_then(|o| o.parse::<u64>().ok());
        acks_seen += usize::from(acked.is_some());
        // Seconds since the source's last ACK: the acker kept running while
        // the spool wrote segments (its I/O is off the tokio workers).
        let lag = repl
            .split("port=7777,state=online,")
            .nth(1)
            .and_then(|r| r.split("lag=").nth(1))
            .and_then(|l| l.split(|c: char| !c.is_ascii_digit()).next())
            .and_then(|l| l.parse::<u64>().ok());
        max_lag = max_lag.max(lag.unwrap_or(0));
        if let (Some(a), Some(applied)) = (acked, applied_before)
            && a > applied
        {
            acked_beyond_applied = Some((a, applied));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (written, took) = writer.await.unwrap();
    let held = link.status().spool_bytes;
    stall.store(false, Ordering::Relaxed);
    let drain_from = Instant::now();
    eprintln!(
        "{written} SETs of 1 KB in {took:?} during a {STALL:?} stall; spool held {held} bytes, \
         at most {max_disk} on disk in at most {max_files} segment files, ACK lag at most {max_lag} s"
    );
    assert!(
        listed_always,
        "the replica left INFO replication during the stall"
    );
    assert!(acks_seen > 0 && applied_before.is_some());
    // ACKs every 250 ms; a few seconds of slack for a loaded machine.
    assert!(max_lag <= 3, "the source saw no ACK for {max_lag} s");
    assert_eq!(
        acked_beyond_applied, None,
        "(acked, applied) during the stall"
    );
    assert!(
        max_disk > 0 && max_files > 0,
        "the spool never grew onto disk"
    );

    // Drains: the last offset reaches the source's, every SET once, in order.
    let until = Instant::now() + Duration::from_secs(30);
    loop {
        let at = master_offset(&server);
        if tally.lock().unwrap().last_offset == Some(at) {
            break;
        }
        assert!(Instant::now() < until, "the spool did not drain");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    eprintln!("drained in {:?}", drain_from.elapsed());
    {
        let t = tally.lock().unwrap();
        assert!(
            t.reconnects.is_empty(),
            "the link was dropped: {:?}",
            t.reconnects
        );
        assert!(t.offsets_increase);
        assert_eq!(t.set_keys.len() as u64, written);
        assert!(
            t.set_keys.iter().enumerate().all(|(i, n)| *n == i as u64),
            "SETs out of order or repeated"
        );
    }
    assert_eq!(info_u64(&server, "stats", "sync_full"), full);
    assert_eq!(info_u64(&server, "stats", "sync_partial_ok"), partial);
    assert!(
        server
            .info("replication")
            .contains("port=7777,state=online")
    );
    let status = link.status();
    assert_eq!((status.reconnects, status.spool_disk_bytes), (0, 0));
    assert!(status.spool_segments_written > 0);
    let left: Vec<_> = std::fs::read_dir(&spool_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(left.is_empty(), "segments left: {left:?}");
    link.shutdown().await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn spool_cap_stops_reading_shows_in_status_and_loses_nothing() {
    let server = Server::builder(Flavor::Redis70)
        .arg("repl-diskless-sync", "yes")
        .arg("repl-diskless-sync-delay", "0")
        .start()
        .expect("server");
    let dir = tempfile::tempdir().expect("tmp");
    let mut cfg = config(&server, dir.path());
    cfg.spool.memory_bytes = 256 << 10;
    cfg.spool.segment_bytes = 1 << 20;
    cfg.spool.cap_bytes = 2 << 20;
    cfg.channel_capacity = 64;
    let (link, rx) = Link::start(cfg, CancellationToken::new()).unwrap();
    let consumer = Consumer::spawn(link.handle(), rx);
    consumer.wait_snapshot().await;
    caught_up(&server, &consumer).await;

    consumer.stall.store(true, Ordering::Relaxed);
    // ~4 MB: twice the cap; the rest waits in the source's output buffer.
    let mut conn = server.conn();
    let value = vec![b'v'; 1000];
    let mut expected = Vec::new();
    for batch in 0..20 {
        let mut pipe = redis::pipe();
        for i in 0..200 {
            let k = format!("cap:{batch}:{i}");
            pipe.cmd("SET").arg(&k).arg(&value[..]).ignore();
            expected.push(k);
        }
        pipe.query::<()>(&mut conn).unwrap();
    }
    wait_for("the spool to reach its cap", || link.status().spool_full).await;
    let status = link.status();
    assert!(status.spool_bytes <= 2 << 20, "{status:?}");
    assert!(status.spool_bytes > (2 << 20) - (64 << 10), "{status:?}");
    assert!(
        server
            .info("replication")
            .contains("port=7777,state=online")
    );

    consumer.stall.store(false, Ordering::Relaxed);
    caught_up(&server, &consumer).await;
    let status = link.status();
    assert!(!status.spool_full);
    assert_eq!((status.reconnects, status.spool_bytes), (0, 0));
    let keys: Vec<String> = data_commands(&consumer.snapshot())
        .into_iter()
        .map(|c| c.split(' ').nth(1).unwrap_or_default().to_string())
        .collect();
    assert_eq!(keys, expected);
    link.shutdown().await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn getack_is_answered_once_applied_so_wait_returns() {
    let server = Server::builder(Flavor::Redis70)
        .arg("repl-diskless-sync", "yes")
        .arg("repl-diskless-sync-delay", "0")
        .start()
        .expect("server");
    let dir = tempfile::tempdir().expect("tmp");
    let mut cfg = config(&server, dir.path());
    // Periodic ACKs far apart: only GETACK can make WAIT return in time.
    cfg.ack_interval = Duration::from_secs(30);
    cfg.timeout = Duration::from_secs(30);
    let (link, rx) = Link::start(cfg, CancellationToken::new()).unwrap();
    let consumer = Consumer::spawn(link.handle(), rx);
    consumer.wait_snapshot().await;
    wait_for("the replica online", || {
        server
            .info("replication")
            .contains("port=7777,state=online")
    })
    .await;
    let mut conn = server.conn();
    for i in 0..3 {
        redis::cmd("SET")
            .arg(format!("w:{i}"))
            .arg(i)
            .query::<()>(&mut conn)
            .unwrap();
        let started = Instant::now();
        let acked: i64 = redis::cmd("WAIT")
            .arg(1)
            .arg(5000)
            .query(&mut conn)
            .unwrap();
        assert_eq!(acked, 1, "WAIT timed out (round {i})");
        assert!(started.elapsed() < Duration::from_secs(4));
    }
    assert!(consumer.has(|e| matches!(
        e,
        LinkEvent::Stream {
            event: StreamEvent::GetAck { .. },
            ..
        }
    )));
    link.shutdown().await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn source_loading_is_retried_then_syncs() {
    let server = Server::builder(Flavor::Redis70)
        .arg("repl-diskless-sync", "yes")
        .arg("repl-diskless-sync-delay", "0")
        .start()
        .expect("server");
    populate(&server);
    let mut conn = server.conn();
    // Reloading 1000 keys at 2 ms each: ~2 s of -LOADING.
    for (k, v) in [
        ("key-load-delay", "2000"),
        ("loading-process-events-interval-bytes", "1024"),
    ] {
        redis::cmd("CONFIG")
            .arg("SET")
            .arg(k)
            .arg(v)
            .query::<()>(&mut conn)
            .unwrap();
    }
    let reload = std::thread::spawn(move || {
        redis::cmd("DEBUG")
            .arg("RELOAD")
            .query::<()>(&mut conn)
            .expect("DEBUG RELOAD");
    });
    // Until the source answers -LOADING.
    let until = Instant::now() + WAIT;
    loop {
        let r = redis::cmd("PING").query::<String>(&mut server.conn());
        if r.is_err_and(|e| e.to_string().to_ascii_lowercase().contains("loading")) {
            break;
        }
        assert!(Instant::now() < until, "the source never reported LOADING");
        std::thread::sleep(Duration::from_millis(5));
    }
    let dir = tempfile::tempdir().expect("tmp");
    let (link, rx) = Link::start(config(&server, dir.path()), CancellationToken::new()).unwrap();
    let consumer = Consumer::spawn(link.handle(), rx);
    consumer.wait_snapshot().await;
    reload.join().unwrap();
    let events = consumer.snapshot();
    assert_eq!(keys(&events), 1000);
    let reasons: Vec<String> = events
        .iter()
        .filter_map(|e| match e {
            LinkEvent::Reconnecting { reason } => Some(reason.clone()),
            _ => None,
        })
        .collect();
    assert!(
        !reasons.is_empty() && reasons.iter().all(|r| r.contains("loading")),
        "{reasons:?}"
    );
    assert!(link.status().reconnects >= 1);
    link.shutdown().await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn source_without_master_link_is_retried_then_syncs() {
    let server = Server::builder(Flavor::Redis70)
        .arg("repl-diskless-sync", "yes")
        .arg("repl-diskless-sync-delay", "0")
        .start()
        .expect("server");
    populate(&server);
    // A replica of a master that does not answer: it refuses PSYNC with
    // -NOMASTERLINK (replica-serve-stale-data does not matter for PSYNC).
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead_port = dead.local_addr().unwrap().port();
    drop(dead);
    let mut conn = server.conn();
    redis::cmd("REPLICAOF")
        .arg("127.0.0.1")
        .arg(dead_port)
        .query::<()>(&mut conn)
        .unwrap();
    let dir = tempfile::tempdir().expect("tmp");
    let (link, rx) = Link::start(config(&server, dir.path()), CancellationToken::new()).unwrap();
    let consumer = Consumer::spawn(link.handle(), rx);
    wait_for("a refusal", || link.status().reconnects >= 1).await;
    redis::cmd("REPLICAOF")
        .arg("NO")
        .arg("ONE")
        .query::<()>(&mut conn)
        .unwrap();
    consumer.wait_snapshot().await;
    assert_eq!(keys(&consumer.snapshot()), 1000);
    let reasons: Vec<String> = consumer
        .snapshot()
        .iter()
        .filter_map(|e| match e {
            LinkEvent::Reconnecting { reason } => Some(reason.clone()),
            _ => None,
        })
        .collect();
    assert!(
        !reasons.is_empty() && reasons.iter().all(|r| r.contains("master link is down")),
        "{reasons:?}"
    );
    link.shutdown().await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn source_at_maxclients_is_retried_then_syncs() {
    let server = Server::builder(Flavor::Redis70)
        .arg("repl-diskless-sync", "yes")
        .arg("repl-diskless-sync-delay", "0")
        .start()
        .expect("server");
    populate(&server);
    // This connection is the only one the source accepts.
    let mut conn = server.conn();
    redis::cmd("CONFIG")
        .arg(&["SET", "maxclients", "1"])
        .query::<()>(&mut conn)
        .unwrap();
    let dir = tempfile::tempdir().expect("tmp");
    let mut cfg = config(&server, dir.path());
    cfg.info_interval = None;
    let (link, rx) = Link::start(cfg, CancellationToken::new()).unwrap();
    let consumer = Consumer::spawn(link.handle(), rx);
    wait_for("a refusal", || link.status().reconnects >= 1).await;
    redis::cmd("CONFIG")
        .arg(&["SET", "maxclients", "100"])
        .query::<()>(&mut conn)
        .unwrap();
    consumer.wait_snapshot().await;
    assert_eq!(keys(&consumer.snapshot()), 1000);
    assert!(consumer.has(
        |e| matches!(e, LinkEvent::Reconnecting { reason } if reason.contains("max number of clients"))
    ));
    link.shutdown().await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn slow_disk_snapshot_lives_on_newline_keepalives() {
    let server = Server::builder(Flavor::Redis70)
        .arg("repl-diskless-sync", "no")
        .start()
        .expect("server");
    populate(&server);
    // ~4 s of BGSAVE (4 ms per key); the source sends "\n" every second
    // meanwhile, and nothing else.
    redis::cmd("CONFIG")
        .arg(&["SET", "rdb-key-save-delay", "4000"])
        .query::<()>(&mut server.conn())
        .unwrap();
    let dir = tempfile::tempdir().expect("tmp");
    let mut cfg = config(&server, dir.path());
    // Shorter than the BGSAVE: only the keepalives keep the link up.
    cfg.timeout = Duration::from_millis(2000);
    cfg.info_interval = None;
    let started = Instant::now();
    let (link, rx) = Link::start(cfg, CancellationToken::new()).unwrap();
    let consumer = Consumer::spawn(link.handle(), rx);
    consumer.wait_snapshot().await;
    assert!(
        started.elapsed() > Duration::from_millis(3500),
        "the BGSAVE was not slow: {:?}",
        started.elapsed()
    );
    assert_eq!(keys(&consumer.snapshot()), 1000);
    assert!(!consumer.has(|e| matches!(e, LinkEvent::Reconnecting { .. })));
    assert_eq!(link.status().reconnects, 0);
    link.shutdown().await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn promoted_source_continues_with_its_new_replication_id() {
    let master = Server::builder(Flavor::Redis70)
        .arg("repl-diskless-sync", "yes")
        .arg("repl-diskless-sync-delay", "0")
        .start()
        .expect("master");
    let source = Server::builder(Flavor::Redis70)
        .arg("repl-diskless-sync", "yes")
        .arg("repl-diskless-sync-delay", "0")
        .start()
        .expect("source");
    populate(&master);
    redis::cmd("REPLICAOF")
        .arg("127.0.0.1")
        .arg(master.port())
        .query::<()>(&mut source.conn())
        .unwrap();
    wait_for("the source to sync from its master", || {
        source.info("replication").contains("master_link_status:up")
    })
    .await;
    let dir = tempfile::tempdir().expect("tmp");
    let (link, rx) = Link::start(config(&source, dir.path()), CancellationToken::new()).unwrap();
    let consumer = Consumer::spawn(link.handle(), rx);
    consumer.wait_snapshot().await;
    let mut expected = write_some(&master, "m", 5);
    wait_for("the writes to reach the source", || {
        master_offset(&source) == master_offset(&master)
    })
    .await;
    caught_up(&source, &consumer).await;
    let old_id = link.status().replid.expect("replid");
    let full = info_u64(&source, "stats", "sync_full");

    // Failover: the source becomes a master with a new replication id and
    // drops its replicas so that they learn it through PSYNC.
    redis::cmd("REPLICAOF")
        .arg("NO")
        .arg("ONE")
        .query::<()>(&mut source.conn())
        .unwrap();
    let new_id = info_field(&source.info("replication"), "master_replid").expect("replid");
    assert_ne!(new_id, old_id);
    expected.extend(write_some(&source, "s", 5));
    caught_up(&source, &consumer).await;
    assert_eq!(data_commands(&consumer.snapshot()), expected);
    assert!(consumer.has(|e| matches!(e, LinkEvent::Continue { replid, .. } if *replid == new_id)));
    assert_eq!(info_u64(&source, "stats", "sync_full"), full);
    assert_eq!(link.status().replid.as_deref(), Some(new_id.as_str()));
    link.shutdown().await.expect("shutdown");
    let saved = Position::load(&dir.path().join("position.json"))
        .unwrap()
        .expect("saved");
    assert_eq!(saved.replid, new_id);
}

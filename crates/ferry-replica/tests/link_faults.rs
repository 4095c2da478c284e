//! The tokio link under network faults, through a [`FaultProxy`] between
//! ferry and a real Redis 7.0 source:
//!
//! * the TCP link cut twice mid-stream: it reconnects by itself and resumes
//!   with `+CONTINUE`, every command exactly once and in order;
//! * a partition longer than the link's `timeout`: the silence is detected,
//!   the link reconnects after it and resumes with `+CONTINUE`;
//! * the link cut three times while a stalled consumer has the spool on
//!   disk (pushes may be in flight on blocking threads): same result;
//! * a partition during which the source's backlog (16 kB) is overrun: the
//!   link falls back to a full resync by itself and ends with the right data.
//!
//! The writers talk to the source directly; only the link (and its INFO
//! poller) goes through the proxy. The source pings its replicas every
//! second (`repl-ping-replica-period 1`), so only a fault makes the link
//! silent for longer than its 3 s timeout.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ferry_rdb::{Item, Value};
use ferry_replica::{Link, LinkConfig, LinkEvent, LinkHandle, StreamEvent};
use ferry_testkit::{FaultProxy, Flavor, Server, info_field};
use tokio_util::sync::CancellationToken;

/// Bound of every wait in these tests.
const WAIT: Duration = Duration::from_secs(15);
/// The link's silence timeout.
const LINK_TIMEOUT: Duration = Duration::from_secs(3);

fn source(extra: &[(&str, &str)]) -> Server {
    let mut b = Server::builder(Flavor::Redis70)
        .arg("repl-diskless-sync", "yes")
        .arg("repl-diskless-sync-delay", "0")
        .arg("repl-ping-replica-period", "1");
    for (k, v) in extra {
        b = b.arg(k, v);
    }
    b.start().expect("server")
}

fn config(proxy: &FaultProxy, dir: &std::path::Path) -> LinkConfig {
    let mut cfg = LinkConfig::new(proxy.addr().to_string(), dir);
    cfg.ack_interval = Duration::from_millis(250);
    cfg.timeout = LINK_TIMEOUT;
    cfg.reconnect_min = Duration::from_millis(50);
    cfg.reconnect_max = Duration::from_millis(500);
    cfg.listening_port = Some(7777);
    cfg
}

/// Records every event and reports it applied at once.
#[derive(Clone)]
struct Consumer {
    events: Arc<Mutex<Vec<LinkEvent>>>,
    /// While set, the consumer takes no event (the spool fills).
    stall: Arc<std::sync::atomic::AtomicBool>,
}

impl Consumer {
    fn spawn(handle: LinkHandle, mut rx: ferry_replica::LinkEvents) -> Consumer {
        let events = Arc::new(Mutex::new(Vec::new()));
        let stall = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (ev, st) = (events.clone(), stall.clone());
        tokio::spawn(async move {
            while let Some(e) = rx.recv().await {
                while st.load(Ordering::Relaxed) {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                if let LinkEvent::SnapshotEnd { applied } | LinkEvent::Stream { applied, .. } = &e {
                    handle.applied(*applied);
                }
                ev.lock().unwrap().push(e);
            }
        });
        Consumer { events, stall }
    }

    fn events(&self) -> Vec<LinkEvent> {
        self.events.lock().unwrap().clone()
    }

    fn count(&self, f: impl Fn(&LinkEvent) -> bool) -> usize {
        self.events.lock().unwrap().iter().filter(|e| f(e)).count()
    }

    fn commands(&self) -> usize {
        self.count(|e| {
            matches!(
                e,
                LinkEvent::Stream {
                    event: StreamEvent::Command { .. },
                    ..
                }
            )
        })
    }

    fn last_offset(&self) -> Option<u64> {
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
}

fn is_full(e: &LinkEvent) -> bool {
    matches!(e, LinkEvent::FullSync { .. })
}
fn is_continue(e: &LinkEvent) -> bool {
    matches!(e, LinkEvent::Continue { .. })
}
fn is_reconnecting(e: &LinkEvent) -> bool {
    matches!(e, LinkEvent::Reconnecting { .. })
}
fn is_snapshot_end(e: &LinkEvent) -> bool {
    matches!(e, LinkEvent::SnapshotEnd { .. })
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

/// Waits until the last delivered offset is the source's
/// `master_repl_offset` and the link reports it received and applied.
async fn caught_up(server: &Server, link: &Link, consumer: &Consumer) -> u64 {
    let mut at = 0;
    wait_for("the stream to reach master_repl_offset", || {
        at = master_offset(server);
        let s = link.status();
        consumer.last_offset() == Some(at)
            && s.received_offset == Some(at)
            && s.applied_offset == Some(at)
    })
    .await;
    at
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

/// Replays the events since the last full sync onto a string-only model:
/// snapshot strings, `SET`, `INCR`.
fn model(events: &[LinkEvent]) -> HashMap<Vec<u8>, Vec<u8>> {
    let start = events.iter().rposition(is_full).expect("a full sync");
    let mut m = HashMap::new();
    for e in &events[start..] {
        match e {
            LinkEvent::Rdb(Item::Key(k)) => match &k.value {
                Value::String(v) => {
                    m.insert(k.header.key.to_vec(), v.to_vec());
                }
                other => panic!("unexpected value {other:?}"),
            },
            LinkEvent::Stream {
                event: StreamEvent::Command { cmd, .. },
                ..
            } => {
                let a = &cmd.args;
                match a[0].to_ascii_uppercase().as_slice() {
                    b"SET" => {
                        m.insert(a[1].to_vec(), a[2].to_vec());
                    }
                    b"INCR" => {
                        let old = m.get(&a[1][..]).map_or(0, |v| {
                            String::from_utf8_lossy(v).parse::<i64>().expect("integer")
                        });
                        m.insert(a[1].to_vec(), (old + 1).to_string().into_bytes());
                    }
                    other => panic!("unexpected command {}", String::from_utf8_lossy(other)),
                }
            }
            _ => {}
        }
    }
    m
}

/// Every key and (string) value of the source's db 0.
fn source_data(server: &Server) -> HashMap<Vec<u8>, Vec<u8>> {
    let mut conn = server.conn();
    let keys: Vec<Vec<u8>> = redis::cmd("KEYS").arg("*").query(&mut conn).unwrap();
    let mut m = HashMap::new();
    for chunk in keys.chunks(500) {
        let values: Vec<Vec<u8>> = redis::cmd("MGET").arg(chunk).query(&mut conn).unwrap();
        m.extend(chunk.iter().cloned().zip(values));
    }
    m
}

/// `SET seq:<i> <i>` then `INCR ctr`, for `i` in `from..to`, in pipelines
/// of `batch` pairs with `pause` between them; `progress` counts pairs done.
fn write_seq(
    url: &str,
    from: usize,
    to: usize,
    batch: usize,
    pause: Duration,
    progress: &AtomicUsize,
) {
    let client = redis::Client::open(url).unwrap();
    let mut conn = client.get_connection().unwrap();
    let mut i = from;
    while i < to {
        let end = (i + batch).min(to);
        let mut pipe = redis::pipe();
        for j in i..end {
            pipe.cmd("SET").arg(format!("seq:{j}")).arg(j).ignore();
            pipe.cmd("INCR").arg("ctr").ignore();
        }
        pipe.query::<()>(&mut conn).expect("write");
        progress.store(end, Ordering::SeqCst);
        i = end;
        std::thread::sleep(pause);
    }
}

fn expected_seq(from: usize, to: usize) -> Vec<String> {
    (from..to)
        .flat_map(|i| [format!("SET seq:{i} {i}"), "INCR ctr".to_string()])
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cut_twice_mid_stream_resumes_with_continue_exactly_once() {
    let server = source(&[]);
    let proxy = FaultProxy::start(server.addr()).expect("proxy");
    let dir = tempfile::tempdir().expect("tmp");
    let (link, rx) = Link::start(config(&proxy, dir.path()), CancellationToken::new()).unwrap();
    let consumer = Consumer::spawn(link.handle(), rx);
    wait_for("the snapshot", || consumer.count(is_snapshot_end) == 1).await;
    assert_eq!(info_u64(&server, "stats", "sync_full"), 1);
    let partial = info_u64(&server, "stats", "sync_partial_ok");

    // ~3 s of writes: 6000 pairs in pipelines of 10, 5 ms apart.
    const N: usize = 6000;
    let progress = Arc::new(AtomicUsize::new(0));
    let writer = {
        let (url, p) = (server.url(), progress.clone());
        tokio::task::spawn_blocking(move || write_seq(&url, 0, N, 10, Duration::from_millis(5), &p))
    };
    let mut cut_at = Vec::new();
    for (k, share) in [(1, 4), (2, 2)] {
        // Wait for a quarter (then half) of the commands, then cut.
        wait_for("commands before a cut", || {
            consumer.commands() >= 2 * N / share
        })
        .await;
        // The replication link, and the INFO poller when it is connected.
        assert!(proxy.cut() >= 1);
        cut_at.push(progress.load(Ordering::SeqCst));
        wait_for("+CONTINUE after the cut", || {
            consumer.count(is_continue) == k
        })
        .await;
    }
    writer.await.unwrap();
    assert!(
        cut_at.iter().all(|&p| p < N),
        "cuts at {cut_at:?}: not mid-stream"
    );
    let at = caught_up(&server, &link, &consumer).await;

    let events = consumer.events();
    assert_eq!(data_commands(&events), expected_seq(0, N));
    assert_eq!(consumer.count(is_full), 1);
    assert_eq!(consumer.count(is_reconnecting), 2);
    assert_eq!(consumer.count(is_continue), 2);
    assert_eq!(info_u64(&server, "stats", "sync_full"), 1);
    assert_eq!(info_u64(&server, "stats", "sync_partial_ok"), partial + 2);
    assert_eq!(model(&events), source_data(&server));
    let status = link.status();
    assert_eq!(status.reconnects, 2);
    assert_eq!(status.received_offset, Some(at));
    assert_eq!(consumer.last_offset(), Some(master_offset(&server)));
    link.shutdown().await.expect("clean shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn partition_longer_than_timeout_reconnects_and_continues() {
    let server = source(&[]);
    let proxy = FaultProxy::start(server.addr()).expect("proxy");
    let dir = tempfile::tempdir().expect("tmp");
    let (link, rx) = Link::start(config(&proxy, dir.path()), CancellationToken::new()).unwrap();
    let consumer = Consumer::spawn(link.handle(), rx);
    wait_for("the snapshot", || consumer.count(is_snapshot_end) == 1).await;
    let progress = AtomicUsize::new(0);
    let url = server.url();
    write_seq(&url, 0, 100, 10, Duration::ZERO, &progress);
    caught_up(&server, &link, &consumer).await;
    let partial = info_u64(&server, "stats", "sync_partial_ok");

    proxy.pause(true);
    let paused = Instant::now();
    // Writes during the partition: they wait in the source's backlog.
    write_seq(&url, 100, 300, 10, Duration::ZERO, &progress);
    wait_for("the link to notice the silence", || {
        consumer.count(is_reconnecting) == 1
    })
    .await;
    // Counted from the last byte before the pause: a source PING (every
    // second) may have arrived up to a second before it.
    let silent = paused.elapsed();
    assert!(
        silent >= LINK_TIMEOUT - Duration::from_secs(1)
            && silent < LINK_TIMEOUT + Duration::from_secs(2),
        "noticed after {silent:?}"
    );
    proxy.pause(false);
    wait_for("+CONTINUE after the partition", || {
        consumer.count(is_continue) == 1
    })
    .await;
    write_seq(&url, 300, 400, 10, Duration::ZERO, &progress);
    caught_up(&server, &link, &consumer).await;

    let events = consumer.events();
    assert_eq!(data_commands(&events), expected_seq(0, 400));
    assert_eq!(consumer.count(is_full), 1);
    assert_eq!(info_u64(&server, "stats", "sync_full"), 1);
    assert_eq!(info_u64(&server, "stats", "sync_partial_ok"), partial + 1);
    assert_eq!(model(&events), source_data(&server));
    link.shutdown().await.expect("clean shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn backlog_overrun_during_a_partition_falls_back_to_full_sync() {
    let server = source(&[("repl-backlog-size", "16kb")]);
    let proxy = FaultProxy::start(server.addr()).expect("proxy");
    let dir = tempfile::tempdir().expect("tmp");
    let (link, rx) = Link::start(config(&proxy, dir.path()), CancellationToken::new()).unwrap();
    let consumer = Consumer::spawn(link.handle(), rx);
    wait_for("the snapshot", || consumer.count(is_snapshot_end) == 1).await;
    let progress = AtomicUsize::new(0);
    let url = server.url();
    write_seq(&url, 0, 100, 10, Duration::ZERO, &progress);
    caught_up(&server, &link, &consumer).await;

    // Partition, drop the link, and write ~1.2 MB: far beyond the backlog.
    proxy.pause(true);
    proxy.cut();
    let before = master_offset(&server);
    {
        let mut conn = server.conn();
        let value = vec![b'v'; 1000];
        for batch in 0..12 {
            let mut pipe = redis::pipe();
            for i in 0..100 {
                pipe.cmd("SET")
                    .arg(format!("big:{batch}:{i}"))
                    .arg(&value[..])
                    .ignore();
            }
            pipe.query::<()>(&mut conn).unwrap();
        }
    }
    assert!(master_offset(&server) - before > 1_000_000);
    proxy.pause(false);
    wait_for("a second snapshot", || consumer.count(is_snapshot_end) == 2).await;
    write_seq(&url, 100, 200, 10, Duration::ZERO, &progress);
    caught_up(&server, &link, &consumer).await;

    let events = consumer.events();
    let kinds: Vec<_> = events
        .iter()
        .filter_map(|e| match e {
            LinkEvent::FullSync { epoch, .. } => Some(format!("full {epoch}")),
            LinkEvent::Continue { .. } => Some("continue".into()),
            LinkEvent::Reconnecting { .. } => Some("reconnecting".into()),
            _ => None,
        })
        .collect();
    // Handshakes held by the partition may time out first: more reconnects.
    assert_eq!(kinds.first().map(String::as_str), Some("full 1"));
    assert_eq!(
        kinds.last().map(String::as_str),
        Some("full 2"),
        "{kinds:?}"
    );
    assert!(!kinds.contains(&"continue".to_string()), "{kinds:?}");
    assert_eq!(info_u64(&server, "stats", "sync_full"), 2);
    let expected = source_data(&server);
    assert_eq!(expected.len(), 200 + 1 + 1200);
    assert_eq!(model(&events), expected);
    // After the new snapshot, only the new writes arrive as commands.
    let last_full = events.iter().rposition(is_full).unwrap();
    assert_eq!(data_commands(&events[last_full..]), expected_seq(100, 200));
    link.shutdown().await.expect("clean shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cuts_while_the_spool_is_on_disk_resume_exactly_once() {
    let server = source(&[]);
    let proxy = FaultProxy::start(server.addr()).expect("proxy");
    let dir = tempfile::tempdir().expect("tmp");
    let mut cfg = config(&proxy, dir.path());
    cfg.spool.memory_bytes = 16 << 10;
    cfg.spool.segment_bytes = 64 << 10;
    cfg.channel_capacity = 64;
    let (link, rx) = Link::start(cfg, CancellationToken::new()).unwrap();
    let consumer = Consumer::spawn(link.handle(), rx);
    wait_for("the snapshot", || consumer.count(is_snapshot_end) == 1).await;
    let partial = info_u64(&server, "stats", "sync_partial_ok");

    consumer.stall.store(true, Ordering::Relaxed);
    // ~3 s of writes: 6000 pairs in pipelines of 10, 5 ms apart.
    const N: usize = 6000;
    let progress = Arc::new(AtomicUsize::new(0));
    let writer = {
        let (url, p) = (server.url(), progress.clone());
        tokio::task::spawn_blocking(move || write_seq(&url, 0, N, 10, Duration::from_millis(5), &p))
    };
    let mut cut_at = Vec::new();
    for k in 1..=3 {
        wait_for("spooled bytes on disk", || {
            link.status().spool_disk_bytes > 0 && progress.load(Ordering::SeqCst) >= k * N / 4
        })
        .await;
        assert!(proxy.cut() >= 1);
        cut_at.push(progress.load(Ordering::SeqCst));
        // The resumed session keeps spooling behind the stalled consumer.
        wait_for("the link back", || {
            let s = link.status();
            s.connected && s.reconnects == k as u64
        })
        .await;
    }
    writer.await.unwrap();
    assert!(cut_at.iter().all(|&p| p < N), "cuts at {cut_at:?}");
    consumer.stall.store(false, Ordering::Relaxed);
    let at = caught_up(&server, &link, &consumer).await;

    let events = consumer.events();
    assert_eq!(data_commands(&events), expected_seq(0, N));
    assert_eq!(consumer.count(is_full), 1);
    assert_eq!(consumer.count(is_continue), 3);
    assert_eq!(info_u64(&server, "stats", "sync_full"), 1);
    assert_eq!(info_u64(&server, "stats", "sync_partial_ok"), partial + 3);
    assert_eq!(model(&events), source_data(&server));
    let status = link.status();
    assert!(status.spool_segments_written > 0);
    assert_eq!((status.spool_bytes, status.received_offset), (0, Some(at)));
    link.shutdown().await.expect("clean shutdown");
}

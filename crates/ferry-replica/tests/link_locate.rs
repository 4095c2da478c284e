//! The tokio link following a source that moves, against real servers
//! (Redis 7.0):
//!
//! * a locator that switches from master A to its replica B once B is
//!   promoted: the link reconnects (on request, and on its own when A drops
//!   it), asks the locator, and continues on B with `+CONTINUE` (B's
//!   `sync_full` stays 0); every command exactly once and in order; the INFO
//!   poller and `LinkStatus::addr` follow;
//! * a locator that fails at first: the link retries with backoff;
//! * `LinkHandle::resync`: the next connection is a full sync, the saved
//!   position is dropped at once, and the stream goes on after it.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ferry_replica::{Link, LinkConfig, LinkError, LinkEvent, LinkEvents, Locate, StreamEvent};
use ferry_testkit::{Flavor, Server, info_field};
use tokio_util::sync::CancellationToken;

/// Bound of every wait in these tests.
const WAIT: Duration = Duration::from_secs(20);

fn server() -> Server {
    Server::builder(Flavor::Redis70)
        .arg("repl-diskless-sync", "yes")
        .arg("repl-diskless-sync-delay", "0")
        .arg("repl-ping-replica-period", "1")
        .start()
        .expect("server")
}

/// Answers whatever address the test sets; fails `fail_first` times first.
struct Switch {
    addr: Mutex<String>,
    fail_first: AtomicUsize,
    asked: AtomicUsize,
}

impl Switch {
    fn new(addr: String, fail_first: usize) -> Arc<Switch> {
        Arc::new(Switch {
            addr: Mutex::new(addr),
            fail_first: AtomicUsize::new(fail_first),
            asked: AtomicUsize::new(0),
        })
    }

    fn set(&self, addr: String) {
        *self.addr.lock().unwrap() = addr;
    }
}

impl Locate for Switch {
    fn locate(
        &self,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<String, LinkError>> + Send + '_>>
    {
        Box::pin(async move {
            self.asked.fetch_add(1, Ordering::SeqCst);
            if self
                .fail_first
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                .is_ok()
            {
                return Err(LinkError::Locate("no sentinel answered (test)".into()));
            }
            Ok(self.addr.lock().unwrap().clone())
        })
    }
}

/// A link to `addr`, or (with a locator) to wherever it says.
fn config(addr: &str, dir: &std::path::Path, locator: Option<Arc<Switch>>) -> LinkConfig {
    let mut cfg = LinkConfig::new(addr, dir);
    cfg.locator = locator.map(|l| l as Arc<dyn Locate>);
    cfg.ack_interval = Duration::from_millis(200);
    cfg.timeout = Duration::from_secs(5);
    cfg.reconnect_min = Duration::from_millis(50);
    cfg.reconnect_max = Duration::from_millis(400);
    cfg.info_interval = Some(Duration::from_millis(200));
    cfg.listening_port = Some(7777);
    cfg
}

/// Records every event and reports it applied at once.
#[derive(Clone)]
struct Consumer(Arc<Mutex<Vec<LinkEvent>>>);

impl Consumer {
    fn spawn(link: &Link, mut rx: LinkEvents) -> Consumer {
        let events = Arc::new(Mutex::new(Vec::new()));
        let (ev, handle) = (events.clone(), link.handle());
        tokio::spawn(async move {
            while let Some(e) = rx.recv().await {
                if let LinkEvent::SnapshotEnd { applied } | LinkEvent::Stream { applied, .. } = &e {
                    handle.applied(*applied);
                }
                ev.lock().unwrap().push(e);
            }
        });
        Consumer(events)
    }

    fn events(&self) -> Vec<LinkEvent> {
        self.0.lock().unwrap().clone()
    }

    fn count(&self, f: impl Fn(&LinkEvent) -> bool) -> usize {
        self.0.lock().unwrap().iter().filter(|e| f(e)).count()
    }

    fn last_offset(&self) -> Option<u64> {
        self.0.lock().unwrap().iter().rev().find_map(|e| match e {
            LinkEvent::Stream { event, .. } => Some(event.end_offset()),
            LinkEvent::SnapshotEnd { applied } => Some(applied.offset),
            _ => None,
        })
    }

    /// The keys of the `SET`s received, in order.
    fn set_keys(&self) -> Vec<String> {
        self.0
            .lock()
            .unwrap()
            .iter()
            .filter_map(|e| match e {
                LinkEvent::Stream {
                    event: StreamEvent::Command { cmd, .. },
                    ..
                } if cmd.args[0].eq_ignore_ascii_case(b"SET") => {
                    Some(String::from_utf8_lossy(&cmd.args[1]).into_owned())
                }
                _ => None,
            })
            .collect()
    }
}

fn is_full(e: &LinkEvent) -> bool {
    matches!(e, LinkEvent::FullSync { .. })
}
fn is_continue(e: &LinkEvent) -> bool {
    matches!(e, LinkEvent::Continue { .. })
}

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

/// Writes `SET <prefix>:<i> v` for i in `range`.
fn write(server: &Server, prefix: &str, range: std::ops::Range<u32>) -> Vec<String> {
    let mut c = server.conn();
    range
        .map(|i| {
            let k = format!("{prefix}:{i}");
            let _: () = redis::cmd("SET").arg(&k).arg("v").query(&mut c).unwrap();
            k
        })
        .collect()
}

async fn caught_up(server: &Server, link: &Link, consumer: &Consumer) {
    wait_for("the link to reach master_repl_offset", || {
        let at = master_offset(server);
        let s = link.status();
        consumer.last_offset() == Some(at) && s.applied_offset == Some(at)
    })
    .await;
}

/// `REPLICAOF` `b` to `a` and waits until it is in sync.
async fn replicate(b: &Server, a: &Server) {
    let _: () = redis::cmd("REPLICAOF")
        .arg("127.0.0.1")
        .arg(a.port())
        .query(&mut b.conn())
        .unwrap();
    wait_for("the replica to be in sync", || {
        let info = b.info("replication");
        info_field(&info, "master_link_status").as_deref() == Some("up")
            && info_field(&info, "slave_repl_offset")
                .and_then(|v| v.parse::<u64>().ok())
                .is_some_and(|o| o == master_offset(a))
    })
    .await;
}

async fn promote(b: &Server) {
    let _: () = redis::cmd("REPLICAOF")
        .arg("NO")
        .arg("ONE")
        .query(&mut b.conn())
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn follows_a_promoted_replica_with_continue() {
    let (a, b) = (server(), server());
    let dir = tempfile::tempdir().unwrap();
    let locator = Switch::new(a.addr(), 0);
    let (link, rx) = Link::start(
        config("127.0.0.1:1", dir.path(), Some(locator.clone())),
        CancellationToken::new(),
    )
    .unwrap();
    let consumer = Consumer::spawn(&link, rx);
    wait_for("the snapshot to end", || {
        consumer.count(|e| matches!(e, LinkEvent::SnapshotEnd { .. })) == 1
    })
    .await;
    let mut expected = write(&a, "one", 0..200);
    caught_up(&a, &link, &consumer).await;
    assert_eq!(link.status().addr, a.addr());
    replicate(&b, &a).await;

    // Promote B and point the locator at it; A is still a master, so the
    // link would stay: ask it to reconnect.
    promote(&b).await;
    locator.set(b.addr());
    link.handle().reconnect("the test moved the source");
    wait_for("a +CONTINUE from B", || {
        consumer.count(is_continue) == 1 && link.status().addr == b.addr()
    })
    .await;
    expected.extend(write(&b, "two", 0..200));
    caught_up(&b, &link, &consumer).await;

    // Back to A, the way Sentinel does it: A replicates B, A is promoted,
    // then B is turned into a replica of A, which makes B drop the link (no
    // request this time).
    replicate(&a, &b).await;
    promote(&a).await;
    locator.set(a.addr());
    let _: () = redis::cmd("REPLICAOF")
        .arg("127.0.0.1")
        .arg(a.port())
        .query(&mut b.conn())
        .unwrap();
    wait_for("the link to follow A again", || {
        consumer.count(is_continue) == 2 && link.status().addr == a.addr()
    })
    .await;
    expected.extend(write(&a, "three", 0..200));
    caught_up(&a, &link, &consumer).await;
    wait_for("the INFO poller to follow A", || {
        link.status().source_offset == Some(master_offset(&a))
    })
    .await;

    assert_eq!(consumer.count(is_full), 1, "{:?}", consumer.events());
    assert_eq!(
        info_u64(&b, "stats", "sync_full"),
        0,
        "B fully synced the link"
    );
    assert!(info_u64(&b, "stats", "sync_partial_ok") >= 1);
    assert_eq!(
        consumer.set_keys(),
        expected,
        "every command exactly once, in order"
    );
    assert!(locator.asked.load(Ordering::SeqCst) >= 3);
    link.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn locator_errors_are_retried() {
    let a = server();
    let dir = tempfile::tempdir().unwrap();
    let locator = Switch::new(a.addr(), 3);
    let (link, rx) = Link::start(
        config("127.0.0.1:1", dir.path(), Some(locator.clone())),
        CancellationToken::new(),
    )
    .unwrap();
    let consumer = Consumer::spawn(&link, rx);
    wait_for("the snapshot to end", || {
        consumer.count(|e| matches!(e, LinkEvent::SnapshotEnd { .. })) == 1
    })
    .await;
    let expected = write(&a, "k", 0..50);
    caught_up(&a, &link, &consumer).await;
    assert_eq!(locator.asked.load(Ordering::SeqCst), 4);
    let reasons: Vec<String> = consumer
        .events()
        .into_iter()
        .filter_map(|e| match e {
            LinkEvent::Reconnecting { reason } => Some(reason),
            _ => None,
        })
        .collect();
    assert_eq!(reasons.len(), 3, "{reasons:?}");
    assert!(reasons[0].contains("no sentinel answered"), "{reasons:?}");
    assert_eq!(link.status().reconnects, 3);
    assert_eq!(consumer.set_keys(), expected);
    link.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resync_asks_a_full_sync() {
    let a = server();
    let dir = tempfile::tempdir().unwrap();
    let position = dir.path().join(ferry_replica::link::POSITION_FILE);
    let (link, rx) = Link::start(
        config(&a.addr(), dir.path(), None),
        CancellationToken::new(),
    )
    .unwrap();
    let consumer = Consumer::spawn(&link, rx);
    write(&a, "k", 0..100);
    caught_up(&a, &link, &consumer).await;
    wait_for("the position to be saved", || position.exists()).await;
    assert_eq!(link.status().addr, a.addr());
    assert_eq!(info_u64(&a, "stats", "sync_full"), 1);

    link.handle().resync("the test asked");
    wait_for("a second full sync", || consumer.count(is_full) == 2).await;
    let events = consumer.events();
    let last_full = events.iter().rposition(is_full).unwrap();
    assert!(
        matches!(&events[last_full - 1], LinkEvent::Reconnecting { reason } if reason.contains("the test asked")),
        "{:?}",
        &events[last_full - 1]
    );
    wait_for("the snapshot to end", || {
        consumer.count(|e| matches!(e, LinkEvent::SnapshotEnd { .. })) == 2
    })
    .await;
    assert_eq!(info_u64(&a, "stats", "sync_full"), 2);
    // The snapshot holds the 100 keys; the stream goes on after it.
    let n = consumer.events()[last_full..]
        .iter()
        .filter(|e| matches!(e, LinkEvent::Rdb(ferry_rdb::Item::Key(_))))
        .count();
    assert_eq!(n, 100);
    write(&a, "after", 0..10);
    caught_up(&a, &link, &consumer).await;
    wait_for("the position to be saved again", || position.exists()).await;
    assert_eq!(consumer.count(is_continue), 0);
    link.shutdown().await.unwrap();
}

/// What Sentinel does: after the promotion of B, the old master A still
/// takes `PUBLISH`es (the sentinels' hellos) and pings its replicas, so
/// the link holds bytes B's history lacks. They carry no data: the link
/// resumes on B right after the last data command, with `+CONTINUE`.
/// A data write on A after the promotion cannot be skipped: full sync.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn skips_a_tail_without_data_when_the_source_moves() {
    let (a, b) = (server(), server());
    let dir = tempfile::tempdir().unwrap();
    let locator = Switch::new(a.addr(), 0);
    let (link, rx) = Link::start(
        config("127.0.0.1:1", dir.path(), Some(locator.clone())),
        CancellationToken::new(),
    )
    .unwrap();
    let consumer = Consumer::spawn(&link, rx);
    wait_for("the snapshot to end", || {
        consumer.count(|e| matches!(e, LinkEvent::SnapshotEnd { .. })) == 1
    })
    .await;
    let mut expected = write(&a, "one", 0..100);
    caught_up(&a, &link, &consumer).await;
    replicate(&b, &a).await;
    promote(&b).await;
    // After the promotion: no data on A, only a publish (and a ping).
    let _: i64 = redis::cmd("PUBLISH")
        .arg("__sentinel__:hello")
        .arg("x")
        .query(&mut a.conn())
        .unwrap();
    caught_up(&a, &link, &consumer).await;
    assert!(master_offset(&a) > master_offset(&b));
    locator.set(b.addr());
    link.handle().reconnect("moved");
    wait_for("a +CONTINUE from B", || consumer.count(is_continue) == 1).await;
    expected.extend(write(&b, "two", 0..100));
    caught_up(&b, &link, &consumer).await;
    assert_eq!(
        info_u64(&b, "stats", "sync_full"),
        0,
        "B fully synced the link"
    );
    assert_eq!(consumer.count(is_full), 1);
    assert_eq!(consumer.set_keys(), expected);

    // Now a data write on B after promoting A back: A lacks it.
    replicate(&a, &b).await;
    promote(&a).await;
    let _: () = redis::cmd("SET")
        .arg("lost")
        .arg("on-b")
        .query(&mut b.conn())
        .unwrap();
    caught_up(&b, &link, &consumer).await;
    let full_before = info_u64(&a, "stats", "sync_full");
    locator.set(a.addr());
    link.handle().reconnect("moved back");
    wait_for("a full sync from A", || consumer.count(is_full) == 2).await;
    assert_eq!(info_u64(&a, "stats", "sync_full"), full_before + 1);
    link.shutdown().await.unwrap();
}

//! The link over TLS (`rediss://`) to a Redis 7.0 with a TLS port: full sync
//! and stream with a CA file, with `insecure`, and a clear fatal error when
//! the server's certificate cannot be verified.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ferry_rdb::Item;
use ferry_replica::{Link, LinkConfig, LinkError, LinkEvent, StreamEvent};
use ferry_testkit::{Flavor, Server, free_port, info_field};
use ferry_tls::TlsConfig;
use ferry_tls::test_pki::TestPki;
use tokio_util::sync::CancellationToken;

/// Bound of every wait in these tests.
const WAIT: Duration = Duration::from_secs(15);

/// A Redis 7.0 with its plain port (for the test kit and the test's own
/// writes) and a TLS port (for ferry), plus its PKI.
struct TlsSource {
    server: Server,
    tls_addr: String,
    pki: TestPki,
    _dir: tempfile::TempDir,
}

fn tls_source() -> TlsSource {
    let dir = tempfile::tempdir().expect("tmp");
    let pki = TestPki::generate(dir.path());
    let port = free_port();
    let server = Server::builder(Flavor::Redis70)
        .arg("repl-diskless-sync", "yes")
        .arg("repl-diskless-sync-delay", "0")
        .raw_args(pki.redis_args(port, false))
        .start()
        .expect("TLS server");
    TlsSource {
        server,
        tls_addr: format!("127.0.0.1:{port}"),
        pki,
        _dir: dir,
    }
}

fn config(src: &TlsSource, tls: TlsConfig, dir: &std::path::Path) -> LinkConfig {
    let mut cfg = LinkConfig::new(src.tls_addr.clone(), dir);
    cfg.ack_interval = Duration::from_millis(250);
    cfg.timeout = Duration::from_secs(10);
    cfg.listening_port = Some(7777);
    cfg.tls = Some(tls);
    cfg
}

async fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    let until = Instant::now() + WAIT;
    while !cond() {
        assert!(Instant::now() < until, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn master_offset(server: &Server) -> u64 {
    info_field(&server.info("replication"), "master_repl_offset")
        .expect("offset")
        .parse()
        .expect("number")
}

/// Full sync of 300 keys, then 20 streamed commands, the applied offset
/// seen by the source and the INFO poller's offset, all over TLS.
async fn sync_and_stream(src: &TlsSource, tls: TlsConfig) {
    let mut conn = src.server.conn();
    for i in 0..300 {
        redis::cmd("SET")
            .arg(format!("k:{i}"))
            .arg(i)
            .query::<()>(&mut conn)
            .unwrap();
    }
    let dir = tempfile::tempdir().expect("tmp");
    let (link, mut rx) =
        Link::start(config(src, tls, dir.path()), CancellationToken::new()).unwrap();
    let events = Arc::new(Mutex::new(Vec::new()));
    let handle = link.handle();
    let ev = events.clone();
    tokio::spawn(async move {
        while let Some(e) = rx.recv().await {
            match &e {
                LinkEvent::SnapshotEnd { applied } | LinkEvent::Stream { applied, .. } => {
                    handle.applied(*applied)
                }
                _ => {}
            }
            ev.lock().unwrap().push(e);
        }
    });
    wait_for("the snapshot", || {
        events
            .lock()
            .unwrap()
            .iter()
            .any(|e| matches!(e, LinkEvent::SnapshotEnd { .. }))
    })
    .await;
    let keys = events
        .lock()
        .unwrap()
        .iter()
        .filter(|e| matches!(e, LinkEvent::Rdb(Item::Key(_))))
        .count();
    assert_eq!(keys, 300);

    for i in 0..20 {
        redis::cmd("SET")
            .arg(format!("s:{i}"))
            .arg(i)
            .query::<()>(&mut conn)
            .unwrap();
    }
    let sets = || {
        events
            .lock()
            .unwrap()
            .iter()
            .filter(|e| {
                matches!(e, LinkEvent::Stream { event: StreamEvent::Command { cmd, .. }, .. }
                    if cmd.args.first().is_some_and(|a| a.eq_ignore_ascii_case(b"SET")))
            })
            .count()
    };
    wait_for("20 streamed SETs", || sets() == 20).await;
    let at = master_offset(&src.server);
    wait_for("the source to see the applied offset", || {
        src.server
            .info("replication")
            .contains(&format!("port=7777,state=online,offset={at},"))
    })
    .await;
    wait_for("the INFO poller over TLS", || {
        link.status().source_offset == Some(at)
    })
    .await;
    assert!(link.status().connected);
    assert!(
        !events
            .lock()
            .unwrap()
            .iter()
            .any(|e| matches!(e, LinkEvent::Reconnecting { .. })),
        "reconnected"
    );
    link.shutdown().await.expect("clean shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn full_sync_and_stream_over_tls_with_ca_file() {
    let src = tls_source();
    let tls = TlsConfig::with_ca_file(&src.pki.ca_cert);
    sync_and_stream(&src, tls).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn full_sync_over_tls_insecure() {
    let src = tls_source();
    let tls = TlsConfig::insecure();
    assert!(tls.warning().expect("a warning").contains("insecure"));
    sync_and_stream(&src, tls).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn unverifiable_certificate_is_a_clear_fatal_error() {
    let src = tls_source();
    let dir = tempfile::tempdir().expect("tmp");
    // No CA file: the system roots do not know the test CA.
    let (link, _rx) = Link::start(
        config(&src, TlsConfig::default(), dir.path()),
        CancellationToken::new(),
    )
    .unwrap();
    let r = tokio::time::timeout(WAIT, link.finish())
        .await
        .expect("a fatal error, not endless retries");
    let e = r.expect_err("must not connect");
    assert!(matches!(e, LinkError::Tls(_)), "{e:?}");
    assert!(!e.retriable());
    let msg = e.to_string();
    assert!(
        msg.contains("UnknownIssuer") || msg.contains("no system root certificates"),
        "{msg}"
    );
    assert!(msg.contains("CA file"), "{msg}");
}

//! TLS (`rediss://`) to the nodes: `Conn` round trip to a TLS Redis, and the
//! writer into a TLS-only cluster (no plaintext port; `tls-cluster yes`):
//! discovery picks the TLS ports, and reconnects and a `MOVED` to a node the
//! writer has not seen yet use TLS too.

mod common;

use std::time::{Duration, Instant};

use common::{get_all, op};
use ferry_cluster::{Auth, ClusterWriter, Conn, ConnError, WriterConfig, WriterError};
use ferry_ops::key_slot;
use ferry_resp::Value;
use ferry_testkit::{Cluster, Flavor, Server, TlsFiles, free_port};
use ferry_tls::TlsConfig;
use ferry_tls::test_pki::TestPki;

const T: Duration = Duration::from_secs(5);
/// Bound on the writer test's writes.
const TEST_BOUND: Duration = Duration::from_secs(60);

fn files(pki: &TestPki) -> TlsFiles {
    TlsFiles {
        ca_cert: pki.ca_cert.clone(),
        cert: pki.server_cert.clone(),
        key: pki.server_key.clone(),
        client_cert: pki.client_cert.clone(),
        client_key: pki.client_key.clone(),
    }
}

#[tokio::test]
async fn conn_round_trip_over_tls() {
    let dir = tempfile::tempdir().unwrap();
    let pki = TestPki::generate(dir.path());
    let port = free_port();
    let _server = Server::builder(Flavor::Redis70)
        .raw_args(pki.redis_args(port, false))
        .start()
        .unwrap();
    let addr = format!("127.0.0.1:{port}");
    let tls = TlsConfig::with_ca_file(&pki.ca_cert);
    let mut conn = Conn::connect_tls(&addr, &Auth::none(), T, Some(&tls))
        .await
        .expect("TLS connect");
    assert!(conn.is_tls());
    let v = conn.call(&["SET", "k", "v"], T).await.unwrap();
    assert_eq!(v, Value::Simple(bytes::Bytes::from_static(b"OK")));
    let v = conn.call(&["GET", "k"], T).await.unwrap();
    assert_eq!(v, Value::Bulk(bytes::Bytes::from_static(b"v")));

    // No CA: a clear TLS error naming the node.
    let err = Conn::connect_tls(&addr, &Auth::none(), T, Some(&TlsConfig::default()))
        .await
        .unwrap_err();
    match &err {
        ConnError::Tls { addr: a, message } => {
            assert_eq!(a, &addr);
            assert!(
                message.contains("UnknownIssuer") || message.contains("no system root"),
                "{message}"
            );
        }
        other => panic!("{other:?}"),
    }
}

fn cmd(server: &Server, args: &[&str]) -> redis::Value {
    let mut c = redis::cmd(args[0]);
    for a in &args[1..] {
        c.arg(*a);
    }
    c.query(&mut server.conn())
        .unwrap_or_else(|e| panic!("{args:?} on {}: {e}", server.addr()))
}

fn my_id(server: &Server) -> String {
    match cmd(server, &["CLUSTER", "MYID"]) {
        redis::Value::BulkString(b) => String::from_utf8(b).unwrap(),
        v => panic!("CLUSTER MYID: {v:?}"),
    }
}

/// Waits (bounded) until every node of `all` knows `n` nodes.
fn wait_known(all: &[&Server], n: usize) {
    let start = Instant::now();
    loop {
        let known = all.iter().all(|s| {
            let info: String = redis::cmd("CLUSTER")
                .arg("INFO")
                .query(&mut s.conn())
                .unwrap();
            ferry_testkit::info_field(&info, "cluster_known_nodes") == Some(n.to_string())
        });
        if known {
            return;
        }
        assert!(start.elapsed() < T * 6, "nodes did not meet");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn writer_into_a_tls_only_cluster() {
    let dir = tempfile::tempdir().unwrap();
    let pki = TestPki::generate(dir.path());
    let files = files(&pki);
    let cluster = Cluster::start_tls(Flavor::Redis70, 3, &files).expect("TLS cluster");
    assert!(cluster.seed_url().starts_with("rediss://"));
    let config = WriterConfig {
        tls: Some(TlsConfig::with_ca_file(&pki.ca_cert)),
        reconnect_for: Duration::from_secs(20),
        ..WriterConfig::default()
    };
    let mut w = tokio::time::timeout(
        TEST_BOUND,
        ClusterWriter::connect_with(&cluster.seed_url(), config.clone()),
    )
    .await
    .expect("connect in time")
    .expect("connect over TLS");
    let mut ports: Vec<String> = cluster.nodes.iter().map(Server::addr).collect();
    ports.sort();
    let mut masters = w.masters().to_vec();
    masters.sort();
    assert_eq!(masters, ports, "discovery found the TLS ports");
    // The fallback, CLUSTER SLOTS, names the TLS ports too (`tls-cluster yes`).
    let tls = TlsConfig::with_ca_file(&pki.ca_cert);
    let mut seed = Conn::connect_tls(&ports[0], &Auth::none(), T, Some(&tls))
        .await
        .unwrap();
    let slots = seed.call(&["CLUSTER", "SLOTS"], T).await.unwrap();
    let topology = ferry_ops::Topology::from_slots(&slots, "127.0.0.1").unwrap();
    let mut from_slots: Vec<String> = topology.masters.iter().map(|n| n.addr()).collect();
    from_slots.sort();
    assert_eq!(from_slots, ports, "CLUSTER SLOTS ports");

    const N: u64 = 3000;
    let mut offset = 0;
    let mut write = async |w: &mut ClusterWriter, from: u64, to: u64| {
        for i in from..to {
            offset += 1;
            let (k, v) = (format!("key:{i}"), format!("value:{i}"));
            w.submit(op(&[b"SET", k.as_bytes(), v.as_bytes()], offset))
                .await
                .unwrap();
        }
        w.flush().await.unwrap();
    };
    tokio::time::timeout(TEST_BOUND, write(&mut w, 0, N))
        .await
        .expect("writes in time");

    // Every connection dropped by the server: the writer reconnects over TLS.
    for node in &cluster.nodes {
        cmd(node, &["CLIENT", "KILL", "TYPE", "normal"]);
    }
    tokio::time::timeout(TEST_BOUND, write(&mut w, N, 2 * N))
        .await
        .expect("writes after the kill in time");
    assert!(w.stats().reconnects >= 1, "{:?}", w.stats());

    // A fourth (TLS-only) master takes one slot: the writer follows the
    // MOVED to a node it has never connected to.
    let new = Server::builder(Flavor::Redis70)
        .tls_only(files.clone())
        .cluster(true)
        .start()
        .expect("fourth node");
    cmd(
        &cluster.nodes[0],
        &["CLUSTER", "MEET", "127.0.0.1", &new.port().to_string()],
    );
    let mut all: Vec<&Server> = cluster.nodes.iter().collect();
    all.push(&new);
    wait_known(&all, 4);
    let key = "moved:key";
    let slot = key_slot(key.as_bytes()).to_string();
    let owner = common::node_for(&cluster, key);
    let (new_id, owner_id) = (my_id(&new), my_id(owner));
    cmd(&new, &["CLUSTER", "SETSLOT", &slot, "IMPORTING", &owner_id]);
    cmd(owner, &["CLUSTER", "SETSLOT", &slot, "MIGRATING", &new_id]);
    // The slot is empty (nothing was written to it yet): no MIGRATE needed.
    for s in std::iter::once(&new).chain(cluster.nodes.iter()) {
        cmd(s, &["CLUSTER", "SETSLOT", &slot, "NODE", &new_id]);
    }
    let run = async {
        w.submit(op(&[b"SET", key.as_bytes(), b"moved"], 10 * N))
            .await
            .unwrap();
        w.flush().await.unwrap();
    };
    tokio::time::timeout(TEST_BOUND, run)
        .await
        .expect("moved write in time");
    assert!(w.stats().moved >= 1, "{:?}", w.stats());
    let got: Option<String> = redis::cmd("GET").arg(key).query(&mut new.conn()).unwrap();
    assert_eq!(got.as_deref(), Some("moved"));

    let keys: Vec<String> = (0..2 * N).map(|i| format!("key:{i}")).collect();
    let got = get_all(&cluster, &keys);
    for (i, k) in keys.iter().enumerate() {
        assert_eq!(
            got[k].as_deref(),
            Some(format!("value:{i}").as_str()),
            "{k}"
        );
    }
    w.close().await.unwrap();

    // The wrong CA (another PKI's): a clear, immediate TLS error.
    let other = tempfile::tempdir().unwrap();
    let other = TestPki::generate(other.path());
    let config = WriterConfig {
        tls: Some(TlsConfig::with_ca_file(&other.ca_cert)),
        ..WriterConfig::default()
    };
    let start = Instant::now();
    let err = ClusterWriter::connect_with(&cluster.seed_url(), config)
        .await
        .unwrap_err();
    assert!(start.elapsed() < T * 2, "not retried");
    match &err {
        WriterError::Connect(ConnError::Tls { message, .. }) => {
            // Same CA name, other key: the signature does not match.
            assert!(message.contains("invalid peer certificate"), "{message}");
            assert!(message.contains("CA file"), "{message}");
        }
        other => panic!("{other:?}"),
    }
}

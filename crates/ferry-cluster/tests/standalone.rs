//! The writer into a standalone server (`TargetMode::Standalone` / `Auto`):
//! one connection, ops in submission order, `SELECT` kept, and after the
//! server drops the connection the writer resumes on the db of the last
//! acknowledged `SELECT`.

use std::time::Duration;

use bytes::Bytes;
use ferry_cluster::{ClusterWriter, Op, TargetMode, WriterConfig};
use ferry_testkit::{Flavor, Server};

const BOUND: Duration = Duration::from_secs(30);

fn op(args: &[&str], offset: u64) -> Op {
    let args: Vec<Bytes> = args
        .iter()
        .map(|a| Bytes::copy_from_slice(a.as_bytes()))
        .collect();
    // Any slot: a standalone writer routes everything to its one server.
    let slot = ferry_ops::key_slot(&args[1]);
    Op::slot(args, slot, offset)
}

fn get(server: &Server, db: u64, key: &str) -> Option<String> {
    let mut c = server.conn();
    redis::cmd("SELECT").arg(db).query::<()>(&mut c).unwrap();
    redis::cmd("GET").arg(key).query(&mut c).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auto_detects_a_standalone_server_and_keeps_dbs_across_a_reconnect() {
    let server = Server::start(Flavor::Redis70).expect("server");
    let config = WriterConfig {
        mode: TargetMode::Auto,
        ..WriterConfig::default()
    };
    let mut w = tokio::time::timeout(BOUND, ClusterWriter::connect_with(&server.url(), config))
        .await
        .expect("connect in time")
        .expect("connect");
    assert!(w.is_standalone());
    assert_eq!(w.masters(), [server.addr()]);
    let run = async {
        w.submit(op(&["SET", "k", "db0"], 1)).await.unwrap();
        w.submit(op(&["SELECT", "5"], 2)).await.unwrap();
        // Cross-slot in a cluster; as is here.
        w.submit(op(&["MSET", "a", "1", "b", "2"], 3))
            .await
            .unwrap();
        w.submit(op(&["SET", "k", "db5"], 4)).await.unwrap();
        w.flush().await.unwrap();
    };
    tokio::time::timeout(BOUND, run)
        .await
        .expect("writes in time");
    assert_eq!(w.applied_offset(), 4);

    redis::cmd("CLIENT")
        .arg("KILL")
        .arg("TYPE")
        .arg("normal")
        .query::<()>(&mut server.conn())
        .unwrap();
    let run = async {
        // No SELECT: still db 5 after the reconnect.
        for i in 0..100u64 {
            w.submit(op(&["INCR", "n"], 5 + i)).await.unwrap();
        }
        w.flush().await.unwrap();
    };
    tokio::time::timeout(BOUND, run)
        .await
        .expect("writes in time");
    assert!(w.stats().reconnects >= 1, "{:?}", w.stats());
    assert_eq!(get(&server, 0, "k").as_deref(), Some("db0"));
    assert_eq!(get(&server, 5, "k").as_deref(), Some("db5"));
    assert_eq!(get(&server, 5, "b").as_deref(), Some("2"));
    assert_eq!(get(&server, 5, "n").as_deref(), Some("100"));
    assert_eq!(get(&server, 0, "n"), None);
    w.close().await.unwrap();

    // Cluster mode still refuses it.
    let e = ClusterWriter::connect_with(&server.url(), WriterConfig::default())
        .await
        .unwrap_err();
    assert!(
        matches!(e, ferry_cluster::WriterError::NotACluster { .. }),
        "{e}"
    );
}

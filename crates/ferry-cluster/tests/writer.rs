//! The cluster writer against a real 3-master Redis 7.0 cluster.

mod common;

use std::time::{Duration, Instant};

use common::{LOCK, get_all, node_for, op};
use ferry_cluster::{Auth, ClusterWriter, WriterError};
use ferry_testkit::{Cluster, Flavor, Server};

const FLAVOR: Flavor = Flavor::Redis70;
/// Bound on any one test's writes.
const TEST_BOUND: Duration = Duration::from_secs(60);

async fn writer(cluster: &Cluster) -> ClusterWriter {
    tokio::time::timeout(
        TEST_BOUND,
        ClusterWriter::connect(&cluster.seed_url(), Auth::none()),
    )
    .await
    .expect("connect in time")
    .expect("connect")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn pipelined_sets_read_back_and_offset_reaches_the_last() {
    let _guard = LOCK.lock().await;
    let cluster = Cluster::shared(FLAVOR);
    cluster.flushall();
    let mut w = writer(cluster).await;
    assert_eq!(w.masters().len(), 3);
    const N: u64 = 100_000;
    let start = Instant::now();
    let run = async {
        for i in 0..N {
            let (k, v) = (format!("key:{i}"), format!("value:{i}"));
            w.submit(op(&[b"SET", k.as_bytes(), v.as_bytes()], 100 + i))
                .await
                .unwrap();
        }
        w.flush().await.unwrap();
    };
    tokio::time::timeout(TEST_BOUND, run)
        .await
        .expect("writes in time");
    let took = start.elapsed();
    eprintln!(
        "{N} SETs in {:.3} s: {:.0} ops/s",
        took.as_secs_f64(),
        N as f64 / took.as_secs_f64()
    );
    assert_eq!(w.applied_offset(), 100 + N - 1);
    assert_eq!(w.stats().acked, N);
    let keys: Vec<String> = (0..N).map(|i| format!("key:{i}")).collect();
    let got = get_all(cluster, &keys);
    for (i, k) in keys.iter().enumerate() {
        assert_eq!(
            got[k].as_deref(),
            Some(format!("value:{i}").as_str()),
            "{k}"
        );
    }
    w.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn per_key_order_is_kept() {
    let _guard = LOCK.lock().await;
    let cluster = Cluster::shared(FLAVOR);
    cluster.flushall();
    let mut w = writer(cluster).await;
    const N: u64 = 20_000;
    const LISTS: u64 = 50;
    let run = async {
        for i in 0..N {
            let (k, v) = (format!("list:{{{}}}", i % LISTS), i.to_string());
            w.submit(op(&[b"RPUSH", k.as_bytes(), v.as_bytes()], i))
                .await
                .unwrap();
        }
        w.flush().await.unwrap();
    };
    tokio::time::timeout(TEST_BOUND, run)
        .await
        .expect("writes in time");
    assert_eq!(w.applied_offset(), N - 1);
    for l in 0..LISTS {
        let key = format!("list:{{{l}}}");
        let got: Vec<u64> = redis::cmd("LRANGE")
            .arg(&key)
            .arg(0)
            .arg(-1)
            .query(&mut node_for(cluster, &key).conn())
            .unwrap();
        let want: Vec<u64> = (0..N).filter(|i| i % LISTS == l).collect();
        assert_eq!(got, want, "{key}");
    }
}

/// `submit_batch` (one message per batch) interleaved with single
/// `submit`s keeps per-key order and reaches the last offset.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn batched_submits_keep_per_key_order() {
    let _guard = LOCK.lock().await;
    let cluster = Cluster::shared(FLAVOR);
    cluster.flushall();
    let mut w = writer(cluster).await;
    const N: u64 = 20_000;
    const LISTS: u64 = 50;
    let push = |i: u64| {
        let (k, v) = (format!("blist:{{{}}}", i % LISTS), i.to_string());
        op(&[b"RPUSH", k.as_bytes(), v.as_bytes()], i)
    };
    let run = async {
        let mut i = 0;
        while i < N {
            // Batches of 1 to 100 ops, every seventh op alone.
            let len = (i % 100 + 1).min(N - i);
            if i % 7 == 0 {
                w.submit(push(i)).await.unwrap();
                i += 1;
                continue;
            }
            w.submit_batch((i..i + len).map(push).collect())
                .await
                .unwrap();
            i += len;
        }
        w.flush().await.unwrap();
    };
    tokio::time::timeout(TEST_BOUND, run)
        .await
        .expect("writes in time");
    assert_eq!(w.applied_offset(), N - 1);
    assert_eq!(w.stats().acked, N);
    for l in 0..LISTS {
        let key = format!("blist:{{{l}}}");
        let got: Vec<u64> = redis::cmd("LRANGE")
            .arg(&key)
            .arg(0)
            .arg(-1)
            .query(&mut node_for(cluster, &key).conn())
            .unwrap();
        let want: Vec<u64> = (0..N).filter(|i| i % LISTS == l).collect();
        assert_eq!(got, want, "{key}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_standalone_server_is_not_a_cluster() {
    let server = Server::start(FLAVOR).unwrap();
    let err = tokio::time::timeout(
        TEST_BOUND,
        ClusterWriter::connect(&server.url(), Auth::none()),
    )
    .await
    .expect("answer in time")
    .unwrap_err();
    assert!(
        matches!(&err, WriterError::NotACluster { addr, .. } if *addr == server.addr()),
        "{err:?}"
    );
    let text = err.to_string();
    assert!(text.contains(&server.addr()), "{text}");
    assert!(text.contains("not a Redis Cluster node"), "{text}");
    assert!(text.contains("cluster support disabled"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn connection_loss_reconnects_and_resends() {
    let _guard = LOCK.lock().await;
    let cluster = Cluster::shared(FLAVOR);
    cluster.flushall();
    let mut w = writer(cluster).await;
    const N: u64 = 100_000;
    let victim = &cluster.nodes[1];
    let run = async {
        for i in 0..N {
            let (k, v) = (format!("k:{i}"), format!("v:{i}"));
            w.submit(op(&[b"SET", k.as_bytes(), v.as_bytes()], i))
                .await
                .unwrap();
            if i == N / 3 || i == 2 * N / 3 {
                let killed: i64 = redis::cmd("CLIENT")
                    .arg("KILL")
                    .arg("TYPE")
                    .arg("normal")
                    .query(&mut victim.conn())
                    .unwrap();
                assert!(killed >= 1, "killed {killed}");
            }
        }
        w.flush().await.unwrap();
    };
    tokio::time::timeout(TEST_BOUND, run)
        .await
        .expect("writes in time");
    let stats = w.stats();
    assert!(stats.reconnects >= 1, "{stats:?}");
    assert_eq!(w.applied_offset(), N - 1);
    let keys: Vec<String> = (0..N).map(|i| format!("k:{i}")).collect();
    let got = get_all(cluster, &keys);
    for (i, k) in keys.iter().enumerate() {
        assert_eq!(got[k].as_deref(), Some(format!("v:{i}").as_str()), "{k}");
    }
    let total: u64 = cluster
        .nodes
        .iter()
        .map(|n| redis::cmd("DBSIZE").query::<u64>(&mut n.conn()).unwrap())
        .sum();
    assert_eq!(total, N);
    eprintln!("connection loss: {stats:?}");
}

//! Smoke test against a 3-master Valkey 9 cluster: slot writes, a
//! per-master op (FLUSHALL) as a barrier in the middle, order after it.

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::{get_all, node_for, op};
use ferry_cluster::{Auth, ClusterWriter, Op};
use ferry_testkit::{Cluster, Flavor};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn valkey9_cluster_smoke() {
    let cluster = Cluster::shared(Flavor::Valkey9);
    cluster.flushall();
    let mut w = ClusterWriter::connect(&cluster.seed_url(), Auth::none())
        .await
        .unwrap();
    assert_eq!(w.masters().len(), 3);
    let run = async {
        for i in 0..5_000u64 {
            let k = format!("before:{i}");
            w.submit(op(&[b"SET", k.as_bytes(), b"x"], i))
                .await
                .unwrap();
        }
        w.submit(Op::all_masters(
            vec![Bytes::from_static(b"FLUSHALL")],
            5_000,
        ))
        .await
        .unwrap();
        for i in 0..10_000u64 {
            let (k, v) = (format!("after:{i}"), i.to_string());
            w.submit(op(&[b"SET", k.as_bytes(), v.as_bytes()], 5_001 + i))
                .await
                .unwrap();
            w.submit(op(&[b"RPUSH", b"{l}", v.as_bytes()], 5_001 + i))
                .await
                .unwrap();
        }
        w.flush().await.unwrap();
    };
    tokio::time::timeout(Duration::from_secs(60), run)
        .await
        .expect("writes in time");
    assert_eq!(w.applied_offset(), 15_000);
    let total: u64 = cluster
        .nodes
        .iter()
        .map(|n| redis::cmd("DBSIZE").query::<u64>(&mut n.conn()).unwrap())
        .sum();
    assert_eq!(total, 10_001, "the FLUSHALL removed every before: key");
    let keys: Vec<String> = (0..10_000).map(|i| format!("after:{i}")).collect();
    let got = get_all(cluster, &keys);
    for (i, k) in keys.iter().enumerate() {
        assert_eq!(got[k].as_deref(), Some(i.to_string().as_str()));
    }
    let list: Vec<u64> = redis::cmd("LRANGE")
        .arg("{l}")
        .arg(0)
        .arg(-1)
        .query(&mut node_for(cluster, "{l}").conn())
        .unwrap();
    assert_eq!(list, (0..10_000).collect::<Vec<_>>());
    w.close().await.unwrap();
}

//! 3-master clusters of Redis 7.0 and Valkey 9: bring-up, routing, teardown.

use std::time::Duration;

use ferry_testkit::{Cluster, Flavor, pid_alive};

fn exercise(flavor: Flavor) {
    let t = std::time::Instant::now();
    let cluster = Cluster::start(flavor, 3).unwrap_or_else(|e| panic!("{e}"));
    eprintln!("{flavor}: 3-master cluster up in {:.2?}", t.elapsed());
    assert_eq!(cluster.nodes.len(), 3);
    assert!(cluster.seed_url().starts_with("redis://127.0.0.1:"));
    for node in &cluster.nodes {
        assert!(node.is_cluster_node());
    }

    // Three ranges covering 0..=16383, one per node.
    let map = cluster.slot_map();
    assert_eq!(map.len(), 3, "{map:?}");
    assert_eq!(map[0].0, 0);
    assert_eq!(map[2].1, 16383);
    for w in map.windows(2) {
        assert_eq!(w[0].1 + 1, w[1].0, "{map:?}");
    }

    // Every node computes the same slot for every key, hash tags included.
    let mut keys: Vec<Vec<u8>> = (0..200).map(|i| format!("key:{i}").into_bytes()).collect();
    keys.extend([
        b"{user1000}.a".to_vec(),
        b"foo{}{bar}".to_vec(),
        b"foo{{bar}}".to_vec(),
        b"foo{bar}{zap}".to_vec(),
        b"\x00\xff".to_vec(),
    ]);
    for key in &keys {
        let slots: Vec<u16> = cluster
            .nodes
            .iter()
            .map(|n| {
                redis::cmd("CLUSTER")
                    .arg("KEYSLOT")
                    .arg(key)
                    .query(&mut n.conn())
                    .unwrap()
            })
            .collect();
        assert!(slots.windows(2).all(|w| w[0] == w[1]), "{key:?}: {slots:?}");
    }
    let slot = |k: &[u8]| -> u16 {
        redis::cmd("CLUSTER")
            .arg("KEYSLOT")
            .arg(k)
            .query(&mut cluster.nodes[0].conn())
            .unwrap()
    };
    assert_eq!(slot(b"{user1000}.a"), slot(b"user1000"));
    assert_eq!(slot(b"foo{bar}{zap}"), slot(b"bar"));
    assert_eq!(slot(b"foo{{bar}}"), slot(b"{bar"));

    // Writes land on the owning node; the wrong node answers MOVED.
    for key in &keys {
        let node = cluster.node_for_key(key);
        redis::cmd("SET")
            .arg(key)
            .arg("v")
            .query::<()>(&mut node.conn())
            .unwrap();
    }
    let total: usize = cluster
        .nodes
        .iter()
        .map(|n| redis::cmd("DBSIZE").query::<usize>(&mut n.conn()).unwrap())
        .sum();
    assert_eq!(total, keys.len());
    let owner = cluster.node_for_key(b"key:0").port();
    let other = cluster.nodes.iter().find(|n| n.port() != owner).unwrap();
    let err = redis::cmd("GET")
        .arg("key:0")
        .query::<Option<String>>(&mut other.conn())
        .unwrap_err();
    assert!(
        err.to_string().contains("MOVED") || err.redirect_node().is_some(),
        "{err}"
    );

    cluster.flushall();
    let total: usize = cluster
        .nodes
        .iter()
        .map(|n| redis::cmd("DBSIZE").query::<usize>(&mut n.conn()).unwrap())
        .sum();
    assert_eq!(total, 0);

    let pids: Vec<u32> = cluster.nodes.iter().map(|n| n.pid()).collect();
    assert!(pids.iter().all(|p| pid_alive(*p)));
    drop(cluster);
    for pid in pids {
        assert!(!pid_alive(pid), "{flavor}: node pid {pid} alive after drop");
    }
}

#[test]
fn redis70_cluster() {
    exercise(Flavor::Redis70);
}

#[test]
fn valkey9_cluster() {
    exercise(Flavor::Valkey9);
}

#[test]
fn password_protected_valkey9_cluster() {
    let cluster = Cluster::start_with(Flavor::Valkey9, 3, |b| b.password("pw"))
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(cluster.seed_url().starts_with("redis://:pw@127.0.0.1:"));
    let node = cluster.node_for_key(b"k");
    redis::cmd("SET")
        .arg("k")
        .arg("v")
        .query::<()>(&mut node.conn())
        .unwrap();
    cluster.flushall();
}

#[test]
fn shared_cluster_is_started_once() {
    let a = Cluster::shared(Flavor::Redis70);
    let b = Cluster::shared(Flavor::Redis70);
    assert!(std::ptr::eq(a, b));
    a.flushall();
    assert_eq!(a.nodes.len(), 3);
    // Never dropped: the servers' watchdogs kill it when this process exits.
}

/// `redis-cli --cluster reshard` moves slots (keys included) and the
/// cluster converges on the new map; Valkey 9's atomic migration too.
fn reshard_moves(flavor: Flavor) {
    let cluster = Cluster::start(flavor, 3).unwrap_or_else(|e| panic!("{e}"));
    let mut conn = cluster.node_for_key(b"k").conn();
    let slot = ferry_ops::key_slot(b"k");
    let _: () = redis::cmd("SET")
        .arg("k")
        .arg("v")
        .query(&mut conn)
        .unwrap();
    let from = cluster.master_of_slot(0).unwrap();
    let to = cluster.master_of_slot(16383).unwrap();
    cluster
        .reshard(from, to, 100, Duration::from_secs(120))
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(cluster.master_of_slot(0), Some(to));
    let owner = cluster.master_of_slot(slot).unwrap();
    let v: String = redis::cmd("GET")
        .arg("k")
        .query(&mut cluster.nodes[owner].conn())
        .unwrap();
    assert_eq!(v, "v");
    if cluster.has_atomic_migration() {
        cluster
            .migrate_slots_atomic(to, from, 0, 9, Duration::from_secs(60))
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(cluster.master_of_slot(0), Some(from));
        assert_eq!(cluster.master_of_slot(10), Some(to));
    } else {
        assert_ne!(flavor, Flavor::Valkey9, "Valkey 9 has atomic migration");
    }
}

#[test]
fn redis70_reshard() {
    reshard_moves(Flavor::Redis70);
}

#[test]
fn valkey9_reshard_and_atomic_migration() {
    reshard_moves(Flavor::Valkey9);
}

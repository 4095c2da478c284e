//! Helpers shared by the writer's real-server tests.
#![allow(dead_code)]

use std::collections::HashMap;

use bytes::Bytes;
use ferry_cluster::Op;
use ferry_ops::key_slot;
use ferry_testkit::Cluster;

/// Tests of one binary share one cluster; this keeps them from running at
/// the same time (each starts with FLUSHALL).
pub static LOCK: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// An op for the slot of `args[1]`.
pub fn op(args: &[&[u8]], offset: u64) -> Op {
    let args: Vec<Bytes> = args.iter().map(|a| Bytes::copy_from_slice(a)).collect();
    let slot = key_slot(&args[1]);
    Op::slot(args, slot, offset)
}

/// `GET` of every key, pipelined per node (by the cluster's current slot
/// map); `None` for a missing key.
pub fn get_all(cluster: &Cluster, keys: &[String]) -> HashMap<String, Option<String>> {
    let map = cluster.slot_map();
    let mut per_port: HashMap<u16, Vec<&String>> = HashMap::new();
    for k in keys {
        let slot = key_slot(k.as_bytes());
        let port = map
            .iter()
            .find(|(lo, hi, _)| (*lo..=*hi).contains(&slot))
            .map(|(_, _, p)| *p)
            .expect("slot served");
        per_port.entry(port).or_default().push(k);
    }
    let mut out = HashMap::new();
    for (port, keys) in per_port {
        let node = cluster
            .nodes
            .iter()
            .find(|n| n.port() == port)
            .expect("known port");
        let mut conn = node.conn();
        for chunk in keys.chunks(5000) {
            let mut pipe = redis::pipe();
            for k in chunk {
                pipe.cmd("GET").arg(k.as_str());
            }
            let values: Vec<Option<String>> = pipe.query(&mut conn).expect("GET pipeline");
            for (k, v) in chunk.iter().zip(values) {
                out.insert((*k).clone(), v);
            }
        }
    }
    out
}

/// The node serving `key` (by the cluster's current map).
pub fn node_for<'a>(cluster: &'a Cluster, key: &str) -> &'a ferry_testkit::Server {
    let slot = key_slot(key.as_bytes());
    let port = cluster
        .slot_map()
        .into_iter()
        .find(|(lo, hi, _)| (*lo..=*hi).contains(&slot))
        .map(|(_, _, p)| p)
        .expect("slot served");
    cluster
        .nodes
        .iter()
        .find(|n| n.port() == port)
        .expect("known port")
}

//! Checks shared by the live-server tests and the captured-fixture tests.

#![allow(dead_code)]

use std::path::PathBuf;

use ferry_ops::{SLOTS, Topology};
use ferry_resp::Value;

/// Who owns each slot according to `CLUSTER NODES` text: `(host, port)` of
/// the master, by slot.
pub fn owners_from_nodes(nodes: &str) -> Vec<Option<(String, u16)>> {
    let mut owners = vec![None; usize::from(SLOTS)];
    for line in nodes.lines().filter(|l| !l.trim().is_empty()) {
        let fields: Vec<&str> = line.split(' ').collect();
        assert!(fields.len() >= 8, "short CLUSTER NODES line: {line}");
        if !fields[2].split(',').any(|f| f == "master") {
            continue;
        }
        // ip:port@cport[,hostname]
        let addr = fields[1].split('@').next().unwrap();
        let (ip, port) = ferry_ops::split_host_port(addr).expect("ip:port");
        for range in &fields[8..] {
            if range.starts_with('[') {
                continue; // migrating/importing marker
            }
            let (lo, hi) = match range.split_once('-') {
                Some((a, b)) => (a.parse::<usize>().unwrap(), b.parse::<usize>().unwrap()),
                None => {
                    let s = range.parse::<usize>().unwrap();
                    (s, s)
                }
            };
            for owner in &mut owners[lo..=hi] {
                assert!(owner.is_none(), "slot listed twice: {line}");
                *owner = Some((ip.to_owned(), port));
            }
        }
    }
    owners
}

/// The master ports by slot according to a parsed topology.
pub fn ports_by_slot(t: &Topology) -> Vec<Option<u16>> {
    (0..SLOTS).map(|s| t.node_for(s).map(|n| n.port)).collect()
}

/// Every slot is covered, by one of `masters` masters, and by the same port
/// as `CLUSTER NODES` says.
pub fn check_against_nodes(what: &str, t: &Topology, nodes: &str, masters: usize) {
    assert!(
        t.slots.uncovered().is_empty(),
        "{what}: uncovered {:?}",
        t.slots.uncovered()
    );
    assert_eq!(t.masters.len(), masters, "{what}: {:?}", t.masters);
    for m in &t.masters {
        let id = m.id.as_deref().unwrap_or_default();
        assert_eq!(id.len(), 40, "{what}: node id {id:?}");
        assert!(nodes.contains(id), "{what}: {id} not in CLUSTER NODES");
    }
    let owners = owners_from_nodes(nodes);
    for (slot, owner) in owners.iter().enumerate() {
        let node = t.node_for(slot as u16).unwrap();
        let (_, port) = owner
            .as_ref()
            .unwrap_or_else(|| panic!("{what}: slot {slot} unowned in NODES"));
        assert_eq!(node.port, *port, "{what}: slot {slot}");
        // The node id owning the slot in NODES is the one in the topology.
        let line = nodes
            .lines()
            .find(|l| l.starts_with(node.id.as_deref().unwrap()))
            .unwrap();
        assert!(
            line.contains(&format!(":{port}@")),
            "{what}: slot {slot}: {line}"
        );
    }
}

/// Decodes exactly one RESP value filling `bytes`.
pub fn decode_whole(bytes: &[u8]) -> Value {
    match ferry_resp::decode(bytes) {
        Ok(Some((v, n))) if n == bytes.len() => v,
        other => panic!(
            "not one whole RESP value ({} bytes): {other:?}",
            bytes.len()
        ),
    }
}

/// Decodes a concatenation of RESP values.
pub fn decode_all(mut bytes: &[u8]) -> Vec<Value> {
    let mut out = Vec::new();
    while !bytes.is_empty() {
        match ferry_resp::decode(bytes) {
            Ok(Some((v, n))) => {
                out.push(v);
                bytes = &bytes[n..];
            }
            other => panic!("bad RESP at {} bytes from the end: {other:?}", bytes.len()),
        }
    }
    out
}

/// `crates/ferry-ops/tests/data/<name>`.
pub fn data_path(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(name)
}

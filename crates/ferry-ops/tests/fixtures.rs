//! Topology and error parsing from replies captured off real clusters
//! (`tests/data/`, written by `tests/servers.rs` with
//! `FERRY_OPS_WRITE_FIXTURES=1`): runs without servers.
//!
//! Per flavor (`redis70`, `valkey9`), a 3-master cluster on 127.0.0.1:
//!
//! ```text
//! nodes.txt                          CLUSTER NODES at capture time (the reference)
//! {shards,slots}_resp{2,3}.resp      ip endpoints
//! shards_question_resp2.resp,        cluster-preferred-endpoint-type hostname, none
//! slots_question_resp3.resp            announced: endpoint "?"
//! shards_unknown_resp3.resp,         unknown-endpoint: "" (SHARDS) / null (SLOTS)
//! slots_unknown_resp2.resp
//! shards_hostname_resp2.resp,        hostnames n<port>.ferry.test announced and preferred
//! slots_hostname_resp3.resp
//! errors.resp                        MOVED, CROSSSLOT, ASK, TRYAGAIN, MOVED (unknown
//!                                    endpoint), MOVED (hostname)
//! ```

mod common;

use ferry_ops::{ErrorKind, Redirect, RedirectKind, Topology, TopologyError};
use ferry_resp::Value;

use common::{check_against_nodes, data_path, decode_all, decode_whole, owners_from_nodes};

const FLAVORS: [&str; 2] = ["redis70", "valkey9"];

fn read(slug: &str, name: &str) -> Vec<u8> {
    let path = data_path(&format!("{slug}_{name}"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn parse(slug: &str, name: &str, answered_by: &str) -> Topology {
    let v = decode_whole(&read(slug, name));
    let t = if name.starts_with("shards") {
        Topology::from_shards(&v, answered_by)
    } else {
        Topology::from_slots(&v, answered_by)
    };
    t.unwrap_or_else(|e| panic!("{slug} {name}: {e}"))
}

#[test]
fn ip_endpoints() {
    for slug in FLAVORS {
        let nodes = String::from_utf8(read(slug, "nodes.txt")).unwrap();
        let mut parsed = Vec::new();
        for name in [
            "shards_resp2.resp",
            "shards_resp3.resp",
            "slots_resp2.resp",
            "slots_resp3.resp",
        ] {
            let t = parse(slug, name, "seed.example");
            check_against_nodes(&format!("{slug} {name}"), &t, &nodes, 3);
            assert!(
                t.masters.iter().all(|m| m.host == "127.0.0.1"),
                "{slug} {name}"
            );
            parsed.push(t);
        }
        assert_eq!(parsed[0], parsed[1], "{slug}: SHARDS RESP2 vs RESP3");
        assert_eq!(parsed[2], parsed[3], "{slug}: SLOTS RESP2 vs RESP3");
        // SHARDS and SLOTS name the same node for every slot.
        for slot in 0..ferry_ops::SLOTS {
            assert_eq!(
                parsed[0].node_for(slot),
                parsed[2].node_for(slot),
                "{slug}: slot {slot}"
            );
        }
        // The RESP3 SHARDS capture really is maps, RESP2 flat arrays.
        let v3 = decode_whole(&read(slug, "shards_resp3.resp"));
        assert!(matches!(v3.as_array().unwrap()[0], Value::Map(_)));
        let v2 = decode_whole(&read(slug, "shards_resp2.resp"));
        assert!(matches!(v2.as_array().unwrap()[0], Value::Array(_)));
    }
}

#[test]
fn question_mark_endpoints_fall_back_to_the_ip() {
    for slug in FLAVORS {
        let nodes = String::from_utf8(read(slug, "nodes.txt")).unwrap();
        for name in ["shards_question_resp2.resp", "slots_question_resp3.resp"] {
            let wire = read(slug, name);
            assert!(
                wire.windows(5).any(|w| w == b"$1\r\n?"),
                "{slug} {name}: no '?' endpoint"
            );
            let t = parse(slug, name, "seed.example");
            check_against_nodes(&format!("{slug} {name}"), &t, &nodes, 3);
            assert!(
                t.masters.iter().all(|m| m.host == "127.0.0.1"),
                "{slug} {name}: {:?}",
                t.masters
            );
        }
    }
}

#[test]
fn unknown_endpoints_use_the_answering_host() {
    for slug in FLAVORS {
        let nodes = String::from_utf8(read(slug, "nodes.txt")).unwrap();
        for name in ["shards_unknown_resp3.resp", "slots_unknown_resp2.resp"] {
            let t = parse(slug, name, "seed.example");
            check_against_nodes(&format!("{slug} {name}"), &t, &nodes, 3);
            assert!(
                t.masters.iter().all(|m| m.host == "seed.example"),
                "{slug} {name}: {:?}",
                t.masters
            );
        }
    }
}

#[test]
fn hostname_endpoints() {
    for slug in FLAVORS {
        let nodes = String::from_utf8(read(slug, "nodes.txt")).unwrap();
        for name in ["shards_hostname_resp2.resp", "slots_hostname_resp3.resp"] {
            let t = parse(slug, name, "seed.example");
            check_against_nodes(&format!("{slug} {name}"), &t, &nodes, 3);
            for m in &t.masters {
                assert_eq!(m.host, format!("n{}.ferry.test", m.port), "{slug} {name}");
            }
        }
    }
}

#[test]
fn captured_errors() {
    for slug in FLAVORS {
        let nodes = String::from_utf8(read(slug, "nodes.txt")).unwrap();
        let owners = owners_from_nodes(&nodes);
        let errors: Vec<Vec<u8>> = decode_all(&read(slug, "errors.resp"))
            .iter()
            .map(|v| {
                v.error_message()
                    .unwrap_or_else(|| panic!("{v:?}"))
                    .to_vec()
            })
            .collect();
        let kinds: Vec<ErrorKind> = errors.iter().map(|e| ErrorKind::classify(e)).collect();
        use ErrorKind::*;
        assert_eq!(
            kinds,
            [Moved, CrossSlot, Ask, TryAgain, Moved, Moved],
            "{slug}"
        );
        let redirect = |i: usize| Redirect::parse(&errors[i]).unwrap();
        let owner = |slot: u16| owners[usize::from(slot)].clone().unwrap();
        let moved = redirect(0);
        assert_eq!(moved.kind, RedirectKind::Moved);
        assert_eq!(moved.slot, ferry_ops::key_slot(b"foo"));
        assert_eq!((moved.host.clone(), moved.port), owner(moved.slot));
        let ask = redirect(2);
        assert_eq!(
            (ask.kind, ask.slot),
            (RedirectKind::Ask, ferry_ops::key_slot(b"ask"))
        );
        assert_ne!(ask.port, owner(ask.slot).1, "ASK names the importing node");
        let unknown = redirect(4);
        assert_eq!((unknown.host.as_str(), unknown.port), ("", moved.port));
        let hostname = redirect(5);
        assert_eq!(hostname.host, format!("n{}.ferry.test", moved.port));
        for i in [1, 3] {
            assert_eq!(Redirect::parse(&errors[i]), None);
        }
    }
}

/// Every captured file, truncated or with a byte changed, decodes to
/// something the parsers reject or accept, never a panic.
#[test]
fn damaged_captures_never_panic() {
    let mut files = 0;
    for entry in std::fs::read_dir(common::data_path("")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "resp") {
            continue;
        }
        files += 1;
        let bytes = std::fs::read(&path).unwrap();
        let try_all = |b: &[u8]| {
            if let Ok(Some((v, _))) = ferry_resp::decode(b) {
                let _ = Topology::from_shards(&v, "h");
                let _ = Topology::from_slots(&v, "h");
                if let Some(e) = v.error_message() {
                    let _ = Redirect::parse(e);
                    let _ = ErrorKind::classify(e);
                }
            }
        };
        for i in 0..bytes.len() {
            let mut b = bytes.clone();
            b[i] = b[i].wrapping_add(1 + (i % 7) as u8);
            try_all(&b);
            if i % 3 == 0 {
                try_all(&bytes[..i]);
            }
        }
    }
    assert!(files >= 20, "only {files} captures");
}

#[test]
fn error_reply_instead_of_topology() {
    let v = decode_whole(b"-ERR This instance has cluster support disabled\r\n");
    assert!(matches!(
        Topology::from_shards(&v, "h"),
        Err(TopologyError::ErrorReply { .. })
    ));
    let e = Topology::from_slots(&v, "h").unwrap_err();
    assert_eq!(
        e.to_string(),
        "the node answered with an error: ERR This instance has cluster support disabled"
    );
}

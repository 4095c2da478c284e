use super::*;

fn map_of(m: &SlotMap) -> Vec<(u16, u16, usize)> {
    m.ranges().collect()
}

proptest::proptest! {
    /// The flat per-slot lookup answers what the ranges say, after any
    /// sequence of range and single-slot assignments.
    #[test]
    fn node_for_agrees_with_the_ranges(
        sets in proptest::collection::vec((0u16..=MAX_SLOT, 0u16..64, 0usize..4), 0..24)
    ) {
        let mut m = SlotMap::new();
        for (start, width, node) in sets {
            let end = start.saturating_add(width).min(MAX_SLOT);
            m.set_range(start, end, node).unwrap();
        }
        let mut want = vec![None; usize::from(MAX_SLOT) + 1];
        for (s, e, n) in m.ranges() {
            for slot in s..=e {
                want[usize::from(slot)] = Some(n);
            }
        }
        for slot in 0..=MAX_SLOT {
            proptest::prop_assert_eq!(m.node_for(slot), want[usize::from(slot)]);
        }
    }
}

#[test]
fn slot_map_set_splits_and_merges() {
    let mut m = SlotMap::new();
    assert_eq!(m.uncovered(), [(0, 16383)]);
    assert_eq!(m.node_for(0), None);
    m.set_range(0, 5460, 0).unwrap();
    m.set_range(5461, 10922, 1).unwrap();
    m.set_range(10923, 16383, 2).unwrap();
    assert!(m.is_complete());
    assert_eq!(m.node_for(0), Some(0));
    assert_eq!(m.node_for(5460), Some(0));
    assert_eq!(m.node_for(5461), Some(1));
    assert_eq!(m.node_for(16383), Some(2));
    assert_eq!(m.node_for(16384), None);
    // MOVED in the middle of a range splits it in three.
    m.set(100, 2).unwrap();
    assert_eq!(
        map_of(&m),
        [
            (0, 99, 0),
            (100, 100, 2),
            (101, 5460, 0),
            (5461, 10922, 1),
            (10923, 16383, 2)
        ]
    );
    // Moving it back merges again.
    m.set(100, 0).unwrap();
    assert_eq!(
        map_of(&m),
        [(0, 5460, 0), (5461, 10922, 1), (10923, 16383, 2)]
    );
    // Migrating the edge slot by slot keeps two ranges.
    for s in (5461..=5470).rev() {
        m.set(s, 0).unwrap();
    }
    assert_eq!(
        map_of(&m),
        [(0, 5470, 0), (5471, 10922, 1), (10923, 16383, 2)]
    );
    m.set(16383, 0).unwrap();
    m.set(0, 2).unwrap();
    assert_eq!(
        map_of(&m),
        [
            (0, 0, 2),
            (1, 5470, 0),
            (5471, 10922, 1),
            (10923, 16382, 2),
            (16383, 16383, 0)
        ]
    );
    // A range over several replaces them all.
    m.set_range(3, 16000, 1).unwrap();
    assert_eq!(
        map_of(&m),
        [
            (0, 0, 2),
            (1, 2, 0),
            (3, 16000, 1),
            (16001, 16382, 2),
            (16383, 16383, 0)
        ]
    );
    assert!(m.set(16384, 0).is_err());
    assert!(m.set_range(5, 4, 0).is_err());
}

#[test]
fn uncovered_ranges() {
    let mut m = SlotMap::new();
    m.set_range(10, 20, 0).unwrap();
    m.set_range(21, 30, 1).unwrap();
    m.set_range(100, 16382, 0).unwrap();
    assert_eq!(m.uncovered(), [(0, 9), (31, 99), (16383, 16383)]);
    m.set_range(0, 16383, 3).unwrap();
    assert_eq!(map_of(&m), [(0, 16383, 3)]);
    assert!(m.is_complete());
}

fn b(s: &str) -> Value {
    Value::bulk(s.to_owned())
}

fn slots_entry(start: i64, end: i64, ep: Value, port: i64, id: &str, meta: Value) -> Value {
    Value::Array(vec![
        Value::Integer(start),
        Value::Integer(end),
        Value::Array(vec![ep, Value::Integer(port), b(id), meta]),
    ])
}

#[test]
fn slots_endpoints() {
    let meta = Value::Map(vec![(b("ip"), b("10.0.0.2"))]);
    let reply = Value::Array(vec![
        slots_entry(0, 99, b("h1"), 7000, "a", Value::Array(vec![])),
        slots_entry(100, 199, b("?"), 7001, "b", meta.clone()),
        slots_entry(200, 299, Value::Null, 7002, "c", meta),
        slots_entry(300, 16383, b("?"), 7003, "d", Value::Array(vec![])),
        slots_entry(16000, 16000, b("h1"), 7000, "a", Value::Array(vec![])),
    ]);
    assert_eq!(
        Topology::from_slots(&reply, "seed"),
        Err(TopologyError::Overlap {
            start: 16000,
            end: 16000
        })
    );
    let Value::Array(mut entries) = reply else {
        unreachable!()
    };
    entries.pop();
    let t = Topology::from_slots(&Value::Array(entries), "seed").unwrap();
    let hosts: Vec<String> = t.masters.iter().map(Node::addr).collect();
    assert_eq!(
        hosts,
        ["h1:7000", "10.0.0.2:7001", "seed:7002", "seed:7003"]
    );
    assert_eq!(t.node_for(150).unwrap().id.as_deref(), Some("b"));
}

#[test]
fn malformed_replies_are_errors() {
    let err = Value::Error(Bytes::from_static(
        b"ERR This instance has cluster support disabled",
    ));
    assert!(matches!(
        Topology::from_slots(&err, "h"),
        Err(TopologyError::ErrorReply { .. })
    ));
    assert!(matches!(
        Topology::from_shards(&err, "h"),
        Err(TopologyError::ErrorReply { .. })
    ));
    let cases = [
        Value::Integer(1),
        Value::Array(vec![Value::Integer(1)]),
        Value::Array(vec![Value::Array(vec![
            Value::Integer(0),
            Value::Integer(1),
        ])]),
        Value::Array(vec![slots_entry(0, 16384, b("h"), 1, "a", Value::Null)]),
        Value::Array(vec![slots_entry(5, 4, b("h"), 1, "a", Value::Null)]),
        Value::Array(vec![slots_entry(-1, 4, b("h"), 1, "a", Value::Null)]),
        Value::Array(vec![slots_entry(0, 4, b("h"), 0, "a", Value::Null)]),
        Value::Array(vec![slots_entry(0, 4, b("h"), 65536, "a", Value::Null)]),
        Value::Array(vec![slots_entry(
            0,
            4,
            Value::Integer(3),
            1,
            "a",
            Value::Null,
        )]),
    ];
    for c in &cases {
        assert!(Topology::from_slots(c, "h").is_err(), "{c:?}");
    }
    let shard = |fields: Vec<(Value, Value)>| Value::Array(vec![Value::Map(fields)]);
    let node = |role: &str| {
        Value::Map(vec![
            (b("port"), Value::Integer(1)),
            (b("role"), b(role)),
            (b("ip"), b("i")),
        ])
    };
    let shards = [
        shard(vec![(b("nodes"), Value::Array(vec![]))]),
        shard(vec![
            (b("slots"), Value::Array(vec![Value::Integer(1)])),
            (b("nodes"), Value::Array(vec![])),
        ]),
        shard(vec![
            (
                b("slots"),
                Value::Array(vec![Value::Integer(1), Value::Integer(2)]),
            ),
            (b("nodes"), Value::Array(vec![node("replica")])),
        ]),
        shard(vec![
            (b("slots"), Value::Array(vec![b("x"), Value::Integer(2)])),
            (b("nodes"), Value::Array(vec![node("master")])),
        ]),
    ];
    for c in &shards {
        assert!(Topology::from_shards(c, "h").is_err(), "{c:?}");
    }
    // A slotless shard with only a replica is skipped; a slotless master is listed.
    let ok = Value::Array(vec![
        Value::Map(vec![
            (b("slots"), Value::Array(vec![])),
            (b("nodes"), Value::Array(vec![node("replica")])),
        ]),
        Value::Map(vec![
            (b("slots"), Value::Array(vec![])),
            (b("nodes"), Value::Array(vec![node("master")])),
        ]),
    ]);
    let t = Topology::from_shards(&ok, "h").unwrap();
    assert_eq!(t.masters.len(), 1);
    assert_eq!(t.slots.uncovered(), [(0, 16383)]);
}

#[test]
fn shards_pick_the_tls_port_for_a_tls_client() {
    let reply = |fields: Vec<(Value, Value)>| {
        let mut node = vec![(b("role"), b("master")), (b("ip"), b("127.0.0.1"))];
        node.extend(fields);
        Value::Array(vec![Value::Map(vec![
            (
                b("slots"),
                Value::Array(vec![Value::Integer(0), Value::Integer(16383)]),
            ),
            (b("nodes"), Value::Array(vec![Value::Map(node)])),
        ])])
    };
    let port =
        |r: &Value, tls: bool| Topology::from_shards_with(r, "h", tls).unwrap().masters[0].port;
    let both = reply(vec![
        (b("port"), Value::Integer(7000)),
        (b("tls-port"), Value::Integer(8000)),
    ]);
    assert_eq!(port(&both, false), 7000);
    assert_eq!(port(&both, true), 8000);
    // TLS only (`port 0`): no `port` field.
    let tls_only = reply(vec![(b("tls-port"), Value::Integer(8000))]);
    assert_eq!(port(&tls_only, true), 8000);
    assert_eq!(port(&tls_only, false), 8000);
    let plain = reply(vec![(b("port"), Value::Integer(7000))]);
    assert_eq!(port(&plain, true), 7000);
    assert!(Topology::from_shards_with(&reply(vec![]), "h", true).is_err());
}

#[test]
fn shards_prefers_an_online_master_and_applies_endpoint_rules() {
    let node = |id: &str, ep: &str, health: &str| {
        Value::Array(vec![
            b("id"),
            b(id),
            b("port"),
            Value::Integer(7000),
            b("ip"),
            b("10.0.0.9"),
            b("endpoint"),
            b(ep),
            b("role"),
            b("master"),
            b("health"),
            b(health),
        ])
    };
    let reply = Value::Array(vec![Value::Array(vec![
        b("slots"),
        Value::Array(vec![
            Value::Integer(0),
            Value::Integer(10),
            Value::Integer(20),
            Value::Integer(16383),
        ]),
        b("nodes"),
        Value::Array(vec![
            node("dead", "x", "failed"),
            node("live", "?", "online"),
        ]),
    ])]);
    let t = Topology::from_shards(&reply, "seed").unwrap();
    assert_eq!(t.masters.len(), 1);
    assert_eq!(t.masters[0].id.as_deref(), Some("live"));
    assert_eq!(t.masters[0].host, "10.0.0.9");
    assert_eq!(t.slots.uncovered(), [(11, 19)]);

    // A failed master left without slots after a failover is not a
    // master to connect to; an online one without slots still is.
    let shard = |slots: Vec<Value>, n: Value| {
        Value::Array(vec![
            b("slots"),
            Value::Array(slots),
            b("nodes"),
            Value::Array(vec![n]),
        ])
    };
    let reply = Value::Array(vec![
        shard(
            vec![Value::Integer(0), Value::Integer(16383)],
            node("live", "?", "online"),
        ),
        shard(vec![], node("dead", "x", "failed")),
        shard(vec![], node("empty", "y", "online")),
    ]);
    let t = Topology::from_shards(&reply, "seed").unwrap();
    let ids: Vec<_> = t.masters.iter().map(|m| m.id.as_deref()).collect();
    assert_eq!(ids, [Some("live"), Some("empty")]);
}

#[test]
fn redirects_update_the_map() {
    let mut t = Topology::default();
    t.masters.push(Node {
        id: Some("a".into()),
        host: "h".into(),
        port: 1,
    });
    t.slots.set_range(0, 16383, 0).unwrap();
    let moved = Redirect::parse(b"MOVED 5 :2").unwrap();
    assert_eq!(t.apply_redirect(&moved, "h"), 1);
    assert_eq!(t.node_for(5).unwrap().addr(), "h:2");
    assert_eq!(t.node_for(6).unwrap().addr(), "h:1");
    let ask = Redirect::parse(b"ASK 6 ::1:3").unwrap();
    assert_eq!(t.apply_redirect(&ask, "h"), 2);
    assert_eq!(t.masters[2].addr(), "[::1]:3");
    assert_eq!(t.node_for(6).unwrap().addr(), "h:1");
    assert_eq!(
        t.apply_redirect(&Redirect::parse(b"MOVED 7 h:2").unwrap(), "x"),
        1
    );
}

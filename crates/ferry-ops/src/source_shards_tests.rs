use super::*;

fn b(s: &str) -> Value {
    Value::bulk(s.to_owned())
}

fn node(id: &str, port: i64, role: &str, health: &str) -> Value {
    Value::Map(vec![
        (b("id"), b(id)),
        (b("port"), Value::Integer(port)),
        (b("ip"), b("127.0.0.1")),
        (b("endpoint"), b("127.0.0.1")),
        (b("role"), b(role)),
        (b("health"), b(health)),
    ])
}

fn shard(slots: &[i64], nodes: Vec<Value>) -> Value {
    Value::Map(vec![
        (
            b("slots"),
            Value::Array(slots.iter().map(|s| Value::Integer(*s)).collect()),
        ),
        (b("nodes"), Value::Array(nodes)),
    ])
}

fn three() -> Value {
    Value::Array(vec![
        shard(
            &[10923, 16383],
            vec![
                node("c", 7002, "master", "online"),
                node("c2", 7005, "replica", "online"),
            ],
        ),
        shard(
            &[0, 5460],
            vec![
                node("a2", 7003, "replica", "online"),
                node("a", 7000, "master", "online"),
            ],
        ),
        shard(
            &[5461, 10922],
            vec![
                node("b", 7001, "master", "online"),
                node("b2", 7004, "replica", "fail"),
            ],
        ),
        // A master without slots (e.g. a new node): not a source shard.
        shard(&[], vec![node("d", 7006, "master", "online")]),
    ])
}

#[test]
fn shards_reply_into_source_shards() {
    let s = source_shards(&three(), "127.0.0.1", false).unwrap();
    assert_eq!(s.len(), 3);
    assert_eq!(s[0].ranges, [(0, 5460)]);
    assert_eq!(s[0].master.addr, "127.0.0.1:7000");
    assert_eq!(s[0].replicas[0].addr, "127.0.0.1:7003");
    assert_eq!(s[1].master.id.as_deref(), Some("b"));
    assert!(!s[1].replicas[0].online && s[1].replicas[0].failed);
    assert_eq!(s[1].replica_to_read(), None, "its only replica failed");
    assert_eq!(
        s[0].replica_to_read().map(|r| r.addr.as_str()),
        Some("127.0.0.1:7003")
    );
    assert_eq!(s[2].lowest_slot(), 10923);
    assert_eq!(s[2].node_ids(), ["c", "c2"]);
    assert!(s[2].owns(16383) && !s[2].owns(0));
    assert!(source_shards(&Value::Error("ERR no".into()), "h", false).is_err());
    let bad = Value::Array(vec![shard(&[5, 1], vec![node("a", 1, "master", "online")])]);
    assert!(matches!(
        source_shards(&bad, "h", false),
        Err(TopologyError::BadRange { .. })
    ));
    let no_master = Value::Array(vec![shard(
        &[0, 1],
        vec![node("a", 1, "replica", "online")],
    )]);
    assert!(matches!(
        source_shards(&no_master, "h", false),
        Err(TopologyError::NoMaster { .. })
    ));
}

#[test]
fn slots_reply_groups_ranges_by_master() {
    let n = |port: i64, id: &str| Value::Array(vec![b("127.0.0.1"), Value::Integer(port), b(id)]);
    let e = |s: i64, e: i64, nodes: Vec<Value>| {
        let mut v = vec![Value::Integer(s), Value::Integer(e)];
        v.extend(nodes);
        Value::Array(v)
    };
    let reply = Value::Array(vec![
        e(5461, 10922, vec![n(7001, "b")]),
        e(0, 99, vec![n(7000, "a"), n(7003, "a2")]),
        e(100, 5460, vec![n(7000, "a"), n(7003, "a2")]),
        e(10923, 16383, vec![n(7002, "c")]),
    ]);
    let s = source_shards_from_slots(&reply, "h").unwrap();
    assert_eq!(s.len(), 3);
    assert_eq!(s[0].ranges, [(0, 5460)], "adjacent ranges merged");
    assert_eq!(s[0].replicas.len(), 1);
    assert_eq!(ranges_text(&[(0, 5460), (7000, 7000)]), "0-5460,7000");
}

fn current() -> Vec<SourceShard> {
    source_shards(&three(), "127.0.0.1", false).unwrap()
}

#[test]
fn names_by_lowest_slot_and_stable_on_restart() {
    let (rec, a) = reconcile(None, &current(), None).unwrap();
    let names: Vec<_> = a.iter().map(|a| a.name.as_str()).collect();
    assert_eq!(names, ["shard-0", "shard-5461", "shard-10923"]);
    assert!(a.iter().all(|a| a.selected));
    assert_eq!(rec.shards[1].nodes, ["b", "b2"]);
    assert_eq!(rec.shards[1].addrs, ["127.0.0.1:7001", "127.0.0.1:7004"]);
    assert_eq!(rec.addrs().len(), 6);
    let (rec2, a2) = reconcile(Some(&rec), &current(), None).unwrap();
    assert_eq!(a2, a);
    assert_eq!(rec2, rec);
}

#[test]
fn a_failover_keeps_the_name() {
    let (rec, _) = reconcile(None, &current(), None).unwrap();
    // b2 promoted: it is now the master of 5461-10922, b is gone.
    let mut now = current();
    now[1].master = ShardMember {
        id: Some("b2".into()),
        addr: "127.0.0.1:7004".into(),
        online: true,
        failed: false,
    };
    now[1].replicas.clear();
    let (rec2, a) = reconcile(Some(&rec), &now, None).unwrap();
    assert_eq!(a[1].name, "shard-5461");
    assert_eq!(rec2.shards[1].nodes, ["b2", "b"], "old ids kept");
    // Entirely new node ids: matched by slot overlap.
    let mut fresh = current();
    for (i, s) in fresh.iter_mut().enumerate() {
        s.master.id = Some(format!("new{i}"));
        s.replicas.clear();
    }
    fresh[0].ranges = vec![(0, 6000)];
    fresh[1].ranges = vec![(6001, 10922)];
    let (_, a) = reconcile(Some(&rec), &fresh, None).unwrap();
    let names: Vec<_> = a.iter().map(|a| a.name.as_str()).collect();
    assert_eq!(names, ["shard-0", "shard-5461", "shard-10923"]);
}

#[test]
fn a_new_shard_is_appended_and_positions_stay() {
    let (rec, _) = reconcile(None, &current(), None).unwrap();
    let mut now = current();
    now[2].ranges = vec![(10923, 12000)];
    now.push(SourceShard {
        ranges: vec![(12001, 16383)],
        master: ShardMember {
            id: Some("d".into()),
            addr: "127.0.0.1:7006".into(),
            online: true,
            failed: false,
        },
        replicas: vec![],
    });
    let (rec2, a) = reconcile(Some(&rec), &now, None).unwrap();
    assert_eq!(a[3].name, "shard-12001");
    assert_eq!(a[3].position, 3);
    assert_eq!(rec2.shards.len(), 4);
}

#[test]
fn partition_selection_and_refusals() {
    let p = |index, count| Some(PartitionRecord { index, count });
    let (rec0, a0) = reconcile(None, &current(), p(0, 2)).unwrap();
    let (_, a1) = reconcile(None, &current(), p(1, 2)).unwrap();
    let sel = |a: &[Assigned]| {
        a.iter()
            .filter(|a| a.selected)
            .map(|a| a.name.clone())
            .collect::<Vec<_>>()
    };
    assert_eq!(sel(&a0), ["shard-0", "shard-10923"]);
    assert_eq!(sel(&a1), ["shard-5461"]);
    // The same on restart; another count or index is refused.
    let (_, again) = reconcile(Some(&rec0), &current(), p(0, 2)).unwrap();
    assert_eq!(sel(&again), sel(&a0));
    assert_eq!(
        reconcile(Some(&rec0), &current(), p(0, 3)).unwrap_err(),
        ShardRecordError::CountChanged {
            recorded: 2,
            now: 3
        }
    );
    assert!(matches!(
        reconcile(Some(&rec0), &current(), None),
        Err(ShardRecordError::CountChanged { .. })
    ));
    assert!(matches!(
        reconcile(Some(&rec0), &current(), p(1, 2)),
        Err(ShardRecordError::IndexChanged { .. })
    ));
    // count 1 and no partition are the same thing.
    let (rec, _) = reconcile(None, &current(), None).unwrap();
    assert!(reconcile(Some(&rec), &current(), p(0, 1)).is_ok());
}

#[test]
fn a_loading_replica_is_read_when_none_is_online() {
    let reply = Value::Array(vec![shard(
        &[0, 16383],
        vec![
            node("a", 7000, "master", "online"),
            node("a2", 7001, "replica", "loading"),
            node("a3", 7002, "replica", "fail"),
        ],
    )]);
    let s = source_shards(&reply, "h", false).unwrap();
    let r = s[0].replica_to_read().expect("the loading one");
    assert_eq!(r.id.as_deref(), Some("a2"));
    assert!(!r.online && !r.failed);
}

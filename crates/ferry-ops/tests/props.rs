//! Property tests: per-slot splits are partitions that keep order, the slot
//! map agrees with a flat model, and no input makes anything panic.

use bytes::Bytes;
use ferry_ops::slot::hash_tag;
use ferry_ops::{
    Args, Route, SLOTS, SlotMap, Topology, command_keys, key_slot, route, route_owned,
};
use ferry_resp::Value;
use proptest::prelude::*;

/// Keys that often share slots: a few hash tags, plain names, binary bytes.
fn key() -> impl Strategy<Value = Bytes> {
    prop_oneof![
        (0..4u8, 0..50u16).prop_map(|(t, i)| Bytes::from(format!("{{t{t}}}:{i}"))),
        (0..200u16).prop_map(|i| Bytes::from(format!("k{i}"))),
        proptest::collection::vec(any::<u8>(), 0..12).prop_map(Bytes::from),
    ]
}

fn b(s: &str) -> Bytes {
    Bytes::copy_from_slice(s.as_bytes())
}

/// Checks that `route` split `keys` (each followed by its value for MSET)
/// into single-slot groups that partition them in order.
fn check_split(name: &str, out_name: &str, keys: &[Bytes], pairs: bool, args: &[Bytes]) {
    let groups = match route(args).unwrap() {
        Route::Slot(slot, out) => {
            assert!(keys.iter().all(|k| key_slot(k) == slot));
            assert_eq!(&out[0][..], out_name.as_bytes());
            assert_eq!(&out[1..], &args[1..]);
            return;
        }
        Route::PerSlot(groups) => groups,
        other => panic!("{name}: {other:?}"),
    };
    assert!(groups.len() >= 2);
    let mut seen_slots = Vec::new();
    let mut total = 0;
    for (slot, cmd) in &groups {
        assert!(!seen_slots.contains(slot), "slot {slot} twice");
        seen_slots.push(*slot);
        assert_eq!(&cmd[0][..], out_name.as_bytes());
        let body = &cmd[1..];
        // Exactly the original keys of this slot, in original order (with values).
        let expected: Vec<Bytes> = (0..keys.len())
            .filter(|&i| key_slot(&keys[i]) == *slot)
            .flat_map(|i| {
                let mut v = vec![keys[i].clone()];
                if pairs {
                    v.push(args[2 + 2 * i].clone());
                }
                v
            })
            .collect();
        assert_eq!(body, &expected[..]);
        total += expected.len();
    }
    assert_eq!(total, args.len() - 1, "a partition of the arguments");
    // The first-seen order of slots is kept.
    let mut first_seen = Vec::new();
    for k in keys {
        let s = key_slot(k);
        if !first_seen.contains(&s) {
            first_seen.push(s);
        }
    }
    assert_eq!(seen_slots, first_seen);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn mset_split_is_an_ordered_partition(
        kvs in proptest::collection::vec((key(), any::<u32>()), 1..40),
        nx in any::<bool>(),
    ) {
        let name = if nx { "MSETNX" } else { "MSET" };
        let mut args = vec![b(name)];
        let mut keys = Vec::new();
        for (k, v) in &kvs {
            args.push(k.clone());
            args.push(Bytes::from(v.to_string()));
            keys.push(k.clone());
        }
        check_split(name, "MSET", &keys, true, &args);
    }

    #[test]
    fn msetex_split_keeps_options_minus_conditions(
        kvs in proptest::collection::vec((key(), prop_oneof![Just("NX".to_owned()), any::<u16>().prop_map(|v| v.to_string())]), 1..30),
        cond in proptest::sample::select(vec!["", "NX", "XX"]),
        expiry in proptest::sample::select(vec!["", "PXAT 1795613834495", "KEEPTTL"]),
    ) {
        let mut args = vec![b("MSETEX"), Bytes::from(kvs.len().to_string())];
        for (k, v) in &kvs {
            args.push(k.clone());
            args.push(b(v));
        }
        let options: Vec<Bytes> = expiry.split(' ').filter(|o| !o.is_empty()).map(b).collect();
        args.extend(cond.split(' ').filter(|o| !o.is_empty()).map(b));
        args.extend(options.iter().cloned());
        let groups = match route(&args).unwrap() {
            Route::Slot(slot, out) => vec![(slot, out.into_vec())],
            Route::PerSlot(groups) => groups,
            other => panic!("{other:?}"),
        };
        let mut rebuilt = Vec::new();
        for (slot, cmd) in &groups {
            prop_assert_eq!(&cmd[0][..], b"MSETEX");
            let n: usize = std::str::from_utf8(&cmd[1]).unwrap().parse().unwrap();
            prop_assert_eq!(&cmd[2 + 2 * n..], &options[..]);
            for pair in cmd[2..2 + 2 * n].chunks(2) {
                prop_assert_eq!(key_slot(&pair[0]), *slot);
                rebuilt.push((pair[0].clone(), pair[1].clone()));
            }
        }
        // Same pairs, in original order within each slot.
        for (slot, _) in &groups {
            let ours: Vec<_> = rebuilt.iter().filter(|(k, _)| key_slot(k) == *slot).cloned().collect();
            let orig: Vec<_> = kvs.iter().filter(|(k, _)| key_slot(k) == *slot).map(|(k, v)| (k.clone(), b(v))).collect();
            prop_assert_eq!(ours, orig);
        }
        prop_assert_eq!(rebuilt.len(), kvs.len());
    }

    #[test]
    fn del_split_is_an_ordered_partition(
        keys in proptest::collection::vec(key(), 1..60),
        which in 0..3usize,
    ) {
        let name = ["DEL", "UNLINK", "touch"][which];
        let mut args = vec![b(name)];
        args.extend(keys.iter().cloned());
        check_split(name, name, &keys, false, &args);
    }

    #[test]
    fn hash_tag_decides_the_slot(tag in proptest::collection::vec(any::<u8>().prop_filter("no }", |c| *c != b'}'), 1..10),
                                 prefix in proptest::collection::vec(any::<u8>().prop_filter("no {", |c| *c != b'{'), 0..10),
                                 suffix in proptest::collection::vec(any::<u8>(), 0..10)) {
        let mut k = prefix.clone();
        k.push(b'{');
        k.extend(&tag);
        k.push(b'}');
        k.extend(&suffix);
        prop_assert_eq!(hash_tag(&k), &tag[..]);
        prop_assert_eq!(key_slot(&k), key_slot(&tag));
        prop_assert!(key_slot(&k) < SLOTS);
    }

    #[test]
    fn slot_map_matches_a_flat_model(ops in proptest::collection::vec((0..16384u16, 0..600u16, 0..4usize), 1..60)) {
        let mut map = SlotMap::new();
        let mut model: Vec<Option<usize>> = vec![None; usize::from(SLOTS)];
        for (start, len, node) in ops {
            let end = start.saturating_add(len).min(16383);
            map.set_range(start, end, node).unwrap();
            for s in start..=end {
                model[usize::from(s)] = Some(node);
            }
        }
        for s in 0..SLOTS {
            prop_assert_eq!(map.node_for(s), model[usize::from(s)], "slot {}", s);
        }
        // Ranges are sorted, disjoint, and maximal (neighbours differ).
        let ranges: Vec<_> = map.ranges().collect();
        for w in ranges.windows(2) {
            prop_assert!(w[0].1 < w[1].0);
            prop_assert!(w[0].1 + 1 != w[1].0 || w[0].2 != w[1].2, "unmerged {:?}", w);
        }
        let mut gaps = Vec::new();
        let mut s = 0usize;
        while s < model.len() {
            if model[s].is_none() {
                let lo = s;
                while s < model.len() && model[s].is_none() { s += 1; }
                gaps.push((lo as u16, (s - 1) as u16));
            } else {
                s += 1;
            }
        }
        prop_assert_eq!(map.uncovered(), gaps);
    }

    #[test]
    fn routing_never_panics(
        name in prop_oneof![
            proptest::sample::select(ferry_ops::keys::table().iter().map(|(n, _)| *n).collect::<Vec<_>>()).prop_map(b),
            proptest::collection::vec(any::<u8>(), 0..30).prop_map(Bytes::from),
        ],
        rest in proptest::collection::vec(prop_oneof![
            key(),
            (0..5u8).prop_map(|n| Bytes::from(n.to_string())),
            proptest::sample::select(vec!["STORE", "STOREDIST", "LIMIT", "BY", "GET", "DB", "CREATE", "LOAD", "-1", "NX", "xx"]).prop_map(b),
        ], 0..12),
    ) {
        let mut args = vec![name];
        args.extend(rest);
        if let Ok(keys) = command_keys(&args) {
            prop_assert!(keys.indexes.iter().all(|&i| i > 0 && i < args.len()));
            prop_assert!(keys.indexes.windows(2).all(|w| w[0] != w[1]));
        }
        let copied = route(&args);
        // The owning variant routes the same; only a one-slot route takes
        // the arguments.
        let mut owned_args = Args::from(&args[..]);
        let owned = route_owned(&mut owned_args);
        prop_assert_eq!(&owned, &copied);
        if !matches!(owned, Ok(Route::Slot(..))) {
            prop_assert_eq!(&owned_args[..], &args[..]);
        }
    }

    #[test]
    fn topology_parsers_never_panic(v in value()) {
        let _ = Topology::from_shards(&v, "h");
        let _ = Topology::from_slots(&v, "h");
    }

    #[test]
    fn redirect_and_classify_never_panic(e in proptest::collection::vec(any::<u8>(), 0..40)) {
        let _ = ferry_ops::Redirect::parse(&e);
        let _ = ferry_ops::ErrorKind::classify(&e);
    }
}

/// Replies shaped roughly like topology replies, with random leaves.
fn value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        (-2i64..17000).prop_map(Value::Integer),
        proptest::sample::select(vec![
            "slots", "nodes", "id", "port", "tls-port", "ip", "endpoint", "role", "master",
            "health", "online", "?", "", "h",
        ])
        .prop_map(|s| Value::bulk(s.to_owned())),
        Just(Value::Null),
        Just(Value::Error(Bytes::from_static(b"ERR x"))),
    ];
    leaf.prop_recursive(4, 64, 8, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..8).prop_map(Value::Array),
            proptest::collection::vec((inner.clone(), inner), 0..6).prop_map(Value::Map),
        ]
    })
}

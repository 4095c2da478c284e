use proptest::prelude::*;

use super::*;
use crate::cluster_nodes::parse_cluster_nodes;

const S: Duration = Duration::from_secs(1);

fn master(id: &str, ranges: &[(u16, u16)]) -> MasterView {
    MasterView {
        id: id.to_owned(),
        addr: Some(format!("h:{}", id.len())),
        slots: SlotSet::from_ranges(ranges),
        replicas: vec![format!("{id}-r")],
        failed: false,
    }
}

fn snap(masters: Vec<MasterView>, moving: &[(u16, u16)]) -> Snapshot {
    Snapshot {
        masters,
        moving: SlotSet::from_ranges(moving),
    }
}

fn three() -> Vec<MasterView> {
    vec![
        master("a", &[(0, 5460)]),
        master("b", &[(5461, 10922)]),
        master("c", &[(10923, 16383)]),
    ]
}

fn gates(actions: &[WatchAction]) -> Vec<(String, String)> {
    actions
        .iter()
        .filter_map(|a| match a {
            WatchAction::Gate { shard, slots } => Some((shard.clone(), slots.to_string())),
            _ => None,
        })
        .collect()
}

fn resyncs(actions: &[WatchAction]) -> Vec<(String, String)> {
    actions
        .iter()
        .filter_map(|a| match a {
            WatchAction::Resync { shard, gained } => Some((shard.clone(), gained.to_string())),
            _ => None,
        })
        .collect()
}

fn pair(a: &str, b: &str) -> (String, String) {
    (a.to_owned(), b.to_owned())
}

#[test]
fn first_snapshot_names_shards_and_sets_gates() {
    let mut w = SourceWatch::new(DEFAULT_SETTLE);
    let a = w.observe(Duration::ZERO, &snap(three(), &[]));
    assert_eq!(
        gates(&a),
        [
            pair("shard-0", "0-5460"),
            pair("shard-5461", "5461-10922"),
            pair("shard-10923", "10923-16383"),
        ]
    );
    assert_eq!(a.len(), 3, "no resync, no status edge: {a:?}");
    assert!(w.observe(S, &snap(three(), &[])).is_empty());
    assert!(!w.resharding());
}

#[test]
fn a_legacy_move_resyncs_the_gaining_shard_once_after_the_settle() {
    let mut w = SourceWatch::new(DEFAULT_SETTLE);
    w.observe(Duration::ZERO, &snap(three(), &[]));
    // Slots 0-999 MIGRATING/IMPORTING, then moved to b.
    let a = w.observe(S, &snap(three(), &[(0, 999)]));
    assert_eq!(a, [WatchAction::Resharding(true)]);
    assert!(w.observe(2 * S, &snap(three(), &[(0, 999)])).is_empty());
    let moved = vec![
        master("a", &[(1000, 5460)]),
        master("b", &[(0, 999), (5461, 10922)]),
        master("c", &[(10923, 16383)]),
    ];
    let a = w.observe(3 * S, &snap(moved.clone(), &[]));
    assert_eq!(
        gates(&a),
        [
            pair("shard-0", "1000-5460"),
            pair("shard-5461", "0-999,5461-10922")
        ]
    );
    assert!(resyncs(&a).is_empty());
    assert_eq!(w.pending(), ["shard-5461"]);
    assert!(w.observe(7 * S, &snap(moved.clone(), &[])).is_empty());
    let a = w.observe(8 * S, &snap(moved.clone(), &[]));
    assert_eq!(resyncs(&a), [pair("shard-5461", "0-999")]);
    assert_eq!(a.last(), Some(&WatchAction::Resharding(false)));
    assert!(w.observe(9 * S, &snap(moved.clone(), &[])).is_empty());
    assert!(w.observe(60 * S, &snap(moved, &[])).is_empty());
}

#[test]
fn several_moves_in_one_quiet_period_give_one_resync_per_shard() {
    let mut w = SourceWatch::new(DEFAULT_SETTLE);
    w.observe(Duration::ZERO, &snap(three(), &[]));
    let step1 = vec![
        master("a", &[(100, 5460)]),
        master("b", &[(0, 99), (5461, 10922)]),
        master("c", &[(10923, 16383)]),
    ];
    let step2 = vec![
        master("a", &[(200, 5460)]),
        master("b", &[(0, 99), (5461, 10922)]),
        master("c", &[(100, 199), (10923, 16383)]),
    ];
    let step3 = vec![
        master("a", &[(200, 5460)]),
        master("b", &[(0, 99), (5461, 10000)]),
        master("c", &[(100, 199), (10001, 16383)]),
    ];
    let mut all = Vec::new();
    all.extend(w.observe(S, &snap(step1, &[])));
    all.extend(w.observe(3 * S, &snap(step2, &[(10001, 10001)])));
    all.extend(w.observe(6 * S, &snap(step3.clone(), &[])));
    assert!(resyncs(&all).is_empty(), "{all:?}");
    for t in 7..11 {
        assert!(resyncs(&w.observe(t * S, &snap(step3.clone(), &[]))).is_empty());
    }
    let a = w.observe(11 * S, &snap(step3, &[]));
    assert_eq!(
        resyncs(&a),
        [
            pair("shard-5461", "0-99"),
            pair("shard-10923", "100-199,10001-10922")
        ]
    );
}

#[test]
fn markers_after_a_move_hold_the_resync_back() {
    let mut w = SourceWatch::new(DEFAULT_SETTLE);
    w.observe(Duration::ZERO, &snap(three(), &[]));
    let moved = vec![
        master("a", &[(10, 5460)]),
        master("b", &[(0, 9), (5461, 10922)]),
        master("c", &[(10923, 16383)]),
    ];
    w.observe(S, &snap(moved.clone(), &[]));
    for t in 4..=7 {
        assert!(resyncs(&w.observe(t * S, &snap(moved.clone(), &[(20, 20)]))).is_empty());
    }
    assert!(w.resharding());
    assert!(resyncs(&w.observe(11 * S, &snap(moved.clone(), &[]))).is_empty());
    let a = w.observe(12 * S, &snap(moved, &[]));
    assert_eq!(resyncs(&a), [pair("shard-5461", "0-9")]);
    assert!(!w.resharding());
}

#[test]
fn a_failover_is_a_master_change_not_a_resync() {
    let mut w = SourceWatch::new(DEFAULT_SETTLE);
    w.observe(Duration::ZERO, &snap(three(), &[]));
    // b's replica takes over; b comes back as its replica.
    let mut after = three();
    after[1] = master("b-r", &[(5461, 10922)]);
    after[1].replicas = vec!["b".into()];
    let a = w.observe(S, &snap(after.clone(), &[]));
    assert_eq!(
        a,
        [WatchAction::MasterChanged {
            shard: "shard-5461".into(),
            id: "b-r".into(),
            addr: Some("h:3".into()),
        }]
    );
    assert!(w.observe(10 * S, &snap(after, &[])).is_empty());
}

#[test]
fn a_killed_master_still_listed_as_failed_is_replaced_by_its_replica() {
    let mut w = SourceWatch::new(DEFAULT_SETTLE);
    w.observe(Duration::ZERO, &snap(three(), &[]));
    // b is killed: marked failed (its slots still listed), then b-r takes them
    // while b stays listed as a failed master without slots.
    let mut failing = three();
    failing[1].failed = true;
    assert!(w.observe(S, &snap(failing, &[])).is_empty());
    let mut after = three();
    after[1] = master("b-r", &[(5461, 10922)]);
    after[1].replicas = vec![];
    let mut dead = master("b", &[]);
    dead.failed = true;
    after.push(dead);
    let a = w.observe(2 * S, &snap(after.clone(), &[]));
    assert_eq!(
        a,
        [WatchAction::MasterChanged {
            shard: "shard-5461".into(),
            id: "b-r".into(),
            addr: Some("h:3".into()),
        }]
    );
    assert!(w.observe(10 * S, &snap(after, &[])).is_empty());
    assert!(w.pending().is_empty() && !w.resharding());
}

#[test]
fn an_unknown_promoted_node_is_matched_by_slot_overlap() {
    let mut w = SourceWatch::new(DEFAULT_SETTLE);
    w.observe(Duration::ZERO, &snap(three(), &[]));
    let mut after = three();
    after[2] = master("zz", &[(10923, 16383)]);
    let a = w.observe(S, &snap(after, &[]));
    assert!(
        matches!(&a[..], [WatchAction::MasterChanged { shard, id, .. }]
        if shard == "shard-10923" && id == "zz")
    );
}

#[test]
fn known_shards_resync_what_they_gained_while_ferry_was_down() {
    let known = vec![
        KnownShard {
            name: "shard-0".into(),
            node_ids: vec!["a".into()],
            slots: SlotSet::from_ranges(&[(0, 5000)]),
            followed: true,
        },
        KnownShard {
            name: "shard-5001".into(),
            node_ids: vec!["old".into(), "b".into()],
            slots: SlotSet::from_ranges(&[(5001, 10922)]),
            followed: false,
        },
    ];
    let mut w = SourceWatch::with_shards(DEFAULT_SETTLE, known);
    let a = w.observe(Duration::ZERO, &snap(three(), &[]));
    assert_eq!(
        gates(&a),
        [
            pair("shard-0", "0-5460"),
            pair("shard-5001", "5461-10922"),
            pair("shard-10923", "10923-16383"),
        ]
    );
    assert!(
        a.iter()
            .any(|x| matches!(x, WatchAction::Unfollowed { shard, id, .. }
        if shard == "shard-10923" && id == "c"))
    );
    assert!(a.contains(&WatchAction::Resharding(true)));
    assert_eq!(w.pending(), ["shard-0"], "shard-5001 is another process's");
    let a = w.observe(5 * S, &snap(three(), &[]));
    assert_eq!(resyncs(&a), [pair("shard-0", "5001-5460")]);
}

#[test]
fn an_added_master_is_unfollowed_and_never_resynced() {
    let mut w = SourceWatch::new(DEFAULT_SETTLE);
    let mut four = three();
    four.push(master("d", &[]));
    w.observe(Duration::ZERO, &snap(four, &[]));
    let after = vec![
        master("a", &[(1000, 5460)]),
        master("b", &[(5461, 10922)]),
        master("c", &[(10923, 16383)]),
        master("d", &[(0, 999)]),
    ];
    let a = w.observe(S, &snap(after.clone(), &[]));
    assert!(
        a.iter()
            .any(|x| matches!(x, WatchAction::Unfollowed { slots, .. }
        if slots.to_string() == "0-999"))
    );
    assert_eq!(gates(&a)[0], pair("shard-0", "1000-5460"));
    let a = w.observe(10 * S, &snap(after, &[]));
    assert!(resyncs(&a).is_empty());
    assert_eq!(a, [WatchAction::Resharding(false)]);
}

#[test]
fn snapshot_from_cluster_nodes_text() {
    let text = "\
r1 127.0.0.1:7003@17003 slave m1 0 0 1 connected
m1 127.0.0.1:7000@17000 myself,master - 0 0 1 connected 0-8191 [8192-<-m2]
m2 127.0.0.1:7001@17001 master - 0 0 2 connected 8192-16383
";
    let lines = parse_cluster_nodes(text).unwrap();
    let mut s = Snapshot::from_nodes(&lines);
    assert_eq!(s.masters.len(), 2);
    assert_eq!(s.masters[0].replicas, ["r1"]);
    assert_eq!(s.masters[1].addr.as_deref(), Some("127.0.0.1:7001"));
    assert_eq!(s.moving.to_string(), "8192");
    s.add_migrations(&[
        SlotMigration {
            name: "j".into(),
            operation: "EXPORT".into(),
            slots: vec![(1, 2)],
            state: "snapshotting".into(),
        },
        SlotMigration {
            name: "k".into(),
            operation: "EXPORT".into(),
            slots: vec![(5, 5)],
            state: "success".into(),
        },
    ]);
    assert_eq!(s.moving.to_string(), "1-2,8192");
}

/// One random move: slots `[lo, lo+len)` to master `to`, announced by
/// `markers` observations with markers, followed by `gap` seconds.
#[derive(Debug, Clone)]
struct Move {
    to: usize,
    lo: u16,
    len: u16,
    markers: u8,
    gap: u8,
}

fn moves() -> impl Strategy<Value = Vec<Move>> {
    prop::collection::vec(
        (0..3usize, 0..16383u16, 1..2000u16, 0..3u8, 0..8u8).prop_map(
            |(to, lo, len, markers, gap)| Move {
                to,
                lo,
                len,
                markers,
                gap,
            },
        ),
        0..12,
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Any sequence of moves ends with every slot owned by exactly one
    /// shard (as the source says) and every gaining shard resynced once
    /// after its last gain; no resync while slots move or before the settle.
    #[test]
    fn moves_end_partitioned_and_resynced(seq in moves()) {
        let ids = ["a", "b", "c"];
        let mut owner: Vec<usize> = (0..16384u32).map(|s| (s * 3 / 16384) as usize).collect();
        let view = |owner: &[usize]| -> Vec<MasterView> {
            (0..3).map(|m| {
                let mut slots = SlotSet::new();
                (0..16384u16).filter(|s| owner[*s as usize] == m).for_each(|s| slots.insert(s));
                MasterView { id: ids[m].into(), addr: None, slots, replicas: vec![], failed: false }
            }).collect()
        };
        let mut w = SourceWatch::new(DEFAULT_SETTLE);
        let mut t = Duration::ZERO;
        let first = w.observe(t, &snap(view(&owner), &[]));
        let names: Vec<String> = gates(&first).into_iter().map(|(n, _)| n).collect();
        prop_assert_eq!(names.len(), 3);
        let mut gained_since: Vec<bool> = vec![false; 3];
        let mut last_move = Duration::ZERO;
        let check = |w: &mut SourceWatch, t: Duration, s: &Snapshot,
                         gained_since: &mut Vec<bool>, last_move: Duration|
         -> Result<(), TestCaseError> {
            for (shard, _) in resyncs(&w.observe(t, s)) {
                let i = names.iter().position(|n| *n == shard).unwrap();
                prop_assert!(gained_since[i], "{} resynced without a gain", shard);
                prop_assert!(s.moving.is_empty() && t - last_move >= DEFAULT_SETTLE);
                gained_since[i] = false;
            }
            Ok(())
        };
        for m in &seq {
            let hi = (m.lo as u32 + m.len as u32).min(16384) as u16 - 1;
            for _ in 0..m.markers {
                t += S;
                last_move = t;
                check(&mut w, t, &snap(view(&owner), &[(m.lo, hi)]), &mut gained_since, last_move)?;
            }
            t += S;
            for s in m.lo..=hi {
                if owner[s as usize] != m.to {
                    owner[s as usize] = m.to;
                    gained_since[m.to] = true;
                    last_move = t;
                }
            }
            check(&mut w, t, &snap(view(&owner), &[]), &mut gained_since, last_move)?;
            t += Duration::from_secs(m.gap.into());
            check(&mut w, t, &snap(view(&owner), &[]), &mut gained_since, last_move)?;
        }
        t += DEFAULT_SETTLE;
        check(&mut w, t, &snap(view(&owner), &[]), &mut gained_since, last_move)?;
        t += S;
        check(&mut w, t, &snap(view(&owner), &[]), &mut gained_since, last_move)?;
        prop_assert!(gained_since.iter().all(|g| !g), "gains left unresynced: {:?}", gained_since);
        prop_assert!(!w.resharding());
        prop_assert!(w.pending().is_empty());
        let mut seen = SlotSet::new();
        for (i, (name, slots)) in w.shards().into_iter().enumerate() {
            prop_assert_eq!(&name, &names[i]);
            prop_assert!(seen.intersection(&slots).is_empty(), "slots owned twice");
            prop_assert_eq!(&slots, &view(&owner)[i].slots);
            seen.union_with(&slots);
        }
        prop_assert_eq!(seen.len(), 16384);
    }
}

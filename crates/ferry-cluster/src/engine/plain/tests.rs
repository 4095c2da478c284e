//! The families of replay-safe ops, and a model of a slot's replay after
//! crashes that checks the rule they follow (`docs/decisions.md` D97).

use std::collections::{BTreeMap, BTreeSet};

use bytes::Bytes;
use proptest::prelude::*;

use super::*;

fn cmd(words: &[&str]) -> Vec<Bytes> {
    words
        .iter()
        .map(|w| Bytes::copy_from_slice(w.as_bytes()))
        .collect()
}

#[test]
fn assignments_have_their_family_in_any_case() {
    for (c, f) in [
        (&["SET", "k", "v"][..], Family::Strings),
        (&["set", "k", "v"], Family::Strings),
        (&["SET", "k", "v", "PXAT", "1700000000000"], Family::Strings),
        (&["SET", "k", "v", "pxat", "1"], Family::Strings),
        (&["DEL", "k"], Family::Any),
        (&["del", "a", "b"], Family::Any),
        (&["UNLINK", "k", "j"], Family::Any),
        (&["PEXPIREAT", "k", "1700000000000"], Family::Any),
        (&["EXPIREAT", "k", "1700000000"], Family::Any),
        (&["PERSIST", "k"], Family::Any),
        (&["HSET", "k", "f", "v"], Family::Hashes),
        (&["hset", "k", "f", "v", "g", "w"], Family::Hashes),
        (&["HMSET", "k", "f", "v"], Family::Hashes),
        (&["SADD", "k", "m"], Family::Sets),
        (&["sadd", "k", "m", "n"], Family::Sets),
        (&["ZADD", "k", "1", "m"], Family::Zsets),
        (&["ZADD", "k", "-inf", "m", "2.5", "n"], Family::Zsets),
    ] {
        assert_eq!(family(&cmd(c)), Some(f), "{c:?}");
    }
}

#[test]
fn conditional_relative_partial_and_counting_ops_have_none() {
    for c in [
        &[][..],
        &["SET"],
        &["SET", "k"],
        &["SET", "k", "v", "NX"],
        &["SET", "k", "v", "GET"],
        &["SET", "k", "v", "EX", "10"],
        &["SET", "k", "v", "PX", "10"],
        &["SET", "k", "v", "KEEPTTL"],
        &["SET", "k", "v", "PXAT", "1", "XX"],
        &["PEXPIREAT", "k", "1", "GT"],
        &["EXPIREAT", "k"],
        &["PERSIST"],
        &["PERSIST", "k", "j"],
        &["DEL"],
        &["UNLINK"],
        &["INCR", "k"],
        &["APPEND", "k", "v"],
        &["LPUSH", "k", "v"],
        &["HSET", "k"],
        &["HSET", "k", "f"],
        &["HSET", "k", "f", "v", "g"],
        &["HSETNX", "k", "f", "v"],
        &["HINCRBY", "k", "f", "1"],
        &["HDEL", "k", "f"],
        &["SADD", "k"],
        &["SREM", "k", "m"],
        &["SMOVE", "a", "b", "m"],
        &["ZADD", "k", "1"],
        &["ZADD", "k", "NX", "1", "m"],
        &["ZADD", "k", "xx", "ch", "1", "m"],
        &["ZADD", "k", "CH", "1", "m"],
        &["ZADD", "k", "INCR", "1", "m"],
        &["ZADD", "k", "GT", "1", "m", "2", "n"],
        &["ZREM", "k", "m"],
        &["ZINCRBY", "k", "1", "m"],
        &["PEXPIRE", "k", "10"],
        &["SETNX", "k", "v"],
        &["RENAME", "a", "b"],
    ] {
        assert_eq!(family(&cmd(c)), None, "{c:?}");
    }
}

#[test]
fn any_adds_nothing_and_strings_may_turn_into_a_collection_family() {
    use Family::*;
    let all = [Any, Strings, Hashes, Sets, Zsets];
    for f in all {
        assert_eq!(Any.then(f), Some(f));
        assert_eq!(f.then(Any), Some(f));
        assert_eq!(f.then(f), Some(f));
        assert_eq!(
            Strings.then(f),
            Some(f).filter(|f| *f != Any).or(Some(Strings))
        );
    }
    for a in [Hashes, Sets, Zsets] {
        for b in all.into_iter().filter(|b| ![Any, a].contains(b)) {
            assert_eq!(a.then(b), None, "{a:?} then {b:?}");
        }
    }
}

#[test]
fn a_slot_run_keeps_one_family_until_a_transaction() {
    let mut runs = Runs::new();
    let (hset, set) = (cmd(&["HSET", "k", "f", "v"]), cmd(&["SET", "k", "x"]));
    let del = cmd(&["DEL", "k"]);
    assert!(runs.plain(7, [&hset[..], &del[..]]));
    // `HSET k f v; SET k x` replayed over its result would fail, also
    // when the group's `SET` comes before an `HSET` of its own.
    assert!(!runs.plain(7, [&set[..]]));
    assert!(runs.plain(7, [&hset[..]]));
    assert!(!runs.plain(7, [&set[..], &hset[..]]));
    // Strings then a hash, not back: replayed from the position after
    // `DEL`, the `HSET` would meet the second `SET`.
    assert!(runs.plain(7, [&set[..], &del[..], &hset[..]]));
    assert!(!runs.plain(7, [&set[..]]));
    // The transaction restarted the run; other slots have their own.
    assert!(runs.plain(7, [&set[..]]));
    assert!(runs.plain(8, [&hset[..]]));
    assert!(!runs.plain(8, [&set[..], &cmd(&["INCR", "n"])[..]]));
    assert!(runs.plain(8, [&set[..]]));
}

#[test]
fn a_run_follows_each_key_on_its_own() {
    let mut runs = Runs::new();
    let hset = cmd(&["HSET", "k", "f", "v"]);
    // Another key of the slot may be a string after `k` became a hash.
    assert!(runs.plain(7, [&hset[..]]));
    assert!(runs.plain(7, [&cmd(&["SET", "j", "x"])[..]]));
    assert!(runs.plain(7, [&cmd(&["SADD", "s", "m"])[..], &hset[..]]));
    assert!(!runs.plain(7, [&cmd(&["ZADD", "s", "1", "m"])[..]]));
    // Strings take no entry: a run of them never ends.
    let sets: Vec<Vec<Bytes>> = (0..100)
        .map(|i| cmd(&["SET", &format!("k{i}"), "v"]))
        .collect();
    assert!(runs.plain(8, sets.iter().map(Vec::as_slice)));
    // At most `RUN_KEYS` keys of a collection family: the next one ends
    // the run.
    let keys: Vec<Vec<Bytes>> = (0..RUN_KEYS)
        .map(|i| cmd(&["SADD", &format!("s{i}"), "m"]))
        .collect();
    assert!(runs.plain(9, keys.iter().map(Vec::as_slice)));
    assert!(runs.plain(9, [&keys[0][..]]));
    assert!(!runs.plain(9, [&cmd(&["SADD", "one-more", "m"])[..]]));
    assert!(runs.plain(9, [&cmd(&["SADD", "one-more", "m"])[..]]));
}

// The model: one slot, two keys, values that fit in a byte, TTLs as
// numbers (no clock: every TTL is in the future).

#[derive(Debug, Clone, PartialEq, Eq)]
enum Value {
    Str(u8),
    Hash(BTreeMap<u8, u8>),
    Set(BTreeSet<u8>),
    Zset(BTreeMap<u8, u8>),
}

type State = BTreeMap<u8, (Value, Option<u8>)>;

#[derive(Debug, Clone)]
enum ModelOp {
    Set(u8, u8),
    SetPxat(u8, u8, u8),
    Del(u8),
    Unlink(u8, u8),
    Pexpireat(u8, u8),
    Persist(u8),
    Hset(u8, u8, u8),
    Sadd(u8, u8),
    Zadd(u8, u8, u8),
    Incr(u8),
    Hdel(u8, u8),
    Srem(u8, u8),
}

fn key(k: u8) -> String {
    format!("k{k}")
}

impl ModelOp {
    fn args(&self) -> Vec<Bytes> {
        let words: Vec<String> = match *self {
            ModelOp::Set(k, v) => vec!["SET".into(), key(k), v.to_string()],
            ModelOp::SetPxat(k, v, t) => {
                let t = t.to_string();
                vec!["SET".into(), key(k), v.to_string(), "PXAT".into(), t]
            }
            ModelOp::Del(k) => vec!["DEL".into(), key(k)],
            ModelOp::Unlink(a, b) => vec!["UNLINK".into(), key(a), key(b)],
            ModelOp::Pexpireat(k, t) => vec!["PEXPIREAT".into(), key(k), t.to_string()],
            ModelOp::Persist(k) => vec!["PERSIST".into(), key(k)],
            ModelOp::Hset(k, f, v) => vec!["HSET".into(), key(k), f.to_string(), v.to_string()],
            ModelOp::Sadd(k, m) => vec!["SADD".into(), key(k), m.to_string()],
            ModelOp::Zadd(k, s, m) => vec!["ZADD".into(), key(k), s.to_string(), m.to_string()],
            ModelOp::Incr(k) => vec!["INCR".into(), key(k)],
            ModelOp::Hdel(k, f) => vec!["HDEL".into(), key(k), f.to_string()],
            ModelOp::Srem(k, m) => vec!["SREM".into(), key(k), m.to_string()],
        };
        words.into_iter().map(Bytes::from).collect()
    }

    /// Applies the op as the server does; `Err` is `WRONGTYPE`. `source`:
    /// an op the source would not propagate (an expiry change of a
    /// missing key) is refused too, so that it is never generated.
    fn apply(&self, s: &mut State, source: bool) -> Result<(), ()> {
        /// `k`'s value, `new` if it had none.
        fn entry(s: &mut State, k: u8, new: Value) -> &mut Value {
            &mut s.entry(k).or_insert((new, None)).0
        }
        match *self {
            ModelOp::Set(k, v) => drop(s.insert(k, (Value::Str(v), None))),
            ModelOp::SetPxat(k, v, t) => drop(s.insert(k, (Value::Str(v), Some(t)))),
            ModelOp::Del(k) => drop(s.remove(&k)),
            ModelOp::Unlink(a, b) => drop((s.remove(&a), s.remove(&b))),
            ModelOp::Pexpireat(k, t) => match s.get_mut(&k) {
                Some((_, ttl)) => *ttl = Some(t),
                None if source => return Err(()),
                None => {}
            },
            ModelOp::Persist(k) => match s.get_mut(&k) {
                Some((_, ttl)) => *ttl = None,
                None if source => return Err(()),
                None => {}
            },
            ModelOp::Hset(k, f, v) => match entry(s, k, Value::Hash(BTreeMap::new())) {
                Value::Hash(h) => drop(h.insert(f, v)),
                _ => return Err(()),
            },
            ModelOp::Sadd(k, m) => match entry(s, k, Value::Set(BTreeSet::new())) {
                Value::Set(set) => drop(set.insert(m)),
                _ => return Err(()),
            },
            ModelOp::Zadd(k, score, m) => match entry(s, k, Value::Zset(BTreeMap::new())) {
                Value::Zset(z) => drop(z.insert(m, score)),
                _ => return Err(()),
            },
            ModelOp::Incr(k) => match entry(s, k, Value::Str(0)) {
                Value::Str(n) => *n = n.wrapping_add(1),
                _ => return Err(()),
            },
            ModelOp::Hdel(k, f) => match s.get_mut(&k) {
                Some((Value::Hash(h), _)) => {
                    h.remove(&f);
                    if h.is_empty() {
                        s.remove(&k);
                    }
                }
                Some(_) => return Err(()),
                None => {}
            },
            ModelOp::Srem(k, m) => match s.get_mut(&k) {
                Some((Value::Set(set), _)) => {
                    set.remove(&m);
                    if set.is_empty() {
                        s.remove(&k);
                    }
                }
                Some(_) => return Err(()),
                None => {}
            },
        }
        Ok(())
    }
}

fn run_ops(ops: &[ModelOp], s: &mut State) -> Result<(), String> {
    for op in ops {
        op.apply(s, false)
            .map_err(|()| format!("WRONGTYPE on replay: {op:?} over {s:?}"))?;
    }
    Ok(())
}

/// One writer process: `ops` split into groups of the given sizes (the
/// last takes what is left), each plain or a transaction by [`Runs`].
/// Returns each group's end and whether it was a transaction.
fn seal(ops: &[ModelOp], sizes: &[usize]) -> Vec<(usize, bool)> {
    let mut runs = Runs::new();
    let (mut at, mut groups) = (0, Vec::new());
    let mut sizes = sizes.iter().copied().cycle();
    while at < ops.len() {
        let end = (at + sizes.next().unwrap_or(1).max(1)).min(ops.len());
        let args: Vec<Vec<Bytes>> = ops[at..end].iter().map(ModelOp::args).collect();
        let plain = runs.plain(0, args.iter().map(Vec::as_slice));
        groups.push((end, !plain));
        at = end;
    }
    groups
}

/// Where a crash at op `cut` leaves the target: `(applied, checkpoint)`.
/// A plain group may stop anywhere, a transaction is all or nothing; the
/// checkpoint is the end of the last transaction applied (0 if none).
fn crash(groups: &[(usize, bool)], cut: usize) -> (usize, usize) {
    let (mut applied, mut ckpt) = (0, 0);
    for &(end, txn) in groups {
        if cut >= end {
            applied = end;
            if txn {
                ckpt = end;
            }
            continue;
        }
        if !txn {
            applied = cut.max(applied);
        }
        break;
    }
    (applied, ckpt)
}

/// Ops of one kind of value with those on any key (`kind` 0–3), or of
/// every kind (4): runs of one family, and changes between them.
fn model_op(kind: u8) -> BoxedStrategy<ModelOp> {
    let k = || 0u8..2;
    let b = || 0u8..2;
    let any = prop_oneof![
        k().prop_map(ModelOp::Del),
        (k(), k()).prop_map(|(a, b)| ModelOp::Unlink(a, b)),
        (k(), b()).prop_map(|(k, t)| ModelOp::Pexpireat(k, t)),
        k().prop_map(ModelOp::Persist),
    ];
    let strings = prop_oneof![
        (k(), b()).prop_map(|(k, v)| ModelOp::Set(k, v)),
        (k(), b(), b()).prop_map(|(k, v, t)| ModelOp::SetPxat(k, v, t)),
        k().prop_map(ModelOp::Incr),
    ];
    let hashes = prop_oneof![
        (k(), b(), b()).prop_map(|(k, f, v)| ModelOp::Hset(k, f, v)),
        (k(), b()).prop_map(|(k, f)| ModelOp::Hdel(k, f)),
    ];
    let sets = prop_oneof![
        (k(), b()).prop_map(|(k, m)| ModelOp::Sadd(k, m)),
        (k(), b()).prop_map(|(k, m)| ModelOp::Srem(k, m)),
    ];
    let zsets = (k(), b(), b()).prop_map(|(k, s, m)| ModelOp::Zadd(k, s, m));
    match kind {
        0 => prop_oneof![1 => any, 2 => strings].boxed(),
        1 => prop_oneof![1 => any, 2 => hashes].boxed(),
        2 => prop_oneof![1 => any, 2 => sets].boxed(),
        3 => prop_oneof![1 => any, 2 => zsets].boxed(),
        _ => prop_oneof![any, strings, hashes, sets, zsets].boxed(),
    }
}

/// A few stretches of ops, each of one kind (see [`model_op`]).
fn model_ops() -> impl Strategy<Value = Vec<ModelOp>> {
    proptest::collection::vec(
        (0u8..5).prop_flat_map(|kind| proptest::collection::vec(model_op(kind), 1..12)),
        1..5,
    )
    .prop_map(|parts| parts.concat())
}

/// What the source sends: the generated ops after the first `setup` it
/// accepts, the state the first `setup` built, and the state it ends in.
fn source(candidates: &[ModelOp], setup: usize) -> (State, Vec<ModelOp>, State) {
    let mut s = State::new();
    let (mut start, mut sent) = (State::new(), Vec::new());
    for (i, op) in candidates.iter().enumerate() {
        if i == setup {
            start = s.clone();
        }
        let mut next = s.clone();
        if op.apply(&mut next, true).is_ok() {
            s = next;
            if i >= setup {
                sent.push(op.clone());
            }
        }
    }
    if setup >= candidates.len() {
        start = s.clone();
    }
    (start, sent, s)
}

/// The source sent `ops` over `start` and ended in `want`. Two crashes,
/// the first at every op, the second at `second_cut`, each process
/// grouping the ops its own way (`sizes`); each restart replays from its
/// saved position or its checkpoint, whichever is later, the position
/// being anywhere up to what was applied (`positions` picks it). The
/// replays must never meet a wrong type and the target must end as the
/// source did.
fn replays_converge(
    start: &State,
    ops: &[ModelOp],
    want: &State,
    sizes: &[Vec<usize>; 2],
    (second_cut, positions): (usize, (usize, usize)),
) -> Result<(), String> {
    let first = seal(ops, &sizes[0]);
    for cut in 0..=ops.len() {
        // First process: crashes at `cut`, its position at or before
        // what it applied.
        let (applied, ckpt) = crash(&first, cut);
        let mut target = start.clone();
        run_ops(&ops[..applied], &mut target)?;
        let pos = positions.0 % (applied + 1);
        // Second process: replays from there, crashes.
        let from = pos.max(ckpt);
        let rest = &ops[from..];
        let second = seal(rest, &sizes[1]);
        let (applied2, ckpt2) = crash(&second, second_cut.min(rest.len()));
        run_ops(&rest[..applied2], &mut target)?;
        let ckpt = if ckpt2 > 0 { from + ckpt2 } else { ckpt };
        let pos = pos + positions.1 % (from + applied2 - pos + 1);
        // Third process: replays the rest.
        run_ops(&ops[pos.max(ckpt)..], &mut target)?;
        if target != *want {
            return Err(format!(
                "ops {ops:?}, first crash at {cut}: {target:?}, source {want:?}"
            ));
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    /// [`replays_converge`] over generated ops and groupings.
    #[test]
    fn replays_after_crashes_end_where_the_source_did(
        candidates in model_ops(),
        setup in 0usize..10,
        sizes in [proptest::collection::vec(1usize..5, 1..6),
                  proptest::collection::vec(1usize..5, 1..6)],
        second_cut in 0usize..=48,
        positions in (0usize..=48, 0usize..=48),
    ) {
        let (start, ops, want) = source(&candidates, setup.min(candidates.len()));
        replays_converge(&start, &ops, &want, &sizes, (second_cut, positions))
            .map_err(TestCaseError::fail)?;
    }
}

/// Runs the generator rarely writes, each of which a looser rule would
/// get wrong (a removal in a family, a string after a collection family,
/// a family change through `DEL`), through [`replays_converge`] whole and
/// one op per group.
#[test]
fn known_hazards_replay_to_the_source_state() {
    use ModelOp::*;
    let hazards: [&[ModelOp]; 6] = [
        &[Sadd(0, 1), Pexpireat(0, 1), Srem(0, 1), Sadd(0, 0)],
        &[Hset(0, 1, 1), Pexpireat(0, 1), Hdel(0, 1), Hset(0, 0, 0)],
        &[Hset(0, 1, 1), Set(0, 0)],
        &[Sadd(0, 1), Del(0), Hset(0, 1, 1)],
        &[Zadd(0, 1, 1), Unlink(0, 1), Set(0, 1), Sadd(1, 0)],
        // Replayed from the position after `DEL`, `HSET` meets `SET k 1`.
        &[Set(0, 0), Del(0), Hset(0, 1, 1), Set(0, 1)],
    ];
    for ops in hazards {
        let (start, sent, want) = source(ops, 0);
        assert_eq!(sent.len(), ops.len(), "{ops:?}: the source refused one");
        for sizes in [[vec![ops.len()], vec![ops.len()]], [vec![1], vec![1]]] {
            for second_cut in 0..=ops.len() {
                for positions in (0..=ops.len()).flat_map(|a| (0..=ops.len()).map(move |b| (a, b)))
                {
                    replays_converge(&start, &sent, &want, &sizes, (second_cut, positions))
                        .unwrap();
                }
            }
        }
    }
}

#[test]
fn a_removal_in_a_plain_run_would_leave_a_ttl_the_source_has_not() {
    // Why `SREM`/`HDEL`/`ZREM` are not in a family: `k` emptied and
    // created again keeps, on replay, a TTL that belonged to its previous
    // life.
    use ModelOp::*;
    let ops = [Sadd(0, 1), Pexpireat(0, 9), Srem(0, 1), Sadd(0, 2)];
    let mut source = State::new();
    run_ops(&ops, &mut source).unwrap();
    let mut replayed = source.clone();
    run_ops(&ops, &mut replayed).unwrap();
    assert_eq!(source.get(&0).map(|(_, t)| *t), Some(None));
    assert_eq!(replayed.get(&0).map(|(_, t)| *t), Some(Some(9)));
}

#[test]
fn a_set_after_a_hash_run_would_fail_on_replay() {
    use ModelOp::*;
    let ops = [Hset(0, 1, 1), Set(0, 2)];
    let mut source = State::new();
    run_ops(&ops, &mut source).unwrap();
    assert!(run_ops(&ops, &mut source).is_err());
}

//! Two-way mode: the opposite ferry's transactions are dropped, clients'
//! carried, conflicts counted.

use super::tests::{NOW, a, cfg, render, started, w};
use super::{CONFLICT_WINDOW_MS, Translator, TranslatorConfig};

fn two_way() -> Translator {
    started(TranslatorConfig {
        two_way: true,
        ..cfg()
    })
}

/// A transaction of `cmds` at offsets from `off`, at `now`.
fn txn(t: &mut Translator, off: u64, now: i64, cmds: &[&str]) -> Vec<String> {
    let mut out = Vec::new();
    t.multi(&mut out);
    for (i, c) in cmds.iter().enumerate() {
        t.command(a(c), 0, off + i as u64, now, &mut out);
    }
    t.exec(&mut out);
    render(&out)
}

#[test]
fn the_other_ferrys_transaction_is_dropped_whole() {
    let mut t = two_way();
    let out = txn(
        &mut t,
        10,
        NOW,
        &["INCR a", "RPUSH l x", "SET __ferry:ckpt:{0} h:12"],
    );
    assert!(out.is_empty(), "{out:?}");
    assert_eq!(t.counters.commands_applied, 0);
    assert_eq!(t.counters.echo_commands, 2);
    assert_eq!(t.counters.skipped.get("two_way_echo"), Some(&1));
    // A barrier transaction (FLUSHALL with a barrier key) too.
    let out = txn(
        &mut t,
        20,
        NOW,
        &["FLUSHALL", "SET __ferry:barrier:{0} h:20"],
    );
    assert!(out.is_empty(), "{out:?}");
    // A client's transaction and a plain command go on.
    let out = txn(&mut t, 30, NOW, &["INCR b", "INCR c"]);
    assert_eq!(
        out,
        [format!(
            "group[{} | {}]",
            w("b", 30, "INCR b"),
            w("c", 31, "INCR c")
        )]
    );
    let mut o = Vec::new();
    t.command(a("SET d 1"), 0, 40, NOW, &mut o);
    assert_eq!(render(&o), [w("d", 40, "SET d 1")]);
    assert_eq!(t.counters.commands_applied, 3);
}

#[test]
fn one_way_carries_another_ferrys_transaction_without_its_key() {
    // A chain (A → B → C): the middle ferry's writes are data for the next.
    let mut t = started(cfg());
    let out = txn(&mut t, 10, NOW, &["INCR a", "SET __ferry:ckpt:{0} h:11"]);
    assert_eq!(out.len(), 2, "{out:?}");
    assert!(out[0].starts_with("skip reserved_prefix"), "{out:?}");
    assert_eq!(out[1], format!("group[{}]", w("a", 10, "INCR a")));
}

#[test]
fn a_client_write_soon_after_the_other_side_wrote_the_key_is_a_conflict() {
    let mut t = two_way();
    txn(&mut t, 10, NOW, &["SET k 1", "SET __ferry:ckpt:{0} h:11"]);
    let mut o = Vec::new();
    t.command(a("SET j 2"), 0, 20, NOW + 1000, &mut o);
    assert_eq!(t.counters.conflicts, 0);
    t.command(a("SET k 2"), 0, 21, NOW + 1000, &mut o);
    assert_eq!(t.counters.conflicts, 1);
    // In a client transaction: counted at EXEC.
    txn(&mut t, 30, NOW + 2000, &["INCR x", "DEL k"]);
    assert_eq!(t.counters.conflicts, 2);
    // Past the window: no longer.
    t.command(a("SET k 3"), 0, 40, NOW + CONFLICT_WINDOW_MS + 10, &mut o);
    assert_eq!(t.counters.conflicts, 2);
}

//! Checkpoint mode: transactions per slot, `EXECABORT`, `ASK`, probes.

use std::time::Duration;

use ferry_resp::Value;

use super::harness::{Harness, Mode, S0, ckpt, ckpt_key, err, ok, queued, set, txn_lines};

#[test]
fn execabort_after_moved_sends_the_whole_transaction_to_the_new_owner() {
    let mut h = Harness::new(2, Mode::Checkpoints);
    h.submit(set(S0, "a", "1", 1));
    h.submit(set(S0, "b", "2", 2));
    let txn = txn_lines(S0, &[("a", "1"), ("b", "2")], 2);
    assert_eq!(h.turn_on(0), txn);
    h.reply(
        0,
        vec![
            ok(),
            err("MOVED 100 127.0.0.1:7001"),
            err("MOVED 100 127.0.0.1:7001"),
            err("MOVED 100 127.0.0.1:7001"),
            err("EXECABORT Transaction discarded because of previous errors."),
        ],
    );
    assert_eq!(h.turn_on(1), txn);
    h.commit(1, 2);
    assert_eq!(h.applied(), 2);
    assert_eq!(h.stat(|s| &s.checkpoints), 1);
}

#[test]
fn execabort_for_a_bad_command_stops_the_writer() {
    let mut h = Harness::new(2, Mode::Checkpoints);
    h.submit(set(S0, "a", "1", 1));
    h.turn_on(0);
    h.reply(
        0,
        vec![
            ok(),
            err("ERR wrong number of arguments for 'set' command"),
            queued(),
            err("EXECABORT Transaction discarded because of previous errors."),
        ],
    );
    let e = h.fatal().expect("fatal").to_string();
    assert!(e.contains("wrong number of arguments"), "{e}");
}

#[test]
fn ask_inside_a_transaction_waits_for_the_migration_then_goes_whole() {
    let mut h = Harness::new(2, Mode::Checkpoints);
    h.submit(set(S0, "a", "1", 1));
    let txn = txn_lines(S0, &[("a", "1")], 1);
    assert_eq!(h.turn_on(0), txn);
    let abort = err("EXECABORT Transaction discarded because of previous errors.");
    h.reply(
        0,
        vec![ok(), err("ASK 100 127.0.0.1:7001"), queued(), abort.clone()],
    );
    // Never ASKING with a transaction: it waits (backoff) and is retried
    // on the owner of the map.
    assert!(h.turn().is_empty());
    h.advance(Duration::from_millis(50));
    h.core.on_timer(h.now);
    assert_eq!(h.turn_on(0), txn);
    // The migration has ended: MOVED sends it whole to the new owner.
    h.reply(
        0,
        vec![ok(), err("MOVED 100 127.0.0.1:7001"), queued(), abort],
    );
    assert_eq!(h.turn_on(1), txn);
    h.commit(1, 1);
    assert_eq!(h.applied(), 1);
}

#[test]
fn a_slot_migrating_while_its_transaction_is_in_flight_keeps_one_transaction_at_a_time() {
    let mut h = Harness::new(2, Mode::Checkpoints);
    h.submit(set(S0, "a", "1", 1));
    h.turn_on(0);
    // Ops arriving while the first transaction is in flight wait in the
    // slot's open group.
    h.submit(set(S0, "a", "2", 2));
    assert!(h.turn().is_empty());
    let moved = err("MOVED 100 127.0.0.1:7001");
    h.reply(
        0,
        vec![
            ok(),
            moved.clone(),
            moved,
            err("EXECABORT Transaction discarded because of previous errors."),
        ],
    );
    // The first goes to the new owner; the second is sealed only after
    // the first commits.
    assert_eq!(h.turn_on(1), txn_lines(S0, &[("a", "1")], 1));
    assert!(h.turn().is_empty());
    h.commit(1, 1);
    assert_eq!(h.turn_on(1), txn_lines(S0, &[("a", "2")], 2));
    h.commit(1, 1);
    assert_eq!(h.applied(), 2);
}

#[test]
fn a_lost_exec_reply_is_resolved_by_a_probe() {
    let mut h = Harness::new(2, Mode::Checkpoints);
    h.submit(set(S0, "a", "1", 1));
    h.turn_on(0);
    h.cut(0);
    // Committed before the reply was lost: acknowledged, not resent.
    assert_eq!(h.turn_on(0), [format!("GET {}", ckpt_key(S0))]);
    h.reply(0, vec![ckpt(1)]);
    assert!(h.turn().is_empty());
    assert_eq!(h.applied(), 1);
    assert_eq!(h.stat(|s| &s.verified), 1);

    // Not committed: resent once the probe says so.
    h.submit(set(S0, "a", "2", 2));
    h.turn_on(0);
    h.cut(0);
    assert_eq!(h.turn_on(0), [format!("GET {}", ckpt_key(S0))]);
    h.reply(0, vec![ckpt(1)]);
    assert_eq!(h.turn_on(0), txn_lines(S0, &[("a", "2")], 2));
    h.commit(0, 1);
    assert_eq!(h.applied(), 2);
    assert!(h.fatal().is_none());
}

#[test]
fn a_probe_answered_null_resends_and_one_answered_moved_follows_the_slot() {
    let mut h = Harness::new(2, Mode::Checkpoints);
    h.submit(set(S0, "a", "1", 1));
    h.turn_on(0);
    h.cut(0);
    h.turn_on(0);
    h.reply(0, vec![err("MOVED 100 127.0.0.1:7001")]);
    // Probed again where the slot is now.
    assert_eq!(h.turn_on(1), [format!("GET {}", ckpt_key(S0))]);
    h.reply(1, vec![Value::Null]);
    assert_eq!(h.turn_on(1), txn_lines(S0, &[("a", "1")], 1));
    h.commit(1, 1);
    assert_eq!(h.applied(), 1);
}

//! Checkpoint mode with replay-safe groups written without a transaction
//! (`docs/decisions.md` D96).

use bytes::Bytes;
use ferry_resp::Value;

use super::harness::{Harness, Mode, S0, S0B, ckpt_key, ok, set, txn_lines};
use crate::config::Op;

fn incr(slot: u16, key: &str, offset: u64) -> Op {
    op(slot, &["INCR", key], offset)
}

#[test]
fn a_group_of_sets_goes_out_plain_and_moves_no_checkpoint() {
    let mut h = Harness::new(2, Mode::PlainGroups);
    h.submit(set(S0, "a", "1", 1));
    h.submit(set(S0, "b", "2", 2));
    assert_eq!(h.turn_on(0), vec!["SET a 1", "SET b 2"]);
    h.reply(0, vec![ok(), ok()]);
    assert_eq!(h.applied(), 2);
    assert_eq!(h.stat(|s| &s.checkpoints), 0);
    assert_eq!(h.stat(|s| &s.acked), 2);
}

#[test]
fn a_group_with_one_unsafe_op_is_a_transaction() {
    let mut h = Harness::new(2, Mode::PlainGroups);
    h.submit(set(S0, "a", "1", 1));
    h.submit(incr(S0, "n", 2));
    let want = vec![
        "MULTI".to_owned(),
        "SET a 1".to_owned(),
        "INCR n".to_owned(),
        format!("SET {} 0:2", ckpt_key(S0)),
        "EXEC".to_owned(),
    ];
    assert_eq!(h.turn_on(0), want);
    h.commit(0, 2);
    assert_eq!(h.applied(), 2);
    assert_eq!(h.stat(|s| &s.checkpoints), 1);
}

#[test]
fn a_later_transaction_waits_until_the_plain_group_of_its_slot_is_answered() {
    let mut h = Harness::new(2, Mode::PlainGroups);
    h.submit(set(S0, "a", "1", 1));
    assert_eq!(h.turn_on(0), vec!["SET a 1"]);
    // Another slot is not held back; the same slot is.
    h.submit(incr(S0, "n", 2));
    h.submit(set(S0B, "c", "3", 3));
    assert_eq!(h.turn_on(0), vec!["SET c 3"]);
    h.reply(0, vec![ok()]);
    let txn = h.turn_on(0);
    assert_eq!(txn.first().map(String::as_str), Some("MULTI"));
    assert!(txn.contains(&"INCR n".to_owned()), "{txn:?}");
    h.reply(0, vec![ok()]);
    h.commit(0, 1);
    assert_eq!(h.applied(), 3);
}

#[test]
fn an_unanswered_plain_group_is_written_again_after_a_cut_without_a_probe() {
    let mut h = Harness::new(2, Mode::PlainGroups);
    h.submit(set(S0, "a", "1", 1));
    h.submit(set(S0, "a", "2", 2));
    assert_eq!(h.turn_on(0), vec!["SET a 1", "SET a 2"]);
    h.cut(0);
    assert_eq!(h.turn_on(0), vec!["SET a 1", "SET a 2"]);
    h.reply(0, vec![ok(), ok()]);
    assert_eq!(h.applied(), 2);
    assert_eq!(h.stat(|s| &s.checkpoints), 0);
}

#[test]
fn an_error_reply_to_a_plain_op_stops_the_writer_as_in_a_transaction() {
    let mut h = Harness::new(2, Mode::PlainGroups);
    h.submit(set(S0, "a", "1", 1));
    h.turn_on(0);
    h.reply(
        0,
        vec![Value::Error(Bytes::from_static(
            b"ERR wrong number of arguments for 'set' command",
        ))],
    );
    let e = h.fatal().expect("fatal").to_string();
    assert!(e.contains("wrong number of arguments"), "{e}");
}

#[test]
fn a_source_transaction_of_replay_safe_ops_stays_one_transaction() {
    let mut h = Harness::new(2, Mode::PlainGroups);
    h.core
        .submit_group(vec![set(S0, "a", "1", 1), set(S0, "b", "2", 1)], h.now);
    let lines = h.turn_on(0);
    assert_eq!(
        lines.first().map(String::as_str),
        Some("MULTI"),
        "{lines:?}"
    );
    assert_eq!(lines.last().map(String::as_str), Some("EXEC"), "{lines:?}");
    h.commit(0, 2);
    assert_eq!(h.applied(), 1);
    assert_eq!(h.stat(|s| &s.checkpoints), 1);
    // A single op on its own afterwards goes out plain again.
    h.submit(set(S0, "a", "3", 2));
    assert_eq!(h.turn_on(0), vec!["SET a 3"]);
}

fn op(slot: u16, words: &[&str], offset: u64) -> Op {
    let args: Vec<Bytes> = words
        .iter()
        .map(|w| Bytes::copy_from_slice(w.as_bytes()))
        .collect();
    Op::slot(args, slot, offset)
}

#[test]
fn a_run_of_hash_writes_goes_plain_until_a_string_write_of_its_key() {
    // D97: `HSET h f v; SET h x` replayed over its own result would meet
    // a string, so the `SET` after a plain `HSET` commits a checkpoint.
    let mut h = Harness::new(2, Mode::PlainGroups);
    h.submit(op(S0, &["HSET", "h", "f", "v"], 1));
    h.submit(op(S0, &["DEL", "d"], 2));
    assert_eq!(h.turn_on(0), vec!["HSET h f v", "DEL d"]);
    h.reply(0, vec![Value::Integer(1), Value::Integer(0)]);
    h.submit(op(S0, &["SET", "h", "x"], 3));
    assert_eq!(h.turn_on(0), txn_lines(S0, &[("h", "x")], 3));
    h.commit(0, 1);
    assert_eq!(h.applied(), 3);
    assert_eq!(h.stat(|s| &s.checkpoints), 1);
    // The transaction ended the run: a string and a set go plain; a
    // zset write to the set's key cannot.
    h.submit(op(S0, &["SET", "h", "y"], 4));
    h.submit(op(S0, &["SADD", "s", "m"], 5));
    assert_eq!(h.turn_on(0), vec!["SET h y", "SADD s m"]);
    h.reply(0, vec![ok(), Value::Integer(1)]);
    h.submit(op(S0, &["ZADD", "s", "1", "m"], 6));
    let lines = h.turn_on(0);
    assert_eq!(
        lines.first().map(String::as_str),
        Some("MULTI"),
        "{lines:?}"
    );
    h.commit(0, 1);
    assert_eq!(h.applied(), 6);
    assert_eq!(h.stat(|s| &s.checkpoints), 2);
}

#[test]
fn runs_are_per_slot() {
    let mut h = Harness::new(2, Mode::PlainGroups);
    h.submit(op(S0, &["SADD", "s", "m"], 1));
    h.submit(op(S0B, &["ZADD", "z", "2", "m"], 2));
    assert_eq!(h.turn_on(0), vec!["SADD s m", "ZADD z 2 m"]);
    h.reply(0, vec![Value::Integer(1), Value::Integer(1)]);
    h.submit(op(S0, &["SADD", "s", "n"], 3));
    h.submit(op(S0B, &["ZADD", "z", "3", "n"], 4));
    assert_eq!(h.turn_on(0), vec!["SADD s n", "ZADD z 3 n"]);
    h.reply(0, vec![Value::Integer(1), Value::Integer(1)]);
    assert_eq!(h.applied(), 4);
    assert_eq!(h.stat(|s| &s.checkpoints), 0);
}

//! Which ops a slot's group may carry without a transaction.
//!
//! In checkpoint mode a slot's ops of one loop turn are committed as
//! `MULTI, ops…, SET <checkpoint>, EXEC`, so that after a crash the slot is
//! replayed from exactly where it stopped. A group needs that only if
//! applying it a second time could change the result: after a crash a slot
//! is replayed, in order, from its last checkpoint, over a state that may
//! already hold what follows it. A group made only of the assignments below
//! ends in the same state applied once or twice, whatever the key held
//! before (type included), so it is written as plain commands and moves no
//! checkpoint; any other op in a later group moves the checkpoint past it
//! (`docs/decisions.md` D96).
//!
//! ```text
//! SET k v            SET k v PXAT t      DEL k…     UNLINK k…
//! PEXPIREAT k t      EXPIREAT k t        PERSIST k
//! ```
//!
//! Not in it: conditional or relative forms (`SET … NX`, `GET`, `EX`,
//! `KEEPTTL`, `PEXPIREAT … GT`), and ops on a part of a key (`HSET`,
//! `SADD`…): replayed after a later `SET` of the same key they would meet a
//! string (`WRONGTYPE`).
//!
//! Safe next to transactions because a slot's next group is sealed only
//! when nothing of the slot is in flight or held (`Core::seal`): a plain
//! entry, which is written again after a lost connection, is never in
//! flight before a later transaction of its slot that may have committed.

use bytes::Bytes;

/// `args` (a command and its arguments) is one of the assignments in the
/// module docs.
pub(super) fn replay_safe(args: &[Bytes]) -> bool {
    let Some(name) = args.first() else {
        return false;
    };
    let is = |n: &[u8]| name.eq_ignore_ascii_case(n);
    match args.len() {
        3 if is(b"SET") || is(b"PEXPIREAT") || is(b"EXPIREAT") => true,
        5 if is(b"SET") => args[3].eq_ignore_ascii_case(b"PXAT"),
        2 if is(b"PERSIST") => true,
        n if n >= 2 => is(b"DEL") || is(b"UNLINK"),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cmd(words: &[&str]) -> Vec<Bytes> {
        words
            .iter()
            .map(|w| Bytes::copy_from_slice(w.as_bytes()))
            .collect()
    }

    #[test]
    fn assignments_are_replay_safe_in_any_case() {
        for c in [
            &["SET", "k", "v"][..],
            &["set", "k", "v"],
            &["SET", "k", "v", "PXAT", "1700000000000"],
            &["SET", "k", "v", "pxat", "1"],
            &["DEL", "k"],
            &["del", "a", "b"],
            &["UNLINK", "k", "j"],
            &["PEXPIREAT", "k", "1700000000000"],
            &["EXPIREAT", "k", "1700000000"],
            &["PERSIST", "k"],
        ] {
            assert!(replay_safe(&cmd(c)), "{c:?}");
        }
    }

    #[test]
    fn conditional_relative_partial_and_counting_ops_are_not() {
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
            &["INCR", "k"],
            &["APPEND", "k", "v"],
            &["LPUSH", "k", "v"],
            &["HSET", "k", "f", "v"],
            &["SADD", "k", "m"],
            &["PEXPIRE", "k", "10"],
            &["SETNX", "k", "v"],
            &["RENAME", "a", "b"],
        ] {
            assert!(!replay_safe(&cmd(c)), "{c:?}");
        }
    }
}

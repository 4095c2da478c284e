//! Which ops a slot's group may carry without a transaction.
//!
//! In checkpoint mode a slot's ops of one loop turn are committed as
//! `MULTI, ops…, SET <checkpoint>, EXEC`, so that after a crash the slot is
//! replayed from exactly where it stopped. A group needs that only if
//! replaying it could change the result or fail: after a crash a slot is
//! replayed, in order, from its last checkpoint, over a state that may
//! already hold any prefix of what follows it (`docs/decisions.md` D96,
//! D97).
//!
//! The ops below are assignments: replaying a run of them from its start
//! over the state any prefix of it left ends where the run ended, as long
//! as no op meets a key of another type. That holds within one *family*:
//!
//! ```text
//! any key   DEL k…   UNLINK k…   PEXPIREAT k t   EXPIREAT k t   PERSIST k
//! strings   SET k v              SET k v PXAT t
//! hashes    HSET k f v [f v…]    HMSET k f v [f v…]
//! sets      SADD k m [m…]
//! zsets     ZADD k s m [s m…]    (no flag)
//! ```
//!
//! A slot's plain groups since its last transaction are its *run*; `Runs`
//! follows each key's writes in it. A key's writes may be strings, then
//! of one collection family, never back: `SET` overwrites whatever type
//! it meets, so replaying it early cannot fail, while `HSET k f v; SET k
//! x` replayed over its own result meets a string (`WRONGTYPE`), and `SADD
//! k m; DEL k; HSET k f v` meets a hash. That also holds when a restart
//! replays from inside the run (its saved position comes after the
//! run's start): `SET k x; DEL k; HSET k f v; SET k y` replayed from the
//! `HSET` meets `y`. A group that would break it is a transaction, which
//! moves the checkpoint past the run.
//!
//! Not in it: conditional or relative forms (`SET … NX`, `GET`, `EX`,
//! `KEEPTTL`, `PEXPIREAT … GT`, `ZADD … NX`, `HSETNX`), counters and lists,
//! and removals of a part of a key (`HDEL`, `SREM`, `ZREM`): one that
//! empties a key deletes it, so a replayed `SADD k a; PEXPIREAT k t; SREM k
//! a` over a later `SADD k b` leaves a TTL on `k` that the source's `k`
//! does not have.
//!
//! Safe next to transactions because a slot's next group is sealed only
//! when nothing of the slot is in flight or held (`Core::seal`): a plain
//! entry, which is written again after a lost connection, is never in
//! flight before a later transaction of its slot that may have committed,
//! and a transaction answered is on the target with its checkpoint.

use std::collections::HashMap;
use std::hash::Hasher;

use bytes::Bytes;

use super::core::{SlotHash, SlotHasher};

/// What a replay-safe op may meet (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Family {
    /// `DEL`, `UNLINK`, `PEXPIREAT`, `EXPIREAT`, `PERSIST`: any key.
    Any,
    /// `SET k v [PXAT t]`.
    Strings,
    /// `HSET`, `HMSET`.
    Hashes,
    /// `SADD`.
    Sets,
    /// `ZADD` without flags.
    Zsets,
}

impl Family {
    /// What a key's writes in a run are after `self` and then `next`, if
    /// they may go plain: `Any` adds nothing, strings may turn into a
    /// collection family, a collection family takes only itself (see the
    /// module docs).
    pub(super) fn then(self, next: Family) -> Option<Family> {
        match (self, next) {
            (a, Family::Any) => Some(a),
            (Family::Any | Family::Strings, b) => Some(b),
            (a, b) if a == b => Some(a),
            _ => None,
        }
    }
}

/// The family of `args` (a command and its arguments), or `None` if it
/// is not one of the assignments in the module docs.
pub(super) fn family(args: &[Bytes]) -> Option<Family> {
    let name = args.first()?;
    let is = |n: &[u8]| name.eq_ignore_ascii_case(n);
    let n = args.len();
    let f = match name.len() {
        3 if is(b"SET") => match n {
            3 => Family::Strings,
            5 if args[3].eq_ignore_ascii_case(b"PXAT") => Family::Strings,
            _ => return None,
        },
        3 if is(b"DEL") && n >= 2 => Family::Any,
        6 if is(b"UNLINK") && n >= 2 => Family::Any,
        9 if is(b"PEXPIREAT") && n == 3 => Family::Any,
        8 if is(b"EXPIREAT") && n == 3 => Family::Any,
        7 if is(b"PERSIST") && n == 2 => Family::Any,
        4 if is(b"HSET") && n >= 4 && n % 2 == 0 => Family::Hashes,
        5 if is(b"HMSET") && n >= 4 && n % 2 == 0 => Family::Hashes,
        4 if is(b"SADD") && n >= 3 => Family::Sets,
        4 if is(b"ZADD") && n >= 4 && n % 2 == 0 && !zadd_flag(&args[2]) => Family::Zsets,
        _ => return None,
    };
    Some(f)
}

/// `word` is one of `ZADD`'s flags (they come before the first score, and
/// no score is spelled like one).
fn zadd_flag(word: &[u8]) -> bool {
    [&b"NX"[..], b"XX", b"GT", b"LT", b"CH", b"INCR"]
        .iter()
        .any(|f| word.eq_ignore_ascii_case(f))
}

/// Most keys of a collection family a slot's run follows; one more ends
/// the run (a transaction), which keeps each slot's list short.
const RUN_KEYS: usize = 8;

/// Per slot, the keys its plain groups wrote with a collection family
/// since its last transaction (its run): a fingerprint of the key and
/// the family. Per key, because only an op on a key can meet that key's
/// type: `HSET k f v` then `SET j x` stays a run. Two keys with one
/// fingerprint count as one key, which can only end a run early. Only
/// the slots with such keys have a list; a bit per slot says which, so a
/// `SET` in a slot without one reads 2 KB of bits and nothing else.
#[derive(Debug, Clone)]
pub(super) struct Runs {
    /// Bit `slot` set: `keys` has a non-empty list for `slot`.
    listed: Vec<u64>,
    keys: HashMap<u16, Vec<(u32, Family)>, SlotHash>,
}

impl Runs {
    /// Every slot without a run.
    pub(super) fn new() -> Runs {
        Runs {
            listed: vec![0; usize::from(ferry_ops::SLOTS) / 64],
            keys: HashMap::default(),
        }
    }

    fn is_listed(&self, slot: u16) -> bool {
        let (word, bit) = (usize::from(slot / 64), slot % 64);
        self.listed.get(word).is_some_and(|w| w & (1 << bit) != 0)
    }

    fn set_listed(&mut self, slot: u16, on: bool) {
        let (word, bit) = (usize::from(slot / 64), slot % 64);
        if let Some(w) = self.listed.get_mut(word) {
            if on {
                *w |= 1 << bit;
            } else {
                *w &= !(1 << bit);
            }
        }
    }

    /// Decides how `slot`'s sealed group of `ops` (each a command and its
    /// arguments) goes out: `true` plain (the run now includes it),
    /// `false` as a transaction (the run starts again). Each op is
    /// followed from its key's state in the run, in order, so that a
    /// group cannot bring a string after a collection family either.
    pub(super) fn plain<'a>(
        &mut self,
        slot: u16,
        ops: impl IntoIterator<Item = &'a [Bytes]>,
    ) -> bool {
        if slot >= ferry_ops::SLOTS {
            return false;
        }
        let plain = ops.into_iter().all(|args| self.follow(slot, args));
        if !plain && self.is_listed(slot) {
            if let Some(run) = self.keys.get_mut(&slot) {
                run.clear();
            }
            self.set_listed(slot, false);
        }
        plain
    }

    /// Adds `args` to `slot`'s run; `false` if it may not go plain after
    /// it. Only keys of a collection family are kept: a key not in the
    /// run and a key written as a string so far take the same ops next
    /// (see [`Family::then`]), so a run of strings costs no entry.
    fn follow(&mut self, slot: u16, args: &[Bytes]) -> bool {
        let Some(f) = family(args) else {
            return false;
        };
        if f == Family::Any || (f == Family::Strings && !self.is_listed(slot)) {
            return true;
        }
        // Typed assignments have one key, their first argument.
        let Some(key) = args.get(1) else {
            return false;
        };
        let print = fingerprint(key);
        let run = self.keys.entry(slot).or_default();
        if let Some((_, have)) = run.iter_mut().find(|(p, _)| *p == print) {
            return match have.then(f) {
                Some(next) => {
                    *have = next;
                    true
                }
                None => false,
            };
        }
        if f == Family::Strings {
            return true;
        }
        if run.len() >= RUN_KEYS {
            return false;
        }
        run.push((print, f));
        self.set_listed(slot, true);
        true
    }
}

/// The engine's hash of `key` ([`SlotHasher`]), folded to 32 bits.
fn fingerprint(key: &[u8]) -> u32 {
    let mut h = SlotHasher::default();
    h.write(key);
    let h = h.finish();
    (h ^ (h >> 32)) as u32
}

#[cfg(test)]
mod tests;

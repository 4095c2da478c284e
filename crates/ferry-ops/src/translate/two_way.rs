//! Two-way sync (`mode: two_way`): the other ferry's writes are not
//! carried back, and conflicts are counted where they are visible.
//!
//! ```text
//! source stream:  MULTI  op…  SET __ferry:ckpt:…  EXEC    ← the other ferry's
//!                                                           transaction: dropped
//!                 MULTI  op…  EXEC | op                   ← clients: carried
//! ```
//!
//! Every write a ferry makes into its target in the stream phase commits
//! in one `MULTI … EXEC` with one of its checkpoint or barrier keys, so the
//! replication stream of that target carries them as one transaction with
//! such a key. The opposite ferry reads that stream as its source: a
//! transaction holding a write to a key under [`CHECKPOINT_PREFIXES`] is
//! dropped whole at `EXEC` (its ops were buffered until then; the key comes
//! last), counted as `echo`. A conflict is a client write carried here to a
//! key the other ferry wrote within [`CONFLICT_WINDOW_MS`]: both sides saw
//! writes to it so close together that each ends with the one applied
//! there last.

use std::collections::HashMap;

use bytes::Bytes;

use super::{SkipReason, Translator};
use crate::keys::command_keys;

/// Keys a ferry writes with every transaction (checkpoint, barrier).
pub const CHECKPOINT_PREFIXES: [&[u8]; 2] = [b"__ferry:ckpt:", b"__ferry:barrier:"];

/// A client write to a key the other ferry wrote less than this long ago
/// is counted as a conflict.
pub const CONFLICT_WINDOW_MS: i64 = 10_000;

/// Keys remembered for conflicts before old ones are dropped.
const RECENT_MAX: usize = 200_000;

/// What two-way mode tracks.
#[derive(Debug, Default)]
pub(super) struct TwoWay {
    /// The transaction being buffered carries a ferry checkpoint.
    foreign: bool,
    /// `commands_applied` / `emulated` when it began.
    applied_at_multi: (u64, u64),
    /// Keys written by the transaction being buffered.
    keys: Vec<Bytes>,
    /// Keys the other ferry wrote, with when (ms).
    recent: HashMap<Bytes, i64>,
    /// The wall clock of the last command.
    now_ms: i64,
}

/// Whether `key` is one a ferry writes with each transaction.
pub fn is_checkpoint_key(key: &[u8]) -> bool {
    CHECKPOINT_PREFIXES.iter().any(|p| key.starts_with(p))
}

fn keys_of(args: &[Bytes]) -> Vec<Bytes> {
    command_keys(args)
        .map(|k| k.keys(args).cloned().collect())
        .unwrap_or_default()
}

impl Translator {
    /// A source `MULTI` (two-way mode): a new transaction to judge.
    pub(super) fn two_way_multi(&mut self) {
        let tw = &mut self.two_way;
        tw.foreign = false;
        tw.keys.clear();
        tw.applied_at_multi = (self.counters.commands_applied, self.counters.emulated);
    }

    /// Before a stream command (two-way mode): `true` when it is the
    /// other ferry's checkpoint inside a transaction (the transaction is
    /// then dropped at `EXEC`; the command itself goes nowhere).
    pub(super) fn two_way_command(&mut self, args: &[Bytes], now_ms: i64) -> bool {
        self.two_way.now_ms = now_ms;
        let keys = keys_of(args);
        if self.txn.is_some() {
            if keys.iter().any(|k| is_checkpoint_key(k)) {
                self.two_way.foreign = true;
                return true;
            }
            self.two_way.keys.extend(keys);
        } else {
            self.check_conflicts(&keys);
        }
        false
    }

    /// A source `EXEC` (two-way mode), before the buffered ops go out:
    /// the other ferry's transaction is dropped and its keys remembered;
    /// a client's is checked for conflicts.
    pub(super) fn two_way_exec(&mut self) {
        let keys = std::mem::take(&mut self.two_way.keys);
        if !self.two_way.foreign {
            self.check_conflicts(&keys);
            return;
        }
        self.two_way.foreign = false;
        self.txn = None;
        let (applied, emulated) = self.two_way.applied_at_multi;
        let commands = self.counters.commands_applied.saturating_sub(applied);
        self.counters.commands_applied = applied;
        self.counters.emulated = emulated;
        self.counters.echo_commands += commands;
        let now = self.two_way.now_ms;
        if self.two_way.recent.len() + keys.len() > RECENT_MAX {
            self.two_way
                .recent
                .retain(|_, at| now - *at < CONFLICT_WINDOW_MS);
        }
        for k in keys {
            self.two_way.recent.insert(k, now);
        }
        self.counters.skip(SkipReason::Echo);
    }

    /// Counts a conflict for each of `keys` the other ferry wrote within
    /// the window.
    fn check_conflicts(&mut self, keys: &[Bytes]) {
        let now = self.two_way.now_ms;
        for k in keys {
            if self
                .two_way
                .recent
                .get(k)
                .is_some_and(|at| now - *at < CONFLICT_WINDOW_MS)
            {
                self.counters.conflicts += 1;
            }
        }
    }
}

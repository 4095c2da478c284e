//! What each snapshot key and stream command becomes in the target, decided
//! without I/O.
//!
//! ```text
//! full sync           → NewHistory (executor: finish writes, new history,
//!                       checkpoints off, flush the target if it must)
//! snapshot key        → filter (db, prefixes, reserved `__ferry:`) → expired? skip
//!                     → db_prefix / SELECT (standalone)
//!                     → SET (plain string, no TTL) | RESTORE … REPLACE [ABSTTL]
//!                       (target reads the format) | DEL + RPUSH/SADD/… (command form)
//! big key             → BigKeyStart / chunks / end: command form in parts
//! snapshot end        → Checkpointing (target.checkpoints)
//! stream command      → filter keys → db_prefix → route:
//!                       one slot | one op per slot | every master
//!                       | cross-slot: emulation plan (Split: ops; others:
//!                         Emulate, the executor reads the target)
//!                       | unreplayable: Skip (typed reason, key)
//! MULTI … EXEC        → ops buffered, one Group at EXEC
//! ```
//!
//! TTL hold (`ttl_hold`): from a full sync until the stream has caught
//! up, expiries that could pass meanwhile are written ~100 years later and
//! the keys remembered; once caught up, a guarded fix-up restores each true
//! expiry (see the `hold` module and `docs/design.md`).
//!
//! The [`Translator`] keeps only what the decisions need (the RDB's format,
//! the big key being read, the source transaction being buffered, the db a
//! standalone target has selected) and the [`Counters`]. The executor
//! (`ferry`'s applier) submits what the [`Action`]s say, in order.

mod hold;
mod snapshot;
mod stream;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_cluster_source;
#[cfg(test)]
mod tests_hold;
#[cfg(test)]
mod tests_two_way;
mod two_way;

use std::collections::BTreeMap;
use std::fmt;

use bytes::Bytes;
use ferry_rdb::commands::{CommandBuilder, CommandOptions};
use ferry_rdb::{Flavor, KeyHeader};

use crate::emulate::Plan;
use crate::filter::Filter;
use crate::op::Op;
use crate::target::TargetFormat;

pub use hold::{CAUGHT_UP_MS, FIXUP_SCRIPT, HOLD_MARGIN_MS, HOLD_MS, MAX_WAIT_MS, SOURCE_POLL_MS};
pub use two_way::{CHECKPOINT_PREFIXES, CONFLICT_WINDOW_MS, is_checkpoint_key};

/// Ops of one source transaction buffered at most; a bigger one is
/// emitted in parts (each part still one group).
pub const MAX_TXN_OPS: usize = 100_000;

/// How the translator decides.
#[derive(Debug, Clone)]
pub struct TranslatorConfig {
    /// What the target can `RESTORE`.
    pub target: TargetFormat,
    /// Use `RESTORE` when the target reads the snapshot's format
    /// (`snapshot.restore` not `never`); otherwise commands.
    pub restore: bool,
    /// Which keys to carry.
    pub filter: Filter,
    /// A standalone target: dbs kept (`SELECT`), commands as they are.
    pub standalone: bool,
    /// Checkpointed stream (`target.checkpoints`): turned on at the
    /// snapshot's end.
    pub checkpoints: bool,
    /// Hold short TTLs through the snapshot and its catch-up (see
    /// the module docs and [`HOLD_MS`]).
    pub ttl_hold: bool,
    /// The source is one shard of a cluster (one pipeline of several into
    /// the target): `FLUSHALL`/`FLUSHDB` in its stream become
    /// [`Action::FlushSlots`] (a client flushes each master separately).
    pub source_shard: bool,
    /// Two-way sync: drop the other ferry's transactions from the stream
    /// and count conflicts (see the `two_way` module).
    pub two_way: bool,
}

/// Why a key or command is not carried.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SkipReason {
    /// In a db the filter leaves out.
    FilteredDb,
    /// A key the filter's prefixes leave out.
    FilteredKey,
    /// Under ferry's reserved prefix `__ferry:`.
    ReservedPrefix,
    /// A snapshot key already past its expiry.
    Expired,
    /// A value that cannot be written as commands.
    UnsupportedValue,
    /// Module auxiliary data (not carried).
    ModuleAux,
    /// A command without a known key spec.
    UnknownCommand,
    /// A command a cluster cannot run and ferry cannot emulate.
    Unreplayable,
    /// `FLUSHDB`/`FLUSHALL` with a filter: it would delete keys the filter
    /// keeps out.
    FlushWithFilter,
    /// An empty key in the RDB (an empty set, an empty quicklist node):
    /// a server loading the file skips it too.
    EmptyKey,
    /// A module value whose module the target lacks (preflight).
    ModuleMissing,
    /// Two-way sync: a transaction of the opposite ferry (it carries its
    /// checkpoint key), not carried back.
    Echo,
}

impl SkipReason {
    /// The name used in `/status`, metrics and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            SkipReason::FilteredDb => "filtered_db",
            SkipReason::FilteredKey => "filtered_key",
            SkipReason::ReservedPrefix => "reserved_prefix",
            SkipReason::Expired => "expired",
            SkipReason::UnsupportedValue => "unsupported_value",
            SkipReason::ModuleAux => "module_aux",
            SkipReason::UnknownCommand => "unknown_command",
            SkipReason::Unreplayable => "unreplayable",
            SkipReason::FlushWithFilter => "flush_with_filter",
            SkipReason::EmptyKey => "empty_key",
            SkipReason::ModuleMissing => "module_missing",
            SkipReason::Echo => "two_way_echo",
        }
    }

    /// Left out on purpose by the filter (counted, not logged).
    pub fn is_filter(self) -> bool {
        matches!(self, SkipReason::FilteredDb | SkipReason::FilteredKey)
    }
}

impl fmt::Display for SkipReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A key or command not carried: why, which key, and a line for the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skip {
    /// Why.
    pub reason: SkipReason,
    /// The key concerned, when there is one.
    pub key: Option<Bytes>,
    /// What was left out, for the log.
    pub detail: String,
}

/// What the executor does, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// A full sync begins at `offset`: finish every earlier write, start a
    /// new history, checkpoints off (the snapshot is idempotent).
    NewHistory {
        /// The source's replication id.
        replid: String,
        /// The snapshot's offset.
        offset: u64,
    },
    /// Submit one op.
    Write(Op),
    /// Submit these ops as one group (a source `MULTI`/`EXEC`; one
    /// transaction when they share a slot).
    Group(Vec<Op>),
    /// Replay a cross-slot command that reads the target (see
    /// [`crate::emulate`]): between two barriers, reads on the side
    /// connection, writes with `offset`, the destination first.
    Emulate {
        /// The plan (never [`Plan::Split`]: that one is plain ops).
        plan: Plan,
        /// The command, for logs.
        args: Vec<Bytes>,
        /// Its offset.
        offset: u64,
    },
    /// `FLUSHDB`/`FLUSHALL` of dbs mapped to key prefixes: between two
    /// barriers, `SCAN` every master for each prefix and `DEL` the keys the
    /// filter carries, with `offset`.
    FlushPrefixes {
        /// The prefixes whose keys go.
        prefixes: Vec<Bytes>,
        /// The command's offset.
        offset: u64,
    },
    /// `FLUSHALL`/`FLUSHDB` in a cluster source shard's stream: between
    /// two barriers, delete the target's keys in the slots this shard owns
    /// (those the filter carries), with `offset`.
    FlushSlots {
        /// The command's offset.
        offset: u64,
    },
    /// Turn the checkpointed stream on (the snapshot is complete).
    Checkpointing,
    /// Not carried: count it (done by the translator) and log it.
    Skip(Skip),
    /// Remember this key name (of source db `db`, as written to the
    /// target) for the TTL fix-up: it was written with a held expiry.
    Hold {
        /// The source db.
        db: u64,
        /// The key as written to the target.
        key: Bytes,
    },
    /// The stream has caught up: run the fix-up (see
    /// [`Translator::fixup_op`]) for every remembered name, at `offset`,
    /// then forget them. If it cannot run yet, call
    /// [`Translator::fixup_postponed`].
    FixUp {
        /// The offset to give the fix-up ops.
        offset: u64,
    },
}

/// Counters for the status page.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Counters {
    /// Snapshot keys written.
    pub keys_applied: u64,
    /// Stream commands written.
    pub commands_applied: u64,
    /// Cross-slot stream commands replayed by emulation (also counted in
    /// `commands_applied`).
    pub emulated: u64,
    /// Keys or commands not carried, by reason ([`SkipReason::as_str`]).
    pub skipped: BTreeMap<&'static str, u64>,
    /// Keys written with a held expiry (snapshot keys and stream commands).
    pub ttl_held: u64,
    /// Fix-up ops emitted.
    pub ttl_fixups: u64,
    /// Ops dropped because their slot is not owned by this source shard
    /// now (the shard that owns it carries them; not a skip).
    pub moved_slot_dropped: u64,
    /// Snapshot keys handled (written or skipped), fixed when the last
    /// snapshot ended; `None` while one is being applied.
    pub snapshot_keys: Option<u64>,
    /// Two-way sync: commands of the opposite ferry's transactions not
    /// carried back.
    pub echo_commands: u64,
    /// Two-way sync: client writes carried to a key the opposite ferry
    /// wrote within [`CONFLICT_WINDOW_MS`].
    pub conflicts: u64,
}

impl Counters {
    /// Counts one key or command not carried.
    pub fn skip(&mut self, reason: SkipReason) {
        *self.skipped.entry(reason.as_str()).or_default() += 1;
    }
}

/// Decides what each key and command becomes; see the module docs.
#[derive(Debug)]
pub struct Translator {
    cfg: TranslatorConfig,
    builder: CommandBuilder,
    /// The RDB's flavor and version (its header).
    file: Option<(Flavor, u16)>,
    /// The snapshot's offset (every snapshot op carries it + 1).
    snapshot_offset: u64,
    /// The big key being read and whether its first chunk is still to come.
    big: Option<(KeyHeader, bool)>,
    /// Ops of the source transaction being read (between MULTI and EXEC).
    txn: Option<Vec<Op>>,
    /// Standalone: the db the last `SELECT` emitted chose (0 at start).
    selected: u64,
    /// The TTL hold.
    hold: hold::Hold,
    /// Two-way sync state.
    two_way: two_way::TwoWay,
    /// Module type names (RDB module ids) whose module the target lacks,
    /// with the module's name: their keys are skipped (`module_missing`).
    missing_module_types: BTreeMap<String, String>,
    /// Counters.
    pub counters: Counters,
}

/// Bytes for a log line (lossy UTF-8).
pub(crate) fn lossy(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

impl Translator {
    /// A translator deciding by `cfg`.
    pub fn new(cfg: TranslatorConfig) -> Translator {
        let stream_v2_args = cfg.target.rdb_version >= 10;
        Translator {
            cfg,
            builder: CommandBuilder::new(CommandOptions {
                replace: true,
                // Stream counters (ENTRIESADDED, ENTRIESREAD) need Redis
                // 7.0+ (RDB 10+); an older target refuses them.
                stream_v2_args,
                ..Default::default()
            }),
            file: None,
            snapshot_offset: 0,
            big: None,
            txn: None,
            selected: 0,
            hold: hold::Hold::default(),
            two_way: two_way::TwoWay::default(),
            missing_module_types: BTreeMap::new(),
            counters: Counters::default(),
        }
    }

    /// Module types whose module the target lacks (type name → module
    /// name, from the preflight): keys of these types are skipped, counted
    /// as `module_missing` and logged with the key and the module.
    pub fn set_missing_module_types(&mut self, types: BTreeMap<String, String>) {
        self.missing_module_types = types;
    }

    /// Two-way sync on or off (see the `two_way` module).
    pub fn set_two_way(&mut self, on: bool) {
        self.cfg.two_way = on;
    }

    /// Whether two-way sync is on.
    pub fn two_way(&self) -> bool {
        self.cfg.two_way
    }

    /// The filter in force.
    pub fn filter(&self) -> &Filter {
        &self.cfg.filter
    }

    /// A full sync begins at `offset` (`now_ms`: the wall clock): whatever
    /// a source transaction had buffered is dropped (the new history
    /// supersedes it).
    pub fn full_sync(&mut self, replid: &str, offset: u64, now_ms: i64, out: &mut Vec<Action>) {
        self.txn = None;
        self.hold = hold::Hold {
            active: self.cfg.ttl_hold,
            in_snapshot: true,
            sync_ms: now_ms,
            ..hold::Hold::default()
        };
        self.snapshot_offset = offset;
        self.file = None;
        self.counters.snapshot_keys = None;
        out.push(Action::NewHistory {
            replid: replid.to_owned(),
            offset,
        });
    }

    /// The snapshot is complete.
    pub fn snapshot_end(&mut self, out: &mut Vec<Action>) {
        self.hold.in_snapshot = false;
        let c = &self.counters;
        self.counters.snapshot_keys = Some(c.keys_applied + c.skipped.values().sum::<u64>());
        if self.cfg.checkpoints {
            out.push(Action::Checkpointing);
        }
    }

    /// Records and emits a skip.
    fn skip(
        &mut self,
        out: &mut Vec<Action>,
        reason: SkipReason,
        key: Option<&Bytes>,
        detail: String,
    ) {
        self.counters.skip(reason);
        out.push(Action::Skip(Skip {
            reason,
            key: key.cloned(),
            detail,
        }));
    }

    /// Emits one op: into the source transaction being buffered, or alone.
    fn write(&mut self, out: &mut Vec<Action>, op: Op) {
        if let Some(txn) = &mut self.txn {
            txn.push(op);
            // Two-way: the whole transaction waits for EXEC (the other
            // ferry's checkpoint comes last).
            if txn.len() >= MAX_TXN_OPS && !self.cfg.two_way {
                out.push(Action::Group(std::mem::take(txn)));
            }
            return;
        }
        out.push(Action::Write(op));
    }

    /// Emits the buffered source transaction as one group (nothing if
    /// empty); the transaction ends.
    fn end_txn(&mut self, out: &mut Vec<Action>) {
        if let Some(ops) = self.txn.take()
            && !ops.is_empty()
        {
            out.push(Action::Group(ops));
        }
    }

    /// Standalone: `SELECT db` if the ops before were for another db.
    fn select(&mut self, db: u64, offset: u64, out: &mut Vec<Action>) {
        if self.cfg.standalone && db != self.selected {
            self.selected = db;
            let args = vec![Bytes::from_static(b"SELECT"), db.to_string().into()];
            self.write(out, Op::slot(args, 0, offset));
        }
    }

    /// The key prefix of source db `db` (`filter.db_prefix`; cluster only).
    fn prefix(&self, db: u64) -> Option<Bytes> {
        if self.cfg.standalone {
            return None;
        }
        self.cfg.filter.prefix_for(db)
    }

    /// Whether keys of `db` are carried.
    fn keep_db(&self, db: u64) -> bool {
        self.cfg.filter.carries_db(db, self.cfg.standalone)
    }
}

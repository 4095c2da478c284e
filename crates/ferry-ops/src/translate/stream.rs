//! Stream commands: what each replicated command becomes.

use bytes::Bytes;

use super::{Action, SkipReason, Translator, lossy};
use crate::emulate::{Plan, plan};
use crate::filter::is_reserved;
use crate::keys::command_keys;
use crate::op::{Args, Op, Tolerate};
use crate::split::{Route, Unreplayable, route, route_owned};

impl Translator {
    /// `MULTI`: a source transaction starts; its ops are buffered.
    pub fn multi(&mut self, out: &mut Vec<Action>) {
        // A nested MULTI cannot happen; keep what was read anyway.
        self.end_txn(out);
        self.txn = Some(Vec::new());
        if self.cfg.two_way {
            self.two_way_multi();
        }
    }

    /// `EXEC`: the buffered transaction goes out as one group (two-way:
    /// unless it is the opposite ferry's).
    pub fn exec(&mut self, out: &mut Vec<Action>) {
        if self.cfg.two_way {
            self.two_way_exec();
        }
        self.end_txn(out);
    }

    /// One replicated command `args` of source db `db`, ending at `offset`
    /// (`now_ms`: the wall clock, for the TTL hold).
    pub fn command(
        &mut self,
        args: impl Into<Args>,
        db: u64,
        offset: u64,
        now_ms: i64,
        out: &mut Vec<Action>,
    ) {
        self.command_in(&mut args.into(), db, offset, now_ms, out);
    }

    /// [`command`](Self::command) for arguments the caller holds in place
    /// (a decoded stream event's): they move into the op where they go
    /// on as they are, and are left in any state.
    pub fn command_in(
        &mut self,
        args: &mut Args,
        db: u64,
        offset: u64,
        now_ms: i64,
        out: &mut Vec<Action>,
    ) {
        self.stream_position(offset);
        if args.is_empty() {
            return;
        }
        if is_sentinel_hello(args) {
            return;
        }
        if self.cfg.two_way && self.two_way_command(args, now_ms) {
            return;
        }
        if !self.keep_db(db) {
            self.counters.skip(SkipReason::FilteredDb);
            return;
        }
        if !self.filter_keys(args, out) {
            return;
        }
        if let Some(p) = self.prefix(db) {
            let flushdb = args[0].eq_ignore_ascii_case(b"FLUSHDB");
            if flushdb || args[0].eq_ignore_ascii_case(b"FLUSHALL") {
                // A db is a prefix here: delete the keys under it (under
                // every carried db's prefix for FLUSHALL).
                let prefixes: Vec<Bytes> = if flushdb {
                    vec![p]
                } else {
                    let dbs = self.cfg.filter.dbs.clone();
                    dbs.iter().filter_map(|&d| self.prefix(d)).collect()
                };
                self.between_barriers(out, Action::FlushPrefixes { prefixes, offset });
                self.counters.emulated += 1;
                self.counters.commands_applied += 1;
                return;
            }
            *args = match crate::rewrite::prefix_keys(args, &p) {
                Ok(a) => Args::from_vec(a),
                Err(e) => {
                    self.skip(out, SkipReason::UnknownCommand, None, e.to_string());
                    return;
                }
            };
        }
        self.hold_command(args, db, now_ms, out);
        if self.cfg.source_shard {
            // A key MIGRATEd between source shards: the other shard's link
            // may already have written it (the links are not ordered).
            restore_asking_replace(args);
        }
        // A cluster target: a one-slot command's arguments move into its
        // route (no copy); `args` keeps them for every other route.
        let routed = if self.cfg.standalone {
            route(args)
        } else {
            route_owned(args)
        };
        let route = match routed {
            Ok(r) => r,
            Err(e) => {
                self.skip(out, SkipReason::UnknownCommand, None, e.to_string());
                return;
            }
        };
        if self.cfg.source_shard
            && matches!(route, Route::AllMasters)
            && (args[0].eq_ignore_ascii_case(b"FLUSHALL")
                || args[0].eq_ignore_ascii_case(b"FLUSHDB"))
        {
            // The target holds other shards' keys too: only this shard's go.
            self.between_barriers(out, Action::FlushSlots { offset });
            self.counters.emulated += 1;
            self.counters.commands_applied += 1;
            return;
        }
        let tolerate = if self.cfg.source_shard {
            // Each source master's stream carries its own copy of an
            // every-master command (a client runs it on every master): the
            // second copy into the same target master must not fail.
            every_master_copy(args)
        } else {
            Tolerate::Nothing
        };
        if self.cfg.standalone {
            return self.standalone(std::mem::take(args), route, db, offset, tolerate, out);
        }
        match route {
            Route::Slot(slot, args) => self.write(out, Op::slot(args, slot, offset)),
            Route::PerSlot(parts) => {
                for (slot, args) in parts {
                    self.write(out, Op::slot(args, slot, offset));
                }
            }
            Route::AllMasters => {
                let flush = args[0].eq_ignore_ascii_case(b"FLUSHALL")
                    || args[0].eq_ignore_ascii_case(b"FLUSHDB");
                let filtering = self.cfg.filter.has_key_rules() || self.cfg.filter.dbs.len() > 1;
                if flush && filtering {
                    // It would also delete keys the filter keeps out of this migration.
                    let detail = format!("{} (db {db})", lossy(&args[0]));
                    self.skip(out, SkipReason::FlushWithFilter, None, detail);
                    return;
                }
                self.write(
                    out,
                    Op::all_masters(std::mem::take(args), offset).tolerating(tolerate),
                );
            }
            Route::None(_) => return,
            Route::Unreplayable { reason } => {
                // Cross-slot: emulated when a plan exists.
                let planned = match reason {
                    Unreplayable::CrossSlot { .. } => plan(args).ok(),
                    _ => None,
                };
                match planned {
                    Some(Plan::Split(parts)) => {
                        // No reads: the parts are independent writes, one slot each.
                        for (slot, part) in parts {
                            self.write(out, Op::slot(part, slot, offset));
                        }
                        self.counters.emulated += 1;
                    }
                    Some(plan) => {
                        // Counted by the executor once it has run.
                        self.between_barriers(
                            out,
                            Action::Emulate {
                                plan,
                                args: std::mem::take(args).into_vec(),
                                offset,
                            },
                        );
                        return;
                    }
                    None => {
                        // The first key (a script's body or a channel is not one).
                        let key = command_keys(args)
                            .ok()
                            .and_then(|k| k.keys(args).next().cloned());
                        let detail = reason.to_string();
                        self.skip(out, SkipReason::Unreplayable, key.as_ref(), detail);
                        return;
                    }
                }
            }
        }
        self.counters.commands_applied += 1;
    }

    /// Emits `action` (which runs between barriers) outside any source
    /// transaction: what the transaction buffered goes first (one group),
    /// the rest of it is buffered anew after.
    fn between_barriers(&mut self, out: &mut Vec<Action>, action: Action) {
        let in_txn = self.txn.is_some();
        self.end_txn(out);
        out.push(action);
        if in_txn {
            self.txn = Some(Vec::new());
        }
    }

    /// A stream command into a standalone target: in its db, as it is (no
    /// splitting: one server runs multi-key and cross-db commands itself).
    fn standalone(
        &mut self,
        args: Args,
        route: Route,
        db: u64,
        offset: u64,
        tolerate: Tolerate,
        out: &mut Vec<Action>,
    ) {
        match route {
            Route::None(_) => return,
            Route::Unreplayable {
                reason: reason @ Unreplayable::Publish { .. },
            } => {
                self.skip(out, SkipReason::Unreplayable, None, reason.to_string());
                return;
            }
            Route::AllMasters => {
                let flushall = args[0].eq_ignore_ascii_case(b"FLUSHALL");
                let filtering = self.cfg.filter.has_key_rules()
                    || (flushall && !self.cfg.filter.dbs.is_empty());
                if (args[0].eq_ignore_ascii_case(b"FLUSHDB") || flushall) && filtering {
                    // It would also delete keys the filter keeps out.
                    let detail = format!("{} (db {db})", lossy(&args[0]));
                    self.skip(out, SkipReason::FlushWithFilter, None, detail);
                    return;
                }
            }
            _ => {}
        }
        self.select(db, offset, out);
        self.write(out, Op::slot(args, 0, offset).tolerating(tolerate));
        self.counters.commands_applied += 1;
    }

    /// Applies the key filter to a command: all keys pass → `true`, as is;
    /// none → `false` (counted); some → `true` with `args` rewritten to the
    /// passing keys of a per-key command (DEL, UNLINK, TOUCH, MSET), or
    /// `false` reported as unreplayable.
    fn filter_keys(&mut self, args: &mut Args, out: &mut Vec<Action>) -> bool {
        // Without prefix rules only a reserved key is left out, and no key
        // is reserved when no argument is: no need to find the keys.
        if !self.cfg.filter.has_key_rules() && !args.iter().skip(1).any(|a| is_reserved(a)) {
            return true;
        }
        let keys = match command_keys(args) {
            Ok(k) => k,
            Err(_) => return true, // reported by `route`
        };
        let passes = |i: usize| self.cfg.filter.key(&args[i]) && !is_reserved(&args[i]);
        if keys.indexes.iter().all(|&i| passes(i)) {
            return true;
        }
        let pass: Vec<bool> = keys.indexes.iter().map(|&i| passes(i)).collect();
        if let Some(&i) = keys.indexes.iter().find(|&&i| is_reserved(&args[i])) {
            let detail = format!("{} {}", lossy(&args[0]), lossy(&args[i]));
            self.skip(out, SkipReason::ReservedPrefix, Some(&args[i]), detail);
            if !pass.iter().any(|p| *p) {
                return false;
            }
        }
        if !pass.iter().any(|p| *p) {
            self.counters.skip(SkipReason::FilteredKey);
            return false;
        }
        let name = args[0].to_ascii_uppercase();
        let pairs = match &name[..] {
            b"DEL" | b"UNLINK" | b"TOUCH" => 1,
            b"MSET" | b"MSETNX" => 2,
            _ => {
                let detail = format!(
                    "{} with keys both inside and outside the filter",
                    lossy(&args[0])
                );
                let key = keys.indexes.first().map(|&i| args[i].clone());
                self.skip(out, SkipReason::Unreplayable, key.as_ref(), detail);
                return false;
            }
        };
        let mut kept: Args = smallvec::smallvec![if pairs == 2 {
            Bytes::from_static(b"MSET")
        } else {
            args[0].clone()
        }];
        for (n, &i) in keys.indexes.iter().enumerate() {
            if pass[n] {
                kept.extend(args[i..i + pairs].iter().cloned());
            }
        }
        *args = kept;
        true
    }
}

/// `PUBLISH __sentinel__:…`: a Sentinel's hello (every 2 s per sentinel,
/// on the master it watches, so it is in the replication stream). Not the
/// application's traffic: dropped without a skip warning.
fn is_sentinel_hello(args: &[Bytes]) -> bool {
    args.len() == 3
        && args[0].eq_ignore_ascii_case(b"PUBLISH")
        && args[1].starts_with(b"__sentinel__:")
}

/// `RESTORE-ASKING k ttl payload …` (a cluster source's `MIGRATE`, on the
/// importing shard's stream) → `RESTORE k ttl payload … REPLACE`: the key
/// may already be on the target, written by the exporting shard's link; the
/// importing master's copy is the newer one. (The gate drops it when the
/// slot is not this shard's yet; the resync of the gaining shard then
/// reloads the slot.)
fn restore_asking_replace(args: &mut Args) {
    if args.len() < 4 || !args[0].eq_ignore_ascii_case(b"RESTORE-ASKING") {
        return;
    }
    args[0] = Bytes::from_static(b"RESTORE");
    if !args[4..].iter().any(|a| a.eq_ignore_ascii_case(b"REPLACE")) {
        args.push(Bytes::from_static(b"REPLACE"));
    }
}

/// A cluster source shard's copy of an every-master command, made
/// harmless when another shard's copy has already run on the target:
/// `FUNCTION LOAD code` → `FUNCTION LOAD REPLACE code`; `FUNCTION RESTORE
/// payload` without a policy or with `APPEND` → `… REPLACE` (on the source
/// master `APPEND` found no such library, so `REPLACE` did the same there);
/// `FUNCTION DELETE lib` may be answered `Library not found` (another
/// shard's copy deleted it): tolerated, counted by the writer. `FUNCTION
/// FLUSH`, `SCRIPT FLUSH`, `SCRIPT LOAD` and a `FUNCTION RESTORE … FLUSH`
/// or `REPLACE` succeed again as they are.
fn every_master_copy(args: &mut Args) -> Tolerate {
    if args.len() < 3 || !args[0].eq_ignore_ascii_case(b"FUNCTION") {
        return Tolerate::Nothing;
    }
    if args[1].eq_ignore_ascii_case(b"LOAD") {
        let has = args[2..args.len() - 1]
            .iter()
            .any(|a| a.eq_ignore_ascii_case(b"REPLACE"));
        if !has {
            args.insert(2, Bytes::from_static(b"REPLACE"));
        }
    } else if args[1].eq_ignore_ascii_case(b"RESTORE") {
        if args.len() == 3 {
            args.push(Bytes::from_static(b"REPLACE"));
        } else if args.len() == 4 && args[3].eq_ignore_ascii_case(b"APPEND") {
            args[3] = Bytes::from_static(b"REPLACE");
        }
    } else if args[1].eq_ignore_ascii_case(b"DELETE") && args.len() == 3 {
        return Tolerate::LibraryNotFound;
    }
    Tolerate::Nothing
}

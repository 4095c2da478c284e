//! Where a replicated command goes on a cluster target.
//!
//! ```text
//! route(args)
//!   SET k v / HSET / XADD / single-slot RENAME ...  -> Slot(slot, args)
//!   MSET|MSETNX|MSETEX|DEL|UNLINK|TOUCH across slots -> PerSlot([(slot, MSET/DEL ... keys of that slot)])
//!   FLUSHALL|FLUSHDB, FUNCTION LOAD|DELETE|FLUSH|RESTORE,
//!   SCRIPT LOAD|FLUSH                                -> AllMasters
//!   PING, REPLCONF, SELECT, MULTI, EXEC, DISCARD, OPINFO -> None(kind)   (the caller's business)
//!   other multi-key commands across slots            -> Unreplayable { CrossSlot }  (needs emulation)
//!   EVAL/FCALL declaring no keys                     -> Unreplayable { NoDeclaredKeys }
//!   PUBLISH / SPUBLISH                               -> Unreplayable { Publish }  (would broadcast)
//!   SWAPDB, MOVE, COPY ... DB n                      -> Unreplayable { CrossDb }
//! ```
//!
//! Splitting is exact only where the source already succeeded and the
//! effect is per key: `MSET` sets each pair, `DEL`/`UNLINK`/`TOUCH` act on
//! each key. `MSETNX` reaches the stream only when it set every key, so it is
//! replayed as `MSET` (split or not): its effect, not its condition; likewise
//! Valkey's `MSETEX n k v ... [NX|XX] [PXAT t|KEEPTTL]` (the master rewrites
//! relative expiries to `PXAT`) loses `NX`/`XX` and each slot gets its own
//! count. Within a
//! slot, keys keep their original relative order; groups come in the order
//! their slot first appears. Everything else whose keys span slots
//! (`RENAME`, `SMOVE`, `ZUNIONSTORE`, `BITOP`, scripts, ...) needs emulation
//! after a barrier, which is not this crate's job: it is reported.

use std::collections::HashMap;

use bytes::Bytes;

use crate::keys::{Class, K1, KeyError, Keys, NoKeysKind, command_keys, key_spec, keys_by_spec};
use crate::op::Args;
use crate::show;
use crate::slot::key_slot;

/// How a command's keys fall into slots.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Split {
    /// Every key is in this slot.
    Single(u16),
    /// A splittable command (`MSET`, `MSETNX`, `MSETEX`, `DEL`, `UNLINK`,
    /// `TOUCH`) whose keys span slots: one command per slot, each a whole
    /// argument list (`MSETNX` becomes `MSET`, `MSETEX` loses `NX`/`XX`).
    PerSlot(Vec<(u16, Vec<Bytes>)>),
    /// The command cannot be sent as is, nor split.
    NeedsEmulation {
        /// Why.
        reason: Unreplayable,
    },
}

/// Why a command cannot be replayed into a cluster as it stands.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Unreplayable {
    /// The keys span slots and the command's meaning does not survive a
    /// split (`RENAME`, `SMOVE`, `ZUNIONSTORE`, `BITOP`, `EVAL`, ...): it
    /// needs emulation (barrier, read inputs from the target, write).
    #[error("{} keys span slots {slots:?}: needs emulation", show(.command))]
    CrossSlot {
        /// The command name as received.
        command: Bytes,
        /// The distinct slots of its keys, in order of first appearance
        /// (the first 16 at most).
        slots: Vec<u16>,
    },
    /// A script declaring no keys: a cluster cannot tell where it runs.
    #[error("{} declares no keys: no slot to send it to", show(.command))]
    NoDeclaredKeys {
        /// The command name as received.
        command: Bytes,
    },
    /// `PUBLISH`/`SPUBLISH` from a standalone source: replayed into a
    /// cluster it would broadcast, so it is filtered by default.
    #[error("{} is filtered: replayed into a cluster it would broadcast", show(.command))]
    Publish {
        /// The command name as received.
        command: Bytes,
    },
    /// A database-level operation (`SWAPDB`, `MOVE`, `COPY ... DB n`) that a
    /// cluster refuses unless the caller maps databases.
    #[error("{} acts across databases: not allowed in cluster mode", show(.command))]
    CrossDb {
        /// The command name as received.
        command: Bytes,
    },
}

/// Where a replicated command goes on a cluster target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// Send these arguments to the master owning this slot. They equal the
    /// input except that `MSETNX` is replayed as `MSET` and `MSETEX` without
    /// `NX`/`XX`.
    Slot(u16, Args),
    /// Send each command to the master owning its slot (a split `MSET`,
    /// `MSETNX`, `MSETEX`, `DEL`, `UNLINK` or `TOUCH`). Slots are distinct;
    /// order between them does not matter, order within each is the original.
    PerSlot(Vec<(u16, Vec<Bytes>)>),
    /// Send the command unchanged to every master (`FLUSHALL`, `FLUSHDB`,
    /// `FUNCTION LOAD|DELETE|FLUSH|RESTORE`, `SCRIPT LOAD|FLUSH`).
    AllMasters,
    /// Not routed: the caller handles it (`SELECT`, `MULTI`, `EXEC`,
    /// `DISCARD`, `PING`, `REPLCONF`, vendor noise).
    None(NoKeysKind),
    /// Cannot be replayed as it stands; report it.
    Unreplayable {
        /// Why.
        reason: Unreplayable,
    },
}

/// How the keys of `args` (found by [`command_keys`]) fall into slots.
///
/// `keys` must come from `command_keys(args)`; indexes past the end of
/// `args` are ignored.
pub fn split(args: &[Bytes], keys: &Keys) -> Split {
    if let [i] = keys.indexes[..]
        && let Some(key) = args.get(i)
    {
        // One key: its slot, without the iterators below.
        return Split::Single(key_slot(key));
    }
    let name = || args.first().cloned().unwrap_or_default();
    let mut slots = keys.keys(args).map(|k| key_slot(k));
    let Some(first) = slots.next() else {
        return Split::NeedsEmulation {
            reason: Unreplayable::NoDeclaredKeys { command: name() },
        };
    };
    if slots.all(|s| s == first) {
        return Split::Single(first);
    }
    let name = name();
    match Splittable::of(&name) {
        Some(how) => Split::PerSlot(per_slot(args, keys, how)),
        None => {
            let mut distinct: Vec<u16> = Vec::new();
            for s in keys.keys(args).map(|k| key_slot(k)) {
                if !distinct.contains(&s) {
                    distinct.push(s);
                }
                if distinct.len() == 16 {
                    break;
                }
            }
            Split::NeedsEmulation {
                reason: Unreplayable::CrossSlot {
                    command: name,
                    slots: distinct,
                },
            }
        }
    }
}

/// Where a replicated command goes on a cluster target (see the module docs).
///
/// ```
/// use bytes::Bytes;
/// use ferry_ops::{Route, key_slot, route};
/// let args: Vec<Bytes> = ["DEL", "a", "{a}x", "b"].into_iter().map(Bytes::from).collect();
/// let Route::PerSlot(groups) = route(&args)? else { panic!() };
/// assert_eq!(groups[0], (key_slot(b"a"), vec![args[0].clone(), args[1].clone(), args[2].clone()]));
/// assert_eq!(groups[1], (key_slot(b"b"), vec![args[0].clone(), args[3].clone()]));
/// # Ok::<(), ferry_ops::KeyError>(())
/// ```
///
/// # Errors
/// The [`KeyError`]s of [`command_keys`], and
/// [`KeyError::UnknownSubcommand`] / [`KeyError::MissingArguments`] for a
/// `FUNCTION` or `SCRIPT` subcommand that is not a propagated write.
pub fn route(args: &[Bytes]) -> Result<Route, KeyError> {
    let keys = command_keys(args)?;
    route_keys(args, &keys)
}

/// [`route`] for a caller that owns `args`: a [`Route::Slot`]'s arguments
/// are `args` themselves, taken out of it (left empty) and rewritten in
/// place where the effect needs it, instead of a copy. Every other route
/// leaves `args` as it was.
///
/// ```
/// use bytes::Bytes;
/// use ferry_ops::{Args, Route, key_slot, route, route_owned};
/// let mut args: Args = ["MSETNX", "{a}1", "x", "{a}2", "y"].into_iter().map(Bytes::from).collect();
/// let copied = route(&args)?;
/// let Route::Slot(slot, taken) = route_owned(&mut args)? else { panic!() };
/// assert_eq!(slot, key_slot(b"a"));
/// assert_eq!(copied, Route::Slot(slot, taken));
/// assert!(args.is_empty());
/// # Ok::<(), ferry_ops::KeyError>(())
/// ```
///
/// # Errors
/// As [`route`].
pub fn route_owned(args: &mut Args) -> Result<Route, KeyError> {
    let spec = key_spec(args.first().ok_or(KeyError::Empty)?);
    if spec == K1 && args.len() >= 2 {
        // One key at index 1 (`SET`, `INCR`, `LPUSH`, `HSET`, ...: most of
        // a stream): its slot, the arguments as they are (no command of
        // this spec is split or rewritten; a test checks the table).
        let slot = key_slot(&args[1]);
        return Ok(Route::Slot(slot, std::mem::take(args)));
    }
    let keys = keys_by_spec(args, spec)?;
    if keys.class != Class::DataKeys {
        return route_keys(args, &keys);
    }
    Ok(match split(args, &keys) {
        Split::Single(slot) => {
            effect_in_place(args, &keys);
            Route::Slot(slot, std::mem::take(args))
        }
        Split::PerSlot(groups) => Route::PerSlot(groups),
        Split::NeedsEmulation { reason } => Route::Unreplayable { reason },
    })
}

/// The route of `args`, whose keys are `keys`.
fn route_keys(args: &[Bytes], keys: &Keys) -> Result<Route, KeyError> {
    let name = &args[0];
    match keys.class {
        Class::NoKeys(kind) => no_keys(args, kind),
        Class::CrossDb => Ok(Route::Unreplayable {
            reason: Unreplayable::CrossDb {
                command: name.clone(),
            },
        }),
        Class::DataKeys => Ok(match split(args, keys) {
            Split::Single(slot) => Route::Slot(slot, effect_only(args, keys)),
            Split::PerSlot(groups) => Route::PerSlot(groups),
            Split::NeedsEmulation { reason } => Route::Unreplayable { reason },
        }),
    }
}

/// The route of a keyless command.
fn no_keys(args: &[Bytes], kind: NoKeysKind) -> Result<Route, KeyError> {
    let name = &args[0];
    let subcommand = |allowed: &[&[u8]]| {
        let sub = args.get(1).ok_or_else(|| KeyError::MissingArguments {
            command: name.clone(),
            got: args.len(),
        })?;
        if allowed.iter().any(|a| sub.eq_ignore_ascii_case(a)) {
            Ok(Route::AllMasters)
        } else {
            Err(KeyError::UnknownSubcommand {
                command: name.clone(),
                subcommand: sub.clone(),
            })
        }
    };
    match kind {
        NoKeysKind::Flush => Ok(Route::AllMasters),
        NoKeysKind::Function => subcommand(&[b"LOAD", b"DELETE", b"FLUSH", b"RESTORE"]),
        NoKeysKind::Script => subcommand(&[b"LOAD", b"FLUSH"]),
        NoKeysKind::Publish => Ok(Route::Unreplayable {
            reason: Unreplayable::Publish {
                command: name.clone(),
            },
        }),
        NoKeysKind::SwapDb => Ok(Route::Unreplayable {
            reason: Unreplayable::CrossDb {
                command: name.clone(),
            },
        }),
        NoKeysKind::Select
        | NoKeysKind::Multi
        | NoKeysKind::Exec
        | NoKeysKind::Discard
        | NoKeysKind::Ping
        | NoKeysKind::Replconf
        | NoKeysKind::Vendor => Ok(Route::None(kind)),
    }
}

/// The arguments that replay the source's effect: `MSETNX` becomes `MSET`,
/// and `MSETEX` loses its `NX`/`XX` condition (it held on the source, or
/// the command would not have been propagated).
fn effect_only(args: &[Bytes], keys: &Keys) -> Args {
    match Splittable::of(&args[0]) {
        Some(Splittable::Pairs) => {
            let mut out = Args::from(args);
            out[0] = Bytes::from_static(b"MSET");
            out
        }
        Some(Splittable::CountedPairs) => {
            let options = options_after_pairs(args, keys);
            let mut out = Args::from(&args[..args.len() - options.len()]);
            out.extend(unconditional(options));
            out
        }
        Some(Splittable::Keys) | None => Args::from(args),
    }
}

/// [`effect_only`] rewriting `args` itself (nothing to do for most
/// commands).
fn effect_in_place(args: &mut Args, keys: &Keys) {
    match Splittable::of(&args[0]) {
        Some(Splittable::Pairs) => args[0] = Bytes::from_static(b"MSET"),
        Some(Splittable::CountedPairs) => {
            let end = args.len() - options_after_pairs(args, keys).len();
            let options: Vec<Bytes> = args.drain(end..).collect();
            args.extend(unconditional(&options));
        }
        Some(Splittable::Keys) | None => {}
    }
}

/// `MSETEX`'s options: the arguments after its last key/value pair.
fn options_after_pairs<'a>(args: &'a [Bytes], keys: &Keys) -> &'a [Bytes] {
    let end = keys.indexes.last().map_or(args.len(), |&k| k + 2);
    args.get(end..).unwrap_or_default()
}

/// Options without `NX`/`XX`.
fn unconditional(options: &[Bytes]) -> impl Iterator<Item = Bytes> + '_ {
    options
        .iter()
        .filter(|o| !o.eq_ignore_ascii_case(b"NX") && !o.eq_ignore_ascii_case(b"XX"))
        .cloned()
}

/// The commands whose per-slot split is exact.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Splittable {
    /// Key/value pairs (`MSET`, `MSETNX`): each group is an `MSET`.
    Pairs,
    /// `MSETEX numkeys k v ... [options]`: each group is an `MSETEX` with
    /// its own count and the options minus `NX`/`XX`.
    CountedPairs,
    /// A list of keys (`DEL`, `UNLINK`, `TOUCH`): each group keeps the name.
    Keys,
}

impl Splittable {
    fn of(name: &[u8]) -> Option<Splittable> {
        let is = |n: &[u8]| name.eq_ignore_ascii_case(n);
        if is(b"MSET") || is(b"MSETNX") {
            Some(Splittable::Pairs)
        } else if is(b"MSETEX") {
            Some(Splittable::CountedPairs)
        } else if is(b"DEL") || is(b"UNLINK") || is(b"TOUCH") {
            Some(Splittable::Keys)
        } else {
            None
        }
    }
}

/// One command per slot, slots in order of first appearance, keys (with
/// their values for pairs) in original order within each.
fn per_slot(args: &[Bytes], keys: &Keys, how: Splittable) -> Vec<(u16, Vec<Bytes>)> {
    let name = match how {
        Splittable::Pairs => Bytes::from_static(b"MSET"),
        Splittable::CountedPairs | Splittable::Keys => args[0].clone(),
    };
    let mut groups: Vec<(u16, Vec<Bytes>)> = Vec::new();
    let mut by_slot: HashMap<u16, usize> = HashMap::new();
    for &i in &keys.indexes {
        let Some(key) = args.get(i) else { continue };
        let slot = key_slot(key);
        let g = *by_slot.entry(slot).or_insert_with(|| {
            groups.push((slot, vec![name.clone()]));
            groups.len() - 1
        });
        let group = &mut groups[g].1;
        group.push(key.clone());
        if how != Splittable::Keys {
            group.extend(args.get(i + 1).cloned());
        }
    }
    if how == Splittable::CountedPairs {
        let options = options_after_pairs(args, keys);
        for (_, group) in &mut groups {
            let count = (group.len() - 1) / 2;
            group.insert(1, Bytes::from(count.to_string()));
            group.extend(unconditional(options));
        }
    }
    groups
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> Vec<Bytes> {
        s.split(' ')
            .map(|a| Bytes::copy_from_slice(a.as_bytes()))
            .collect()
    }

    fn slot(k: &str) -> u16 {
        key_slot(k.as_bytes())
    }

    #[test]
    fn no_one_key_command_is_split_or_rewritten() {
        // `route_owned`'s fast path for `K1` relies on it.
        for (name, spec) in crate::keys::table() {
            if *spec == K1 {
                assert_eq!(Splittable::of(name.as_bytes()), None, "{name}");
            }
        }
        let mut owned: Args = args("hset h f v").into();
        assert_eq!(
            route_owned(&mut owned),
            Ok(Route::Slot(slot("h"), args("hset h f v").into()))
        );
        assert!(owned.is_empty());
        let mut short: Args = args("INCR").into();
        assert_eq!(route_owned(&mut short), route(&args("INCR")));
        assert_eq!(short[..], args("INCR")[..]);
        assert_eq!(route_owned(&mut Args::new()), Err(KeyError::Empty));
    }

    #[test]
    fn single_slot() {
        assert_eq!(
            route(&args("SET k v")),
            Ok(Route::Slot(slot("k"), args("SET k v").into()))
        );
        assert_eq!(
            route(&args("RENAME {u}a {u}b")),
            Ok(Route::Slot(slot("u"), args("RENAME {u}a {u}b").into()))
        );
        assert_eq!(
            route(&args("MSETNX {u}a 1 {u}b 2")),
            Ok(Route::Slot(slot("u"), args("MSET {u}a 1 {u}b 2").into()))
        );
        assert_eq!(
            route(&args("EVAL body 2 {t}1 {t}2 arg")),
            Ok(Route::Slot(
                slot("t"),
                args("EVAL body 2 {t}1 {t}2 arg").into()
            ))
        );
    }

    #[test]
    fn splits_mset_and_del() {
        // "a" and "{a}z" share a slot; "b" and "c" do not.
        assert_ne!(slot("a"), slot("b"));
        assert_ne!(slot("b"), slot("c"));
        assert_ne!(slot("a"), slot("c"));
        assert_eq!(
            route(&args("MSETNX a 1 b 2 {a}z 3 c 4")),
            Ok(Route::PerSlot(vec![
                (slot("a"), args("MSET a 1 {a}z 3")),
                (slot("b"), args("MSET b 2")),
                (slot("c"), args("MSET c 4")),
            ]))
        );
        assert_eq!(
            route(&args("MSETEX 3 a 1 b 2 {a}z 3 NX PXAT 99")),
            Ok(Route::PerSlot(vec![
                (slot("a"), args("MSETEX 2 a 1 {a}z 3 PXAT 99")),
                (slot("b"), args("MSETEX 1 b 2 PXAT 99")),
            ]))
        );
        assert_eq!(
            route(&args("MSETEX 2 {a}1 NX {a}2 XX xx KEEPTTL")),
            Ok(Route::Slot(
                slot("a"),
                args("MSETEX 2 {a}1 NX {a}2 XX KEEPTTL").into()
            ))
        );
        assert_eq!(
            route(&args("unlink b a c {b}1")),
            Ok(Route::PerSlot(vec![
                (slot("b"), args("unlink b {b}1")),
                (slot("a"), args("unlink a")),
                (slot("c"), args("unlink c")),
            ]))
        );
    }

    #[test]
    fn cross_slot_needs_emulation() {
        for cmd in [
            "RENAME a b",
            "SMOVE a b m",
            "ZUNIONSTORE d 2 a b",
            "BITOP OR d a",
            "EVAL s 2 a b",
            "SORT a STORE b",
        ] {
            let a = args(cmd);
            match route(&a) {
                Ok(Route::Unreplayable {
                    reason: Unreplayable::CrossSlot { command, slots },
                }) => {
                    assert_eq!(command, a[0]);
                    assert!(slots.len() >= 2, "{cmd}");
                }
                other => panic!("{cmd}: {other:?}"),
            }
        }
        let reason = Unreplayable::CrossSlot {
            command: Bytes::from_static(b"RENAME"),
            slots: vec![15495, 3300],
        };
        assert_eq!(
            reason.to_string(),
            "RENAME keys span slots [15495, 3300]: needs emulation"
        );
    }

    #[test]
    fn control_commands() {
        assert_eq!(route(&args("FLUSHALL ASYNC")), Ok(Route::AllMasters));
        assert_eq!(route(&args("FLUSHDB")), Ok(Route::AllMasters));
        assert_eq!(route(&args("FUNCTION LOAD code")), Ok(Route::AllMasters));
        assert_eq!(
            route(&args("function restore x REPLACE")),
            Ok(Route::AllMasters)
        );
        assert_eq!(route(&args("SCRIPT LOAD body")), Ok(Route::AllMasters));
        assert!(matches!(
            route(&args("FUNCTION LIST")),
            Err(KeyError::UnknownSubcommand { .. })
        ));
        assert!(matches!(
            route(&args("SCRIPT")),
            Err(KeyError::MissingArguments { .. })
        ));
        for (cmd, kind) in [
            ("PING", NoKeysKind::Ping),
            ("REPLCONF GETACK *", NoKeysKind::Replconf),
            ("SELECT 0", NoKeysKind::Select),
            ("MULTI", NoKeysKind::Multi),
            ("EXEC", NoKeysKind::Exec),
            ("OPINFO x", NoKeysKind::Vendor),
        ] {
            assert_eq!(route(&args(cmd)), Ok(Route::None(kind)), "{cmd}");
        }
        for cmd in ["PUBLISH ch m", "SPUBLISH ch m"] {
            assert!(matches!(
                route(&args(cmd)),
                Ok(Route::Unreplayable {
                    reason: Unreplayable::Publish { .. }
                })
            ));
        }
        for cmd in ["SWAPDB 0 1", "MOVE k 1", "COPY a b DB 2"] {
            assert!(
                matches!(
                    route(&args(cmd)),
                    Ok(Route::Unreplayable {
                        reason: Unreplayable::CrossDb { .. }
                    })
                ),
                "{cmd}"
            );
        }
        assert!(matches!(
            route(&args("EVALSHA sha 0")),
            Ok(Route::Unreplayable {
                reason: Unreplayable::NoDeclaredKeys { .. }
            })
        ));
        assert!(matches!(
            route(&args("BLPOP a 0")),
            Err(KeyError::UnknownCommand { .. })
        ));
        assert_eq!(route(&[]), Err(KeyError::Empty));
    }
}

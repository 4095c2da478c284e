//! Plans for replaying a command whose keys span slots, so the target ends
//! with the same values as the source (what [`route`](crate::route) reports
//! as [`Unreplayable::CrossSlot`]).
//!
//! A command reaches the replication stream only when it changed something
//! on the source, so each plan reproduces the *effect*:
//!
//! ```text
//! SMOVE src dst m                       -> Split: SREM src m | SADD dst m
//! RENAME / RENAMENX src dst             -> CopyKey { delete_from: true }
//! COPY src dst [REPLACE]                -> CopyKey { delete_from: false }
//! LMOVE / BLMOVE / RPOPLPUSH / BRPOPLPUSH -> ListMove: pop on src's node, push the element to dst
//! SUNIONSTORE / SINTERSTORE / SDIFFSTORE,
//! ZUNIONSTORE / ZINTERSTORE / ZDIFFSTORE,
//! ZRANGESTORE, BITOP, PFMERGE,
//! GEOSEARCHSTORE                        -> Compute: inputs copied next to the destination,
//!                                          the command run there, temporaries deleted
//! anything else (scripts, SORT ... STORE) -> the Unreplayable reason, unchanged
//! ```
//!
//! The executor (the daemon) must run a plan after a barrier: every write
//! submitted before it acknowledged, so the inputs it reads on the target
//! are what the source had when it ran the command. Temporary keys are
//! named with [`temp_key`]: in the destination's slot, under the reserved
//! prefix [`TEMP_PREFIX`].

use std::sync::OnceLock;

use bytes::Bytes;

use crate::keys::{Class, command_keys};
use crate::slot::{SLOTS, key_slot};
use crate::split::Unreplayable;

/// Prefix of temporary keys (ferry's reserved `__ferry:` prefix).
pub const TEMP_PREFIX: &str = "__ferry:tmp:";

/// Which end of a list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    /// The head (`LPOP`/`LPUSH`).
    Left,
    /// The tail (`RPOP`/`RPUSH`).
    Right,
}

impl End {
    fn parse(b: &[u8]) -> Option<End> {
        if b.eq_ignore_ascii_case(b"LEFT") {
            Some(End::Left)
        } else if b.eq_ignore_ascii_case(b"RIGHT") {
            Some(End::Right)
        } else {
            None
        }
    }

    /// `LPOP` or `RPOP`.
    pub fn pop(self) -> &'static str {
        match self {
            End::Left => "LPOP",
            End::Right => "RPOP",
        }
    }

    /// `LPUSH` or `RPUSH`.
    pub fn push(self) -> &'static str {
        match self {
            End::Left => "LPUSH",
            End::Right => "RPUSH",
        }
    }
}

/// How to replay a cross-slot command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Plan {
    /// Independent commands, one slot each, no reads (in this order).
    Split(Vec<(u16, Vec<Bytes>)>),
    /// Copy a whole key (value and TTL): `DUMP` + `PTTL` of `from` on its
    /// node, `RESTORE to ttl payload REPLACE` on `to`'s node, then `DEL from`
    /// when `delete_from`.
    CopyKey {
        /// The key read.
        from: Bytes,
        /// The key written.
        to: Bytes,
        /// `RENAME`: the source key goes away.
        delete_from: bool,
    },
    /// Pop one element from `from` (on its node) and push it onto `to`.
    ListMove {
        /// The list popped.
        from: Bytes,
        /// The list pushed.
        to: Bytes,
        /// Where to pop.
        pop: End,
        /// Where to push.
        push: End,
    },
    /// Copy each `(input, temporary)` next to the destination (`DUMP` on the
    /// input's node, `RESTORE temporary 0 payload REPLACE` on the
    /// destination's), run `command` (the original with inputs renamed) in
    /// `slot`, then delete the temporaries. An input missing on the target
    /// is simply not copied (the command treats it as empty, as the source
    /// did).
    Compute {
        /// The destination's slot, where everything runs.
        slot: u16,
        /// Inputs from other slots and the temporary key each becomes.
        inputs: Vec<(Bytes, Bytes)>,
        /// The command to run, reading the temporaries.
        command: Vec<Bytes>,
    },
}

/// A short hash tag for every slot: `tag(s)` is a string whose `{tag}`
/// hashes to slot `s`.
fn slot_tags() -> &'static [String] {
    static TAGS: OnceLock<Vec<String>> = OnceLock::new();
    TAGS.get_or_init(|| {
        let mut tags: Vec<Option<String>> = vec![None; usize::from(SLOTS)];
        let mut missing = usize::from(SLOTS);
        let mut n = 0u64;
        while missing > 0 {
            let t = format!("{n:x}");
            let s = usize::from(key_slot(t.as_bytes()));
            if tags[s].is_none() {
                tags[s] = Some(t);
                missing -= 1;
            }
            n += 1;
        }
        tags.into_iter().map(Option::unwrap_or_default).collect()
    })
}

/// A hash tag (without braces) whose keys hash to `slot` (`slot` < 16384).
pub fn slot_tag(slot: u16) -> &'static str {
    &slot_tags()[usize::from(slot % SLOTS)]
}

/// The `n`-th temporary key in `slot`: `__ferry:tmp:{tag}:n`. It starts
/// with the reserved prefix, so source keys can never collide with it (the
/// daemon does not carry source keys under `__ferry:`) and `ferry verify`
/// never compares it; its hash tag puts it in `slot`.
pub fn temp_key(slot: u16, n: usize) -> Bytes {
    Bytes::from(format!("{TEMP_PREFIX}{{{}}}:{n}", slot_tag(slot)))
}

fn upper(b: &[u8]) -> Vec<u8> {
    b.to_ascii_uppercase()
}

/// The plan for `args`, a command whose keys span slots.
///
/// # Errors
/// The command's [`Unreplayable`] reason when no plan keeps its meaning
/// (scripts, `SORT ... STORE`, unknown shapes), or when its keys cannot be
/// found.
pub fn plan(args: &[Bytes]) -> Result<Plan, Unreplayable> {
    let name = args.first().cloned().unwrap_or_default();
    let cross = |args: &[Bytes]| -> Unreplayable {
        let mut slots: Vec<u16> = Vec::new();
        if let Ok(keys) = command_keys(args) {
            for k in keys.keys(args) {
                let s = key_slot(k);
                if !slots.contains(&s) && slots.len() < 16 {
                    slots.push(s);
                }
            }
        }
        Unreplayable::CrossSlot {
            command: name.clone(),
            slots,
        }
    };
    match &upper(&name)[..] {
        b"SMOVE" if args.len() == 4 => {
            let (src, dst, m) = (&args[1], &args[2], &args[3]);
            Ok(Plan::Split(vec![
                (key_slot(src), vec!["SREM".into(), src.clone(), m.clone()]),
                (key_slot(dst), vec!["SADD".into(), dst.clone(), m.clone()]),
            ]))
        }
        b"RENAME" | b"RENAMENX" if args.len() == 3 => Ok(Plan::CopyKey {
            from: args[1].clone(),
            to: args[2].clone(),
            delete_from: true,
        }),
        b"COPY" if args.len() >= 3 => {
            // `COPY ... DB n` is a cross-db command, never routed here; only
            // REPLACE may follow the keys.
            if args[3..].iter().all(|a| a.eq_ignore_ascii_case(b"REPLACE")) {
                Ok(Plan::CopyKey {
                    from: args[1].clone(),
                    to: args[2].clone(),
                    delete_from: false,
                })
            } else {
                Err(cross(args))
            }
        }
        b"RPOPLPUSH" | b"BRPOPLPUSH" if args.len() >= 3 => Ok(Plan::ListMove {
            from: args[1].clone(),
            to: args[2].clone(),
            pop: End::Right,
            push: End::Left,
        }),
        b"LMOVE" | b"BLMOVE" if args.len() >= 5 => {
            match (End::parse(&args[3]), End::parse(&args[4])) {
                (Some(pop), Some(push)) => Ok(Plan::ListMove {
                    from: args[1].clone(),
                    to: args[2].clone(),
                    pop,
                    push,
                }),
                _ => Err(cross(args)),
            }
        }
        b"SUNIONSTORE" | b"SINTERSTORE" | b"SDIFFSTORE" | b"ZUNIONSTORE" | b"ZINTERSTORE"
        | b"ZDIFFSTORE" | b"ZRANGESTORE" | b"GEOSEARCHSTORE" | b"PFMERGE" => {
            compute(args, 1).ok_or_else(|| cross(args))
        }
        b"BITOP" => {
            // BITOP op dest src...
            compute(args, 2).ok_or_else(|| cross(args))
        }
        _ => Err(cross(args)),
    }
}

/// A [`Plan::Compute`] for `args` whose destination key is argument
/// `dest_index`: every other key in another slot becomes a temporary.
fn compute(args: &[Bytes], dest_index: usize) -> Option<Plan> {
    let keys = command_keys(args)
        .ok()
        .filter(|k| k.class == Class::DataKeys)?;
    let dest = args.get(dest_index)?;
    if !keys.indexes.contains(&dest_index) {
        return None;
    }
    let slot = key_slot(dest);
    let mut command = args.to_vec();
    let mut inputs: Vec<(Bytes, Bytes)> = Vec::new();
    for &i in &keys.indexes {
        if i == dest_index || key_slot(&args[i]) == slot {
            continue;
        }
        // The same input named twice reads the same temporary.
        let tmp = match inputs.iter().find(|(k, _)| *k == args[i]) {
            Some((_, t)) => t.clone(),
            None => {
                let t = temp_key(slot, inputs.len());
                inputs.push((args[i].clone(), t.clone()));
                t
            }
        };
        command[i] = tmp;
    }
    Some(Plan::Compute {
        slot,
        inputs,
        command,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(s: &[&str]) -> Vec<Bytes> {
        s.iter().map(|x| Bytes::from(x.to_string())).collect()
    }

    #[test]
    fn every_slot_has_a_tag() {
        for s in 0..SLOTS {
            let k = format!("{{{}}}x", slot_tag(s));
            assert_eq!(key_slot(k.as_bytes()), s);
        }
        assert_eq!(key_slot(&temp_key(1234, 7)), 1234);
        assert!(temp_key(1234, 7).starts_with(TEMP_PREFIX.as_bytes()));
        assert!(TEMP_PREFIX.starts_with("__ferry:"));
    }

    #[test]
    fn smove_splits_into_srem_and_sadd() {
        let p = plan(&a(&["SMOVE", "a", "b", "m"])).unwrap();
        assert_eq!(
            p,
            Plan::Split(vec![
                (key_slot(b"a"), a(&["SREM", "a", "m"])),
                (key_slot(b"b"), a(&["SADD", "b", "m"])),
            ])
        );
    }

    #[test]
    fn renames_and_copies_copy_the_key() {
        assert_eq!(
            plan(&a(&["rename", "a", "b"])).unwrap(),
            Plan::CopyKey {
                from: "a".into(),
                to: "b".into(),
                delete_from: true
            }
        );
        assert_eq!(
            plan(&a(&["COPY", "a", "b", "REPLACE"])).unwrap(),
            Plan::CopyKey {
                from: "a".into(),
                to: "b".into(),
                delete_from: false
            }
        );
        assert!(plan(&a(&["COPY", "a", "b", "DB", "3"])).is_err());
    }

    #[test]
    fn list_moves_pop_and_push() {
        assert_eq!(
            plan(&a(&["RPOPLPUSH", "a", "b"])).unwrap(),
            Plan::ListMove {
                from: "a".into(),
                to: "b".into(),
                pop: End::Right,
                push: End::Left
            }
        );
        assert_eq!(
            plan(&a(&["BLMOVE", "a", "b", "left", "RIGHT", "0"])).unwrap(),
            Plan::ListMove {
                from: "a".into(),
                to: "b".into(),
                pop: End::Left,
                push: End::Right
            }
        );
        assert!(plan(&a(&["LMOVE", "a", "b", "UP", "LEFT"])).is_err());
    }

    #[test]
    fn store_commands_compute_next_to_the_destination() {
        // "a" and "b" are in different slots; "{d}x" shares d's slot.
        let p = plan(&a(&["SUNIONSTORE", "d", "a", "{d}x", "b", "a"])).unwrap();
        let slot = key_slot(b"d");
        let (t0, t1) = (temp_key(slot, 0), temp_key(slot, 1));
        assert_eq!(
            p,
            Plan::Compute {
                slot,
                inputs: vec![("a".into(), t0.clone()), ("b".into(), t1.clone())],
                command: vec![
                    "SUNIONSTORE".into(),
                    "d".into(),
                    t0.clone(),
                    "{d}x".into(),
                    t1,
                    t0
                ],
            }
        );
        let Plan::Compute { command, .. } = plan(&a(&[
            "ZUNIONSTORE",
            "d",
            "2",
            "a",
            "b",
            "WEIGHTS",
            "1",
            "2",
        ]))
        .unwrap() else {
            panic!()
        };
        assert_eq!(&command[5..], &a(&["WEIGHTS", "1", "2"])[..]);
        let Plan::Compute { inputs, .. } = plan(&a(&["BITOP", "OR", "d", "a", "b"])).unwrap()
        else {
            panic!()
        };
        assert_eq!(inputs.len(), 2);
        let Plan::Compute { command, .. } = plan(&a(&["PFMERGE", "d", "a"])).unwrap() else {
            panic!()
        };
        assert_eq!(command[1], Bytes::from("d"));
    }

    #[test]
    fn scripts_stay_unreplayable() {
        let e = plan(&a(&["EVAL", "return 1", "2", "a", "b"])).unwrap_err();
        assert!(matches!(e, Unreplayable::CrossSlot { .. }), "{e}");
    }
}

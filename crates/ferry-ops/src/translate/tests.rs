//! Table tests: every branch of the translator, without servers.

use bytes::Bytes;
use ferry_rdb::{Flavor, HashField, Item, Key, KeyHeader, Kind, Value};

use super::*;
use crate::slot::key_slot;

pub(super) fn a(s: &str) -> Vec<Bytes> {
    s.split(' ').map(|x| Bytes::from(x.to_owned())).collect()
}

/// An argument for a rendered line: printable ASCII as is, else `<bin>`.
pub(super) fn show_arg(b: &Bytes) -> String {
    if b.iter().all(|c| c.is_ascii_graphic()) {
        String::from_utf8_lossy(b).into_owned()
    } else {
        "<bin>".into()
    }
}

pub(super) fn show_op(op: &Op) -> String {
    let slot = op.slot.map_or("*".to_owned(), |s| s.to_string());
    let args: Vec<String> = op.args.iter().map(show_arg).collect();
    format!("{slot}@{} {}", op.offset, args.join(" "))
}

/// One line per action.
pub(super) fn render(actions: &[Action]) -> Vec<String> {
    actions
        .iter()
        .map(|a| match a {
            Action::NewHistory { replid, offset } => format!("history {replid} {offset}"),
            Action::Write(op) => show_op(op),
            Action::Group(ops) => {
                let ops: Vec<String> = ops.iter().map(show_op).collect();
                format!("group[{}]", ops.join(" | "))
            }
            Action::Emulate { plan, offset, .. } => format!("emulate@{offset} {plan:?}"),
            Action::FlushPrefixes { prefixes, offset } => {
                let p: Vec<String> = prefixes.iter().map(show_arg).collect();
                format!("flush-prefixes@{offset} {}", p.join(","))
            }
            Action::FlushSlots { offset } => format!("flush-slots@{offset}"),
            Action::Checkpointing => "checkpointing".into(),
            Action::Hold { db, key } => format!("hold {db} {}", show_arg(key)),
            Action::FixUp { offset } => format!("fixup@{offset}"),
            Action::Skip(s) => format!(
                "skip {} {}",
                s.reason,
                s.key.as_ref().map_or("-".into(), show_arg)
            ),
        })
        .collect()
}

/// `{slot of key}@{offset} {args}`.
pub(super) fn w(key: &str, off: u64, args: &str) -> String {
    format!("{}@{off} {args}", key_slot(key.as_bytes()))
}

pub(super) fn redis(rdb_version: u16) -> TargetFormat {
    TargetFormat {
        valkey: false,
        rdb_version,
    }
}

pub(super) fn cfg() -> TranslatorConfig {
    TranslatorConfig {
        target: redis(12),
        restore: true,
        filter: Filter::default(),
        standalone: false,
        checkpoints: true,
        ttl_hold: false,
        source_shard: false,
        two_way: false,
    }
}

pub(super) const NOW: i64 = 1_800_000_000_000;

pub(super) fn header(
    db: u64,
    key: &str,
    kind: Kind,
    rdb_type: u8,
    expire_ms: Option<i64>,
) -> KeyHeader {
    KeyHeader {
        db,
        key: Bytes::from(key.to_owned()),
        rdb_type,
        kind,
        expire_ms,
        idle: None,
        freq: None,
        meta: None,
        offset: 0,
    }
}

pub(super) fn string_key(db: u64, key: &str, v: &str, expire_ms: Option<i64>) -> Item {
    Item::Key(Key {
        header: header(db, key, Kind::String, 0, expire_ms),
        value: Value::String(Bytes::from(v.to_owned())),
        raw: Bytes::from_static(b"\x01v"),
    })
}

pub(super) fn set_key(key: &str, members: &[&str]) -> Item {
    Item::Key(Key {
        header: header(0, key, Kind::Set, 2, None),
        value: Value::Set(members.iter().map(|m| Bytes::from(m.to_string())).collect()),
        raw: Bytes::from_static(b"\x01\x01m"),
    })
}

/// A translator after a full sync at offset 100 of a Redis RDB 11 file.
pub(super) fn started(cfg: TranslatorConfig) -> Translator {
    let mut t = Translator::new(cfg);
    let mut out = Vec::new();
    t.full_sync("replid", 100, NOW, &mut out);
    t.rdb(
        Item::Header {
            flavor: Flavor::Redis,
            version: 11,
        },
        NOW,
        &mut out,
    );
    assert_eq!(render(&out), ["history replid 100"]);
    t
}

pub(super) fn rdb(t: &mut Translator, item: Item) -> Vec<String> {
    let mut out = Vec::new();
    t.rdb(item, NOW, &mut out);
    render(&out)
}

pub(super) fn cmd(t: &mut Translator, db: u64, off: u64, args: &str) -> Vec<String> {
    let mut out = Vec::new();
    t.command(a(args), db, off, NOW, &mut out);
    render(&out)
}

#[test]
fn snapshot_restore_set_or_commands_by_target_version() {
    let mut t = started(cfg());
    // A plain string without TTL: SET.
    assert_eq!(
        rdb(&mut t, string_key(0, "s", "v", None)),
        [w("s", 101, "SET s v")]
    );
    // With a TTL: RESTORE ... ABSTTL.
    let exp = NOW + 60_000;
    assert_eq!(
        rdb(&mut t, string_key(0, "t", "v", Some(exp))),
        [w(
            "t",
            101,
            &format!("RESTORE t {exp} <bin> REPLACE ABSTTL")
        )]
    );
    assert_eq!(
        rdb(&mut t, set_key("st", &["m"])),
        [w("st", 101, "RESTORE st 0 <bin> REPLACE")]
    );
    assert_eq!(t.counters.keys_applied, 3);

    // A target reading RDB 10 only: the RDB 11 file goes in command form.
    let mut t = started(TranslatorConfig {
        target: redis(10),
        ..cfg()
    });
    assert_eq!(
        rdb(&mut t, set_key("st", &["m"])),
        [w("st", 101, "DEL st"), w("st", 101, "SADD st m")]
    );
    assert_eq!(
        rdb(&mut t, string_key(0, "t", "v", Some(NOW + 5))),
        [
            w("t", 101, "SET t v"),
            w("t", 101, &format!("PEXPIREAT t {}", NOW + 5))
        ]
    );
    // restore: never.
    let mut t = started(TranslatorConfig {
        restore: false,
        ..cfg()
    });
    assert_eq!(
        rdb(&mut t, set_key("st", &["m"])),
        [w("st", 101, "DEL st"), w("st", 101, "SADD st m")]
    );
}

#[test]
fn snapshot_skips_expired_reserved_filtered_and_module_aux() {
    let mut t = started(TranslatorConfig {
        filter: Filter {
            include_prefixes: vec!["in:".into()],
            exclude_prefixes: vec!["in:no".into()],
            ..Filter::default()
        },
        ..cfg()
    });
    assert_eq!(
        rdb(&mut t, string_key(0, "in:old", "v", Some(NOW))),
        ["skip expired in:old"]
    );
    assert_eq!(
        rdb(&mut t, string_key(0, "__ferry:x", "v", None)),
        ["skip reserved_prefix __ferry:x"]
    );
    // Filtered: counted, no action.
    assert!(rdb(&mut t, string_key(0, "out", "v", None)).is_empty());
    assert!(rdb(&mut t, string_key(0, "in:no", "v", None)).is_empty());
    assert!(rdb(&mut t, string_key(3, "in:k", "v", None)).is_empty());
    assert_eq!(
        rdb(&mut t, string_key(0, "in:k", "v", None)),
        [w("in:k", 101, "SET in:k v")]
    );
    assert_eq!(
        rdb(
            &mut t,
            Item::ModuleAux {
                module: ferry_rdb::ModuleId(0),
                when: 2,
                raw: Bytes::new()
            }
        )[0]
        .split(' ')
        .take(2)
        .collect::<Vec<_>>(),
        ["skip", "module_aux"]
    );
    let c = &t.counters;
    assert_eq!(c.keys_applied, 1);
    for (reason, n) in [
        ("expired", 1),
        ("reserved_prefix", 1),
        ("filtered_key", 2),
        ("filtered_db", 1),
        ("module_aux", 1),
    ] {
        assert_eq!(c.skipped.get(reason), Some(&n), "{reason}");
    }
}

#[test]
fn snapshot_function_goes_to_every_master() {
    let mut t = started(cfg());
    let item = Item::Function {
        code: Bytes::from_static(b"#!lua"),
    };
    assert_eq!(rdb(&mut t, item), ["*@101 FUNCTION LOAD REPLACE #!lua"]);
}

#[test]
fn big_keys_in_chunks_with_db_prefix() {
    let mut t = started(TranslatorConfig {
        filter: Filter {
            dbs: vec![0, 2],
            db_prefix: Some("{db}:".into()),
            ..Filter::default()
        },
        ..cfg()
    });
    let mut h = header(2, "big", Kind::Hash, 16, Some(NOW + 9));
    h.key = Bytes::from_static(b"big");
    assert!(rdb(&mut t, Item::BigKeyStart(h)).is_empty());
    let field = |f: &str| HashField {
        field: Bytes::from(f.to_owned()),
        value: Bytes::from_static(b"v"),
        expire_ms: None,
    };
    assert_eq!(
        rdb(&mut t, Item::BigKeyChunk(Value::Hash(vec![field("a")]))),
        [
            w("2:big", 101, "DEL 2:big"),
            w("2:big", 101, "HSET 2:big a v")
        ]
    );
    assert_eq!(
        rdb(&mut t, Item::BigKeyChunk(Value::Hash(vec![field("b")]))),
        [w("2:big", 101, "HSET 2:big b v")]
    );
    assert_eq!(
        rdb(&mut t, Item::BigKeyEnd),
        [w("2:big", 101, &format!("PEXPIREAT 2:big {}", NOW + 9))]
    );
    assert_eq!(t.counters.keys_applied, 1);
    // A big key the filter leaves out: nothing for its chunks.
    assert!(
        rdb(
            &mut t,
            Item::BigKeyStart(header(5, "x", Kind::Set, 2, None))
        )
        .is_empty()
    );
    assert!(rdb(&mut t, Item::BigKeyChunk(Value::Set(vec![Bytes::new()]))).is_empty());
    assert!(rdb(&mut t, Item::BigKeyEnd).is_empty());
    assert_eq!(t.counters.skipped.get("filtered_db"), Some(&1));
    // A whole key of db 0 gets db 0's prefix.
    assert_eq!(
        rdb(&mut t, string_key(0, "k", "v", None)),
        [w("0:k", 101, "SET 0:k v")]
    );
}

#[test]
fn snapshot_end_turns_checkpoints_on_when_configured() {
    let mut t = started(cfg());
    let mut out = Vec::new();
    t.snapshot_end(&mut out);
    assert_eq!(render(&out), ["checkpointing"]);
    let mut t = started(TranslatorConfig {
        checkpoints: false,
        ..cfg()
    });
    out.clear();
    t.snapshot_end(&mut out);
    assert!(out.is_empty());
}

#[test]
fn every_command_family_routes_to_its_slot() {
    let single = [
        ("SET k v PXAT 1", "k"),
        ("INCRBY k 2", "k"),
        ("APPEND k x", "k"),
        ("SETRANGE k 0 x", "k"),
        ("SETBIT k 7 1", "k"),
        ("LPUSH k a", "k"),
        ("LREM k 0 a", "k"),
        ("LSET k 0 a", "k"),
        ("HSET k f v", "k"),
        ("HDEL k f", "k"),
        ("SADD k m", "k"),
        ("SREM k m", "k"),
        ("ZADD k 1 m", "k"),
        ("ZINCRBY k 1 m", "k"),
        ("XADD k 1-1 f v", "k"),
        ("XTRIM k MAXLEN 5", "k"),
        ("XGROUP CREATE k g $", "k"),
        ("PFADD k a", "k"),
        ("GEOADD k 1 2 m", "k"),
        ("PEXPIREAT k 5", "k"),
        ("PERSIST k", "k"),
        ("DEL k", "k"),
        ("RENAME {t}a {t}b", "{t}a"),
        ("LMOVE {t}a {t}b LEFT RIGHT", "{t}a"),
        ("SUNIONSTORE {t}d {t}a {t}b", "{t}d"),
        ("EVAL return 2 {t}a {t}b", "{t}a"),
        ("FCALL f 1 k", "k"),
    ];
    for (line, key) in single {
        let mut t = started(cfg());
        assert_eq!(cmd(&mut t, 0, 200, line), [w(key, 200, line)], "{line}");
        assert_eq!(t.counters.commands_applied, 1, "{line}");
    }
    for line in ["FLUSHALL", "FLUSHDB", "FUNCTION DELETE lib", "SCRIPT FLUSH"] {
        let mut t = started(cfg());
        assert_eq!(cmd(&mut t, 0, 7, line), [format!("*@7 {line}")], "{line}");
    }
    // Not routed, not counted: the link's business.
    for line in ["PING", "SELECT 1", "REPLCONF GETACK *"] {
        let mut t = started(cfg());
        assert!(cmd(&mut t, 0, 7, line).is_empty(), "{line}");
        assert_eq!(t.counters.commands_applied, 0);
    }
}

#[test]
fn cross_slot_commands_split_or_emulate() {
    let mut t = started(cfg());
    // MSET / DEL: one op per slot.
    let out = cmd(&mut t, 0, 9, "MSET a 1 b 2");
    assert_eq!(out, [w("a", 9, "MSET a 1"), w("b", 9, "MSET b 2")]);
    let out = cmd(&mut t, 0, 10, "DEL a b");
    assert_eq!(out, [w("a", 10, "DEL a"), w("b", 10, "DEL b")]);
    assert_eq!(t.counters.emulated, 0);
    // SMOVE across slots: a split plan, no reads.
    let out = cmd(&mut t, 0, 11, "SMOVE a b m");
    assert_eq!(out, [w("a", 11, "SREM a m"), w("b", 11, "SADD b m")]);
    assert_eq!(t.counters.emulated, 1);
    // RENAME / LMOVE / SUNIONSTORE across slots: read the target.
    let out = cmd(&mut t, 0, 12, "RENAME a b");
    assert_eq!(
        out,
        [r#"emulate@12 CopyKey { from: b"a", to: b"b", delete_from: true }"#]
    );
    let out = cmd(&mut t, 0, 13, "LMOVE a b LEFT RIGHT");
    assert!(out[0].starts_with("emulate@13 ListMove"), "{out:?}");
    let out = cmd(&mut t, 0, 14, "SUNIONSTORE a a b");
    assert!(out[0].starts_with("emulate@14 Compute"), "{out:?}");
    // Counted by the executor once run.
    assert_eq!(t.counters.emulated, 1);
    assert_eq!(t.counters.commands_applied, 3);
}

#[test]
fn unreplayable_and_unknown_commands_are_skipped_with_a_typed_reason() {
    let mut t = started(cfg());
    for (line, reason, key) in [
        ("EVAL return 0", "unreplayable", "-"),
        ("EVAL return 2 a b", "unreplayable", "a"),
        ("PUBLISH ch m", "unreplayable", "-"),
        ("SWAPDB 0 1", "unreplayable", "-"),
        ("MOVE k 1", "unreplayable", "k"),
        ("NOSUCHCMD k", "unknown_command", "-"),
    ] {
        let out = cmd(&mut t, 0, 5, line);
        assert_eq!(out, [format!("skip {reason} {key}")], "{line}");
    }
    assert_eq!(t.counters.skipped.get("unreplayable"), Some(&5));
    assert_eq!(t.counters.skipped.get("unknown_command"), Some(&1));
    assert_eq!(t.counters.commands_applied, 0);
}

#[test]
fn multi_exec_in_one_slot_and_across_slots() {
    let mut t = started(cfg());
    let mut out = Vec::new();
    t.multi(&mut out);
    t.command(a("INCR {t}a"), 0, 20, NOW, &mut out);
    t.command(a("INCR {t}b"), 0, 21, NOW, &mut out);
    t.exec(&mut out);
    let s = key_slot(b"{t}");
    assert_eq!(
        render(&out),
        [format!("group[{s}@20 INCR {{t}}a | {s}@21 INCR {{t}}b]")]
    );
    // Across slots: still one group (the writer splits it), split commands inside.
    out.clear();
    t.multi(&mut out);
    t.command(a("SET a 1"), 0, 30, NOW, &mut out);
    t.command(a("DEL a b"), 0, 31, NOW, &mut out);
    t.exec(&mut out);
    assert_eq!(
        render(&out),
        [format!(
            "group[{} | {} | {}]",
            w("a", 30, "SET a 1"),
            w("a", 31, "DEL a"),
            w("b", 31, "DEL b")
        )]
    );
    // An emulation inside a transaction: what was buffered goes first, the
    // plan runs alone, the rest is a new group.
    out.clear();
    t.multi(&mut out);
    t.command(a("SET a 1"), 0, 40, NOW, &mut out);
    t.command(a("RENAME a b"), 0, 41, NOW, &mut out);
    t.command(a("SET c 1"), 0, 42, NOW, &mut out);
    t.exec(&mut out);
    let r = render(&out);
    assert_eq!(r.len(), 3, "{r:?}");
    assert_eq!(r[0], format!("group[{}]", w("a", 40, "SET a 1")));
    assert!(r[1].starts_with("emulate@41 CopyKey"));
    assert_eq!(r[2], format!("group[{}]", w("c", 42, "SET c 1")));
    // An empty transaction emits nothing; a full sync drops a half-read one.
    out.clear();
    t.multi(&mut out);
    t.exec(&mut out);
    t.multi(&mut out);
    t.command(a("SET a 1"), 0, 50, NOW, &mut out);
    t.full_sync("r2", 60, NOW, &mut out);
    t.command(a("SET a 2"), 0, 70, NOW, &mut out);
    assert_eq!(
        render(&out),
        ["history r2 60".to_owned(), w("a", 70, "SET a 2")]
    );
}

#[test]
fn a_huge_transaction_goes_out_in_parts() {
    let mut t = started(cfg());
    let mut out = Vec::new();
    t.multi(&mut out);
    for i in 0..MAX_TXN_OPS + 1 {
        t.command(a("INCR k"), 0, 100 + i as u64, NOW, &mut out);
    }
    t.exec(&mut out);
    let sizes: Vec<usize> = out
        .iter()
        .map(|a| match a {
            Action::Group(ops) => ops.len(),
            _ => 0,
        })
        .collect();
    assert_eq!(sizes, [MAX_TXN_OPS, 1]);
}

#[test]
fn stream_filters_keys_and_dbs() {
    let mut t = started(TranslatorConfig {
        filter: Filter {
            include_prefixes: vec!["in:".into()],
            ..Filter::default()
        },
        ..cfg()
    });
    assert!(cmd(&mut t, 0, 5, "SET out v").is_empty());
    assert!(cmd(&mut t, 1, 5, "SET in:a v").is_empty());
    // Per-key commands keep the keys that pass.
    assert_eq!(
        cmd(&mut t, 0, 6, "DEL in:a out"),
        [w("in:a", 6, "DEL in:a")]
    );
    assert_eq!(
        cmd(&mut t, 0, 7, "MSETNX in:a 1 out 2"),
        [w("in:a", 7, "MSET in:a 1")]
    );
    // Others with keys on both sides: unreplayable.
    assert_eq!(
        cmd(&mut t, 0, 8, "RENAME in:a out"),
        ["skip unreplayable in:a"]
    );
    // A flush would delete keys the filter keeps out.
    assert_eq!(cmd(&mut t, 0, 9, "FLUSHALL"), ["skip flush_with_filter -"]);
    // Reserved keys: reported, the rest carried.
    assert_eq!(
        cmd(&mut t, 0, 10, "DEL __ferry:x in:b"),
        [
            "skip reserved_prefix __ferry:x".to_owned(),
            w("in:b", 10, "DEL in:b")
        ]
    );
    assert_eq!(
        cmd(&mut t, 0, 11, "SET __ferry:x v"),
        ["skip reserved_prefix __ferry:x"]
    );
    assert_eq!(t.counters.skipped.get("filtered_key"), Some(&1));
    assert_eq!(t.counters.skipped.get("filtered_db"), Some(&1));
}

#[test]
fn db_prefix_renames_keys_and_flushes_by_prefix() {
    let mut t = started(TranslatorConfig {
        filter: Filter {
            dbs: vec![0, 3],
            db_prefix: Some("{db}:".into()),
            ..Filter::default()
        },
        ..cfg()
    });
    assert_eq!(cmd(&mut t, 3, 5, "SET k v"), [w("3:k", 5, "SET 3:k v")]);
    assert_eq!(
        cmd(&mut t, 3, 6, "MSET a 1 b 2"),
        [w("3:a", 6, "MSET 3:a 1"), w("3:b", 6, "MSET 3:b 2")]
    );
    assert_eq!(cmd(&mut t, 3, 7, "FLUSHDB"), ["flush-prefixes@7 3:"]);
    assert_eq!(cmd(&mut t, 0, 8, "FLUSHALL"), ["flush-prefixes@8 0:,3:"]);
    assert_eq!(t.counters.emulated, 2);
    assert_eq!(cmd(&mut t, 3, 9, "NOSUCH k"), ["skip unknown_command -"]);
    // Inside a transaction: the buffered part first.
    let mut out = Vec::new();
    t.multi(&mut out);
    t.command(a("SET k v"), 3, 10, NOW, &mut out);
    t.command(a("FLUSHDB"), 3, 11, NOW, &mut out);
    t.command(a("SET k w"), 3, 12, NOW, &mut out);
    t.exec(&mut out);
    assert_eq!(
        render(&out),
        [
            format!("group[{}]", w("3:k", 10, "SET 3:k v")),
            "flush-prefixes@11 3:".into(),
            format!("group[{}]", w("3:k", 12, "SET 3:k w")),
        ]
    );
}

#[test]
fn standalone_keeps_dbs_with_select_and_commands_as_they_are() {
    let mut t = started(TranslatorConfig {
        standalone: true,
        filter: Filter {
            db_prefix: Some("{db}:".into()),
            ..Filter::default()
        },
        ..cfg()
    });
    // Snapshot: SELECT before keys of another db, no prefix (the
    // writer sends every slot to the one server).
    assert_eq!(
        rdb(&mut t, string_key(2, "k", "v", None)),
        ["0@101 SELECT 2".to_owned(), w("k", 101, "SET k v")]
    );
    assert_eq!(
        rdb(&mut t, string_key(2, "j", "v", None)),
        [w("j", 101, "SET j v")]
    );
    // Stream: as is (cross-slot fine), SELECT when the db changes.
    assert_eq!(cmd(&mut t, 2, 5, "RENAME a b"), ["0@5 RENAME a b"]);
    assert_eq!(
        cmd(&mut t, 0, 6, "MOVE a 3"),
        ["0@6 SELECT 0", "0@6 MOVE a 3"]
    );
    assert_eq!(cmd(&mut t, 0, 7, "SWAPDB 0 1"), ["0@7 SWAPDB 0 1"]);
    assert_eq!(cmd(&mut t, 0, 8, "FLUSHALL"), ["0@8 FLUSHALL"]);
    assert_eq!(cmd(&mut t, 0, 9, "PUBLISH c m"), ["skip unreplayable -"]);
    assert!(cmd(&mut t, 0, 10, "PING").is_empty());
    // A Sentinel's hello: quietly dropped.
    assert!(cmd(&mut t, 0, 11, "PUBLISH __sentinel__:hello x").is_empty());
    // With a key filter, a flush is not carried.
    let mut t = started(TranslatorConfig {
        standalone: true,
        filter: Filter {
            exclude_prefixes: vec!["x".into()],
            ..Filter::default()
        },
        ..cfg()
    });
    assert_eq!(cmd(&mut t, 0, 8, "FLUSHDB"), ["skip flush_with_filter -"]);
}

#[test]
fn skip_reasons_have_stable_names() {
    let all = [
        SkipReason::FilteredDb,
        SkipReason::FilteredKey,
        SkipReason::ReservedPrefix,
        SkipReason::Expired,
        SkipReason::UnsupportedValue,
        SkipReason::ModuleAux,
        SkipReason::UnknownCommand,
        SkipReason::Unreplayable,
        SkipReason::FlushWithFilter,
    ];
    let names: Vec<&str> = all.iter().map(|r| r.as_str()).collect();
    assert_eq!(
        names,
        [
            "filtered_db",
            "filtered_key",
            "reserved_prefix",
            "expired",
            "unsupported_value",
            "module_aux",
            "unknown_command",
            "unreplayable",
            "flush_with_filter"
        ]
    );
    assert_eq!(
        all.iter().filter(|r| r.is_filter()).count(),
        2,
        "only the filter's own reasons are silent"
    );
}

#[test]
fn a_value_commands_cannot_carry_is_skipped_with_its_key() {
    let mut t = started(TranslatorConfig {
        restore: false,
        ..cfg()
    });
    assert!(
        rdb(
            &mut t,
            Item::BigKeyStart(header(0, "m", Kind::Module, 7, None))
        )
        .is_empty()
    );
    let chunk = Value::Module(ferry_rdb::ModuleValue {
        id: ferry_rdb::ModuleId(0),
    });
    // What the builder emitted before it gave up still goes (as before).
    assert_eq!(
        rdb(&mut t, Item::BigKeyChunk(chunk)),
        ["skip unsupported_value m".to_owned(), w("m", 101, "DEL m")]
    );
    assert_eq!(t.counters.skipped.get("unsupported_value"), Some(&1));
}

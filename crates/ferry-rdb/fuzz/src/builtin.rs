//! Small seed files built in code with `RdbWriter`, for the formats the
//! captured seeds (`seeds/*.rdb`, from real Redis 6.2/7.0/Stack 7.4 and
//! Valkey 9 servers) do not contain:
//!
//! ```text
//! redis3-nocrc      RDB 3: EOF without a checksum
//! redis9-old        RDB 9: plain list/set/zset/hash, zipmap, ziplists, quicklist, stream 15
//! redis11-listpack  RDB 11: listpacks, quicklist2 (plain + packed), streams 19/21, modules,
//!                   FUNCTION2, MODULE_AUX, LZF, EXPIRETIME, IDLE, FREQ; zero checksum
//! redis12-ttl       RDB 12: hash field TTL types 22–25, SLOT_INFO
//! redis13-meta      RDB 13: KEY_META (243) records, stream type 26
//! redis14-stream27  RDB 14: stream type 27 (NACK zone) with KEY_META
//! valkey80          VALKEY080: type 22 (HASH_2), 243 slot import, listpacks, stream 21
//! redis11-big       RDB 11: values large enough to be chunked at small big_value_bytes
//! ```

use ferry_rdb::build::{
    QuicklistNode, RdbWriter, StreamNodeEntry, module_id, samples, stream_node_listpack,
};
use ferry_rdb::container::Entry;

/// Every built-in seed, with a name for messages.
pub fn seeds() -> Vec<(&'static str, Vec<u8>)> {
    vec![
        ("builtin:redis3-nocrc", redis3()),
        ("builtin:redis9-old", redis9()),
        ("builtin:redis11-listpack", redis11()),
        ("builtin:redis12-ttl", redis12()),
        ("builtin:redis13-meta", redis13()),
        ("builtin:redis14-stream27", redis14()),
        ("builtin:valkey80", valkey80()),
        ("builtin:redis11-big", big()),
    ]
}

fn redis3() -> Vec<u8> {
    let mut w = RdbWriter::new("REDIS", 3);
    w.select_db(0);
    w.key(0, b"a").string(b"1");
    w.key(1, b"l").list_plain(&[b"x", b"y"]);
    w.byte(0xFF);
    w.into_bytes()
}

fn redis9() -> Vec<u8> {
    let mut w = RdbWriter::new("REDIS", 9);
    w.aux(b"redis-ver", b"5.0.14").aux(b"redis-bits", b"64");
    w.select_db(0).resize_db(14, 2);
    w.expire_s(2_000_000_000).key(0, b"s").string(b"v");
    w.key(0, b"n").string_int(-70000);
    w.key(1, b"list").list_plain(&[b"a", b"", b"12"]);
    w.key(2, b"set").set_plain(&[b"m1", b"m2"]);
    w.key(3, b"z3")
        .zset_plain(&[(b"a", 1.5), (b"b", f64::NEG_INFINITY), (b"c", -0.0)]);
    w.key(4, b"h").hash_plain(&[(b"f", b"v"), (b"g", b"")]);
    w.key(5, b"z5")
        .zset2(&[(b"a", 2.0), (b"b", f64::MIN_POSITIVE)]);
    w.key(9, b"zm").hash_zipmap(&[(b"f1", b"v1"), (b"f2", b"")]);
    w.key(10, b"zl").list_ziplist(&[
        Entry::Str(b"x"),
        Entry::Int(12),
        Entry::Int(-7),
        Entry::Int(1 << 40),
        Entry::Int(300),
        Entry::Int(70000),
    ]);
    w.key(11, b"is").set_intset(&[i64::MIN, -1, 0, 1 << 20]);
    w.key(12, b"zz").zset_ziplist(&[(b"m", 2.5), (b"n", 3.0)]);
    w.key(13, b"hz")
        .hash_ziplist(&[(b"f", b"1"), (b"g", b"two")]);
    w.key(14, b"ql").list_quicklist(&[
        vec![Entry::Str(b"a")],
        vec![Entry::Int(2), Entry::Str(&[b'c'; 300])],
    ]);
    w.select_db(5);
    w.expire_ms(1_900_000_000_000).idle(5);
    samples::stream(&mut w, 15, b"st15");
    w.finish()
}

fn redis11() -> Vec<u8> {
    let mut w = RdbWriter::new("REDIS", 11);
    w.aux(b"redis-ver", b"7.2.4").aux(b"aof-base", b"0");
    w.function2(b"#!lua name=lib\nredis.register_function('f', function() return 1 end)");
    w.module_aux(module_id("ft-index0", 1), 1)
        .module_string(b"idx")
        .module_uint(3)
        .module_eof();
    w.select_db(0).resize_db(12, 1);
    w.key(0, b"lzf").string_lzf(&b"abcabcabc".repeat(40));
    w.idle(77)
        .key(16, b"hlp")
        .hash_listpack(&[(b"f", b"v"), (b"n", b"42")]);
    w.freq(9)
        .key(17, b"zlp")
        .zset_listpack(&[(b"a", 1.0), (b"b", 1.5), (b"c", f64::INFINITY)]);
    let plain = vec![b'P'; 600];
    w.key(18, b"ql2").list_quicklist2_nodes(&[
        QuicklistNode::Packed(vec![Entry::Str(b"a"), Entry::Int(1), Entry::Int(-4096)]),
        QuicklistNode::Plain(&plain),
        QuicklistNode::Packed(vec![Entry::Str(&[b'q'; 70]), Entry::Int(i64::MIN)]),
    ]);
    w.key(20, b"slp").set_listpack(&[b"x", b"y", b"123"]);
    w.key(7, b"mod")
        .len(module_id("ReJSON-RL", 3))
        .module_uint(1)
        .module_string(b"{}")
        .module_double(1.5)
        .module_float(2.5)
        .module_sint(-1)
        .module_eof();
    w.expire_ms(1_900_000_000_000);
    samples::stream(&mut w, 19, b"st19");
    samples::stream(&mut w, 21, b"st21");
    samples::empty_stream(&mut w, 21, b"empty21");
    w.select_db(1);
    w.expire_ms(-5).key(0, b"past").string(b"x");
    w.finish_without_checksum()
}

fn redis12() -> Vec<u8> {
    let mut w = RdbWriter::new("REDIS", 12);
    w.aux(b"redis-ver", b"7.4.1");
    w.select_db(0).resize_db(5, 0);
    w.slot_info(42, 5, 0);
    w.key(22, b"hpre")
        .hash_metadata_pre_ga(&[(7_000, b"f", b"v"), (0, b"g", b"w")]);
    w.key(23, b"hlpre")
        .hash_listpack_ex_pre_ga(&[(b"f", b"v", 8_000), (b"g", b"w", 0)]);
    w.key(24, b"hmeta")
        .hash_metadata(1_000, &[(0, b"f", b"v"), (6, b"g", b"w")]);
    w.key(25, b"hlpex").hash_listpack_ex(
        5_000,
        &[(b"f", b"v", 0), (b"g", b"w", 5_000), (b"h", b"1", 6_000)],
    );
    w.key(0, b"k").string(b"v");
    w.finish()
}

fn key_meta(w: &mut RdbWriter) {
    // KEY_META: one class, 4-byte class spec, then module-framed values.
    w.byte(0xF3)
        .len(1)
        .raw(&[0, 0, 0, 1])
        .module_uint(7)
        .module_string(b"meta")
        .module_eof();
}

fn redis13() -> Vec<u8> {
    let mut w = RdbWriter::new("REDIS", 13);
    w.aux(b"redis-ver", b"8.6.0");
    w.select_db(0);
    key_meta(&mut w);
    w.key(0, b"k").string(b"v");
    w.expire_ms(1_900_000_000_000);
    key_meta(&mut w);
    samples::stream(&mut w, 26, b"s26");
    samples::empty_stream(&mut w, 26, b"e26");
    key_meta(&mut w);
    w.key(25, b"hlpex")
        .hash_listpack_ex(5_000, &[(b"f", b"v", 5_000)]);
    w.finish()
}

fn redis14() -> Vec<u8> {
    let mut w = RdbWriter::new("REDIS", 14);
    w.select_db(0);
    key_meta(&mut w);
    samples::stream(&mut w, 27, b"s27");
    samples::stream(&mut w, 26, b"s26");
    samples::empty_stream(&mut w, 27, b"e27");
    w.finish()
}

fn valkey80() -> Vec<u8> {
    let mut w = RdbWriter::new("VALKEY", 80);
    w.aux(b"valkey-ver", b"9.0.0");
    w.byte(0xF3)
        .string(b"job-1")
        .len(2)
        .len(0)
        .len(100)
        .len(200)
        .len(16383);
    w.select_db(0);
    w.key(22, b"h2").hash2(&[
        (b"f", b"v", -1),
        (b"g", b"w", 0),
        (b"h", b"x", 1_900_000_000_000),
    ]);
    w.key(16, b"hlp").hash_listpack(&[(b"f", b"v")]);
    w.key(20, b"slp").set_listpack(&[b"a"]);
    samples::stream(&mut w, 21, b"st");
    w.finish()
}

fn big() -> Vec<u8> {
    let mut w = RdbWriter::new("REDIS", 11);
    let elems: Vec<Vec<u8>> = (0..600)
        .map(|i| format!("element-{i}").into_bytes())
        .collect();
    let refs: Vec<&[u8]> = elems.iter().map(|e| &e[..]).collect();
    w.key(1, b"biglist").list_plain(&refs);
    w.key(2, b"bigset").set_plain(&refs);
    let pairs: Vec<(&[u8], &[u8])> = refs.iter().map(|e| (*e, *e)).collect();
    w.expire_ms(1_900_000_000_000)
        .key(4, b"bighash")
        .hash_plain(&pairs);
    let scored: Vec<(&[u8], f64)> = refs
        .iter()
        .enumerate()
        .map(|(i, e)| (*e, i as f64 / 3.0))
        .collect();
    w.key(5, b"bigzset").zset2(&scored);
    let nodes: Vec<Vec<Entry>> = refs
        .chunks(50)
        .map(|c| c.iter().map(|e| Entry::Str(e)).collect())
        .collect();
    w.key(18, b"bigql").list_quicklist2(&nodes);
    // A stream of 20 nodes, 10 entries each, and one group.
    w.key(21, b"bigstream").len(20);
    for n in 0..20u64 {
        let entries: Vec<StreamNodeEntry> = (0..10)
            .map(|i| StreamNodeEntry {
                ms_delta: i,
                seq_delta: 0,
                deleted: i == 3,
                fields: vec![(b"f", b"value"), (b"g", b"other")],
            })
            .collect();
        let lp = stream_node_listpack(&[b"f", b"g"], &entries);
        w.stream_node(1000 + n * 100, 0, &lp);
    }
    w.len(190).len(2909).len(0);
    w.len(1000).len(0).len(0).len(0).len(200);
    w.len(1).string(b"grp").len(1500).len(0).len(50);
    w.len(1).stream_id_raw(1000, 0).u64_le(1).len(1);
    w.len(1).string(b"c").u64_le(2).u64_le(3);
    w.len(1).stream_id_raw(1000, 0);
    w.key(0, b"after").string(b"x");
    w.finish()
}

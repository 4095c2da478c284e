//! Decoder tests on files built byte by byte: every type and opcode, the
//! formats no local server writes (Redis 7.4 RCs, RDB 13/14, Valkey 80 types),
//! chunked feeding, big-value batching and bad input.

use bytes::{Bytes, BytesMut};
use ferry_rdb::build::{QuicklistNode, RdbWriter, module_id, samples};
use ferry_rdb::container::Entry;
use ferry_rdb::{
    DecodeOptions, Decoder, Flavor, HashField, Item, Kind, RdbError, StreamId, Value, decode_all,
};
use proptest::prelude::*;

fn b(s: &str) -> Bytes {
    Bytes::copy_from_slice(s.as_bytes())
}

/// A file with every value type of a Redis RDB 12 (plus older encodings).
fn kitchen_sink(version: u16) -> Vec<u8> {
    let mut w = RdbWriter::new("REDIS", version);
    w.aux(b"redis-ver", b"7.4.1").aux(b"aof-base", b"0");
    w.function2(b"#!lua name=lib\nredis.register_function('f', function() return 1 end)");
    w.module_aux(module_id("ft-index0", 1), 2)
        .module_string(b"idx")
        .module_eof();
    w.select_db(0).resize_db(10, 1);
    w.expire_ms(1_900_000_000_000)
        .key(0, b"str")
        .string(b"hello");
    w.key(0, b"int").string_int(-12345);
    w.key(0, b"lzf").string_lzf(&[b'x'; 300]);
    w.idle(77).key(1, b"list").list_plain(&[b"a", b"b"]);
    w.freq(9).key(2, b"set").set_plain(&[b"m1", b"m2"]);
    w.key(3, b"zset3")
        .zset_plain(&[(b"a", 1.5), (b"b", f64::INFINITY)]);
    w.key(4, b"hash").hash_plain(&[(b"f", b"v")]);
    w.key(5, b"zset2").zset2(&[(b"a", -0.25), (b"b", 1e300)]);
    w.key(9, b"zipmap")
        .hash_zipmap(&[(b"f1", b"v1"), (b"f2", b"")]);
    w.key(10, b"zl")
        .list_ziplist(&[Entry::Str(b"x"), Entry::Int(-7), Entry::Int(1 << 40)]);
    w.key(11, b"intset").set_intset(&[i64::MIN, 0, i64::MAX]);
    w.key(12, b"zzl").zset_ziplist(&[(b"m", 2.5), (b"n", 3.0)]);
    w.key(13, b"hzl")
        .hash_ziplist(&[(b"f", b"1"), (b"g", b"two")]);
    w.key(14, b"ql").list_quicklist(&[
        vec![Entry::Str(b"a")],
        vec![Entry::Int(2), Entry::Str(b"c")],
    ]);
    w.key(16, b"hlp")
        .hash_listpack(&[(b"f", b"v"), (b"n", b"42")]);
    w.key(17, b"zlp").zset_listpack(&[(b"a", 1.0), (b"b", 1.5)]);
    let big = vec![b'P'; 9000];
    w.key(18, b"ql2").list_quicklist2_nodes(&[
        QuicklistNode::Packed(vec![Entry::Str(b"a"), Entry::Int(1)]),
        QuicklistNode::Plain(&big),
    ]);
    w.key(20, b"slp").set_listpack(&[b"x", b"y"]);
    w.select_db(3);
    w.key(24, b"hmeta")
        .hash_metadata(1_000, &[(0, b"f", b"v"), (6, b"g", b"w")]);
    w.key(25, b"hlpex")
        .hash_listpack_ex(5_000, &[(b"f", b"v", 0), (b"g", b"w", 5_000)]);
    w.key(22, b"hpre")
        .hash_metadata_pre_ga(&[(7_000, b"f", b"v")]);
    w.key(23, b"hlpre")
        .hash_listpack_ex_pre_ga(&[(b"f", b"v", 8_000)]);
    // A module value: id, then opcode-framed values.
    w.key(7, b"mod")
        .len(module_id("ReJSON-RL", 3))
        .module_uint(1)
        .module_string(b"{}")
        .module_double(1.5)
        .module_float(2.5)
        .module_sint(-1)
        .module_eof();
    samples::stream(&mut w, 21, b"stream");
    w.slot_info(42, 1, 0);
    w.finish()
}

fn keys(items: &[Item]) -> Vec<&ferry_rdb::Key> {
    items
        .iter()
        .filter_map(|i| match i {
            Item::Key(k) => Some(k),
            _ => None,
        })
        .collect()
}

fn key<'a>(items: &'a [Item], name: &str) -> &'a ferry_rdb::Key {
    keys(items)
        .into_iter()
        .find(|k| k.header.key == name.as_bytes())
        .unwrap_or_else(|| panic!("key {name} missing"))
}

fn hf(f: &str, v: &str, t: Option<i64>) -> HashField {
    HashField {
        field: b(f),
        value: b(v),
        expire_ms: t,
    }
}

#[test]
fn every_type_decodes() {
    let items = decode_all(&kitchen_sink(12)).expect("decodes");
    assert_eq!(
        items[0],
        Item::Header {
            flavor: Flavor::Redis,
            version: 12
        }
    );
    assert!(
        items
            .iter()
            .any(|i| matches!(i, Item::Function { code } if code.starts_with(b"#!lua")))
    );
    assert!(items.iter().any(
        |i| matches!(i, Item::ModuleAux { module, when: 2, .. } if module.name() == "ft-index0")
    ));
    assert!(items.iter().any(|i| matches!(
        i,
        Item::SlotInfo {
            slot: 42,
            keys: 1,
            expires: 0
        }
    )));
    assert!(matches!(
        items.last(),
        Some(Item::End { verified: true, .. })
    ));

    let s = key(&items, "str");
    assert_eq!(s.value, Value::String(b("hello")));
    assert_eq!(s.header.expire_ms, Some(1_900_000_000_000));
    assert_eq!(key(&items, "int").value, Value::String(b("-12345")));
    assert_eq!(
        key(&items, "lzf").value,
        Value::String(Bytes::from(vec![b'x'; 300]))
    );
    assert_eq!(key(&items, "list").header.idle, Some(77));
    assert_eq!(key(&items, "set").header.freq, Some(9));
    assert_eq!(key(&items, "set").header.kind, Kind::Set);
    assert_eq!(
        key(&items, "zset3").value,
        Value::SortedSet(vec![(b("a"), 1.5), (b("b"), f64::INFINITY)])
    );
    assert_eq!(
        key(&items, "zset2").value,
        Value::SortedSet(vec![(b("a"), -0.25), (b("b"), 1e300)])
    );
    assert_eq!(
        key(&items, "zipmap").value,
        Value::Hash(vec![hf("f1", "v1", None), hf("f2", "", None)])
    );
    assert_eq!(
        key(&items, "zl").value,
        Value::List(vec![b("x"), b("-7"), b("1099511627776")])
    );
    assert_eq!(
        key(&items, "intset").value,
        Value::Set(vec![
            b(&i64::MIN.to_string()),
            b("0"),
            b(&i64::MAX.to_string())
        ])
    );
    assert_eq!(
        key(&items, "zzl").value,
        Value::SortedSet(vec![(b("m"), 2.5), (b("n"), 3.0)])
    );
    assert_eq!(
        key(&items, "hzl").value,
        Value::Hash(vec![hf("f", "1", None), hf("g", "two", None)])
    );
    assert_eq!(
        key(&items, "ql").value,
        Value::List(vec![b("a"), b("2"), b("c")])
    );
    assert_eq!(
        key(&items, "ql2").value,
        Value::List(vec![b("a"), b("1"), Bytes::from(vec![b'P'; 9000])])
    );
    assert_eq!(key(&items, "slp").value, Value::Set(vec![b("x"), b("y")]));
    let hmeta = key(&items, "hmeta");
    assert_eq!(hmeta.header.db, 3);
    assert_eq!(
        hmeta.value,
        Value::Hash(vec![hf("f", "v", None), hf("g", "w", Some(1_005))])
    );
    assert_eq!(
        key(&items, "hlpex").value,
        Value::Hash(vec![hf("f", "v", None), hf("g", "w", Some(5_000))])
    );
    assert_eq!(
        key(&items, "hpre").value,
        Value::Hash(vec![hf("f", "v", Some(7_000))])
    );
    assert_eq!(
        key(&items, "hlpre").value,
        Value::Hash(vec![hf("f", "v", Some(8_000))])
    );
    let m = key(&items, "mod");
    let Value::Module(mv) = &m.value else {
        panic!("module")
    };
    assert_eq!(mv.id.name(), "ReJSON-RL");
    assert_eq!(mv.id.version(), 3);
    check_stream(&key(&items, "stream").value, 21);
}

fn check_stream(v: &Value, t: u8) {
    let Value::Stream(s) = v else {
        panic!("not a stream: {v:?}")
    };
    let ids: Vec<_> = s.entries.iter().map(|e| e.id).collect();
    assert_eq!(
        ids,
        vec![StreamId { ms: 100, seq: 0 }, StreamId { ms: 102, seq: 5 }]
    );
    assert_eq!(s.entries[0].fields, vec![(b("f"), b("1"))]);
    assert_eq!(
        s.entries[1].fields,
        vec![(b("g"), b("3")), (b("h"), b("4"))]
    );
    let meta = s.meta.as_ref().expect("meta");
    assert_eq!(meta.length, 2);
    assert_eq!(meta.last_id, StreamId { ms: 102, seq: 5 });
    assert_eq!(meta.entries_added, (t >= 19).then_some(3));
    let g = &meta.groups[0];
    assert_eq!(g.name, b("grp"));
    assert_eq!(g.pending.len(), 2);
    assert_eq!(g.pending[0].consumer.as_deref(), Some(&b"alice"[..]));
    assert_eq!(g.pending[0].delivery_count, 3);
    assert_eq!(g.pending[1].consumer.as_deref(), Some(&b"bob"[..]));
    assert_eq!(
        g.consumers[1].active_time,
        (t >= 21).then_some(1_700_000_000_005)
    );
    assert_eq!(meta.idmp.is_some(), t >= 26);
}

#[test]
fn older_stream_types_decode() {
    for t in [15u8, 19] {
        let mut w = RdbWriter::new("REDIS", 10);
        samples::stream(&mut w, t, b"s");
        let items = decode_all(&w.finish()).expect("decodes");
        check_stream(&key(&items, "s").value, t);
    }
}

#[test]
fn rdb13_key_meta_and_stream_26() {
    let mut w = RdbWriter::new("REDIS", 13);
    // KEY_META: one class, 4-byte class spec, then module-framed values.
    w.byte(0xF3)
        .len(1)
        .raw(&[0, 0, 0, 1])
        .module_uint(7)
        .module_eof();
    w.key(0, b"k").string(b"v");
    samples::stream(&mut w, 26, b"s26");
    let mut w14 = RdbWriter::new("REDIS", 14);
    samples::stream(&mut w14, 27, b"s27");
    let items = decode_all(&w.finish()).expect("rdb 13 decodes");
    let k = key(&items, "k");
    assert!(k.header.meta.is_some());
    check_stream(&key(&items, "s26").value, 26);
    let items = decode_all(&w14.finish()).expect("rdb 14 decodes");
    check_stream(&key(&items, "s27").value, 27);
    // The same bytes are unknown to an RDB 12 reader.
    let mut old = RdbWriter::new("REDIS", 12);
    old.byte(0xF3).len(0);
    assert!(matches!(
        decode_all(&old.finish()),
        Err(ferry_rdb::ReadError::Rdb(RdbError::UnknownType {
            byte: 0xF3,
            ..
        }))
    ));
}

#[test]
fn valkey_type_22_is_hash2_and_243_is_slot_import() {
    let mut w = RdbWriter::new("VALKEY", 80);
    w.aux(b"valkey-ver", b"9.1.2");
    w.byte(0xF3).string(&[b'j'; 40]).len(1).len(0).len(100);
    w.key(22, b"h").hash2(&[
        (b"f", b"v", -1),
        (b"g", b"w", 0),
        (b"h", b"x", 1_900_000_000_000),
    ]);
    let items = decode_all(&w.finish()).expect("decodes");
    assert_eq!(
        items[0],
        Item::Header {
            flavor: Flavor::Valkey,
            version: 80
        }
    );
    assert!(
        items
            .iter()
            .any(|i| matches!(i, Item::SlotImport { ranges, .. } if ranges == &[(0, 100)]))
    );
    assert_eq!(
        key(&items, "h").value,
        Value::Hash(vec![
            hf("f", "v", None),
            hf("g", "w", Some(0)),
            hf("h", "x", Some(1_900_000_000_000))
        ])
    );
    // Redis-only types are unknown in a Valkey file.
    for t in [23u8, 24, 25, 26] {
        let mut w = RdbWriter::new("VALKEY", 80);
        w.key(t, b"k");
        let err = decode_all(&w.finish()).unwrap_err();
        assert!(
            matches!(err, ferry_rdb::ReadError::Rdb(RdbError::UnknownType { byte, .. }) if byte == t),
            "{t}: {err}"
        );
    }
}

/// Decode `data` feeding it in pieces of the given sizes (cycled).
fn decode_chunked(
    data: &[u8],
    sizes: &[usize],
    opts: DecodeOptions,
) -> Result<Vec<Item>, RdbError> {
    let mut d = Decoder::new(opts);
    let mut buf = BytesMut::new();
    let mut items = Vec::new();
    let mut pos = 0;
    let mut i = 0;
    loop {
        while let Some(item) = d.decode(&mut buf)? {
            items.push(item);
        }
        if pos == data.len() {
            break;
        }
        let n = sizes[i % sizes.len()].max(1).min(data.len() - pos);
        i += 1;
        buf.extend_from_slice(&data[pos..pos + n]);
        pos += n;
    }
    d.finish(&buf)?;
    Ok(items)
}

/// Merge big-key chunks back into whole values (raw dropped), for comparison.
fn merge(items: Vec<Item>) -> Vec<(Bytes, Value)> {
    let mut out = Vec::new();
    let mut cur: Option<(Bytes, Option<Value>)> = None;
    for i in items {
        match i {
            Item::Key(k) => out.push((k.header.key, k.value)),
            Item::BigKeyStart(h) => cur = Some((h.key, None)),
            Item::BigKeyChunk(v) => {
                let (_, acc) = cur.as_mut().expect("chunk outside a big key");
                match acc {
                    None => *acc = Some(v),
                    Some(a) => a.append(v).expect("chunk of the same kind"),
                }
            }
            Item::BigKeyEnd => {
                let (k, v) = cur.take().expect("end outside a big key");
                out.push((k, v.expect("big key without chunks")));
            }
            _ => {}
        }
    }
    out
}

fn big_file() -> Vec<u8> {
    let mut w = RdbWriter::new("REDIS", 11);
    let elems: Vec<Vec<u8>> = (0..3000)
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
        .map(|(i, e)| (*e, i as f64))
        .collect();
    w.key(5, b"bigzset").zset2(&scored);
    let nodes: Vec<Vec<Entry>> = refs
        .chunks(100)
        .map(|c| c.iter().map(|e| Entry::Str(e)).collect())
        .collect();
    w.key(18, b"bigql").list_quicklist2(&nodes);
    w.key(0, b"after").string(b"x");
    w.finish()
}

#[test]
fn big_values_come_in_bounded_chunks_equal_to_whole() {
    let data = big_file();
    let whole = decode_all(&data).expect("whole");
    assert!(whole.iter().all(|i| !matches!(i, Item::BigKeyStart(_))));
    let opts = DecodeOptions {
        big_value_bytes: 4096,
        ..Default::default()
    };
    let chunked = decode_chunked(&data, &[1000], opts.clone()).expect("chunked");
    let starts: Vec<_> = chunked
        .iter()
        .filter_map(|i| match i {
            Item::BigKeyStart(h) => Some(h.key.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(
        starts,
        vec![
            b("biglist"),
            b("bigset"),
            b("bighash"),
            b("bigzset"),
            b("bigql")
        ]
    );
    let big_hash_start = chunked.iter().find_map(|i| match i {
        Item::BigKeyStart(h) if h.key == "bighash" => Some(h.clone()),
        _ => None,
    });
    assert_eq!(
        big_hash_start.and_then(|h| h.expire_ms),
        Some(1_900_000_000_000)
    );
    for i in &chunked {
        if let Item::BigKeyChunk(v) = i {
            let bytes: usize = match v {
                Value::List(l) | Value::Set(l) => l.iter().map(|e| e.len()).sum(),
                Value::Hash(h) => h.iter().map(|f| f.field.len() + f.value.len()).sum(),
                Value::SortedSet(z) => z.iter().map(|(m, _)| m.len() + 8).sum(),
                _ => 0,
            };
            // At most the threshold plus one unit (a quicklist node of ~1.3 KB here).
            assert!(
                bytes <= 4096 + 2000,
                "chunk of {bytes} bytes is not bounded"
            );
        }
    }
    assert_eq!(merge(chunked), merge(whole));
}

#[test]
fn chunked_streams_merge_to_whole() {
    let mut w = RdbWriter::new("REDIS", 11);
    samples::stream(&mut w, 21, b"s");
    let data = w.finish();
    let whole = merge(decode_all(&data).unwrap());
    for size in [1usize, 2, 3, 7, 64] {
        let opts = DecodeOptions {
            big_value_bytes: 16,
            ..Default::default()
        };
        assert_eq!(
            merge(decode_chunked(&data, &[size], opts).unwrap()),
            whole,
            "size {size}"
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// Any split of the input decodes to the same items as the whole.
    #[test]
    fn any_split_decodes_the_same(sizes in proptest::collection::vec(1usize..700, 1..20)) {
        let data = kitchen_sink(12);
        let whole = decode_all(&data).unwrap();
        let chunked = decode_chunked(&data, &sizes, DecodeOptions::default()).unwrap();
        prop_assert_eq!(chunked, whole);
    }

    /// Any split with tiny big-value threshold merges to the same values.
    #[test]
    fn any_split_big_mode_merges_the_same(sizes in proptest::collection::vec(1usize..5000, 1..8), big in 1usize..20000) {
        let data = big_file();
        let whole = merge(decode_all(&data).unwrap());
        let opts = DecodeOptions { big_value_bytes: big, ..Default::default() };
        prop_assert_eq!(merge(decode_chunked(&data, &sizes, opts).unwrap()), whole);
    }

    /// Corrupting any byte gives an error or a decode, never a panic.
    #[test]
    fn flipped_bytes_never_panic(pos in 0usize..100_000, xor in 1u8..=255, sizes in proptest::collection::vec(1usize..300, 1..5)) {
        let mut data = kitchen_sink(12);
        let p = pos % data.len();
        data[p] ^= xor;
        let _ = decode_chunked(&data, &sizes, DecodeOptions::default());
    }
}

#[test]
fn every_truncation_is_an_error_naming_the_offset() {
    let data = kitchen_sink(12);
    for end in 0..data.len() {
        match decode_chunked(&data[..end], &[97], DecodeOptions::default()) {
            Err(RdbError::Truncated { offset, .. }) => assert_eq!(offset, end as u64),
            Err(RdbError::BadMagic { .. }) if end < 9 => {}
            other => panic!("prefix of {end} bytes: {other:?}"),
        }
    }
}

#[test]
fn bad_input_errors_are_typed() {
    // Checksum mismatch.
    let mut data = kitchen_sink(12);
    let n = data.len();
    data[n - 1] ^= 1;
    assert!(matches!(
        decode_chunked(&data, &[4096], DecodeOptions::default()),
        Err(RdbError::Checksum { .. })
    ));
    // Zero checksum = disabled.
    let mut w = RdbWriter::new("REDIS", 11);
    w.key(0, b"k").string(b"v");
    let items = decode_all(&w.finish_without_checksum()).unwrap();
    assert!(matches!(
        items.last(),
        Some(Item::End {
            verified: false,
            ..
        })
    ));
    // Unknown type byte.
    let mut w = RdbWriter::new("REDIS", 11);
    w.key(0, b"k").string(b"v").key(99, b"x");
    let e = decode_chunked(&w.finish(), &[4096], DecodeOptions::default()).unwrap_err();
    assert!(
        matches!(
            e,
            RdbError::UnknownType {
                byte: 99,
                offset: 14,
                ..
            }
        ),
        "{e}"
    );
    assert!(e.to_string().contains("offset 14"), "{e}");
    // Absurd lengths.
    let mut w = RdbWriter::new("REDIS", 11);
    w.key(0, b"k").raw(&[0x81]).raw(&(1u64 << 63).to_be_bytes());
    let e = decode_chunked(&w.finish(), &[4096], DecodeOptions::default()).unwrap_err();
    assert!(matches!(e, RdbError::TooLarge { .. }), "{e}");
    let mut w = RdbWriter::new("REDIS", 11);
    w.key(1, b"k").raw(&[0x81]).raw(&(1u64 << 63).to_be_bytes());
    let e = decode_chunked(&w.finish(), &[4096], DecodeOptions::default()).unwrap_err();
    assert!(
        matches!(e, RdbError::Truncated { .. } | RdbError::Corrupt { .. }),
        "{e}"
    );
    // LZF claiming an impossible size.
    let mut w = RdbWriter::new("REDIS", 11);
    w.key(0, b"k")
        .byte(0xC3)
        .len(2)
        .len(1 << 30)
        .raw(&[0, b'a']);
    let e = decode_chunked(&w.finish(), &[4096], DecodeOptions::default()).unwrap_err();
    assert!(matches!(e, RdbError::Corrupt { .. }), "{e}");
    // Bad magic and version.
    assert!(matches!(
        decode_chunked(b"RUBBISH00", &[9], DecodeOptions::default()),
        Err(RdbError::BadMagic { .. })
    ));
    assert!(matches!(
        decode_chunked(b"REDIS0099", &[9], DecodeOptions::default()),
        Err(RdbError::UnsupportedVersion { version: 99, .. })
    ));
    // Corrupt listpack inside a hash.
    let mut w = RdbWriter::new("REDIS", 11);
    w.key(16, b"h").string(&[7, 0, 0, 0, 1, 0, 0xFF]);
    let e = decode_chunked(&w.finish(), &[4096], DecodeOptions::default()).unwrap_err();
    assert!(matches!(e, RdbError::Container { .. }), "{e}");
}

#[test]
fn restore_payload_has_version_and_crc() {
    let mut w = RdbWriter::new("REDIS", 11);
    w.key(0, b"k").string(b"hello");
    let items = decode_all(&w.finish()).unwrap();
    let p = key(&items, "k").restore_payload(11);
    assert_eq!(
        &p[..],
        &ferry_rdb::build::dump_payload(0, b"\x05hello", 11)[..]
    );
}

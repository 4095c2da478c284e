//! Property tests for the packed-container parsers, LZF and CRC-64: builder
//! output decodes back to its input, and no input makes a parser panic.

use ferry_rdb::build::{
    RdbWriter, dump_payload, intset, listpack, listpack_verbatim, ziplist, ziplist_verbatim,
    zipmap_with_free,
};
use ferry_rdb::container::{ContainerError, Entry, parse_canonical_i64};
use ferry_rdb::crc64::{Crc64, crc64};
use ferry_rdb::intset::Intset;
use ferry_rdb::listpack::Listpack;
use ferry_rdb::lzf;
use ferry_rdb::ziplist::Ziplist;
use ferry_rdb::zipmap::Zipmap;
use proptest::prelude::*;

/// An owned entry, so strategies can generate them.
#[derive(Debug, Clone)]
enum Owned {
    Str(Vec<u8>),
    Int(i64),
}

impl Owned {
    fn entry(&self) -> Entry<'_> {
        match self {
            Owned::Str(s) => Entry::Str(s),
            Owned::Int(v) => Entry::Int(*v),
        }
    }
}

/// Integers around every encoding boundary, plus anything.
fn int_strategy() -> impl Strategy<Value = i64> {
    let edges: Vec<i64> = [
        0i64, 12, 13, 127, 128, 4095, 4096, 32767, 32768, 8_388_607, 8_388_608,
    ]
    .iter()
    .flat_map(|&b| [b, -b, b - 1, -b - 1, b + 1])
    .chain([i64::from(i32::MAX), i64::from(i32::MIN), i64::MAX, i64::MIN])
    .collect();
    prop_oneof![prop::sample::select(edges), any::<i64>(), -300i64..300]
}

fn entry_strategy() -> impl Strategy<Value = Owned> {
    prop_oneof![
        3 => int_strategy().prop_map(Owned::Int),
        3 => prop::collection::vec(any::<u8>(), 0..80).prop_map(Owned::Str),
        1 => prop::collection::vec(any::<u8>(), 60..400).prop_map(Owned::Str),
        1 => int_strategy().prop_map(|v| Owned::Str(v.to_string().into_bytes())),
        1 => "[0-9-]{1,4}".prop_map(|s| Owned::Str(s.into_bytes())),
    ]
}

/// What a Redis-style encoder stores for an entry: integer strings become integers.
fn normalized<'a>(e: &Entry<'a>) -> Entry<'a> {
    match *e {
        Entry::Str(s) => parse_canonical_i64(s).map_or(*e, Entry::Int),
        Entry::Int(_) => *e,
    }
}

fn decode_listpack(buf: &[u8]) -> Result<Vec<Entry<'_>>, ContainerError> {
    Listpack::new(buf)?.collect()
}

fn decode_ziplist(buf: &[u8]) -> Result<Vec<Entry<'_>>, ContainerError> {
    Ziplist::new(buf)?.collect()
}

/// Feed every parser the same bytes, draining iterators; only panics fail.
fn poke_all(bytes: &[u8]) {
    if let Ok(lp) = Listpack::new(bytes) {
        let _ = lp.count_hint();
        for e in lp.flatten() {
            let _ = (e.to_vec(), e.as_int());
        }
    }
    if let Ok(zl) = Ziplist::new(bytes) {
        let _ = zl.count_hint();
        zl.for_each(drop);
    }
    if let Ok(set) = Intset::new(bytes) {
        let _ = set.is_sorted_unique();
        set.for_each(drop);
    }
    if let Ok(zm) = Zipmap::new(bytes) {
        zm.for_each(drop);
    }
    for expected in [0, 1, bytes.len(), bytes.len() * 3, 1 << 20, usize::MAX] {
        let _ = lzf::decompress(bytes, expected);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn listpack_round_trip(items in prop::collection::vec(entry_strategy(), 0..40)) {
        let entries: Vec<Entry> = items.iter().map(Owned::entry).collect();
        let want: Vec<Entry> = entries.iter().map(normalized).collect();
        let buf = listpack(&entries);
        prop_assert_eq!(Listpack::new(&buf).unwrap().count_hint(), Some(entries.len()));
        prop_assert_eq!(decode_listpack(&buf).unwrap(), want);
        let verbatim = listpack_verbatim(&entries);
        prop_assert_eq!(decode_listpack(&verbatim).unwrap(), entries);
    }

    #[test]
    fn ziplist_round_trip(items in prop::collection::vec(entry_strategy(), 0..40)) {
        let entries: Vec<Entry> = items.iter().map(Owned::entry).collect();
        let want: Vec<Entry> = entries.iter().map(normalized).collect();
        let buf = ziplist(&entries);
        prop_assert_eq!(Ziplist::new(&buf).unwrap().count_hint(), Some(entries.len()));
        prop_assert_eq!(decode_ziplist(&buf).unwrap(), want);
        let verbatim = ziplist_verbatim(&entries);
        prop_assert_eq!(decode_ziplist(&verbatim).unwrap(), entries);
    }

    #[test]
    fn intset_round_trip(values in prop::collection::vec(int_strategy(), 0..60)) {
        let mut want = values.clone();
        want.sort_unstable();
        want.dedup();
        let buf = intset(&values);
        let set = Intset::new(&buf).unwrap();
        prop_assert!(set.is_sorted_unique());
        prop_assert_eq!(set.len(), want.len());
        prop_assert_eq!(set.collect::<Vec<_>>(), want);
    }

    #[test]
    fn zipmap_round_trip(
        pairs in prop::collection::vec(
            (prop::collection::vec(any::<u8>(), 0..300),
             prop::collection::vec(any::<u8>(), 0..300),
             0u8..8),
            0..20,
        )
    ) {
        let triples: Vec<(&[u8], &[u8], u8)> =
            pairs.iter().map(|(f, v, free)| (&f[..], &v[..], *free)).collect();
        let buf = zipmap_with_free(&triples);
        let got: Vec<(&[u8], &[u8])> =
            Zipmap::new(&buf).unwrap().collect::<Result<_, _>>().unwrap();
        let want: Vec<(&[u8], &[u8])> = triples.iter().map(|&(f, v, _)| (f, v)).collect();
        prop_assert_eq!(got, want);
    }

    #[test]
    fn lzf_round_trip(
        data in prop_oneof![
            prop::collection::vec(any::<u8>(), 0..3000),
            prop::collection::vec(0u8..4, 0..3000),
            (prop::collection::vec(any::<u8>(), 1..40), 1usize..300)
                .prop_map(|(unit, n)| unit.repeat(n)),
        ]
    ) {
        if let Some(c) = lzf::compress(&data) {
            prop_assert!(c.len() < data.len());
            prop_assert_eq!(lzf::decompress(&c, data.len()).unwrap(), data.clone());
            // Any other declared length is refused.
            prop_assert!(lzf::decompress(&c, data.len() + 1).is_err());
            prop_assert!(lzf::decompress(&c, data.len() - 1).is_err());
        }
    }

    #[test]
    fn crc64_incremental(data in prop::collection::vec(any::<u8>(), 0..2000), cut in any::<prop::sample::Index>()) {
        let at = cut.index(data.len() + 1);
        let mut c = Crc64::new();
        c.update(&data[..at]);
        c.update(&data[at..]);
        prop_assert_eq!(c.value(), crc64(&data));
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..300)) {
        poke_all(&bytes);
    }

    #[test]
    fn mutated_containers_never_panic(
        items in prop::collection::vec(entry_strategy(), 0..12),
        edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..6),
        cut in any::<prop::sample::Index>(),
    ) {
        let entries: Vec<Entry> = items.iter().map(Owned::entry).collect();
        let values: Vec<i64> = entries.iter().filter_map(Entry::as_int).collect();
        let pairs: Vec<(&[u8], &[u8], u8)> = items
            .iter()
            .map(|o| match o {
                Owned::Str(s) => (&s[..], &s[..], 1),
                Owned::Int(_) => (&b"i"[..], &b"v"[..], 0),
            })
            .collect();
        let text = entries.iter().flat_map(|e| e.to_vec()).collect::<Vec<u8>>().repeat(3);
        let lzf_bytes = lzf::compress(&text).unwrap_or_default();
        for valid in [listpack(&entries), ziplist(&entries), intset(&values), zipmap_with_free(&pairs), lzf_bytes] {
            let mut bytes = valid.clone();
            for (at, b) in &edits {
                if !bytes.is_empty() {
                    let i = at.index(bytes.len());
                    bytes[i] = *b;
                }
            }
            poke_all(&bytes);
            // Truncations keep (or fix) the header but lose the tail.
            let n = cut.index(valid.len() + 1);
            poke_all(&valid[..n]);
        }
    }
}

#[test]
fn big_strings_and_counts() {
    // 12-bit and 32-bit listpack strings, 14-bit and 32-bit ziplist strings.
    let sizes = [63, 64, 4095, 4096, 16383, 16384, 70_000];
    let blobs: Vec<Vec<u8>> = sizes.iter().map(|&n| vec![b'x'; n]).collect();
    let entries: Vec<Entry> = blobs.iter().map(|b| Entry::Str(b)).collect();
    assert_eq!(decode_listpack(&listpack(&entries)).unwrap(), entries);
    assert_eq!(decode_ziplist(&ziplist(&entries)).unwrap(), entries);

    // More than 65535 entries: the header count saturates to "unknown".
    let many: Vec<Entry> = (0..70_000).map(|i| Entry::Int(i % 300)).collect();
    let lp = listpack(&many);
    assert_eq!(Listpack::new(&lp).unwrap().count_hint(), None);
    assert_eq!(decode_listpack(&lp).unwrap().len(), 70_000);
    let zl = ziplist(&many);
    assert_eq!(Ziplist::new(&zl).unwrap().count_hint(), None);
    assert_eq!(decode_ziplist(&zl).unwrap().len(), 70_000);
}

#[test]
fn listpack_known_vector() {
    let entries = [
        Entry::Str(b"a"),
        Entry::Int(1),
        Entry::Int(-1),
        Entry::Int(4096),
        Entry::Int(1 << 40),
    ];
    #[rustfmt::skip]
    let bytes = [
        29, 0, 0, 0, 5, 0,
        0x81, b'a', 2,
        0x01, 1,
        0xDF, 0xFF, 2,
        0xF1, 0x00, 0x10, 3,
        0xF4, 0, 0, 0, 0, 0, 1, 0, 0, 9,
        0xFF,
    ];
    assert_eq!(listpack(&entries), bytes);
    assert_eq!(decode_listpack(&bytes).unwrap(), entries);
}

#[test]
fn crc64_check_value() {
    assert_eq!(crc64(b"123456789"), 0xe9c6_d914_c4b8_d9ca);
}

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

/// Minimal RDB string reader for the fixtures: 6/14-bit lengths and `0xC3` LZF.
fn rdb_string(b: &[u8], p: &mut usize) -> Vec<u8> {
    fn len(b: &[u8], p: &mut usize) -> (usize, bool) {
        let f = b[*p];
        *p += 1;
        match f >> 6 {
            0 => (usize::from(f & 0x3F), false),
            1 => {
                *p += 1;
                ((usize::from(f & 0x3F) << 8) | usize::from(b[*p - 1]), false)
            }
            3 => (usize::from(f & 0x3F), true),
            _ => panic!("fixture uses only short lengths"),
        }
    }
    let (n, special) = len(b, p);
    if !special {
        *p += n;
        return b[*p - n..*p].to_vec();
    }
    assert_eq!(n, 3, "fixture uses only LZF strings");
    let (clen, _) = len(b, p);
    let (ulen, _) = len(b, p);
    *p += clen;
    lzf::decompress(&b[*p - clen..*p], ulen).unwrap()
}

/// Check a DUMP payload's trailer: RDB version 9 and a valid CRC-64.
fn check_dump_trailer(payload: &[u8], body_end: usize) {
    let n = payload.len();
    assert_eq!(body_end, n - 10);
    assert_eq!(&payload[n - 10..n - 8], &[9, 0]);
    assert_eq!(
        crc64(&payload[..n - 8]).to_le_bytes(),
        payload[n - 8..],
        "crc"
    );
}

/// `DUMP` of an intset from Redis 6.2.14: byte-identical to the builder's
/// output (LZF stream and CRC included).
#[test]
fn redis_dump_intset() {
    let payload = unhex(
        "0bc315200408000000032003a0000080e0020b04000001000009\
         00a01e3565c5f1f53d",
    );
    let mut p = 1;
    let body = rdb_string(&payload, &mut p);
    check_dump_trailer(&payload, p);
    let set: Vec<i64> = Intset::new(&body).unwrap().collect();
    assert_eq!(set, [i64::MIN, 3, 1 << 40]);
    let mut w = RdbWriter::bare();
    w.set_intset(&[3, 1 << 40, i64::MIN]);
    assert_eq!(dump_payload(11, w.as_bytes(), 9), payload);
}

/// `DUMP` of a ziplist hash from Redis 6.2.14, LZF-compressed by liblzf;
/// its ziplist bytes equal the builder's.
#[test]
fn redis_dump_hash_ziplist() {
    let payload = unhex(
        "0dc32c414d1f4d0100001d0000000600000266310402763104016e03fe6303036269670541\
         2c007ae0ff00e01900017aff0900de8bfcd49db51a25",
    );
    let mut p = 1;
    let zl = rdb_string(&payload, &mut p);
    check_dump_trailer(&payload, p);
    let big = vec![b'z'; 300];
    let want = [
        Entry::Str(b"f1"),
        Entry::Str(b"v1"),
        Entry::Str(b"n"),
        Entry::Int(99),
        Entry::Str(b"big"),
        Entry::Str(&big),
    ];
    assert_eq!(decode_ziplist(&zl).unwrap(), want);
    assert_eq!(ziplist(&want), zl);
}

/// `DUMP` of a stream from Redis 6.2.14: the node listpack (liblzf
/// compressed) equals what the builder writes for the same entries.
#[test]
fn redis_dump_stream_node() {
    use ferry_rdb::build::{StreamNodeEntry, stream_node_listpack};
    let payload = unhex(
        "0f011000000000000003e80000000000000000c3404b416f116f0100001900030100010201\
         8166028167024009000020010701018374776f0405200a000a200308010181680281780206\
         20280914010301816102e12c7ae0ff00e01a000402ae0501ff0343fc030009001c15c92787\
         84d60f",
    );
    let mut p = 2; // type, node count
    let key = rdb_string(&payload, &mut p);
    assert_eq!(key.len(), 16);
    let lp = rdb_string(&payload, &mut p);
    p += 5; // length 3, last id 1020 (2-byte length) and 3, no groups
    check_dump_trailer(&payload, p);
    let big = vec![b'z'; 300];
    let entries = [
        StreamNodeEntry {
            ms_delta: 0,
            seq_delta: 0,
            deleted: false,
            fields: vec![(b"f", b"1"), (b"g", b"two")],
        },
        StreamNodeEntry {
            ms_delta: 10,
            seq_delta: 0,
            deleted: false,
            fields: vec![(b"h", b"x")],
        },
        StreamNodeEntry {
            ms_delta: 20,
            seq_delta: 3,
            deleted: false,
            fields: vec![(b"f", b"a"), (b"g", &big)],
        },
    ];
    assert_eq!(stream_node_listpack(&[b"f", b"g"], &entries), lp);
    assert_eq!(decode_listpack(&lp).unwrap().len(), 25);
}

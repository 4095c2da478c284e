//! Property tests for the packed-container parsers, LZF and CRC-64: builder
//! output decodes back to its input, and no input makes a parser panic.

use ferry_rdb::build::{
    intset, listpack, listpack_verbatim, ziplist, ziplist_verbatim, zipmap_with_free,
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

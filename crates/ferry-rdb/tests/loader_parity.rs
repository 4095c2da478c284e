//! What the decoder does where a server's loader is lenient or strict:
//! empty keys (skipped, as `EmptyKey`), bytes after the checksum (counted),
//! a stream length without entry nodes (refused).

use ferry_rdb::build::RdbWriter;
use ferry_rdb::container::Entry;
use ferry_rdb::{DecodeOptions, Item, RdbError, RdbReader, ReadError, Value, decode_all};

#[test]
fn empty_collections_are_empty_keys_and_empty_nodes_are_dropped() {
    let mut w = RdbWriter::new("REDIS", 10);
    w.select_db(0);
    w.key(18, b"partly")
        .list_quicklist2(&[vec![], vec![Entry::Str(b"a")], vec![]]);
    w.key(14, b"old-empty").list_quicklist(&[vec![]]);
    w.key(18, b"empty").list_quicklist2(&[vec![]]);
    w.key(2, b"set").set_plain(&[]);
    w.key(4, b"hash").hash_plain(&[]);
    w.key(5, b"zset").zset2(&[]);
    w.key(16, b"hlp").hash_listpack(&[]);
    w.key(20, b"slp").set_listpack(&[]);
    let items = decode_all(&w.finish()).expect("decodes");
    let empty: Vec<&[u8]> = items
        .iter()
        .filter_map(|i| match i {
            Item::EmptyKey(h) => Some(&h.key[..]),
            _ => None,
        })
        .collect();
    assert_eq!(
        empty,
        vec![
            &b"old-empty"[..],
            b"empty",
            b"set",
            b"hash",
            b"zset",
            b"hlp",
            b"slp"
        ]
    );
    let partly = items.iter().find_map(|i| match i {
        Item::Key(k) if &k.header.key[..] == b"partly" => Some(&k.value),
        _ => None,
    });
    assert_eq!(partly, Some(&Value::List(vec!["a".into()])));
}

#[test]
fn bytes_after_the_checksum_are_counted_or_refused_on_request() {
    let mut w = RdbWriter::new("REDIS", 10);
    w.key(0, b"k").string(b"v");
    let mut data = w.finish();
    data.extend_from_slice(&[0u8; 300_000]);
    let mut r = RdbReader::with_options(&data[..], DecodeOptions::default());
    let items: Vec<Item> = r.by_ref().collect::<Result<_, _>>().expect("items");
    assert_eq!(items.len(), 3, "header, key, end");
    assert_eq!(r.trailing_bytes(), 300_000);
    let mut strict = RdbReader::new(&data[..]);
    strict.reject_trailing = true;
    let last = strict.last().expect("an item");
    assert!(
        matches!(last, Err(ReadError::Rdb(RdbError::TrailingData { .. }))),
        "{last:?}"
    );
}

#[test]
fn a_stream_length_without_entry_nodes_is_refused() {
    let mut w = RdbWriter::new("REDIS", 10);
    w.key(19, b"s").len(0);
    w.len(2)
        .len(5)
        .len(1)
        .len(0)
        .len(0)
        .len(0)
        .len(0)
        .len(2)
        .len(0);
    let e = decode_all(&w.finish()).expect_err("refused");
    assert!(
        e.to_string().contains("stream length 2 but no entry node"),
        "{e}"
    );
}

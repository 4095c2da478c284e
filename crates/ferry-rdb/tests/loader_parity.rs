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
    ferry_rdb::build::samples::stream_length_without_nodes(&mut w, b"s");
    let e = decode_all(&w.finish()).expect_err("refused");
    assert!(
        e.to_string().contains("stream length 2 but no entry node"),
        "{e}"
    );
}

/// A stream delivered in chunks: the tail knows the entries of every
/// chunk, so a disagreeing length is reported and RDB 9 counters derived
/// as for a whole value.
#[test]
fn chunked_streams_know_their_entries() {
    use ferry_rdb::build::{StreamNodeEntry, stream_node_listpack};
    use ferry_rdb::commands::CommandBuilder;
    let node = |ms0: u64| {
        let entries: Vec<StreamNodeEntry> = (0..50)
            .map(|i| StreamNodeEntry {
                ms_delta: i,
                seq_delta: 0,
                deleted: false,
                fields: vec![(b"f", b"some value bytes")],
            })
            .collect();
        (ms0, stream_node_listpack(&[b"f"], &entries))
    };
    let mut w = RdbWriter::new("REDIS", 9);
    w.select_db(0);
    w.key(15, b"s").len(2);
    for (ms0, lp) in [node(100), node(200)] {
        w.stream_node(ms0, 0, &lp);
    }
    // Stored length 99 (the nodes hold 100), last id 249-0, one group at the end.
    w.len(99).len(249).len(0);
    w.len(1).string(b"g").len(249).len(0).len(0).len(0);
    let data = w.finish();
    let opts = DecodeOptions {
        big_value_bytes: 256,
        ..Default::default()
    };
    let items: Vec<Item> = RdbReader::with_options(&data[..], opts)
        .collect::<Result<_, _>>()
        .expect("decodes");
    assert!(items.iter().any(|i| matches!(i, Item::BigKeyStart(_))));
    let b = CommandBuilder::default();
    let mut header = None;
    let mut first = true;
    let mut cmds = Vec::new();
    let mut problems = Vec::new();
    for i in &items {
        match i {
            Item::BigKeyStart(h) => header = Some(h.clone()),
            Item::BigKeyChunk(v) => {
                let h = header.as_ref().expect("header");
                let r = b.chunk(h, v, first, &mut |c| {
                    cmds.push(
                        c.iter()
                            .map(|a| String::from_utf8_lossy(a).into_owned())
                            .collect::<Vec<_>>()
                            .join(" "),
                    )
                });
                if let Err(u) = r {
                    problems.push(u.reason);
                }
                first = false;
            }
            _ => {}
        }
    }
    assert_eq!(cmds.iter().filter(|c| c.starts_with("XADD")).count(), 100);
    assert!(
        cmds.contains(&"XGROUP CREATE s g 249-0 ENTRIESREAD 99".to_string()),
        "{:?}",
        &cmds[100..]
    );
    assert!(
        cmds.contains(&"XSETID s 249-0 ENTRIESADDED 100 MAXDELETEDID 0-0".to_string()),
        "{:?}",
        &cmds[100..]
    );
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(problems[0].contains("stream length 99 in the dump differs from its 100 entries"));
}

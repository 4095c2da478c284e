//! Command form of decoded keys (pure): zset `-0` scores, empty streams,
//! stream counters and pending entries of trimmed entries. The same cases
//! are compared with real servers in `tests/e2e/rdb_parity.rs`.

use bytes::Bytes;
use ferry_rdb::commands::{CommandBuilder, CommandOptions};
use ferry_rdb::{
    KeyHeader, Kind, PendingEntry, Stream, StreamEntry, StreamGroup, StreamId, StreamMeta, Value,
};

fn header(kind: Kind, rdb_type: u8) -> KeyHeader {
    KeyHeader {
        db: 0,
        key: Bytes::from_static(b"k"),
        rdb_type,
        kind,
        expire_ms: None,
        idle: None,
        freq: None,
        meta: None,
        offset: 0,
    }
}

/// Commands as space-joined text.
fn commands(b: &CommandBuilder, h: &KeyHeader, v: &Value) -> (Vec<String>, Option<String>) {
    let mut out = Vec::new();
    let r = b.whole(h, v, b"", &mut |c| {
        out.push(
            c.iter()
                .map(|a| String::from_utf8_lossy(a).into_owned())
                .collect::<Vec<_>>()
                .join(" "),
        )
    });
    (out, r.err().map(|u| u.reason))
}

fn id(ms: u64, seq: u64) -> StreamId {
    StreamId { ms, seq }
}

fn entry(ms: u64) -> StreamEntry {
    StreamEntry {
        id: id(ms, 1),
        fields: vec![(Bytes::from_static(b"f"), Bytes::from_static(b"v"))],
    }
}

#[test]
fn negative_zero_scores_are_set_after_the_other_members() {
    let v = Value::SortedSet(vec![
        (Bytes::from_static(b"a"), -0.0),
        (Bytes::from_static(b"b"), 2.5),
        (Bytes::from_static(b"c"), 0.0),
    ]);
    let (cmds, err) = commands(&CommandBuilder::default(), &header(Kind::SortedSet, 5), &v);
    assert_eq!(err, None);
    assert_eq!(cmds, vec!["ZADD k 1 a 2.5 b 0 c", "ZADD k -0 a"]);
}

#[test]
fn an_empty_stream_with_last_id_zero_is_made_by_a_group_created_and_destroyed() {
    let v = Value::Stream(Box::new(Stream {
        entries: vec![],
        meta: Some(StreamMeta {
            entries_added: Some(0),
            max_deleted_id: Some(id(0, 0)),
            first_id: Some(id(0, 0)),
            ..Default::default()
        }),
    }));
    let (cmds, err) = commands(&CommandBuilder::default(), &header(Kind::Stream, 19), &v);
    assert_eq!(err, None);
    assert_eq!(
        cmds,
        vec![
            "XGROUP CREATE k ferry-tmp-group $ MKSTREAM",
            "XGROUP DESTROY k ferry-tmp-group"
        ]
    );
}

/// An RDB 9 stream (no counters): entries-added = length, and each group's
/// entries-read as a server estimates it.
#[test]
fn rdb9_counters_are_derived() {
    let group = |name: &'static str, last: StreamId| StreamGroup {
        name: Bytes::from_static(name.as_bytes()),
        last_id: last,
        entries_read: None,
        pending: vec![],
        consumers: vec![],
    };
    let v = Value::Stream(Box::new(Stream {
        entries: vec![entry(3), entry(4)],
        meta: Some(StreamMeta {
            length: 2,
            last_id: id(4, 1),
            groups: vec![
                group("before", id(1, 0)),
                group("first", id(3, 1)),
                group("last", id(4, 1)),
                group("between", id(3, 5)),
            ],
            ..Default::default()
        }),
    }));
    let (cmds, err) = commands(&CommandBuilder::default(), &header(Kind::Stream, 15), &v);
    assert_eq!(err, None);
    let tail: Vec<&str> = cmds.iter().skip(2).map(String::as_str).collect();
    assert_eq!(
        tail,
        vec![
            "XGROUP CREATE k before 1-0 ENTRIESREAD 0",
            "XGROUP CREATE k first 3-1 ENTRIESREAD 1",
            "XGROUP CREATE k last 4-1 ENTRIESREAD 2",
            "XGROUP CREATE k between 3-5",
            "XSETID k 4-1 ENTRIESADDED 2 MAXDELETEDID 0-0",
        ]
    );
    // Without counter arguments (a Redis 6.2 target) none of them.
    let old = CommandBuilder::new(CommandOptions {
        stream_v2_args: false,
        ..Default::default()
    });
    let (cmds, _) = commands(&old, &header(Kind::Stream, 15), &v);
    assert!(cmds.iter().all(|c| !c.contains("ENTRIES")), "{cmds:?}");
}

#[test]
fn pending_entries_of_trimmed_entries_go_by_xtrim_and_a_bad_length_is_reported() {
    let pending = |ms: u64| PendingEntry {
        id: id(ms, 1),
        delivery_time: 7,
        delivery_count: 2,
        consumer: Some(Bytes::from_static(b"alice")),
    };
    let v = Value::Stream(Box::new(Stream {
        entries: vec![entry(5), entry(7)],
        meta: Some(StreamMeta {
            length: 3,
            last_id: id(7, 1),
            first_id: Some(id(5, 1)),
            max_deleted_id: Some(id(6, 1)),
            entries_added: Some(9),
            groups: vec![StreamGroup {
                name: Bytes::from_static(b"g"),
                last_id: id(7, 1),
                entries_read: Some(9),
                pending: vec![pending(2), pending(6)],
                consumers: vec![],
            }],
            idmp: None,
            entries_found: Some(2),
            first_found: Some(id(5, 1)),
        }),
    }));
    let (cmds, err) = commands(&CommandBuilder::default(), &header(Kind::Stream, 19), &v);
    assert!(
        cmds.contains(&"XTRIM k MINID 5-1".to_string()),
        "head ghost trimmed: {cmds:?}"
    );
    assert!(cmds.contains(&"XDEL k 6-1".to_string()), "{cmds:?}");
    assert_eq!(
        cmds.last().map(String::as_str),
        Some("XSETID k 7-1 ENTRIESADDED 9 MAXDELETEDID 6-1")
    );
    let err = err.expect("length reported");
    assert!(
        err.contains("stream length 3 in the dump differs from its 2 entries"),
        "{err}"
    );
}

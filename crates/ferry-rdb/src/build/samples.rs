//! Sample records shared by the decoder tests, the fuzz seeds and benchmarks.
//!
//! Each writes one whole key (type byte, name, value) of a layout that covers
//! the corners of its format.

use super::{RdbWriter, StreamNodeEntry, stream_node_listpack};

/// A type-`t` stream: one node with a deleted entry, a group with two
/// pending entries owned by two consumers .
pub fn stream(w: &mut RdbWriter, t: u8, key: &[u8]) {
    let lp = stream_node_listpack(
        &[b"f"],
        &[
            StreamNodeEntry {
                ms_delta: 0,
                seq_delta: 0,
                deleted: false,
                fields: vec![(b"f", b"1")],
            },
            StreamNodeEntry {
                ms_delta: 1,
                seq_delta: 0,
                deleted: true,
                fields: vec![(b"f", b"2")],
            },
            StreamNodeEntry {
                ms_delta: 2,
                seq_delta: 5,
                deleted: false,
                fields: vec![(b"g", b"3"), (b"h", b"4")],
            },
        ],
    );
    w.key(t, key).len(1).stream_node(100, 0, &lp);
    w.len(2).len(102).len(5);
    if t >= 19 {
        w.len(100).len(0).len(101).len(0).len(3);
    }
    w.len(1).string(b"grp").len(102).len(5);
    if t >= 19 {
        w.len(2);
    }
    w.len(2);
    w.stream_id_raw(100, 0).u64_le(1_700_000_000_000).len(3);
    w.stream_id_raw(102, 5).u64_le(1_700_000_000_001).len(1);
    w.len(2);
    w.string(b"alice").u64_le(1_700_000_000_002);
    if t >= 21 {
        w.u64_le(1_700_000_000_003);
    }
    w.len(1).stream_id_raw(100, 0);
    w.string(b"bob").u64_le(1_700_000_000_004);
    if t >= 21 {
        w.u64_le(1_700_000_000_005);
    }
    w.len(1).stream_id_raw(102, 5);
    if t >= 27 {
        w.len(1).stream_id_raw(101, 0);
    }
    if t >= 26 {
        w.len(100)
            .len(1000)
            .len(2)
            .string(b"iid-1")
            .stream_id_raw(100, 0)
            .string(b"iid-2")
            .stream_id_raw(102, 5)
            .len(2)
            .len(1);
    }
}

/// An empty stream (no nodes) with a group and a ghost pending entry.
pub fn empty_stream(w: &mut RdbWriter, t: u8, key: &[u8]) {
    w.key(t, key).len(0);
    w.len(0).len(7).len(1);
    if t >= 19 {
        w.len(0).len(0).len(7).len(1).len(4);
    }
    w.len(1).string(b"g").len(7).len(1);
    if t >= 19 {
        w.len(u64::MAX);
    }
    w.len(1).stream_id_raw(5, 0).u64_le(1).len(1);
    w.len(1).string(b"c").u64_le(2);
    if t >= 21 {
        w.u64_le(3);
    }
    w.len(1).stream_id_raw(5, 0);
    if t >= 27 {
        w.len(0);
    }
    if t >= 26 {
        w.len(0).len(0).len(0).len(0).len(0);
    }
}

/// A type-19 stream with a stored length of 2 but no node at all (servers
/// refuse it: "Stream length inconsistent with rax entries").
pub fn stream_length_without_nodes(w: &mut RdbWriter, key: &[u8]) {
    w.key(19, key).len(0);
    // length, last id, first id, max deleted id, entries added, groups
    w.len(2)
        .len(5)
        .len(1)
        .len(0)
        .len(0)
        .len(0)
        .len(0)
        .len(2)
        .len(0);
}

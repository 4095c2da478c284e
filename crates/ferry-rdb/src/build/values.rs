//! Whole-value helpers for [`RdbWriter`]: each writes the value that follows
//! `key(type, name)` for one RDB type, the way Redis lays it out. Every
//! string (members, fields, container blobs) goes through
//! [`RdbWriter::string_auto`], as `rdbSaveRawString` would.
//!
//! ```text
//! type 1/2     len, strings                 type 10/11/12/13  string(container)
//! type 3       len, (member, double_str)    type 14/18        len nodes, nodes
//! type 4       len, (field, value)          type 16/17/20     string(listpack)
//! type 5       len, (member, f64 LE)        type 22–25        hash field expiry
//! type 7       len module id, opcode values, 0
//! type 15/19/21 streams: stream_node(...) per node, then lengths and groups
//! ```
//!
//! Stream and module values are only given building blocks; the rest of
//! their layout is written with the primitive methods.

use super::{RdbWriter, format_score, intset, listpack, ziplist, zipmap};
use crate::container::Entry;

/// One node of a `LIST_QUICKLIST_2` (type 18) value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QuicklistNode<'a> {
    /// Container 1 (PLAIN): the string is a single list element.
    Plain(&'a [u8]),
    /// Container 2 (PACKED): the elements, encoded as a listpack.
    Packed(Vec<Entry<'a>>),
    /// Container 2 (PACKED) with the listpack bytes given as they are
    /// (for crafting corrupt or unusual nodes).
    PackedBytes(&'a [u8]),
}

/// One entry of a stream node listpack, for [`stream_node_listpack`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamNodeEntry<'a> {
    /// Milliseconds part of the id minus the node's master id.
    pub ms_delta: i64,
    /// Sequence part of the id minus the node's master id.
    pub seq_delta: i64,
    /// Written with the deleted flag (1).
    pub deleted: bool,
    /// Field/value pairs; when the fields equal the master fields the entry
    /// is written in the SAMEFIELDS (2) form, values only.
    pub fields: Vec<(&'a [u8], &'a [u8])>,
}

/// The listpack of one stream node:
///
/// ```text
/// master: count, deleted, n_fields, f1..fn, 0
/// entry:  flags, ms_delta, seq_delta, (values…  | n, (field, value)…), lp_count
/// ```
///
/// `count`/`deleted` are computed from the entries' `deleted` flags.
pub fn stream_node_listpack(master_fields: &[&[u8]], entries: &[StreamNodeEntry]) -> Vec<u8> {
    let deleted = entries.iter().filter(|e| e.deleted).count() as i64;
    let live = entries.len() as i64 - deleted;
    let mut items = vec![
        Entry::Int(live),
        Entry::Int(deleted),
        Entry::Int(master_fields.len() as i64),
    ];
    items.extend(master_fields.iter().map(|f| Entry::Str(f)));
    items.push(Entry::Int(0));
    for e in entries {
        let same = e.fields.len() == master_fields.len()
            && e.fields.iter().zip(master_fields).all(|((f, _), m)| f == m);
        let flags = i64::from(e.deleted) | if same { 2 } else { 0 };
        items.extend([
            Entry::Int(flags),
            Entry::Int(e.ms_delta),
            Entry::Int(e.seq_delta),
        ]);
        let n = e.fields.len() as i64;
        if same {
            items.extend(e.fields.iter().map(|(_, v)| Entry::Str(v)));
            items.push(Entry::Int(3 + n));
        } else {
            items.push(Entry::Int(n));
            for (f, v) in &e.fields {
                items.extend([Entry::Str(f), Entry::Str(v)]);
            }
            items.push(Entry::Int(3 + 1 + 2 * n));
        }
    }
    listpack(&items)
}

/// A 16-byte stream id as stored in node keys and PELs: ms then seq, both
/// big-endian.
pub fn stream_id(ms: u64, seq: u64) -> [u8; 16] {
    let mut id = [0u8; 16];
    id[..8].copy_from_slice(&ms.to_be_bytes());
    id[8..].copy_from_slice(&seq.to_be_bytes());
    id
}

/// The 64-bit module type id of a 9-character module type name (characters
/// from `A-Z a-z 0-9 - _`) and a 10-bit encoding version.
///
/// # Panics
/// If `name` is not 9 characters of that set or `encver` exceeds 1023.
pub fn module_id(name: &str, encver: u16) -> u64 {
    const CHARSET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    assert_eq!(name.len(), 9, "module type names have 9 characters");
    assert!(encver < 1024, "module encoding version is 10 bits");
    let mut id = 0u64;
    for c in name.bytes() {
        let idx = CHARSET
            .iter()
            .position(|&x| x == c)
            .expect("module type name character outside A-Z a-z 0-9 - _");
        id = (id << 6) | idx as u64;
    }
    (id << 10) | u64::from(encver)
}

fn score_texts(pairs: &[(&[u8], f64)]) -> Vec<String> {
    pairs.iter().map(|&(_, s)| format_score(s)).collect()
}

fn score_entries<'a>(pairs: &[(&'a [u8], f64)], texts: &'a [String]) -> Vec<Entry<'a>> {
    pairs
        .iter()
        .zip(texts)
        .flat_map(|(&(m, _), t)| [Entry::Str(m), Entry::Str(t.as_bytes())])
        .collect()
}

fn pair_entries<'a>(pairs: &[(&'a [u8], &'a [u8])]) -> Vec<Entry<'a>> {
    pairs
        .iter()
        .flat_map(|&(f, v)| [Entry::Str(f), Entry::Str(v)])
        .collect()
}

fn triple_entries<'a>(triples: &[(&'a [u8], &'a [u8], u64)]) -> Vec<Entry<'a>> {
    triples
        .iter()
        .flat_map(|&(f, v, ttl)| [Entry::Str(f), Entry::Str(v), Entry::Int(ttl as i64)])
        .collect()
}

impl RdbWriter {
    fn strings(&mut self, items: &[&[u8]]) -> &mut Self {
        self.len(items.len() as u64);
        for s in items {
            self.string_auto(s);
        }
        self
    }

    /// Type 1 (`LIST`) value: count, then the elements.
    pub fn list_plain(&mut self, items: &[&[u8]]) -> &mut Self {
        self.strings(items)
    }

    /// Type 2 (`SET`) value: count, then the members.
    pub fn set_plain(&mut self, members: &[&[u8]]) -> &mut Self {
        self.strings(members)
    }

    /// Type 3 (`ZSET`) value: count, then member and text score pairs.
    pub fn zset_plain(&mut self, pairs: &[(&[u8], f64)]) -> &mut Self {
        self.len(pairs.len() as u64);
        for &(m, s) in pairs {
            self.string_auto(m).double_str(s);
        }
        self
    }

    /// Type 4 (`HASH`) value: count, then field and value pairs.
    pub fn hash_plain(&mut self, pairs: &[(&[u8], &[u8])]) -> &mut Self {
        self.len(pairs.len() as u64);
        for &(f, v) in pairs {
            self.string_auto(f).string_auto(v);
        }
        self
    }

    /// Type 5 (`ZSET_2`) value: count, then member and f64 LE score pairs,
    /// in the order given (Redis writes the highest score first).
    pub fn zset2(&mut self, pairs: &[(&[u8], f64)]) -> &mut Self {
        self.len(pairs.len() as u64);
        for &(m, s) in pairs {
            self.string_auto(m).f64_le(s);
        }
        self
    }

    /// Type 9 (`HASH_ZIPMAP`) value.
    pub fn hash_zipmap(&mut self, pairs: &[(&[u8], &[u8])]) -> &mut Self {
        self.string_auto(&zipmap(pairs))
    }

    /// Type 10 (`LIST_ZIPLIST`) value.
    pub fn list_ziplist(&mut self, entries: &[Entry]) -> &mut Self {
        self.string_auto(&ziplist(entries))
    }

    /// Type 11 (`SET_INTSET`) value.
    pub fn set_intset(&mut self, values: &[i64]) -> &mut Self {
        self.string_auto(&intset(values))
    }

    /// Type 12 (`ZSET_ZIPLIST`) value: member, score text pairs.
    pub fn zset_ziplist(&mut self, pairs: &[(&[u8], f64)]) -> &mut Self {
        let texts = score_texts(pairs);
        self.string_auto(&ziplist(&score_entries(pairs, &texts)))
    }

    /// Type 13 (`HASH_ZIPLIST`) value.
    pub fn hash_ziplist(&mut self, pairs: &[(&[u8], &[u8])]) -> &mut Self {
        self.string_auto(&ziplist(&pair_entries(pairs)))
    }

    /// Type 14 (`LIST_QUICKLIST`) value: node count, then one ziplist per node.
    pub fn list_quicklist(&mut self, nodes: &[Vec<Entry>]) -> &mut Self {
        self.len(nodes.len() as u64);
        for node in nodes {
            self.string_auto(&ziplist(node));
        }
        self
    }

    /// Type 16 (`HASH_LISTPACK`) value.
    pub fn hash_listpack(&mut self, pairs: &[(&[u8], &[u8])]) -> &mut Self {
        self.string_auto(&listpack(&pair_entries(pairs)))
    }

    /// Type 17 (`ZSET_LISTPACK`) value: member, score pairs; integral scores
    /// become integer entries, others text (`1.5`, `inf`).
    pub fn zset_listpack(&mut self, pairs: &[(&[u8], f64)]) -> &mut Self {
        let texts = score_texts(pairs);
        self.string_auto(&listpack(&score_entries(pairs, &texts)))
    }

    /// Type 18 (`LIST_QUICKLIST_2`) value where every node is PACKED (a listpack).
    pub fn list_quicklist2(&mut self, nodes: &[Vec<Entry>]) -> &mut Self {
        self.len(nodes.len() as u64);
        for node in nodes {
            self.len(2).string_auto(&listpack(node));
        }
        self
    }

    /// Type 18 (`LIST_QUICKLIST_2`) value with PLAIN and PACKED nodes mixed.
    pub fn list_quicklist2_nodes(&mut self, nodes: &[QuicklistNode]) -> &mut Self {
        self.len(nodes.len() as u64);
        for node in nodes {
            match node {
                QuicklistNode::Plain(s) => self.len(1).string_auto(s),
                QuicklistNode::Packed(entries) => self.len(2).string_auto(&listpack(entries)),
                QuicklistNode::PackedBytes(lp) => self.len(2).string_auto(lp),
            };
        }
        self
    }

    /// Type 20 (`SET_LISTPACK`) value.
    pub fn set_listpack(&mut self, members: &[&[u8]]) -> &mut Self {
        let entries: Vec<Entry> = members.iter().map(|m| Entry::Str(m)).collect();
        self.string_auto(&listpack(&entries))
    }

    /// Type 22 as Redis 7.4 release candidates wrote it (`HASH_METADATA_PRE_GA`):
    /// count, then per field the TTL (absolute ms as a length, 0 = none),
    /// field and value.
    pub fn hash_metadata_pre_ga(&mut self, fields: &[(u64, &[u8], &[u8])]) -> &mut Self {
        self.len(fields.len() as u64);
        for &(ttl, f, v) in fields {
            self.len(ttl).string_auto(f).string_auto(v);
        }
        self
    }

    /// Type 22 as Valkey 9 writes it (`HASH_2`): count, then per field the
    /// field, value and expiry (i64 LE ms, −1 = none).
    pub fn hash2(&mut self, fields: &[(&[u8], &[u8], i64)]) -> &mut Self {
        self.len(fields.len() as u64);
        for &(f, v, expiry) in fields {
            self.string_auto(f).string_auto(v).i64_le(expiry);
        }
        self
    }

    /// Type 23 (`HASH_LISTPACK_EX_PRE_GA`): a listpack of field, value, TTL
    /// (absolute ms, 0 = none) triples.
    pub fn hash_listpack_ex_pre_ga(&mut self, triples: &[(&[u8], &[u8], u64)]) -> &mut Self {
        self.string_auto(&listpack(&triple_entries(triples)))
    }

    /// Type 24 (`HASH_METADATA`, Redis 7.4+): u64 LE `min_expire`, count,
    /// then per field the stored TTL as a length (0 = none, else expire-at =
    /// ttl + min_expire − 1), field and value.
    pub fn hash_metadata(&mut self, min_expire: u64, fields: &[(u64, &[u8], &[u8])]) -> &mut Self {
        self.u64_le(min_expire).hash_metadata_pre_ga(fields)
    }

    /// Type 25 (`HASH_LISTPACK_EX`, Redis 7.4+): u64 LE `min_expire`, then a
    /// listpack of field, value, TTL (absolute ms, 0 = none) triples.
    pub fn hash_listpack_ex(
        &mut self,
        min_expire: u64,
        triples: &[(&[u8], &[u8], u64)],
    ) -> &mut Self {
        self.u64_le(min_expire).hash_listpack_ex_pre_ga(triples)
    }

    /// One stream node (types 15, 19, 21, 26, 27): the 16-byte master id as
    /// a string, then the node listpack (see [`stream_node_listpack`]).
    /// Write the node count with [`Self::len`] first.
    pub fn stream_node(&mut self, ms: u64, seq: u64, listpack: &[u8]) -> &mut Self {
        self.string(&stream_id(ms, seq)).string_auto(listpack)
    }

    /// A raw 16-byte stream id (no length prefix), as in PEL and consumer entries.
    pub fn stream_id_raw(&mut self, ms: u64, seq: u64) -> &mut Self {
        self.raw(&stream_id(ms, seq))
    }

    /// Module opcode 1 (SINT) and its value.
    pub fn module_sint(&mut self, v: i64) -> &mut Self {
        self.len(1).len(v as u64)
    }

    /// Module opcode 2 (UINT) and its value.
    pub fn module_uint(&mut self, v: u64) -> &mut Self {
        self.len(2).len(v)
    }

    /// Module opcode 3 (FLOAT) and its value.
    pub fn module_float(&mut self, v: f32) -> &mut Self {
        self.len(3).f32_le(v)
    }

    /// Module opcode 4 (DOUBLE) and its value.
    pub fn module_double(&mut self, v: f64) -> &mut Self {
        self.len(4).f64_le(v)
    }

    /// Module opcode 5 (STRING) and its value.
    pub fn module_string(&mut self, s: &[u8]) -> &mut Self {
        self.len(5).string_auto(s)
    }

    /// Module opcode 0: end of a module value or module aux record.
    pub fn module_eof(&mut self) -> &mut Self {
        self.len(0)
    }

    /// MODULE_AUX (opcode 247) header: module id, when-opcode 2 (UINT) and
    /// `when` (1 = before keys, 2 = after). Follow with opcode values and
    /// [`Self::module_eof`].
    pub fn module_aux(&mut self, module_id: u64, when: u64) -> &mut Self {
        self.byte(0xF7).len(module_id).len(2).len(when)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::listpack::Listpack;

    #[test]
    fn module_ids() {
        // 'A' is index 0, so nine A's and version 0 give 0; '_' is 63.
        assert_eq!(module_id("AAAAAAAAA", 0), 0);
        assert_eq!(module_id("AAAAAAAA_", 5), (63 << 10) | 5);
        assert_eq!(module_id("AAAAAAAAB", 1023), (1 << 10) | 1023);
    }

    #[test]
    fn stream_node_layout() {
        let lp = stream_node_listpack(
            &[b"f"],
            &[
                StreamNodeEntry {
                    ms_delta: 0,
                    seq_delta: 0,
                    deleted: false,
                    fields: vec![(b"f", b"v")],
                },
                StreamNodeEntry {
                    ms_delta: 5,
                    seq_delta: 1,
                    deleted: true,
                    fields: vec![(b"g", b"w")],
                },
            ],
        );
        let items: Vec<Vec<u8>> = Listpack::new(&lp)
            .unwrap()
            .map(|e| e.unwrap().to_vec())
            .collect();
        let want: Vec<&[u8]> = vec![
            b"1", b"1", b"1", b"f", b"0", // master
            b"2", b"0", b"0", b"v", b"4", // SAMEFIELDS entry
            b"1", b"5", b"1", b"1", b"g", b"w", b"6", // deleted entry with its own fields
        ];
        assert_eq!(items, want);
        assert_eq!(stream_id(1, 2)[7], 1);
        assert_eq!(stream_id(1, 2)[15], 2);
    }

    #[test]
    fn quicklist2_nodes() {
        let mut w = RdbWriter::bare();
        w.list_quicklist2_nodes(&[
            QuicklistNode::Plain(b"big"),
            QuicklistNode::Packed(vec![Entry::Int(1)]),
        ]);
        let b = w.into_bytes();
        assert_eq!(&b[..6], &[2, 1, 3, b'b', b'i', b'g']);
        assert_eq!(&b[6..8], &[2, 9]);
        assert_eq!(&b[8..], &listpack(&[Entry::Int(1)])[..]);
    }
}

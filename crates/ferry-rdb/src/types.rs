//! The RDB type byte table, per file flavor and version.
//!
//! Redis and Valkey give some numbers different meanings (type 22, 23 and
//! opcode 243), so the meaning of a byte is looked up with the magic and
//! the version of the file.

use crate::{Flavor, Kind};

/// How a value of a given type byte is laid out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Layout {
    /// 0: one string.
    String,
    /// 1 (list), 2 (set): count, then strings.
    Strings,
    /// 3: count, then (member, text score).
    ZsetText,
    /// 5: count, then (member, binary score).
    ZsetBinary,
    /// 4: count, then (field, value).
    Hash,
    /// 22 in Redis 7.4 RCs: count, then (absolute ttl len, field, value).
    HashMetaPreGa,
    /// 24: min expire (8 bytes), count, then (relative ttl len, field, value).
    HashMeta,
    /// 22 in Valkey 80: count, then (field, value, 8-byte expiry, -1 = none).
    ValkeyHash2,
    /// 9: zipmap string.
    Zipmap,
    /// 10: ziplist of list elements.
    ListZiplist,
    /// 11: intset.
    Intset,
    /// 12: ziplist of (member, score).
    ZsetZiplist,
    /// 13: ziplist of (field, value).
    HashZiplist,
    /// 14: count nodes, each a ziplist.
    Quicklist,
    /// 18: count nodes, each a container kind and a string.
    Quicklist2,
    /// 16: listpack of (field, value).
    HashListpack,
    /// 17: listpack of (member, score).
    ZsetListpack,
    /// 20: listpack of members.
    SetListpack,
    /// 23 (Redis pre-GA): listpack of (field, value, ttl).
    HashListpackExPreGa,
    /// 25: min expire (8 bytes), listpack of (field, value, ttl).
    HashListpackEx,
    /// 15, 19, 21, 26, 27: stream; the number is the type byte.
    Stream(u8),
    /// 7: module value.
    Module,
}

impl Layout {
    /// The data type of values with this layout.
    pub(crate) fn kind(self) -> Kind {
        use Layout::*;
        match self {
            String => Kind::String,
            Strings | ListZiplist | Quicklist | Quicklist2 => Kind::List,
            Intset | SetListpack => Kind::Set,
            ZsetText | ZsetBinary | ZsetZiplist | ZsetListpack => Kind::SortedSet,
            Hash | HashMetaPreGa | HashMeta | ValkeyHash2 | Zipmap | HashZiplist | HashListpack
            | HashListpackExPreGa | HashListpackEx => Kind::Hash,
            Stream(_) => Kind::Stream,
            Module => Kind::Module,
        }
    }

    /// A short name for messages.
    pub(crate) fn name(self) -> &'static str {
        use Layout::*;
        match self {
            String => "string",
            Strings => "list/set",
            ZsetText | ZsetBinary => "zset",
            Hash => "hash",
            HashMetaPreGa | HashMeta | ValkeyHash2 => "hash with field TTLs",
            Zipmap => "zipmap hash",
            ListZiplist => "ziplist list",
            Intset => "intset",
            ZsetZiplist => "ziplist zset",
            HashZiplist => "ziplist hash",
            Quicklist => "quicklist",
            Quicklist2 => "quicklist2",
            HashListpack => "listpack hash",
            ZsetListpack => "listpack zset",
            SetListpack => "listpack set",
            HashListpackExPreGa | HashListpackEx => "listpack hash with field TTLs",
            Stream(_) => "stream",
            Module => "module",
        }
    }
}

/// The layout of type byte `t` in a file of this flavor and version, if known.
pub(crate) fn layout(t: u8, flavor: Flavor, version: u16) -> Option<(Layout, Kind)> {
    use Layout::*;
    let l = match (t, flavor) {
        (0, _) => String,
        (1, _) => Strings,
        (2, _) => Strings,
        (3, _) => ZsetText,
        (4, _) => Hash,
        (5, _) => ZsetBinary,
        (7, _) => Module,
        (9, _) => Zipmap,
        (10, _) => ListZiplist,
        (11, _) => Intset,
        (12, _) => ZsetZiplist,
        (13, _) => HashZiplist,
        (14, _) => Quicklist,
        (15, _) | (19, _) | (21, _) => Stream(t),
        (16, _) => HashListpack,
        (17, _) => ZsetListpack,
        (18, _) => Quicklist2,
        (20, _) => SetListpack,
        (22, Flavor::Valkey) => ValkeyHash2,
        (22, Flavor::Redis) if version >= 12 => HashMetaPreGa,
        (23, Flavor::Redis) if version >= 12 => HashListpackExPreGa,
        (24, Flavor::Redis) if version >= 12 => HashMeta,
        (25, Flavor::Redis) if version >= 12 => HashListpackEx,
        (26, Flavor::Redis) if version >= 13 => Stream(26),
        (27, Flavor::Redis) if version >= 14 => Stream(27),
        _ => return None,
    };
    // Set types 1/2 share a layout but not a kind.
    let kind = match t {
        2 => Kind::Set,
        _ => l.kind(),
    };
    Some((l, kind))
}

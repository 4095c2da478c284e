//! What the decoder produces: one [`Item`] per record of the file.
//!
//! A key arrives either whole ([`Item::Key`], with its raw serialized value
//! for `RESTORE`) or, when its encoding is bigger than
//! [`DecodeOptions::big_value_bytes`](crate::DecodeOptions), as
//! [`Item::BigKeyStart`], any number of [`Item::BigKeyChunk`]s holding
//! bounded batches of elements, and [`Item::BigKeyEnd`].

use bytes::Bytes;

use crate::crc64::Crc64;

/// Which server family wrote the file; it decides what ambiguous type bytes mean.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Flavor {
    /// `REDIS` magic: Redis, and Valkey up to RDB 11.
    Redis,
    /// `VALKEY` magic: Valkey 9 and later (RDB 80+).
    Valkey,
}

impl std::fmt::Display for Flavor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Flavor::Redis => "REDIS",
            Flavor::Valkey => "VALKEY",
        })
    }
}

/// The high-level data type of a key, whatever its encoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    /// A string.
    String,
    /// A list.
    List,
    /// A set.
    Set,
    /// A sorted set.
    SortedSet,
    /// A hash (possibly with field TTLs).
    Hash,
    /// A stream.
    Stream,
    /// A module value.
    Module,
}

impl Kind {
    /// The name `TYPE` returns for keys of this kind (modules: `module`).
    pub fn name(self) -> &'static str {
        match self {
            Kind::String => "string",
            Kind::List => "list",
            Kind::Set => "set",
            Kind::SortedSet => "zset",
            Kind::Hash => "hash",
            Kind::Stream => "stream",
            Kind::Module => "module",
        }
    }
}

/// Everything known about a key before its value: where it is and how it lives.
#[derive(Debug, Clone, PartialEq)]
pub struct KeyHeader {
    /// Database number (from the last `SELECTDB`).
    pub db: u64,
    /// The key name, binary safe.
    pub key: Bytes,
    /// The RDB type byte of the value.
    pub rdb_type: u8,
    /// The data type.
    pub kind: Kind,
    /// Absolute expiry in unix milliseconds, if the key has a TTL.
    pub expire_ms: Option<i64>,
    /// LRU idle seconds (`IDLE` opcode), if present.
    pub idle: Option<u64>,
    /// LFU counter (`FREQ` opcode), if present.
    pub freq: Option<u8>,
    /// Raw `KEY_META` section (Redis RDB 13+), carried but not interpreted.
    pub meta: Option<Bytes>,
    /// File offset of the first byte of this key's record (its first opcode).
    pub offset: u64,
}

/// One field of a hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HashField {
    /// Field name.
    pub field: Bytes,
    /// Field value.
    pub value: Bytes,
    /// Absolute field expiry in unix milliseconds (Redis 7.4+ / Valkey 9 field TTLs).
    pub expire_ms: Option<i64>,
}

/// A stream entry id `ms-seq`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct StreamId {
    /// Milliseconds part.
    pub ms: u64,
    /// Sequence part.
    pub seq: u64,
}

impl std::fmt::Display for StreamId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}-{}", self.ms, self.seq)
    }
}

impl StreamId {
    /// Decode a 16-byte big-endian raw id (node keys and PEL entries).
    pub fn from_be_bytes(raw: &[u8; 16]) -> StreamId {
        let mut ms = [0u8; 8];
        let mut seq = [0u8; 8];
        ms.copy_from_slice(&raw[..8]);
        seq.copy_from_slice(&raw[8..]);
        StreamId {
            ms: u64::from_be_bytes(ms),
            seq: u64::from_be_bytes(seq),
        }
    }
}

/// One live stream entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamEntry {
    /// Entry id.
    pub id: StreamId,
    /// Field/value pairs in order.
    pub fields: Vec<(Bytes, Bytes)>,
}

/// Stream-wide metadata (stored after the entries).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct StreamMeta {
    /// Number of live entries.
    pub length: u64,
    /// Last id ever generated.
    pub last_id: StreamId,
    /// First live id (RDB type 19+).
    pub first_id: Option<StreamId>,
    /// Largest deleted id (RDB type 19+).
    pub max_deleted_id: Option<StreamId>,
    /// Count of all entries ever added (RDB type 19+).
    pub entries_added: Option<u64>,
    /// Consumer groups.
    pub groups: Vec<StreamGroup>,
    /// Idempotent-producer section of RDB type 26+ (Redis 8.6), carried raw.
    pub idmp: Option<StreamIdmp>,
    /// Live entries the decoder found in the value's nodes, all chunks
    /// included (`length` may disagree in a damaged dump); None if unknown.
    pub entries_found: Option<u64>,
    /// The first live entry the decoder found (None: none, or unknown).
    pub first_found: Option<StreamId>,
}

/// A pending (delivered, unacknowledged) entry of a group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingEntry {
    /// The entry id.
    pub id: StreamId,
    /// Last delivery time, unix ms.
    pub delivery_time: u64,
    /// Times delivered.
    pub delivery_count: u64,
    /// Owning consumer (None for the NACK zone of RDB type 27).
    pub consumer: Option<Bytes>,
}

/// A consumer of a group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamConsumer {
    /// Consumer name.
    pub name: Bytes,
    /// Last time seen, unix ms.
    pub seen_time: u64,
    /// Last successful read time, unix ms (RDB type 21+).
    pub active_time: Option<u64>,
}

/// A consumer group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamGroup {
    /// Group name.
    pub name: Bytes,
    /// Last delivered id.
    pub last_id: StreamId,
    /// Entries read counter (RDB type 19+; None also when the server marked it unknown).
    pub entries_read: Option<u64>,
    /// Pending entries, in id order, each with its owner.
    pub pending: Vec<PendingEntry>,
    /// Consumers, in file order.
    pub consumers: Vec<StreamConsumer>,
}

/// The idempotent-producer section of Redis 8.6 streams (type 26+).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamIdmp {
    /// Configured duration.
    pub duration: u64,
    /// Configured maximum entries.
    pub max_entries: u64,
    /// (iid, entry id) pairs.
    pub entries: Vec<(Bytes, StreamId)>,
    /// Counter of iids added.
    pub iids_added: u64,
    /// Counter of duplicate iids seen.
    pub iids_duplicates: u64,
}

/// A stream value; in a big key's chunks only the last one carries `meta`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Stream {
    /// Live entries, in id order.
    pub entries: Vec<StreamEntry>,
    /// Metadata and groups (present in a whole value and in a big value's last chunk).
    pub meta: Option<StreamMeta>,
}

/// A module type id: 9 characters of name and a 10-bit encoding version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ModuleId(pub u64);

impl ModuleId {
    /// The 9-character module type name (e.g. `ReJSON-RL`, `MBbloom--`).
    pub fn name(self) -> String {
        const CHARSET: &[u8; 64] =
            b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        (0..9)
            .map(|i| CHARSET[((self.0 >> (64 - 6 * (i + 1))) & 63) as usize] as char)
            .collect()
    }
    /// The module's encoding version.
    pub fn version(self) -> u64 {
        self.0 & 1023
    }
}

/// A module value: its id plus the opcode-framed serialization, carried raw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModuleValue {
    /// Module type id.
    pub id: ModuleId,
}

/// A decoded value (whole, or one chunk of a big key).
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// String bytes.
    String(Bytes),
    /// List elements, head first.
    List(Vec<Bytes>),
    /// Set members.
    Set(Vec<Bytes>),
    /// Sorted-set (member, score) pairs.
    SortedSet(Vec<(Bytes, f64)>),
    /// Hash fields.
    Hash(Vec<HashField>),
    /// Stream entries and metadata.
    Stream(Box<Stream>),
    /// Module value (only whole; its bytes are in [`Key::raw`]).
    Module(ModuleValue),
}

impl Value {
    /// Number of elements (1 for strings and modules).
    pub fn len(&self) -> usize {
        match self {
            Value::String(_) | Value::Module(_) => 1,
            Value::List(v) | Value::Set(v) => v.len(),
            Value::SortedSet(v) => v.len(),
            Value::Hash(v) => v.len(),
            Value::Stream(s) => s.entries.len(),
        }
    }
    /// True if there are no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Append the next chunk of the same big key (elements in order; a
    /// stream chunk's metadata is kept once it arrives). Hands `more` back
    /// if it is of another kind, or if it follows the chunk that carried a
    /// stream's metadata (which is always the last).
    pub fn append(&mut self, more: Value) -> Result<(), Value> {
        match (self, more) {
            (Value::List(a), Value::List(b)) | (Value::Set(a), Value::Set(b)) => a.extend(b),
            (Value::SortedSet(a), Value::SortedSet(b)) => a.extend(b),
            (Value::Hash(a), Value::Hash(b)) => a.extend(b),
            (Value::Stream(a), Value::Stream(b)) if a.meta.is_none() => {
                a.entries.extend(b.entries);
                a.meta = b.meta;
            }
            (_, more) => return Err(more),
        }
        Ok(())
    }
}

/// A whole key.
#[derive(Debug, Clone, PartialEq)]
pub struct Key {
    /// Name, db, type, TTL.
    pub header: KeyHeader,
    /// The decoded value.
    pub value: Value,
    /// The value exactly as serialized in the file (without the type byte).
    pub raw: Bytes,
}

impl Key {
    /// Build a `DUMP`/`RESTORE` payload: type byte, raw value, `version` (LE u16), CRC64 (LE).
    ///
    /// `version` should be one the target accepts and at least the release that
    /// introduced [`KeyHeader::rdb_type`].
    pub fn restore_payload(&self, version: u16) -> Bytes {
        restore_payload(self.header.rdb_type, &self.raw, version)
    }
}

/// Build a `RESTORE` payload from a type byte and raw value bytes.
pub fn restore_payload(rdb_type: u8, raw: &[u8], version: u16) -> Bytes {
    let mut out = Vec::with_capacity(raw.len() + 11);
    out.push(rdb_type);
    out.extend_from_slice(raw);
    out.extend_from_slice(&version.to_le_bytes());
    let mut crc = Crc64::new();
    crc.update(&out);
    out.extend_from_slice(&crc.value().to_le_bytes());
    Bytes::from(out)
}

/// One record of an RDB file.
#[derive(Debug, Clone, PartialEq)]
pub enum Item {
    /// The file header.
    Header {
        /// Magic family.
        flavor: Flavor,
        /// RDB version number.
        version: u16,
    },
    /// An `AUX` field (`redis-ver`, `repl-stream-db`, …).
    Aux {
        /// Field name.
        key: Bytes,
        /// Field value.
        value: Bytes,
    },
    /// Following keys belong to this db.
    SelectDb {
        /// Database number.
        db: u64,
    },
    /// Hash-table size hint for the current db.
    ResizeDb {
        /// Keys in the db.
        db_size: u64,
        /// Keys with a TTL in the db.
        expires_size: u64,
    },
    /// Per-slot key counts (Redis 7.4+ cluster nodes); a hint.
    SlotInfo {
        /// Slot number.
        slot: u64,
        /// Keys in the slot.
        keys: u64,
        /// Keys with a TTL in the slot.
        expires: u64,
    },
    /// A function library (`FUNCTION LOAD` source).
    Function {
        /// Library source code.
        code: Bytes,
    },
    /// Module auxiliary data (e.g. search index definitions), carried raw.
    ModuleAux {
        /// Module type id.
        module: ModuleId,
        /// 1 = before keys, 2 = after keys.
        when: u64,
        /// The opcode-framed data after `when`, up to and including its EOF opcode.
        raw: Bytes,
    },
    /// Valkey 9 slot-import job state (opcode 243 in `VALKEY` files); informational.
    SlotImport {
        /// Job name.
        job: Bytes,
        /// Slot ranges (start, end) being imported.
        ranges: Vec<(u64, u64)>,
    },
    /// A whole key.
    Key(Key),
    /// A list, set, zset or hash with no elements (e.g. made only of empty
    /// quicklist nodes). A server loading the dump skips such a key and
    /// counts it ("empty keys skipped"); so should the consumer.
    EmptyKey(KeyHeader),
    /// A big key starts; chunks follow.
    BigKeyStart(KeyHeader),
    /// A bounded batch of elements of the current big key.
    BigKeyChunk(Value),
    /// The current big key is complete.
    BigKeyEnd,
    /// End of file; the checksum was verified unless it was zero (disabled).
    End {
        /// The checksum stored in the file.
        checksum: u64,
        /// False when the file carried a zero checksum (`rdbchecksum no`).
        verified: bool,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every snapshot key moves by value from the decoder to the link's
    /// batch a few times: an `Item` must not grow past what it is today
    /// (192 bytes on 64-bit; a `memcpy` of 129–256 bytes costs the same).
    #[test]
    fn an_item_stays_small() {
        if size_of::<usize>() == 8 {
            assert!(size_of::<Item>() <= 192, "{}", size_of::<Item>());
            assert!(size_of::<KeyHeader>() <= 120, "{}", size_of::<KeyHeader>());
        }
    }
}

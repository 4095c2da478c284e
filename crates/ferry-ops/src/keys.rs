//! Where the keys are in a replicated command.
//!
//! A static table, sorted by upper-case command name, gives each command a
//! [`KeySpec`]: Redis's legacy `(first, last, step)` triple where that is
//! exact, or one of the few "movable keys" rules:
//!
//! ```text
//! SET k v ...                 Range(1, 1, 1)    -> [1]
//! MSET k v k v                Range(1, -1, 2)   -> [1, 3]        (-1 = last argument)
//! DEL k k k                   Range(1, -1, 1)   -> [1, 2, 3]
//! RENAME src dst              Range(1, 2, 1)    -> [1, 2]
//! BITOP AND dst k k           Range(2, -1, 1)   -> [2, 3, 4]
//! ZUNIONSTORE dst 2 k k ...   NumKeys{dest 1, numkeys at 2}  -> [1, 3, 4]
//! EVAL body 2 k k arg         NumKeys{numkeys at 2}          -> [3, 4]
//! MSETEX 2 k v k v PXAT t     NumKeys{numkeys at 1, step 2}  -> [2, 4]
//! SORT k BY p STORE dst       Sort              -> [1, 5]
//! GEORADIUS k .. STORE dst    GeoRadius         -> [1, 8]
//! XGROUP CREATE k g $         XGroup            -> [2]
//! ```
//!
//! The table covers the commands a replication stream carries (writes, after
//! the master's rewrites; see `docs/protocol.md` §2), a few reads named by
//! tests, and the keyless control commands, which are classified
//! ([`NoKeysKind`]) so the caller can handle them. A command not in the table
//! is [`KeySpec::Unknown`] and [`command_keys`] reports it as
//! [`KeyError::UnknownCommand`]: the caller decides, nothing here guesses.
//! Commands the master never propagates (`XREADGROUP`, `BLPOP`, `LMPOP`, ...:
//! they arrive rewritten) are deliberately absent.
//!
//! Patterns that `SORT ... BY/GET` read are not keys here: a cluster target
//! enforces its own rule for them.

use bytes::Bytes;
use smallvec::{SmallVec, smallvec};

use crate::show;

/// How to find the keys of one command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeySpec {
    /// Keys at `first`, `first + step`, ... up to `last` inclusive; a
    /// negative `last` counts from the end (`-1` = the last argument). This
    /// is Redis's legacy `(first, last, step)` triple.
    Range {
        /// Index of the first key.
        first: usize,
        /// Index of the last key; negative counts from the end.
        last: isize,
        /// Distance between keys (2 for `MSET`'s key/value pairs).
        step: usize,
    },
    /// A key count at `numkeys_at`, then that many keys `step` apart; plus
    /// an optional destination key before it (`ZUNIONSTORE dst numkeys k...`,
    /// `EVAL body numkeys k... arg...`, `MSETEX numkeys k v k v ... [opts]`).
    NumKeys {
        /// Index of the destination key, if the command has one.
        dest: Option<usize>,
        /// Index of the key count; the keys follow it.
        numkeys_at: usize,
        /// Distance between keys (2 for `MSETEX`'s key/value pairs).
        step: usize,
    },
    /// `SORT key ... [STORE dst]`: key 1, plus the argument after the last
    /// `STORE` (skipping `LIMIT a b`, `BY p`, `GET p`).
    Sort,
    /// `GEORADIUS[BYMEMBER] key ... [STORE|STOREDIST dst]`: key 1, plus the
    /// argument after the last `STORE`/`STOREDIST` from index 5 on.
    GeoRadius,
    /// `XGROUP <sub> key ...`: key 2 for `CREATE`, `SETID`, `DESTROY`,
    /// `CREATECONSUMER`, `DELCONSUMER`.
    XGroup,
    /// `COPY src dst [DB n] [REPLACE]`: keys 1 and 2; [`Class::CrossDb`]
    /// when a `DB` option is present.
    Copy,
    /// `MOVE key db`: key 1, always [`Class::CrossDb`].
    Move,
    /// No keys; what kind of command it is.
    NoKeys(NoKeysKind),
    /// Not in the table.
    Unknown,
}

/// What a command without keys is, for the caller to handle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NoKeysKind {
    /// `FLUSHALL` / `FLUSHDB`.
    Flush,
    /// `FUNCTION LOAD|DELETE|FLUSH|RESTORE ...`.
    Function,
    /// `SCRIPT LOAD|FLUSH` (propagated by sources before 7.0).
    Script,
    /// `SELECT db`.
    Select,
    /// `MULTI`.
    Multi,
    /// `EXEC`.
    Exec,
    /// `DISCARD`.
    Discard,
    /// `PING` (the master's keepalive).
    Ping,
    /// `REPLCONF ...` (`GETACK`, or vendor noise such as `TIMESTAMP`).
    Replconf,
    /// `PUBLISH` / `SPUBLISH` (a channel, not a key).
    Publish,
    /// `SWAPDB a b`.
    SwapDb,
    /// Stream noise without data: Aliyun `OPINFO`; cluster control such as
    /// `CLUSTER SYNCSLOTS` (Valkey 9's atomic slot migration relays it to
    /// the importing master's replicas; the keys themselves arrive as
    /// ordinary writes).
    Vendor,
}

/// How a command with a known spec should be treated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Class {
    /// Reads or writes data under the listed keys, in the current database.
    DataKeys,
    /// Has no keys; the kind says what it is.
    NoKeys(NoKeysKind),
    /// Has keys (listed) but acts across databases: `MOVE key db`,
    /// `COPY src dst DB n`. A cluster target refuses these unless the caller
    /// maps databases.
    CrossDb,
}

/// The key argument indexes of one command, and its class.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Keys {
    /// How to treat the command.
    pub class: Class,
    /// Indexes into the argument list (0 = the command name), in argument
    /// order. Empty for [`Class::NoKeys`] and for scripts declaring no keys.
    pub indexes: KeyIndexes,
}

/// Key argument indexes: up to four inline (no allocation for the
/// commands a stream mostly carries), more on the heap.
pub type KeyIndexes = SmallVec<[usize; 4]>;

impl Keys {
    /// The key arguments themselves, in order.
    pub fn keys<'a>(&'a self, args: &'a [Bytes]) -> impl Iterator<Item = &'a Bytes> + 'a {
        self.indexes.iter().filter_map(|&i| args.get(i))
    }
}

/// Why the keys of a command could not be found.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// The argument list is empty.
    #[error("empty command")]
    Empty,
    /// The command is not in the table.
    #[error("unknown command {}: no key spec, not routed", show(.name))]
    UnknownCommand {
        /// The command name as received.
        name: Bytes,
    },
    /// The command has fewer arguments than its key positions need.
    #[error("{} with {got} arguments: too few for its key positions", show(.command))]
    MissingArguments {
        /// The command name as received.
        command: Bytes,
        /// The number of arguments, the name included.
        got: usize,
    },
    /// The key count is not a decimal number or exceeds the arguments.
    #[error("{}: bad key count {} at argument {index}", show(.command), show(.value))]
    BadNumKeys {
        /// The command name as received.
        command: Bytes,
        /// Where the count is.
        index: usize,
        /// The count argument.
        value: Bytes,
    },
    /// A container command with a subcommand this crate does not route.
    #[error("{} {}: unexpected subcommand in a replication stream", show(.command), show(.subcommand))]
    UnknownSubcommand {
        /// The command name as received.
        command: Bytes,
        /// The subcommand as received.
        subcommand: Bytes,
    },
}

/// `(first, last, step)` shorthand for the table.
const fn r(first: usize, last: isize, step: usize) -> KeySpec {
    KeySpec::Range { first, last, step }
}

/// Single key at index 1.
pub(crate) const K1: KeySpec = r(1, 1, 1);
/// Keys at 1 and 2 (source, destination).
const K12: KeySpec = r(1, 2, 1);
/// Every argument from 1 on is a key.
const ALL: KeySpec = r(1, -1, 1);

/// `EVAL body numkeys key... arg...`.
const SCRIPT_KEYS: KeySpec = KeySpec::NumKeys {
    dest: None,
    numkeys_at: 2,
    step: 1,
};
/// `ZUNIONSTORE dst numkeys key... [options]`.
const STORE_KEYS: KeySpec = KeySpec::NumKeys {
    dest: Some(1),
    numkeys_at: 2,
    step: 1,
};

/// The table, sorted by name (byte order); a test checks the order.
const TABLE: &[(&str, KeySpec)] = &[
    ("APPEND", K1),
    ("BITFIELD", K1),
    ("BITOP", r(2, -1, 1)),
    ("CLUSTER", KeySpec::NoKeys(NoKeysKind::Vendor)),
    ("COPY", KeySpec::Copy),
    ("DECR", K1),
    ("DECRBY", K1),
    ("DEL", ALL),
    ("DELIFEQ", K1),
    ("DISCARD", KeySpec::NoKeys(NoKeysKind::Discard)),
    ("EVAL", SCRIPT_KEYS),
    ("EVALSHA", SCRIPT_KEYS),
    ("EVALSHA_RO", SCRIPT_KEYS),
    ("EVAL_RO", SCRIPT_KEYS),
    ("EXEC", KeySpec::NoKeys(NoKeysKind::Exec)),
    ("EXISTS", ALL),
    ("EXPIRE", K1),
    ("EXPIREAT", K1),
    ("FCALL", SCRIPT_KEYS),
    ("FCALL_RO", SCRIPT_KEYS),
    ("FLUSHALL", KeySpec::NoKeys(NoKeysKind::Flush)),
    ("FLUSHDB", KeySpec::NoKeys(NoKeysKind::Flush)),
    ("FUNCTION", KeySpec::NoKeys(NoKeysKind::Function)),
    ("GEOADD", K1),
    ("GEORADIUS", KeySpec::GeoRadius),
    ("GEORADIUSBYMEMBER", KeySpec::GeoRadius),
    ("GEOSEARCHSTORE", K12),
    ("GET", K1),
    ("GETDEL", K1),
    ("GETEX", K1),
    ("GETSET", K1),
    ("HDEL", K1),
    ("HEXPIRE", K1),
    ("HEXPIREAT", K1),
    ("HGETDEL", K1),
    ("HGETEX", K1),
    ("HINCRBY", K1),
    ("HINCRBYFLOAT", K1),
    ("HMSET", K1),
    ("HPERSIST", K1),
    ("HPEXPIRE", K1),
    ("HPEXPIREAT", K1),
    ("HSET", K1),
    ("HSETEX", K1),
    ("HSETNX", K1),
    ("INCR", K1),
    ("INCRBY", K1),
    ("INCRBYFLOAT", K1),
    ("LINSERT", K1),
    ("LMOVE", K12),
    ("LPOP", K1),
    ("LPUSH", K1),
    ("LPUSHX", K1),
    ("LREM", K1),
    ("LSET", K1),
    ("LTRIM", K1),
    ("MOVE", KeySpec::Move),
    ("MSET", r(1, -1, 2)),
    (
        "MSETEX",
        KeySpec::NumKeys {
            dest: None,
            numkeys_at: 1,
            step: 2,
        },
    ),
    ("MSETNX", r(1, -1, 2)),
    ("MULTI", KeySpec::NoKeys(NoKeysKind::Multi)),
    ("OPINFO", KeySpec::NoKeys(NoKeysKind::Vendor)),
    ("PERSIST", K1),
    ("PEXPIRE", K1),
    ("PEXPIREAT", K1),
    ("PFADD", K1),
    ("PFCOUNT", ALL),
    ("PFMERGE", ALL),
    ("PING", KeySpec::NoKeys(NoKeysKind::Ping)),
    ("PSETEX", K1),
    ("PUBLISH", KeySpec::NoKeys(NoKeysKind::Publish)),
    ("RENAME", K12),
    ("RENAMENX", K12),
    ("REPLCONF", KeySpec::NoKeys(NoKeysKind::Replconf)),
    ("RESTORE", K1),
    ("RESTORE-ASKING", K1),
    ("RPOP", K1),
    ("RPOPLPUSH", K12),
    ("RPUSH", K1),
    ("RPUSHX", K1),
    ("SADD", K1),
    ("SCRIPT", KeySpec::NoKeys(NoKeysKind::Script)),
    ("SDIFFSTORE", ALL),
    ("SELECT", KeySpec::NoKeys(NoKeysKind::Select)),
    ("SET", K1),
    ("SETBIT", K1),
    ("SETEX", K1),
    ("SETNX", K1),
    ("SETRANGE", K1),
    ("SINTERSTORE", ALL),
    ("SMOVE", K12),
    ("SORT", KeySpec::Sort),
    ("SPOP", K1),
    ("SPUBLISH", KeySpec::NoKeys(NoKeysKind::Publish)),
    ("SREM", K1),
    ("SUNIONSTORE", ALL),
    ("SWAPDB", KeySpec::NoKeys(NoKeysKind::SwapDb)),
    ("TOUCH", ALL),
    ("UNLINK", ALL),
    ("XACK", K1),
    ("XACKDEL", K1),
    ("XADD", K1),
    ("XAUTOCLAIM", K1),
    ("XCLAIM", K1),
    ("XDEL", K1),
    ("XDELEX", K1),
    ("XGROUP", KeySpec::XGroup),
    ("XSETID", K1),
    ("XTRIM", K1),
    ("ZADD", K1),
    ("ZDIFFSTORE", STORE_KEYS),
    ("ZINCRBY", K1),
    ("ZINTERSTORE", STORE_KEYS),
    ("ZPOPMAX", K1),
    ("ZPOPMIN", K1),
    ("ZRANGESTORE", K12),
    ("ZREM", K1),
    ("ZREMRANGEBYLEX", K1),
    ("ZREMRANGEBYRANK", K1),
    ("ZREMRANGEBYSCORE", K1),
    ("ZUNIONSTORE", STORE_KEYS),
];

/// Longest name in the table; longer names are unknown without a lookup.
const MAX_NAME: usize = 24;

/// Every command name in the table with its spec, sorted by name.
pub fn table() -> &'static [(&'static str, KeySpec)] {
    TABLE
}

/// The key spec of command `name` (any case). [`KeySpec::Unknown`] if the
/// command is not in the table.
///
/// ```
/// use ferry_ops::{KeySpec, key_spec};
/// assert_eq!(key_spec(b"mset"), KeySpec::Range { first: 1, last: -1, step: 2 });
/// assert_eq!(key_spec(b"XREADGROUP"), KeySpec::Unknown);
/// ```
pub fn key_spec(name: &[u8]) -> KeySpec {
    if name.len() > MAX_NAME {
        return KeySpec::Unknown;
    }
    // The name upper-cased eight bytes at a time, as packed in `PACKED`.
    let mut words = [0u64; WORDS];
    for (i, chunk) in name.chunks(8).enumerate() {
        words[i] = upper(pack(chunk));
    }
    let len = name.len() as u8;
    let mut at = slot_of(&words, len);
    // Open addressing, linear probing; the index is at most a quarter full.
    loop {
        match INDEX[at] {
            NONE => return KeySpec::Unknown,
            i => {
                let i = usize::from(i);
                if PACKED[i] == (words, len) {
                    return TABLE[i].1;
                }
                at = (at + 1) & (INDEX_LEN - 1);
            }
        }
    }
}

/// Eight-byte words of a name of at most [`MAX_NAME`] bytes.
const WORDS: usize = 3;
const _: () = assert!(MAX_NAME <= WORDS * 8, "a name fits its words");

/// Up to eight bytes as a little-endian word (zero padded).
const fn pack(chunk: &[u8]) -> u64 {
    let mut w = 0u64;
    let mut i = chunk.len();
    while i > 0 {
        i -= 1;
        w = (w << 8) | chunk[i] as u64;
    }
    w
}

/// `w` with each of its bytes `a..=z` upper-cased, all others unchanged
/// (eight `u8::to_ascii_uppercase` at once: no carry crosses a byte, and
/// bytes from 0x80 on are left out by the `!w` term).
const fn upper(w: u64) -> u64 {
    const ONES: u64 = 0x0101_0101_0101_0101;
    let low7 = w & (0x7f * ONES);
    // High bit set in each byte >= 'a', resp. > 'z' (of the low 7 bits).
    let from_a = low7 + (0x80 - b'a' as u64) * ONES;
    let past_z = low7 + (0x80 - b'z' as u64 - 1) * ONES;
    let lower = (from_a ^ past_z) & !w & (0x80 * ONES);
    w ^ (lower >> 2)
}

/// Where a packed (upper-case) name starts its probe in [`INDEX`]: one
/// multiply of its words folded together (Fibonacci hashing; the probe
/// sorts out collisions).
const fn slot_of(words: &[u64; WORDS], len: u8) -> usize {
    let folded = words[0] ^ words[1].rotate_left(21) ^ words[2].rotate_left(42) ^ len as u64;
    (folded.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> (64 - INDEX_BITS)) as usize
}

/// An empty slot of the lookup index.
const NONE: u16 = u16::MAX;
const _: () = assert!(
    TABLE.len() < NONE as usize,
    "the index holds table positions as u16"
);
const _: () = assert!(MAX_NAME <= u8::MAX as usize, "a name's length is a u8");

/// Slots of [`INDEX`]: a power of two at least four times the table.
const INDEX_LEN: usize = (TABLE.len() * 4).next_power_of_two();
/// `INDEX_LEN == 1 << INDEX_BITS`.
const INDEX_BITS: u32 = INDEX_LEN.trailing_zeros();

/// Each table name packed: its words (see [`pack`]) and its length.
static PACKED: [([u64; WORDS], u8); TABLE.len()] = {
    let mut packed = [([0u64; WORDS], 0u8); TABLE.len()];
    let mut i = 0;
    while i < TABLE.len() {
        let name = TABLE[i].0.as_bytes();
        let mut w = 0;
        while w * 8 < name.len() {
            let end = if name.len() < w * 8 + 8 {
                name.len()
            } else {
                w * 8 + 8
            };
            let (_, from) = name.split_at(w * 8);
            let (chunk, _) = from.split_at(end - w * 8);
            packed[i].0[w] = pack(chunk);
            w += 1;
        }
        packed[i].1 = name.len() as u8;
        i += 1;
    }
    packed
};

/// A hash index over [`TABLE`] (positions into it), built at compile
/// time: one hash of a few words and usually one comparison per lookup
/// instead of a binary search's seven or eight (a stream looks up every
/// command).
static INDEX: [u16; INDEX_LEN] = {
    let mut index = [NONE; INDEX_LEN];
    let mut i = 0;
    while i < TABLE.len() {
        let mut at = slot_of(&PACKED[i].0, PACKED[i].1);
        while index[at] != NONE {
            at = (at + 1) & (INDEX_LEN - 1);
        }
        // `i < TABLE.len() < NONE` (checked at compile time above).
        index[at] = i as u16;
        i += 1;
    }
    index
};

/// The key argument indexes and class of a command (`args[0]` is its name).
///
/// ```
/// use bytes::Bytes;
/// use ferry_ops::{Class, command_keys};
/// let args: Vec<Bytes> = ["ZUNIONSTORE", "dst", "2", "a", "b", "WEIGHTS", "1", "2"]
///     .into_iter().map(Bytes::from).collect();
/// let keys = command_keys(&args)?;
/// assert_eq!(keys.class, Class::DataKeys);
/// assert_eq!(keys.indexes[..], [1, 3, 4]);
/// # Ok::<(), ferry_ops::KeyError>(())
/// ```
///
/// # Errors
/// [`KeyError`] for an empty list, an unknown command or subcommand, too few
/// arguments for the key positions, or a bad key count.
pub fn command_keys(args: &[Bytes]) -> Result<Keys, KeyError> {
    let name = args.first().ok_or(KeyError::Empty)?;
    keys_by_spec(args, key_spec(name))
}

/// [`command_keys`] with the spec of `args[0]` already looked up
/// (`spec == key_spec(&args[0])`; `args` is not empty).
pub(crate) fn keys_by_spec(args: &[Bytes], spec: KeySpec) -> Result<Keys, KeyError> {
    let name = &args[0];
    let missing = || KeyError::MissingArguments {
        command: name.clone(),
        got: args.len(),
    };
    let data = |indexes| {
        Ok(Keys {
            class: Class::DataKeys,
            indexes,
        })
    };
    match spec {
        KeySpec::Unknown => Err(KeyError::UnknownCommand { name: name.clone() }),
        KeySpec::NoKeys(kind) => Ok(Keys {
            class: Class::NoKeys(kind),
            indexes: KeyIndexes::new(),
        }),
        KeySpec::Range { first, last, step } => range(args.len(), first, last, step)
            .ok_or_else(missing)
            .and_then(data),
        KeySpec::NumKeys {
            dest,
            numkeys_at,
            step,
        } => {
            let count = args.get(numkeys_at).ok_or_else(missing)?;
            let bad = || KeyError::BadNumKeys {
                command: name.clone(),
                index: numkeys_at,
                value: count.clone(),
            };
            let n = parse_count(count).ok_or_else(bad)?;
            let start = numkeys_at + 1;
            let step = step.max(1);
            // n groups of `step` arguments must follow the count.
            if n > (args.len() - start) / step {
                return Err(bad());
            }
            let mut indexes = KeyIndexes::with_capacity(n + usize::from(dest.is_some()));
            indexes.extend(dest);
            indexes.extend((0..n).map(|i| start + i * step));
            data(indexes)
        }
        KeySpec::Sort => {
            if args.len() < 2 {
                return Err(missing());
            }
            let mut store = None;
            let mut i = 2;
            while i < args.len() {
                let a = &args[i];
                if a.eq_ignore_ascii_case(b"LIMIT") {
                    i += 2;
                } else if a.eq_ignore_ascii_case(b"GET") || a.eq_ignore_ascii_case(b"BY") {
                    i += 1;
                } else if a.eq_ignore_ascii_case(b"STORE") && i + 1 < args.len() {
                    store = Some(i + 1);
                }
                i += 1;
            }
            data([1].into_iter().chain(store).collect())
        }
        KeySpec::GeoRadius => {
            if args.len() < 2 {
                return Err(missing());
            }
            let mut store = None;
            let mut i = 5;
            while i + 1 < args.len() {
                let a = &args[i];
                if a.eq_ignore_ascii_case(b"STORE") || a.eq_ignore_ascii_case(b"STOREDIST") {
                    store = Some(i + 1);
                    i += 1;
                }
                i += 1;
            }
            data([1].into_iter().chain(store).collect())
        }
        KeySpec::XGroup => {
            let sub = args.get(1).ok_or_else(missing)?;
            const SUBS: [&[u8]; 5] = [
                b"CREATE",
                b"SETID",
                b"DESTROY",
                b"CREATECONSUMER",
                b"DELCONSUMER",
            ];
            if !SUBS.iter().any(|s| sub.eq_ignore_ascii_case(s)) {
                return Err(KeyError::UnknownSubcommand {
                    command: name.clone(),
                    subcommand: sub.clone(),
                });
            }
            if args.len() < 3 {
                return Err(missing());
            }
            data(smallvec![2])
        }
        KeySpec::Copy => {
            if args.len() < 3 {
                return Err(missing());
            }
            let cross_db = args[3..]
                .iter()
                .enumerate()
                .any(|(i, a)| a.eq_ignore_ascii_case(b"DB") && 3 + i + 1 < args.len());
            Ok(Keys {
                class: if cross_db {
                    Class::CrossDb
                } else {
                    Class::DataKeys
                },
                indexes: smallvec![1, 2],
            })
        }
        KeySpec::Move => {
            if args.len() < 3 {
                return Err(missing());
            }
            Ok(Keys {
                class: Class::CrossDb,
                indexes: smallvec![1],
            })
        }
    }
}

/// The indexes of a legacy `(first, last, step)` spec over `len` arguments,
/// or `None` if the arguments are too few (or, for `step > 1`, do not come
/// in whole groups).
fn range(len: usize, first: usize, last: isize, step: usize) -> Option<KeyIndexes> {
    let from_end = last < 0;
    let last = if from_end {
        len.checked_sub(last.unsigned_abs())?
    } else {
        last.unsigned_abs()
    };
    if first == 0 || last < first || last >= len {
        return None;
    }
    // `len > first` holds here. MSET's pairs must be whole.
    if from_end && step > 1 && (len - first) % step != 0 {
        return None;
    }
    if last == first {
        // One key (`SET`, `INCR`, `LPUSH`, ...: most of a stream).
        return Some(smallvec![first]);
    }
    Some((first..=last).step_by(step.max(1)).collect())
}

/// A key count: decimal digits only, no sign, no leading zeros (as Redis's
/// `string2ll` reads it), at most 18 digits.
fn parse_count(b: &[u8]) -> Option<usize> {
    if b.is_empty() || b.len() > 18 || !b.iter().all(u8::is_ascii_digit) {
        return None;
    }
    if b.len() > 1 && b[0] == b'0' {
        return None;
    }
    let n = b.iter().fold(0u64, |acc, d| acc * 10 + u64::from(d - b'0'));
    usize::try_from(n).ok()
}

#[cfg(test)]
mod tests;

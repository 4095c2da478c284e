//! Per-slot checkpoint keys: names, values, reading them back, removing them.
//!
//! ```text
//! __ferry:ckpt:{<tag of slot s>}     "<history>:<offset>"  the last source offset of slot s
//!                                                           committed in one MULTI/EXEC with
//!                                                           its ops (written by the engine)
//! __ferry:barrier:{<tag of slot s>}  "<history>:<offset>"  the last op for every master
//!                                                           (FLUSHALL, FUNCTION LOAD, ...)
//!                                                           committed on the node serving s,
//!                                                           in one MULTI/EXEC with it
//! ```
//!
//! `<tag of slot s>` is a short decimal string whose CRC16 slot is `s`
//! ([`slot_tag`]; the table of 16384 tags is computed once and checked
//! with [`ferry_ops::key_slot`]). `<history>` names one full sync of the
//! source ([`CheckpointConfig::history`](crate::CheckpointConfig)): values
//! of another history never cause a skip. Everything ferry stores in the
//! target starts with [`RESERVED_PREFIX`].

use std::sync::OnceLock;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use ferry_ops::{SLOTS, Topology, key_slot};
use ferry_resp::{Reply, Value, put_command};
use tokio::sync::mpsc;

use crate::conn::{Auth, Conn, ConnError, PipeEvent};
use crate::error::WriterError;

pub use ferry_ops::{RESERVED_PREFIX, is_reserved};
/// The prefix of the per-slot checkpoint keys.
pub const CKPT_PREFIX: &str = "__ferry:ckpt:";
/// The prefix of the per-slot barrier keys (see the module docs).
pub const BARRIER_PREFIX: &str = "__ferry:barrier:";

/// Per slot the number whose decimal digits are its tag: 64 KB, so that
/// the table stays in cache where a transaction's checkpoint `SET` is
/// built from it (a table of whole keys, 16 k × ≈ 40 bytes, missed the
/// cache on most transactions: `docs/decisions.md` D93).
fn tag_numbers() -> &'static [u32] {
    static NUMBERS: OnceLock<Vec<u32>> = OnceLock::new();
    NUMBERS.get_or_init(|| {
        let mut numbers = vec![u32::MAX; usize::from(SLOTS)];
        let mut left = usize::from(SLOTS);
        let mut n = 0u32;
        let mut digits = itoa::Buffer::new();
        // ≈ 10^5 candidates (every slot is reached below 10^6).
        while left > 0 && n < u32::MAX {
            let slot = usize::from(key_slot(digits.format(n).as_bytes()));
            if numbers[slot] == u32::MAX {
                numbers[slot] = n;
                left -= 1;
            }
            n += 1;
        }
        numbers
    })
}

fn tags() -> &'static [String] {
    static TAGS: OnceLock<Vec<String>> = OnceLock::new();
    TAGS.get_or_init(|| tag_numbers().iter().map(u32::to_string).collect())
}

/// A short hash tag whose slot is `slot` (`slot` < 16384).
pub fn slot_tag(slot: u16) -> &'static str {
    &tags()[usize::from(slot)]
}

/// The checkpoint key of `slot` (no namespace).
pub fn ckpt_key(slot: u16) -> String {
    ckpt_key_in("", slot)
}

/// The barrier key of `slot` (no namespace).
pub fn barrier_key(slot: u16) -> String {
    barrier_key_in("", slot)
}

/// `prefix` + `<namespace>:` (when not empty) + `{tag}`.
fn key_in(prefix: &str, namespace: &str, slot: u16) -> String {
    let mut key = String::with_capacity(prefix.len() + namespace.len() + 8);
    put_key(&mut key, prefix, namespace, slot);
    key
}

/// Appends [`key_in`]'s key to `out` (no `format!`: the checkpoint key
/// table is built from it for every slot).
fn put_key(out: &mut String, prefix: &str, namespace: &str, slot: u16) {
    out.push_str(prefix);
    if !namespace.is_empty() {
        out.push_str(namespace);
        out.push(':');
    }
    out.push('{');
    out.push_str(slot_tag(slot));
    out.push('}');
}

/// The start of a checkpoint `SET` up to its key, `*3\r\n$3\r\nSET\r\n`.
const SET_HEAD: &[u8] = b"*3\r\n$3\r\nSET\r\n";

/// Most decimal digits of an offset (`u64::MAX`).
const MAX_DIGITS: usize = 20;

/// Most decimal digits of a tag number (`u32::MAX`; the table's largest
/// has 6).
const TAG_DIGITS: usize = 10;

/// The checkpoint `SET`s of one namespace and history, precomputed: per
/// tag digit count the command up to the tag (`*3\r\n$3\r\nSET\r\n$<key
/// length>\r\n<prefix><namespace>:{`), and per offset digit count the
/// value up to its offset (`$<value length>\r\n<history>:`, the lengths
/// counting the digits). A checkpointed transaction's `SET` is then two
/// copies of short, hot heads, the slot's tag and the offset formatted
/// (no key, value or header formatted per transaction, and no per-slot
/// table bigger than the tag numbers'). It also holds the
/// engine's current history, so that the two never differ.
#[derive(Debug)]
pub(crate) struct KeyCache {
    namespace: String,
    history: String,
    /// The `SET` up to the tag's first digit (`*3\r\n$3\r\nSET\r\n$<key
    /// length>\r\n<prefix><namespace>:{`) for tags of 1 to [`TAG_DIGITS`]
    /// digits, back to back (empty until the first use).
    heads: Vec<u8>,
    /// Where the head for `d + 1` tag digits ends in `heads`.
    head_ends: [u32; TAG_DIGITS],
    /// Every slot's tag as a number ([`tag_numbers`], empty until the
    /// first use).
    tags: &'static [u32],
    /// The value heads for offsets of 1 to [`MAX_DIGITS`] digits, back to
    /// back.
    values: Vec<u8>,
    /// Where the head for `d + 1` digits ends in `values`.
    value_ends: [u32; MAX_DIGITS],
}

impl Default for KeyCache {
    /// No namespace, an empty history.
    fn default() -> KeyCache {
        KeyCache::new("", String::new())
    }
}

impl KeyCache {
    /// The `SET`s of `namespace` (the configuration's) and `history`.
    pub(crate) fn new(namespace: &str, history: String) -> KeyCache {
        let mut cache = KeyCache {
            namespace: namespace.to_owned(),
            history: String::new(),
            heads: Vec::new(),
            head_ends: [0; TAG_DIGITS],
            tags: &[],
            values: Vec::new(),
            value_ends: [0; MAX_DIGITS],
        };
        cache.set_history(history);
        cache
    }

    /// The source history written into checkpoint values.
    pub(crate) fn history(&self) -> &str {
        &self.history
    }

    /// A new source history: the value heads are built for it.
    pub(crate) fn set_history(&mut self, history: String) {
        self.history = history;
        self.values.clear();
        let mut digits = itoa::Buffer::new();
        for d in 1..=MAX_DIGITS {
            self.values.push(b'$');
            let len = self.history.len() + 1 + d;
            self.values.extend_from_slice(digits.format(len).as_bytes());
            self.values.extend_from_slice(b"\r\n");
            self.values.extend_from_slice(self.history.as_bytes());
            self.values.push(b':');
            self.value_ends[d - 1] = u32::try_from(self.values.len()).unwrap_or(u32::MAX);
        }
    }

    /// The checkpoint key of `slot`, formatted (a probe or an error
    /// message needs it, not a transaction).
    pub(crate) fn ckpt_key(&self, slot: u16) -> Bytes {
        Bytes::from(ckpt_key_in(&self.namespace, slot))
    }

    /// The barrier key of `slot`, formatted.
    pub(crate) fn barrier_key(&self, slot: u16) -> String {
        barrier_key_in(&self.namespace, slot)
    }

    /// At least the encoded length of any [`KeyCache::put_set`] command,
    /// for reserving room once.
    pub(crate) fn set_len_max(&mut self) -> usize {
        if self.tags.is_empty() {
            self.build();
        }
        let head = self.head_ends[TAG_DIGITS - 1] - self.head_ends[TAG_DIGITS - 2];
        let value = self.value_ends[MAX_DIGITS - 1] - self.value_ends[MAX_DIGITS - 2];
        head as usize + TAG_DIGITS + 3 + value as usize + MAX_DIGITS + 2
    }

    /// Appends `SET <ckpt key of slot> <history>:<offset>` to `out`, the
    /// same bytes as [`put_command`] of it.
    pub(crate) fn put_set(&mut self, out: &mut BytesMut, slot: u16, offset: u64) {
        if self.tags.is_empty() {
            self.build();
        }
        let mut tag_buf = itoa::Buffer::new();
        let mut offset_buf = itoa::Buffer::new();
        let tag = self
            .tags
            .get(usize::from(slot))
            .map(|&n| tag_buf.format(n).as_bytes());
        let digits = offset_buf.format(offset).as_bytes();
        let head = tag.and_then(|t| span(&self.heads, &self.head_ends, t.len()));
        let value = span(&self.values, &self.value_ends, digits.len());
        let (Some(head), Some(tag), Some(value)) = (head, tag, value) else {
            let value = encode(&self.history, offset);
            let key = ckpt_key_in(&self.namespace, slot);
            return put_command(out, &[b"SET", key.as_bytes(), value.as_bytes()]);
        };
        out.extend_from_slice(head);
        out.extend_from_slice(tag);
        out.extend_from_slice(b"}\r\n");
        out.extend_from_slice(value);
        out.extend_from_slice(digits);
        out.extend_from_slice(b"\r\n");
    }

    fn build(&mut self) {
        let mut prefix = String::with_capacity(CKPT_PREFIX.len() + self.namespace.len() + 2);
        prefix.push_str(CKPT_PREFIX);
        if !self.namespace.is_empty() {
            prefix.push_str(&self.namespace);
            prefix.push(':');
        }
        prefix.push('{');
        let mut digits = itoa::Buffer::new();
        self.heads.clear();
        for d in 1..=TAG_DIGITS {
            self.heads.extend_from_slice(SET_HEAD);
            self.heads.push(b'$');
            // The key: prefix, `d` tag digits, `}`.
            let key_len = prefix.len() + d + 1;
            self.heads
                .extend_from_slice(digits.format(key_len).as_bytes());
            self.heads.extend_from_slice(b"\r\n");
            self.heads.extend_from_slice(prefix.as_bytes());
            self.head_ends[d - 1] = u32::try_from(self.heads.len()).unwrap_or(u32::MAX);
        }
        self.tags = tag_numbers();
    }
}

/// The `d`-th (from 1) of the heads stored back to back in `all`, `ends`
/// saying where each ends; `None` for a `d` out of range.
fn span<'a>(all: &'a [u8], ends: &[u32], d: usize) -> Option<&'a [u8]> {
    let end = *ends.get(d.checked_sub(1)?)? as usize;
    let start = match d.checked_sub(2) {
        Some(p) => ends[p] as usize,
        None => 0,
    };
    all.get(start..end)
}

/// The checkpoint key of `slot` in `namespace` (see
/// [`CheckpointConfig::namespace`](crate::CheckpointConfig)).
pub fn ckpt_key_in(namespace: &str, slot: u16) -> String {
    key_in(CKPT_PREFIX, namespace, slot)
}

/// The barrier key of `slot` in `namespace`.
pub fn barrier_key_in(namespace: &str, slot: u16) -> String {
    key_in(BARRIER_PREFIX, namespace, slot)
}

/// A checkpoint value.
pub fn encode(history: &str, offset: u64) -> String {
    format!("{history}:{offset}")
}

/// `(history, offset)` of a checkpoint value.
pub fn decode(value: &[u8]) -> Option<(&str, u64)> {
    let text = std::str::from_utf8(value).ok()?;
    let (history, offset) = text.rsplit_once(':')?;
    Some((history, offset.parse().ok()?))
}

/// What a target holds, read at connect time.
#[derive(Debug, Clone, Default)]
pub(crate) struct Resume {
    /// Per slot: the checkpoint of the current history (0: none).
    pub(crate) slot: Vec<u64>,
    /// Per master index: the highest barrier of the current history on the
    /// slots it serves (0: none).
    pub(crate) node_barrier: Vec<u64>,
    /// Summary for logs.
    pub(crate) summary: CheckpointSummary,
}

/// What was found in the target at connect time.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CheckpointSummary {
    /// Slots with a checkpoint of the current history.
    pub slots: usize,
    /// Masters with a barrier of the current history.
    pub barriers: usize,
    /// The smallest and largest checkpoint of the current history.
    pub min: Option<u64>,
    /// See `min`.
    pub max: Option<u64>,
    /// Checkpoint and barrier keys of another history (ignored).
    pub other_history: usize,
}

/// Sends `cmds` on a fresh connection to `addr` in one pipeline and
/// returns the replies in order.
pub(crate) async fn pipelined(
    addr: &str,
    auth: &Auth,
    tls: Option<&ferry_tls::TlsConfig>,
    timeout: Duration,
    cmds: &[Vec<Bytes>],
) -> Result<Vec<Reply>, ConnError> {
    let conn = Conn::connect_tls(addr, auth, timeout, tls).await?;
    if cmds.is_empty() {
        return Ok(Vec::new());
    }
    let (tx, mut rx) = mpsc::unbounded_channel();
    let mut pipe = conn.into_pipeline((), tx);
    let mut buf = BytesMut::new();
    for c in cmds {
        put_command(&mut buf, c);
    }
    pipe.send(buf.freeze());
    let mut out = Vec::with_capacity(cmds.len());
    let deadline = tokio::time::Instant::now() + timeout + Duration::from_millis(cmds.len() as u64);
    while out.len() < cmds.len() {
        let ev = tokio::time::timeout_at(deadline, pipe.next_event(&mut rx)).await;
        match ev {
            Ok(Some(((), PipeEvent::Replies(v)))) => out.extend(v),
            Ok(Some(((), PipeEvent::Lost(e)))) => return Err(e),
            Ok(None) | Err(_) => {
                return Err(ConnError::Timeout {
                    addr: addr.to_owned(),
                    what: "reply",
                    after: timeout,
                });
            }
        }
    }
    Ok(out)
}

/// Reads the checkpoint and barrier keys (of `config`'s namespace) of every slot from the master
/// serving it (one pipeline per master) and keeps those of `history`.
pub(crate) async fn read(
    topology: &Topology,
    auth: &Auth,
    tls: Option<&ferry_tls::TlsConfig>,
    timeout: Duration,
    config: &crate::CheckpointConfig,
) -> Result<Resume, WriterError> {
    let history = config.history.as_str();
    let mut resume = Resume {
        slot: vec![0; usize::from(SLOTS)],
        node_barrier: vec![0; topology.masters.len()],
        summary: CheckpointSummary::default(),
    };
    for (i, node) in topology.masters.iter().enumerate() {
        let slots: Vec<u16> = topology
            .slots
            .ranges()
            .filter(|(_, _, n)| *n == i)
            .flat_map(|(lo, hi, _)| lo..=hi)
            .collect();
        let mut cmds = Vec::with_capacity(slots.len() * 2);
        for &s in &slots {
            cmds.push(vec![
                Bytes::from_static(b"GET"),
                Bytes::from(config.ckpt_key(s)),
            ]);
            cmds.push(vec![
                Bytes::from_static(b"GET"),
                Bytes::from(config.barrier_key(s)),
            ]);
        }
        let addr = node.addr();
        let replies = pipelined(&addr, auth, tls, timeout, &cmds).await?;
        for (n, reply) in replies.iter().enumerate() {
            let slot = slots[n / 2];
            let key = &cmds[n][1];
            let value = match reply {
                Reply::Value(Value::Null) => continue,
                Reply::Value(Value::Bulk(b)) => decode(b),
                _ => None,
            };
            let Some((h, offset)) = value else {
                return Err(WriterError::Checkpoint {
                    node: addr.clone(),
                    key: String::from_utf8_lossy(key).into_owned(),
                    reply: format!("{reply:?}"),
                });
            };
            if h != history {
                resume.summary.other_history += 1;
                continue;
            }
            if n % 2 == 0 {
                resume.slot[usize::from(slot)] = offset;
                resume.summary.slots += 1;
                resume.summary.min = Some(resume.summary.min.map_or(offset, |m| m.min(offset)));
                resume.summary.max = Some(resume.summary.max.map_or(offset, |m| m.max(offset)));
            } else {
                resume.node_barrier[i] = resume.node_barrier[i].max(offset);
            }
        }
        if resume.node_barrier[i] > 0 {
            resume.summary.barriers += 1;
        }
    }
    Ok(resume)
}

/// Deletes every key under [`RESERVED_PREFIX`] from every master of the
/// cluster at `seed` (`SCAN MATCH` per master, then `DEL` per key);
/// returns how many were deleted.
///
/// # Errors
/// Connection, topology and reply errors.
pub async fn remove_all(seed: &str, config: crate::WriterConfig) -> Result<u64, WriterError> {
    let (masters, config) = crate::discovery::masters_of(seed, config).await?;
    let timeout = config.connect_timeout;
    let mut deleted = 0;
    for addr in masters {
        let mut conn = Conn::connect_tls(&addr, &config.auth, timeout, config.tls.as_ref()).await?;
        let pattern = format!("{RESERVED_PREFIX}*");
        let mut cursor = b"0".to_vec();
        let mut keys: Vec<Bytes> = Vec::new();
        loop {
            let reply = conn
                .call(
                    &[
                        b"SCAN".as_slice(),
                        &cursor,
                        b"MATCH",
                        pattern.as_bytes(),
                        b"COUNT",
                        b"1000",
                    ],
                    timeout,
                )
                .await?;
            let parts = reply.as_array().unwrap_or_default();
            let (Some(next), Some(found)) = (
                parts.first().and_then(Value::as_bytes),
                parts.get(1).and_then(|v| v.as_array()),
            ) else {
                return Err(WriterError::Unexpected {
                    node: addr.clone(),
                    reply: format!("{reply:?} to SCAN"),
                });
            };
            keys.extend(found.iter().filter_map(|k| k.as_bytes().cloned()));
            if next.as_ref() == b"0" {
                break;
            }
            cursor = next.to_vec();
        }
        drop(conn);
        let cmds: Vec<Vec<Bytes>> = keys
            .iter()
            .map(|k| vec![Bytes::from_static(b"DEL"), k.clone()])
            .collect();
        for chunk in cmds.chunks(10_000) {
            let replies =
                pipelined(&addr, &config.auth, config.tls.as_ref(), timeout, chunk).await?;
            for r in replies {
                match r {
                    Reply::Value(Value::Integer(n)) => deleted += u64::try_from(n).unwrap_or(0),
                    other => {
                        return Err(WriterError::Unexpected {
                            node: addr.clone(),
                            reply: format!("{other:?} to DEL"),
                        });
                    }
                }
            }
        }
    }
    Ok(deleted)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_slot_has_a_short_tag_of_its_own() {
        let mut longest = 0;
        for s in 0..SLOTS {
            let tag = slot_tag(s);
            assert_eq!(key_slot(tag.as_bytes()), s);
            assert_eq!(key_slot(ckpt_key(s).as_bytes()), s);
            assert_eq!(key_slot(barrier_key(s).as_bytes()), s);
            longest = longest.max(tag.len());
        }
        assert!(longest <= 6, "{longest}");
        assert!(is_reserved(ckpt_key(7).as_bytes()));
    }

    #[test]
    fn namespaces_keep_shards_apart_and_empty_is_unchanged() {
        let plain = crate::CheckpointConfig::default();
        assert_eq!(plain.ckpt_key(0), ckpt_key(0));
        assert_eq!(plain.barrier_key(9), barrier_key(9));
        let tag = slot_tag(5);
        assert_eq!(ckpt_key(5), format!("__ferry:ckpt:{{{tag}}}"));
        let ns = crate::CheckpointConfig {
            history: "h".into(),
            namespace: "shard-5461".into(),
        };
        assert_eq!(ns.ckpt_key(5), format!("__ferry:ckpt:shard-5461:{{{tag}}}"));
        assert_eq!(
            ns.barrier_key(5),
            format!("__ferry:barrier:shard-5461:{{{tag}}}")
        );
        for s in [0, 5, 16383] {
            assert_eq!(key_slot(ns.ckpt_key(s).as_bytes()), s);
            assert_eq!(key_slot(ns.barrier_key(s).as_bytes()), s);
            assert!(is_reserved(ns.ckpt_key(s).as_bytes()));
        }
    }

    #[test]
    fn the_key_cache_gives_the_keys_it_would_build() {
        let cache = KeyCache::default();
        for ns in ["", "shard-1"] {
            let cache_ns = KeyCache::new(ns, "h".into());
            for s in (0..SLOTS).chain([5, 0]) {
                assert_eq!(cache_ns.ckpt_key(s), ckpt_key_in(ns, s).as_bytes());
            }
        }
        assert_eq!(cache.ckpt_key(42), ckpt_key(42).as_bytes());
        assert_eq!(cache.ckpt_key(42), ckpt_key(42).as_bytes());
    }

    /// `put_command` of the checkpoint `SET`, the reference.
    fn set_bytes(namespace: &str, history: &str, slot: u16, offset: u64) -> Vec<u8> {
        let mut out = BytesMut::new();
        let key = ckpt_key_in(namespace, slot);
        let value = encode(history, offset);
        put_command(&mut out, &[b"SET", key.as_bytes(), value.as_bytes()]);
        out.to_vec()
    }

    #[test]
    fn the_precomputed_set_is_put_commands_for_every_digit_count() {
        let mut offsets: Vec<u64> = vec![0, u64::MAX, u64::MAX - 1];
        let mut p = 1u64;
        while let Some(next) = p.checked_mul(10) {
            offsets.extend([p - 1, p, p + 1, next - 1]);
            p = next;
        }
        offsets.push(p);
        for ns in ["", "shard-1", &"n".repeat(120)] {
            let mut cache = KeyCache::new(ns, "h".into());
            // A history change mid-way rebuilds the value heads only.
            for history in ["h", "0123456789abcdef0123456789abcdef", "", "h"] {
                cache.set_history(history.into());
                assert_eq!(cache.history(), history);
                for slot in [0, 1, 5, 4095, 16383] {
                    for &offset in &offsets {
                        let mut out = BytesMut::from(&b"x"[..]);
                        let max = cache.set_len_max();
                        cache.put_set(&mut out, slot, offset);
                        let want = set_bytes(ns, history, slot, offset);
                        assert_eq!(&out[1..], &want[..], "{ns} {history} {slot} {offset}");
                        assert!(want.len() <= max, "{ns} {history} {slot} {offset}");
                    }
                }
            }
        }
    }

    #[test]
    fn the_precomputed_set_matches_for_every_slot() {
        let mut cache = KeyCache::new("", "a7".into());
        for slot in 0..SLOTS {
            let offset = u64::from(slot) * 7_919_993;
            let mut out = BytesMut::new();
            cache.put_set(&mut out, slot, offset);
            assert_eq!(&out[..], &set_bytes("", "a7", slot, offset)[..]);
        }
    }

    #[test]
    fn values_round_trip() {
        assert_eq!(decode(encode("ab:cd", 42).as_bytes()), Some(("ab:cd", 42)));
        assert_eq!(decode(b"nope"), None);
        assert_eq!(decode(b"h:x"), None);
    }
}

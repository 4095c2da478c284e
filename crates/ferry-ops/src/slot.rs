//! Redis Cluster hash slots: which of the 16384 slots a key belongs to.
//!
//! ```text
//! slot = crc16_xmodem(hashkey) & 0x3FFF
//!
//! hashkey: find the first '{'.
//!   none                                  -> the whole key
//!   no '}' after it, or "{}" (empty tag)  -> the whole key
//!   otherwise                             -> the bytes between it and the first '}' after it
//! ```
//!
//! This is `keyHashSlot` in Redis's `cluster.c` (Valkey is identical). Keys are
//! binary: any byte, including `{`/`}` inside a tag's surroundings, is allowed,
//! and the empty key hashes to slot 0. CRC-16/XMODEM is poly 0x1021, init 0,
//! no reflection, no final xor (check value of `"123456789"` = `0x31C3`).

/// Number of hash slots in a Redis Cluster.
pub const SLOTS: u16 = 16384;

/// Largest slot number (`SLOTS - 1`).
pub const MAX_SLOT: u16 = SLOTS - 1;

/// The part of `key` that is hashed: the hash tag if the key has a non-empty
/// one, else the whole key.
///
/// ```
/// use ferry_ops::slot::hash_tag;
/// assert_eq!(hash_tag(b"{user1000}.following"), b"user1000");
/// assert_eq!(hash_tag(b"foo{}{bar}"), b"foo{}{bar}");
/// assert_eq!(hash_tag(b"foo{{bar}}"), b"{bar");
/// ```
pub fn hash_tag(key: &[u8]) -> &[u8] {
    let Some(open) = key.iter().position(|&b| b == b'{') else {
        return key;
    };
    let after = &key[open + 1..];
    match after.iter().position(|&b| b == b'}') {
        Some(close) if close > 0 => &after[..close],
        _ => key,
    }
}

/// The cluster slot (0..=16383) that `key` hashes to.
///
/// ```
/// use ferry_ops::key_slot;
/// assert_eq!(key_slot(b"123456789"), 0x31C3);
/// assert_eq!(key_slot(b"{user1000}.a"), key_slot(b"user1000"));
/// ```
pub fn key_slot(key: &[u8]) -> u16 {
    crc16::State::<crc16::XMODEM>::calculate(hash_tag(key)) & MAX_SLOT
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc_check_value() {
        assert_eq!(
            crc16::State::<crc16::XMODEM>::calculate(b"123456789"),
            0x31C3
        );
        assert_eq!(key_slot(b"123456789"), 0x31C3);
    }

    #[test]
    fn hash_tags_from_the_protocol_notes() {
        assert_eq!(hash_tag(b"{user1000}.a"), b"user1000");
        assert_eq!(key_slot(b"{user1000}.a"), key_slot(b"user1000"));
        assert_eq!(hash_tag(b"foo{}{bar}"), b"foo{}{bar}");
        assert_eq!(hash_tag(b"foo{{bar}}"), b"{bar");
        assert_eq!(key_slot(b"foo{{bar}}"), key_slot(b"{bar"));
        assert_eq!(hash_tag(b"foo{bar}{zap}"), b"bar");
        assert_eq!(key_slot(b"foo{bar}{zap}"), key_slot(b"bar"));
        assert_eq!(hash_tag(b"foo{bar"), b"foo{bar");
        assert_eq!(hash_tag(b"{}"), b"{}");
        assert_eq!(hash_tag(b"{"), b"{");
        assert_eq!(hash_tag(b"}"), b"}");
        assert_eq!(hash_tag(b"}{a}"), b"a");
        assert_eq!(hash_tag(b"{a}"), b"a");
        assert_eq!(hash_tag(b"a{b}"), b"b");
    }

    #[test]
    fn known_slots() {
        // Values from redis-cli CLUSTER KEYSLOT (and the Redis Cluster spec).
        assert_eq!(key_slot(b""), 0);
        assert_eq!(key_slot(b"foo"), 12182);
        assert_eq!(key_slot(b"bar"), 5061);
        assert_eq!(key_slot(b"key:0"), key_slot(b"{key:0}"));
        assert_eq!(key_slot(b"somekey"), 11058);
        assert_eq!(
            key_slot(b"{}"),
            crc16::State::<crc16::XMODEM>::calculate(b"{}") & 0x3FFF
        );
    }

    #[test]
    fn binary_keys() {
        let all: Vec<u8> = (0..=255u8).collect();
        assert!(key_slot(&all) < SLOTS);
        assert_eq!(key_slot(b"\x00{\xff\x00}\x01"), key_slot(b"\xff\x00"));
        assert_eq!(key_slot(b"\xff"), key_slot(b"x{\xff}y"));
        for b in 0..=255u8 {
            assert!(key_slot(&[b]) < SLOTS);
        }
    }
}

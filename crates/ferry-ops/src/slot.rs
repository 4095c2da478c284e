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
    crc16_xmodem(hash_tag(key)) & MAX_SLOT
}

/// CRC-16/XMODEM of `data`, eight bytes per step ("slicing by 8": each
/// byte's effect on the register after the bytes that follow it in the
/// step is looked up in its own table, and the eight are xor-ed; the CRC
/// is linear), the rest a byte at a time. Equal to the `crc16` crate's
/// `XMODEM` (a test compares them).
fn crc16_xmodem(data: &[u8]) -> u16 {
    let mut crc = 0u16;
    let mut words = data.chunks_exact(8);
    for w in &mut words {
        let [hi, lo] = crc.to_be_bytes();
        crc = CRC_TABLES[7][usize::from(hi ^ w[0])]
            ^ CRC_TABLES[6][usize::from(lo ^ w[1])]
            ^ CRC_TABLES[5][usize::from(w[2])]
            ^ CRC_TABLES[4][usize::from(w[3])]
            ^ CRC_TABLES[3][usize::from(w[4])]
            ^ CRC_TABLES[2][usize::from(w[5])]
            ^ CRC_TABLES[1][usize::from(w[6])]
            ^ CRC_TABLES[0][usize::from(w[7])];
    }
    for &b in words.remainder() {
        crc = (crc << 8) ^ CRC_TABLES[0][usize::from((crc >> 8) as u8 ^ b)];
    }
    crc
}

/// `CRC_TABLES[n][b]`: the register after byte `b` (xor-ed into its high
/// byte) and then `n` zero bytes; `CRC_TABLES[0]` is the classic table.
static CRC_TABLES: [[u16; 256]; 8] = {
    let mut t = [[0u16; 256]; 8];
    let mut b = 0;
    while b < 256 {
        let mut crc = (b as u16) << 8;
        let mut bit = 0;
        while bit < 8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
            bit += 1;
        }
        t[0][b] = crc;
        b += 1;
    }
    let mut n = 1;
    while n < 8 {
        let mut b = 0;
        while b < 256 {
            let prev = t[n - 1][b];
            t[n][b] = (prev << 8) ^ t[0][(prev >> 8) as usize];
            b += 1;
        }
        n += 1;
    }
    t
};

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
    fn sliced_crc_equals_the_crate() {
        // Every length around the step of 8, every byte value, and a
        // pseudo-random mix.
        let mut x = 0x2545_f491_4f6c_dd1du64;
        let mut data = Vec::new();
        for len in 0..100 {
            for fill in [0u8, 0xff, b'{', len as u8] {
                let v = vec![fill; len];
                assert_eq!(
                    crc16_xmodem(&v),
                    crc16::State::<crc16::XMODEM>::calculate(&v)
                );
            }
            data.clear();
            for _ in 0..len {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                data.push(x as u8);
            }
            assert_eq!(
                crc16_xmodem(&data),
                crc16::State::<crc16::XMODEM>::calculate(&data)
            );
        }
        assert_eq!(crc16_xmodem(b"123456789"), 0x31C3);
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

//! LZF, the compression of RDB strings in the `0xC3` form
//! (`0xC3, len compressed, len uncompressed, compressed bytes`).
//!
//! The stream is a sequence of instructions, each starting with a control
//! byte `c`:
//!
//! ```text
//! 000LLLLL  + (L+1) bytes         literal run of 1..=32 bytes
//! LLLOOOOO  + oooooooo            back-reference, L in 1..=6:
//!                                 copy L+2 bytes from (out - (O<<8 | o) - 1)
//! 111OOOOO  + llllllll + oooooooo back-reference with length 7 + l + 2
//! ```
//!
//! A back-reference may overlap the bytes it produces (a distance of 1
//! repeats the last byte), so it is copied front to back. The decoder
//! refuses input that would produce more or fewer bytes than declared, or
//! reach back before the start of its output.
//!
//! [`compress`] is a small greedy compressor (one hash slot per 3-byte prefix) producing valid
//! LZF for the RDB builder and tests; it is not byte-identical to liblzf.

/// LZF decoding failure; offsets are into the compressed input.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LzfError {
    /// The instruction starting at input offset `at` needs more input bytes.
    #[error("lzf: input truncated inside the instruction at byte {at}")]
    Truncated {
        /// Input offset of the incomplete instruction.
        at: usize,
    },
    /// The instruction at input offset `at` would produce more than `expected` bytes.
    #[error("lzf: instruction at byte {at} overflows the declared length {expected}")]
    TooLong {
        /// Input offset of the instruction.
        at: usize,
        /// Declared uncompressed length.
        expected: usize,
    },
    /// The input ended after producing `produced` bytes, fewer than `expected`.
    #[error("lzf: input ended at byte {at} after {produced} of {expected} bytes")]
    TooShort {
        /// Input offset where decoding stopped (the input length).
        at: usize,
        /// Bytes produced.
        produced: usize,
        /// Declared uncompressed length.
        expected: usize,
    },
    /// The back-reference at input offset `at` reaches `distance` bytes back
    /// when only `produced` bytes exist.
    #[error("lzf: back-reference at byte {at} reaches {distance} back with {produced} produced")]
    BadReference {
        /// Input offset of the back-reference.
        at: usize,
        /// How far back it points.
        distance: usize,
        /// Bytes produced so far.
        produced: usize,
    },
}

/// Longest output one input byte can produce: a 3-byte back-reference
/// yields at most 264 bytes.
const MAX_EXPANSION: usize = 88;
/// Longest back-reference copy.
#[cfg(any(test, feature = "test-util"))]
const MAX_REF_LEN: usize = 264;
/// Farthest back-reference distance.
#[cfg(any(test, feature = "test-util"))]
const MAX_DISTANCE: usize = 1 << 13;
/// Longest literal run.
#[cfg(any(test, feature = "test-util"))]
const MAX_LITERAL: usize = 32;

/// Decompress `input` appending exactly `expected_len` bytes to `out` (error if the output would be longer or shorter, or a back-reference points before the start).
///
/// "The start" is the length `out` had on entry: earlier bytes are never
/// referenced. On error `out` is truncated back to that length.
pub fn decompress_into(
    input: &[u8],
    expected_len: usize,
    out: &mut Vec<u8>,
) -> Result<(), LzfError> {
    let base = out.len();
    let result = decode(input, expected_len, out, base);
    if result.is_err() {
        out.truncate(base);
    }
    result
}

fn decode(input: &[u8], expected: usize, out: &mut Vec<u8>, base: usize) -> Result<(), LzfError> {
    // The reservation is bounded by what the input could possibly expand to,
    // so a lying length cannot make us allocate wildly.
    out.reserve(expected.min(input.len().saturating_mul(MAX_EXPANSION)));
    let mut ip = 0usize;
    while let Some(&ctrl) = input.get(ip) {
        let at = ip;
        let produced = out.len() - base;
        if ctrl < 32 {
            let run = usize::from(ctrl) + 1;
            let lit = input
                .get(ip + 1..ip + 1 + run)
                .ok_or(LzfError::Truncated { at })?;
            if run > expected - produced {
                return Err(LzfError::TooLong { at, expected });
            }
            out.extend_from_slice(lit);
            ip += 1 + run;
        } else {
            let mut len = usize::from(ctrl >> 5);
            ip += 1;
            if len == 7 {
                len += usize::from(*input.get(ip).ok_or(LzfError::Truncated { at })?);
                ip += 1;
            }
            let lo = *input.get(ip).ok_or(LzfError::Truncated { at })?;
            ip += 1;
            let distance = ((usize::from(ctrl & 0x1F) << 8) | usize::from(lo)) + 1;
            let len = len + 2;
            if len > expected - produced {
                return Err(LzfError::TooLong { at, expected });
            }
            if distance > produced {
                return Err(LzfError::BadReference {
                    at,
                    distance,
                    produced,
                });
            }
            copy_back(out, distance, len);
        }
    }
    let produced = out.len() - base;
    if produced != expected {
        return Err(LzfError::TooShort {
            at: input.len(),
            produced,
            expected,
        });
    }
    Ok(())
}

/// Append `len` bytes copied from `distance` bytes before the end of `out`,
/// where the source may overlap the bytes being appended.
/// The caller guarantees `1 <= distance <= out.len()`.
fn copy_back(out: &mut Vec<u8>, distance: usize, mut len: usize) {
    let from = out.len() - distance;
    while len > 0 {
        // Copy from the start of the repeated pattern: every piece's source
        // already exists, and since each piece is a whole number of periods
        // long, the available run doubles on every step.
        let step = len.min(out.len() - from);
        out.extend_from_within(from..from + step);
        len -= step;
    }
}

/// Decompress `input` into a new vector of exactly `expected_len` bytes.
pub fn decompress(input: &[u8], expected_len: usize) -> Result<Vec<u8>, LzfError> {
    let mut out = Vec::new();
    decompress_into(input, expected_len, &mut out)?;
    Ok(out)
}

/// A simple, valid LZF compressor (used by tests/builders; output must be decodable by Redis). Returns None if it does not shrink the input.
#[cfg(any(test, feature = "test-util"))]
pub fn compress(input: &[u8]) -> Option<Vec<u8>> {
    const HASH_BITS: u32 = 14;
    let n = input.len();
    let mut out = Vec::with_capacity(n);
    // Most recent position (+1; 0 = empty) of each 3-byte prefix hash.
    let mut table = vec![0usize; 1 << HASH_BITS];
    let hash = |i: usize| -> usize {
        let w =
            (u32::from(input[i]) << 16) | (u32::from(input[i + 1]) << 8) | u32::from(input[i + 2]);
        (w.wrapping_mul(0x9E37_79B1) >> (32 - HASH_BITS)) as usize
    };
    let mut lit_start = 0;
    let mut i = 0;
    while i + 3 <= n {
        let h = hash(i);
        let candidate = table[h];
        table[h] = i + 1;
        if candidate > 0 {
            let r = candidate - 1;
            let distance = i - r;
            if distance <= MAX_DISTANCE && input[r..r + 3] == input[i..i + 3] {
                let max = MAX_REF_LEN.min(n - i);
                let mut len = 3;
                while len < max && input[r + len] == input[i + len] {
                    len += 1;
                }
                emit_literals(&mut out, &input[lit_start..i]);
                emit_reference(&mut out, distance, len);
                // Index a couple of positions inside the match for later matches.
                let end = i + len;
                for j in (i + 1..end).take(2) {
                    if j + 3 <= n {
                        let hj = hash(j);
                        table[hj] = j + 1;
                    }
                }
                i = end;
                lit_start = i;
                if out.len() >= n {
                    return None;
                }
                continue;
            }
        }
        i += 1;
    }
    emit_literals(&mut out, &input[lit_start..]);
    (out.len() < n).then_some(out)
}

#[cfg(any(test, feature = "test-util"))]
fn emit_literals(out: &mut Vec<u8>, lits: &[u8]) {
    for chunk in lits.chunks(MAX_LITERAL) {
        out.push((chunk.len() - 1) as u8);
        out.extend_from_slice(chunk);
    }
}

/// Emit a back-reference of `len` (3..=264) bytes at `distance` (1..=8192).
#[cfg(any(test, feature = "test-util"))]
fn emit_reference(out: &mut Vec<u8>, distance: usize, len: usize) {
    let off = distance - 1;
    let l = len - 2;
    let hi = (off >> 8) as u8;
    if l < 7 {
        out.push(((l as u8) << 5) | hi);
    } else {
        out.push((7 << 5) | hi);
        out.push((l - 7) as u8);
    }
    out.push(off as u8);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hand_computed_vector() {
        // "abcabcabcabc": literal "abc", then a 9-byte back-reference at distance 3.
        // ctrl 0x02 = 3 literals; ctrl (9-2=7 → 111) 0xE0, extra 0, offset 2.
        let compressed = [0x02, b'a', b'b', b'c', 0xE0, 0x00, 0x02];
        assert_eq!(decompress(&compressed, 12).unwrap(), b"abcabcabcabc");
        // Same with a short reference: len 6 → (6-2)=4 → 0x80.
        let compressed = [0x02, b'a', b'b', b'c', 0x80, 0x02];
        assert_eq!(decompress(&compressed, 9).unwrap(), b"abcabcabc");
        // Run-length: one literal, distance 1.
        let compressed = [0x00, b'z', 0x60, 0x00];
        assert_eq!(decompress(&compressed, 6).unwrap(), b"zzzzzz");
    }

    #[test]
    fn errors_name_offsets() {
        let lit = [0x02, b'a', b'b', b'c'];
        assert_eq!(
            decompress(&lit, 2),
            Err(LzfError::TooLong { at: 0, expected: 2 })
        );
        assert_eq!(
            decompress(&lit, 4),
            Err(LzfError::TooShort {
                at: 4,
                produced: 3,
                expected: 4
            })
        );
        assert_eq!(decompress(&lit[..3], 3), Err(LzfError::Truncated { at: 0 }));
        let bad_ref = [0x00, b'a', 0x20, 0x01];
        assert_eq!(
            decompress(&bad_ref, 4),
            Err(LzfError::BadReference {
                at: 2,
                distance: 2,
                produced: 1
            })
        );
        assert_eq!(decompress(&[0xE0], 9), Err(LzfError::Truncated { at: 0 }));
        assert_eq!(decompress(&[0x20], 3), Err(LzfError::Truncated { at: 0 }));
        assert_eq!(decompress(&[], 0), Ok(vec![]));
        assert!(decompress(&[], usize::MAX).is_err());
    }

    #[test]
    fn error_restores_output() {
        let mut out = b"keep".to_vec();
        assert!(decompress_into(&[0x00, b'a', 0x20, 0x01], 4, &mut out).is_err());
        assert_eq!(out, b"keep");
        // A reference may not reach into bytes that were there before.
        assert!(decompress_into(&[0x20, 0x00], 3, &mut out).is_err());
        assert!(decompress_into(&[0x01, b'h', b'i'], 2, &mut out).is_ok());
        assert_eq!(out, b"keephi");
    }

    #[test]
    fn compress_round_trips() {
        let text = b"hello hello hello hello hello world world world world".repeat(50);
        let c = compress(&text).unwrap();
        assert!(c.len() < text.len() / 4);
        assert_eq!(decompress(&c, text.len()).unwrap(), text);
        let zeros = vec![0u8; 100_000];
        let c = compress(&zeros).unwrap();
        assert_eq!(decompress(&c, zeros.len()).unwrap(), zeros);
        assert_eq!(compress(b"abc"), None);
        assert_eq!(compress(b""), None);
    }
}

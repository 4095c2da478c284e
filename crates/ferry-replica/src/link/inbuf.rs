//! The decoder task's input buffer: popped spool chunks in, contiguous
//! bytes for the decoders out, copying as little as it can.
//!
//! ```text
//! buffer empty            ─▶ the chunk becomes the buffer (no copy when nothing else holds it)
//! a partial record left   ─▶ the chunk's first STITCH bytes are appended behind it;
//!                            once the decoders have used up the leftover, the chunk
//!                            from their position on replaces the buffer (unstitch)
//! decoders need more while stitching ─▶ the rest of the chunk is appended (append_rest)
//! ```
//!
//! Whatever happens, the decoders see the same bytes in the same order as
//! if every chunk had been appended: the buffer only ever grows at its end,
//! and a swap replaces it with the same bytes followed by more.

use bytes::{Buf, Bytes, BytesMut};

/// Bytes of a popped chunk copied behind a partial record left in the
/// buffer (enough to finish a typical record).
pub(super) const STITCH: usize = 1024;

/// See the [module docs](self).
#[derive(Debug, Default)]
pub(super) struct InBuf {
    /// What the decoders read from the front of (and consume).
    pub(super) buf: BytesMut,
    /// The chunk being stitched behind a leftover, and how many of its
    /// bytes are already at the end of `buf`.
    rest: Option<(Bytes, usize)>,
}

impl InBuf {
    /// Bytes popped and not yet decoded.
    pub(super) fn held(&self) -> usize {
        self.buf.len() + self.rest.as_ref().map_or(0, |(c, k)| c.len() - k)
    }

    /// Drops every byte held.
    pub(super) fn clear(&mut self) {
        self.buf.clear();
        self.rest = None;
    }

    /// Takes a popped chunk.
    pub(super) fn feed(&mut self, chunk: Bytes) {
        self.append_rest();
        if self.buf.is_empty() {
            match chunk.try_into_mut() {
                Ok(whole) => self.buf = whole,
                Err(shared) => self.buf.extend_from_slice(&shared),
            }
        } else if chunk.len() <= STITCH || self.buf.len() > STITCH {
            self.buf.extend_from_slice(&chunk);
        } else {
            self.buf.extend_from_slice(&chunk[..STITCH]);
            self.rest = Some((chunk, STITCH));
        }
    }

    /// Call before each decode: once the leftover before the stitched
    /// chunk is used up, the chunk from the decoders' position on becomes
    /// the buffer.
    pub(super) fn unstitch(&mut self) {
        match &self.rest {
            Some((_, k)) if self.buf.len() <= *k => {}
            _ => return,
        }
        let Some((mut chunk, k)) = self.rest.take() else {
            return;
        };
        let have = self.buf.len();
        chunk.advance(k - have);
        match chunk.try_into_mut() {
            Ok(whole) => self.buf = whole,
            Err(shared) => self.buf.extend_from_slice(&shared[have..]),
        }
    }

    /// The decoders need more bytes: appends the rest of the stitched chunk;
    /// `false` when there was none (then only a new chunk can help).
    pub(super) fn append_rest(&mut self) -> bool {
        match self.rest.take() {
            Some((chunk, k)) => {
                self.buf.extend_from_slice(&chunk[k..]);
                true
            }
            None => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A chunk that is its allocation's only owner, as the reader pushes them.
    fn owned(bytes: &[u8]) -> Bytes {
        Bytes::from(bytes.to_vec())
    }

    #[test]
    fn an_owned_chunk_into_an_empty_buffer_is_not_copied() {
        let chunk = owned(&[7u8; 5000]);
        let at = chunk.as_ptr();
        let mut b = InBuf::default();
        b.feed(chunk);
        assert_eq!(b.buf.as_ptr(), at);
        assert_eq!(b.held(), 5000);
    }

    #[test]
    fn a_leftover_is_stitched_then_the_chunk_taken_over() {
        let mut b = InBuf::default();
        b.feed(owned(b"0123456789"));
        b.buf.advance(7); // "789" left: a partial record
        let chunk = owned(&(0..5000u32).map(|i| i as u8).collect::<Vec<_>>());
        let at = chunk.as_ptr();
        b.feed(chunk);
        assert_eq!(b.buf.len(), 3 + STITCH);
        assert_eq!(b.held(), 3 + 5000);
        b.unstitch(); // leftover not used up yet: nothing changes
        assert_eq!(b.buf.len(), 3 + STITCH);
        b.buf.advance(3 + 10); // the record finished, and one more
        b.unstitch();
        assert_eq!(b.buf.as_ptr(), at.wrapping_add(10));
        assert_eq!(b.buf.len(), 4990);
        assert_eq!(b.held(), 4990);
        assert!(!b.append_rest());
    }

    #[test]
    fn a_shared_chunk_is_copied() {
        let chunk = owned(&[1u8; 3000]);
        let keep = chunk.clone();
        let mut b = InBuf::default();
        b.feed(chunk);
        assert_ne!(b.buf.as_ptr(), keep.as_ptr());
        assert_eq!(&b.buf[..], &keep[..]);
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

        /// Random chunks, random consumption (what a decoder takes), random
        /// "need more" calls, some chunks shared: the bytes read are exactly
        /// the bytes fed, in order, and `held` counts what is left.
        #[test]
        fn the_byte_stream_is_preserved(
            chunks in proptest::collection::vec((1usize..6000, any::<bool>()), 1..12),
            steps in proptest::collection::vec((0usize..3000, any::<bool>()), 1..40),
        ) {
            let mut fed: Vec<u8> = Vec::new();
            let mut read: Vec<u8> = Vec::new();
            let mut b = InBuf::default();
            let mut keep = Vec::new();
            let mut steps = steps.into_iter().cycle();
            for (i, (len, shared)) in chunks.iter().enumerate() {
                let data: Vec<u8> = (0..*len).map(|j| (i * 31 + j * 7) as u8).collect();
                fed.extend_from_slice(&data);
                let chunk = owned(&data);
                if *shared {
                    keep.push(chunk.clone());
                }
                b.feed(chunk);
                // Decode a few times: take some bytes, or ask for more.
                for _ in 0..3 {
                    b.unstitch();
                    let (n, more) = steps.next().unwrap_or((0, false));
                    let n = n.min(b.buf.len());
                    read.extend_from_slice(&b.buf.split_to(n));
                    if more {
                        b.append_rest();
                    }
                    prop_assert_eq!(read.len() + b.held(), fed.len());
                }
            }
            b.append_rest();
            read.extend_from_slice(&b.buf.split());
            prop_assert_eq!(b.held(), 0);
            prop_assert_eq!(read, fed);
        }
    }
}

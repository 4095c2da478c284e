//! Intset: the compact set of integers behind RDB type 11 (`SET_INTSET`).
//!
//! ```text
//! +----------------+--------------+-----------------------------+
//! | encoding u32LE | length u32LE | length × signed LE integers |
//! +----------------+--------------+-----------------------------+
//!   2, 4 or 8        element count  each `encoding` bytes wide,
//!   (element width)                 sorted ascending, no duplicates
//! ```
//!
//! The header is checked up front (`8 + length × encoding == buf.len()`), so
//! iteration cannot fail. Order and uniqueness are not checked (Redis only
//! checks them under `sanitize-dump-payload`); [`Intset::is_sorted_unique`]
//! does it on request.

use crate::container::{ContainerError, read_int_le, read_u32_le};

const NAME: &str = "intset";
const HEADER: usize = 8;

/// A validated intset, iterated as `i64` values in stored order.
#[derive(Debug, Clone)]
pub struct Intset<'a> {
    body: &'a [u8],
    width: usize,
    pos: usize,
}

impl<'a> Intset<'a> {
    /// Validate the header of `buf`: encoding 2, 4 or 8 and a length that
    /// accounts for every byte.
    pub fn new(buf: &'a [u8]) -> Result<Self, ContainerError> {
        let encoding = read_u32_le(buf, 0)
            .ok_or_else(|| ContainerError::new(NAME, 0, "header shorter than 8 bytes"))?;
        let count = read_u32_le(buf, 4)
            .ok_or_else(|| ContainerError::new(NAME, 4, "header shorter than 8 bytes"))?;
        let width = match encoding {
            2 | 4 | 8 => encoding as usize,
            other => {
                return Err(ContainerError::new(
                    NAME,
                    0,
                    format!("invalid encoding {other} (expected 2, 4 or 8)"),
                ));
            }
        };
        let expected = (count as usize)
            .checked_mul(width)
            .and_then(|n| n.checked_add(HEADER));
        if expected != Some(buf.len()) {
            return Err(ContainerError::new(
                NAME,
                4,
                format!(
                    "length {count} × width {width} + 8 does not match the {} bytes given",
                    buf.len()
                ),
            ));
        }
        Ok(Intset {
            body: buf.get(HEADER..).unwrap_or_default(),
            width,
            pos: 0,
        })
    }

    /// Number of elements not yet iterated (the whole set before iteration starts).
    pub fn len(&self) -> usize {
        (self.body.len() / self.width).saturating_sub(self.pos)
    }

    /// True if no elements remain.
    #[cfg(any(test, feature = "test-util"))]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Element width in bytes: 2, 4 or 8.
    #[cfg(any(test, feature = "test-util"))]
    pub fn width(&self) -> usize {
        self.width
    }

    /// True if the elements are strictly ascending, as Redis keeps them.
    #[cfg(any(test, feature = "test-util"))]
    pub fn is_sorted_unique(&self) -> bool {
        let all = Intset {
            pos: 0,
            ..self.clone()
        };
        let mut prev: Option<i64> = None;
        for v in all {
            if prev.is_some_and(|p| p >= v) {
                return false;
            }
            prev = Some(v);
        }
        true
    }
}

impl Iterator for Intset<'_> {
    type Item = i64;

    fn next(&mut self) -> Option<i64> {
        let at = self.pos.checked_mul(self.width)?;
        let v = read_int_le(self.body, at, self.width)?;
        self.pos += 1;
        Some(v)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.len(), Some(self.len()))
    }
}

impl ExactSizeIterator for Intset<'_> {}

/// Once it has returned `None`, it keeps returning `None`.
impl std::iter::FusedIterator for Intset<'_> {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hand_written() {
        // encoding 2, 3 elements: -1, 2, 300
        let buf = [2, 0, 0, 0, 3, 0, 0, 0, 0xFF, 0xFF, 2, 0, 0x2C, 0x01];
        let set = Intset::new(&buf).unwrap();
        assert_eq!(set.len(), 3);
        assert!(set.is_sorted_unique());
        assert_eq!(set.collect::<Vec<_>>(), vec![-1, 2, 300]);

        let buf = [8, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x80];
        assert_eq!(Intset::new(&buf).unwrap().next(), Some(i64::MIN));
    }

    #[test]
    fn rejects_bad_headers() {
        assert!(Intset::new(&[]).is_err());
        assert!(Intset::new(&[2, 0, 0, 0, 1, 0]).is_err());
        assert!(Intset::new(&[3, 0, 0, 0, 0, 0, 0, 0]).is_err());
        assert!(Intset::new(&[2, 0, 0, 0, 1, 0, 0, 0, 1]).is_err());
        assert!(Intset::new(&[4, 0, 0, 0, 0xFF, 0xFF, 0xFF, 0xFF]).is_err());
        let empty = Intset::new(&[4, 0, 0, 0, 0, 0, 0, 0]).unwrap();
        assert!(empty.is_empty());
    }

    #[test]
    fn unsorted_is_detected() {
        let buf = [2, 0, 0, 0, 2, 0, 0, 0, 5, 0, 5, 0];
        assert!(!Intset::new(&buf).unwrap().is_sorted_unique());
    }
}

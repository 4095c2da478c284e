//! [`SlotGate`]: the slots a source shard's pipeline owns now, as a
//! lock-free 16384-bit set shared (`Arc`) between whoever learns the
//! topology and the applier that checks every op's slot.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::slot::SLOTS;

const WORDS: usize = SLOTS as usize / 64;

/// A set of slots; reads and updates never block.
#[derive(Debug)]
pub struct SlotGate {
    bits: [AtomicU64; WORDS],
}

impl Default for SlotGate {
    fn default() -> Self {
        SlotGate::none()
    }
}

impl SlotGate {
    /// Owns no slot.
    pub fn none() -> SlotGate {
        SlotGate {
            bits: std::array::from_fn(|_| AtomicU64::new(0)),
        }
    }

    /// Owns every slot (a standalone source).
    pub fn all() -> SlotGate {
        SlotGate {
            bits: std::array::from_fn(|_| AtomicU64::new(u64::MAX)),
        }
    }

    /// Owns exactly `ranges` (`(start, end)`, inclusive; slots past 16383
    /// are ignored).
    pub fn from_ranges(ranges: &[(u16, u16)]) -> SlotGate {
        let g = SlotGate::none();
        g.set_ranges(ranges);
        g
    }

    /// Replaces the owned set by `ranges`.
    pub fn set_ranges(&self, ranges: &[(u16, u16)]) {
        let mut words = [0u64; WORDS];
        for &(s, e) in ranges {
            for slot in s..=e.min(SLOTS - 1) {
                words[usize::from(slot) / 64] |= 1 << (slot % 64);
            }
        }
        for (w, v) in self.bits.iter().zip(words) {
            w.store(v, Ordering::Release);
        }
    }

    /// Whether `slot` is owned (`false` past 16383).
    pub fn owns(&self, slot: u16) -> bool {
        self.bits
            .get(usize::from(slot) / 64)
            .is_some_and(|w| w.load(Ordering::Acquire) & (1 << (slot % 64)) != 0)
    }

    /// How many slots are owned.
    pub fn count(&self) -> u32 {
        self.bits
            .iter()
            .map(|w| w.load(Ordering::Acquire).count_ones())
            .sum()
    }

    /// The owned slots, in order.
    pub fn slots(&self) -> Vec<u16> {
        (0..SLOTS).filter(|&s| self.owns(s)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_set_and_replace() {
        let g = SlotGate::from_ranges(&[(0, 5460), (7000, 7000)]);
        assert!(g.owns(0) && g.owns(5460) && g.owns(7000));
        assert!(!g.owns(5461) && !g.owns(6999) && !g.owns(16383) && !g.owns(20000));
        assert_eq!(g.count(), 5462);
        g.set_ranges(&[(16000, 16383)]);
        assert!(!g.owns(0) && g.owns(16383));
        assert_eq!(g.slots().first(), Some(&16000));
        assert_eq!(SlotGate::all().count(), 16384);
        assert_eq!(SlotGate::none().count(), 0);
        // Shared between threads.
        let g = std::sync::Arc::new(SlotGate::none());
        let h = {
            let g = g.clone();
            std::thread::spawn(move || g.set_ranges(&[(1, 1)]))
        };
        h.join().unwrap();
        assert!(g.owns(1));
    }
}

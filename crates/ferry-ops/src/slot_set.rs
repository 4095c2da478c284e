//! [`SlotSet`]: a set of cluster slots as a 16384-bit map, with range
//! input and output (`0-5460,5462`).

use std::fmt;

use crate::slot::SLOTS;

const WORDS: usize = SLOTS as usize / 64;

/// A set of cluster slots (0..=16383).
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct SlotSet {
    bits: [u64; WORDS],
}

impl Default for SlotSet {
    fn default() -> SlotSet {
        SlotSet { bits: [0; WORDS] }
    }
}

impl SlotSet {
    /// The empty set.
    pub fn new() -> SlotSet {
        SlotSet::default()
    }

    /// The slots of inclusive `ranges` (slots past 16383 are ignored).
    pub fn from_ranges(ranges: &[(u16, u16)]) -> SlotSet {
        let mut s = SlotSet::new();
        for &(lo, hi) in ranges {
            for slot in lo..=hi.min(SLOTS - 1) {
                s.insert(slot);
            }
        }
        s
    }

    /// Adds `slot` (ignored past 16383).
    pub fn insert(&mut self, slot: u16) {
        if slot < SLOTS {
            self.bits[slot as usize / 64] |= 1 << (slot % 64);
        }
    }

    /// Removes `slot`.
    pub fn remove(&mut self, slot: u16) {
        if slot < SLOTS {
            self.bits[slot as usize / 64] &= !(1 << (slot % 64));
        }
    }

    /// Whether `slot` is in the set.
    pub fn contains(&self, slot: u16) -> bool {
        slot < SLOTS && self.bits[slot as usize / 64] & (1 << (slot % 64)) != 0
    }

    /// Number of slots.
    pub fn len(&self) -> usize {
        self.bits.iter().map(|w| w.count_ones() as usize).sum()
    }

    /// No slot.
    pub fn is_empty(&self) -> bool {
        self.bits.iter().all(|w| *w == 0)
    }

    /// The lowest slot.
    pub fn first(&self) -> Option<u16> {
        self.iter().next()
    }

    /// Adds every slot of `other`.
    pub fn union_with(&mut self, other: &SlotSet) {
        for (a, b) in self.bits.iter_mut().zip(other.bits.iter()) {
            *a |= b;
        }
    }

    /// The slots of `self` not in `other`.
    pub fn minus(&self, other: &SlotSet) -> SlotSet {
        let mut out = self.clone();
        for (a, b) in out.bits.iter_mut().zip(other.bits.iter()) {
            *a &= !b;
        }
        out
    }

    /// The slots in both.
    pub fn intersection(&self, other: &SlotSet) -> SlotSet {
        let mut out = self.clone();
        for (a, b) in out.bits.iter_mut().zip(other.bits.iter()) {
            *a &= b;
        }
        out
    }

    /// Every slot, ascending.
    pub fn iter(&self) -> impl Iterator<Item = u16> + '_ {
        self.bits.iter().enumerate().flat_map(|(i, &w)| {
            let base = (i * 64) as u16;
            (0..64u16)
                .take_while(move |b| w >> b != 0)
                .filter(move |b| w & (1 << b) != 0)
                .map(move |b| base + b)
        })
    }

    /// Inclusive ranges, ascending.
    pub fn ranges(&self) -> Vec<(u16, u16)> {
        let mut out: Vec<(u16, u16)> = Vec::new();
        for s in self.iter() {
            match out.last_mut() {
                Some((_, hi)) if *hi + 1 == s => *hi = s,
                _ => out.push((s, s)),
            }
        }
        out
    }
}

/// `0-5460,5462` (empty set: `-`).
impl fmt::Display for SlotSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ranges = self.ranges();
        if ranges.is_empty() {
            return f.write_str("-");
        }
        for (i, (lo, hi)) in ranges.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            if lo == hi {
                write!(f, "{lo}")?;
            } else {
                write!(f, "{lo}-{hi}")?;
            }
        }
        Ok(())
    }
}

impl fmt::Debug for SlotSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SlotSet({self})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_operations_and_ranges() {
        let mut a = SlotSet::from_ranges(&[(0, 5460), (5462, 5462)]);
        assert_eq!(a.len(), 5462);
        assert_eq!(a.to_string(), "0-5460,5462");
        assert!(a.contains(5462) && !a.contains(5461) && !a.contains(20000));
        a.insert(5461);
        assert_eq!(a.ranges(), [(0, 5462)]);
        a.remove(0);
        assert_eq!(a.first(), Some(1));
        let b = SlotSet::from_ranges(&[(5000, 16383)]);
        assert_eq!(a.minus(&b).to_string(), "1-4999");
        assert_eq!(a.intersection(&b).to_string(), "5000-5462");
        let mut c = SlotSet::new();
        assert!(c.is_empty());
        assert_eq!(c.to_string(), "-");
        c.union_with(&b);
        assert_eq!(c, b);
        assert_eq!(format!("{c:?}"), "SlotSet(5000-16383)");
        assert_eq!(SlotSet::from_ranges(&[(16383, 20000)]).len(), 1);
    }
}

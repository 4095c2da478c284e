//! Which source offset is fully applied.
//!
//! ```text
//! add(offset, copies) -> group id     ops in submission order; equal offsets
//!                                     (a command split per slot, or sent to
//!                                     every master) share one group
//! groups: [ (off 10, 0 left) (off 12, 2 left) (off 15, 1 left) ... ]
//!            ^ popped as soon as it reaches 0 left: applied = 10
//! ```
//!
//! `applied` is the highest offset such that every op with an offset at or
//! below it has been acknowledged by its node. Offsets are expected to be
//! non-decreasing; a smaller one is counted with the previous group so that
//! `applied` never goes backwards.

use std::collections::VecDeque;

/// Outstanding ops per source offset.
#[derive(Debug, Default)]
pub(crate) struct Progress {
    /// (offset, copies not yet acknowledged), oldest first.
    groups: VecDeque<(u64, u32)>,
    /// Group id of `groups[0]`.
    base: u64,
    /// Highest fully acknowledged offset.
    applied: u64,
}

impl Progress {
    /// Registers `copies` ops for `offset`; returns the group id to ack.
    #[inline]
    pub(crate) fn add(&mut self, offset: u64, copies: u32) -> u64 {
        if let Some(back) = self.groups.back_mut()
            && offset <= back.0
        {
            back.1 += copies;
            return self.base + self.groups.len() as u64 - 1;
        }
        if copies == 0 {
            // Nothing to wait for: applied as soon as everything before is.
            if self.groups.is_empty() {
                self.applied = self.applied.max(offset);
                return self.base;
            }
        }
        self.groups.push_back((offset.max(self.applied), copies));
        let id = self.base + self.groups.len() as u64 - 1;
        self.pop_done();
        id
    }

    /// One copy of group `id` is acknowledged.
    #[inline]
    pub(crate) fn ack(&mut self, id: u64) {
        let Some(i) = id.checked_sub(self.base) else {
            return;
        };
        if let Some(group) = self.groups.get_mut(i as usize) {
            group.1 = group.1.saturating_sub(1);
        }
        self.pop_done();
    }

    fn pop_done(&mut self) {
        while let Some(&(offset, 0)) = self.groups.front() {
            self.applied = self.applied.max(offset);
            self.groups.pop_front();
            self.base += 1;
        }
    }

    /// The highest fully acknowledged offset (0 before any): below the
    /// oldest group still waiting, since ops for an offset whose earlier
    /// ops were all acknowledged may still be added (the caller also bounds
    /// it by the offsets known to be completely submitted).
    pub(crate) fn applied(&self) -> u64 {
        match self.groups.front() {
            Some(&(offset, _)) => self.applied.min(offset.saturating_sub(1)),
            None => self.applied,
        }
    }

    /// Whether nothing is outstanding.
    pub(crate) fn is_idle(&self) -> bool {
        self.groups.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::Progress;

    #[test]
    fn applied_waits_for_the_oldest_group() {
        let mut p = Progress::default();
        let a = p.add(10, 1);
        let b = p.add(12, 2);
        let b2 = p.add(12, 1);
        assert_eq!(b, b2);
        let c = p.add(15, 1);
        assert_eq!(p.applied(), 0);
        p.ack(c);
        p.ack(b);
        assert_eq!(p.applied(), 0);
        p.ack(a);
        assert_eq!(p.applied(), 10);
        p.ack(b);
        assert_eq!(p.applied(), 10);
        p.ack(b);
        assert_eq!(p.applied(), 15);
        assert!(p.is_idle());
        // More ops for an offset already acknowledged: not applied until
        // they are.
        let e = p.add(15, 1);
        assert_eq!(p.applied(), 14);
        p.ack(e);
        assert_eq!(p.applied(), 15);
        // A smaller offset never moves applied backwards once acknowledged.
        let d = p.add(3, 1);
        p.ack(d);
        assert_eq!(p.applied(), 15);
        // Stale acks are ignored.
        p.ack(a);
        assert_eq!(p.applied(), 15);
    }
}

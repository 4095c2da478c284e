//! Checkpoint mode's open groups: the ops of each slot collected during a
//! loop turn, sealed into one transaction per slot at its end.
//!
//! ```text
//! at:   [0, 0, 2, 0, 1, ...]        per slot: 1 + its group's place in `list`
//! list: [(4, g4), (2, g2)]          the groups, in the order they opened
//! ```
//!
//! A slot's group is found by index (no hashing per op), and sealing walks
//! the list once, in the order the groups opened (no collecting and
//! sorting of the slots per turn); groups that cannot be sealed yet stay,
//! in order.

use super::entry::TxnOps;

/// Ops of one slot collected during a loop turn (checkpoint mode).
#[derive(Debug, Default)]
pub(super) struct OpenGroup {
    /// Standalone target: the db its first op runs in.
    pub(super) db: u64,
    /// Its ops and their progress groups.
    pub(super) ops: TxnOps,
    /// Their encoded length.
    pub(super) bytes: usize,
    /// It holds a source transaction of several ops (`Cmd::Group`): it is
    /// committed as one transaction even when its ops are replay-safe.
    pub(super) atomic: bool,
}

/// The open groups, at most one per slot.
#[derive(Debug, Default)]
pub(super) struct OpenGroups {
    /// The groups and their slots, in the order they opened.
    list: Vec<(u16, OpenGroup)>,
    /// Per slot: 1 + the index of its group in `list`, 0 for none (empty
    /// until the first group opens).
    at: Vec<u32>,
}

impl OpenGroups {
    /// No group is open.
    pub(super) fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    /// The open group of `slot`; opened with `open()` if it has none.
    pub(super) fn get_or_open(
        &mut self,
        slot: u16,
        open: impl FnOnce() -> OpenGroup,
    ) -> &mut OpenGroup {
        let s = usize::from(slot);
        if s >= self.at.len() {
            self.at
                .resize((s + 1).max(usize::from(ferry_ops::SLOTS)), 0);
        }
        let k = match self.at[s] {
            0 => {
                self.list.push((slot, open()));
                self.at[s] = u32::try_from(self.list.len()).unwrap_or(u32::MAX);
                self.list.len() - 1
            }
            n => n as usize - 1,
        };
        &mut self.list[k].1
    }

    /// Moves every group whose slot `ready` accepts to `out`, in the order
    /// they opened; the others stay open, in the same order.
    pub(super) fn take_ready(
        &mut self,
        mut ready: impl FnMut(u16) -> bool,
        out: &mut Vec<(u16, OpenGroup)>,
    ) {
        let mut keep = 0;
        for k in 0..self.list.len() {
            let slot = self.list[k].0;
            if ready(slot) {
                self.at[usize::from(slot)] = 0;
                out.push(std::mem::take(&mut self.list[k]));
            } else {
                self.list.swap(keep, k);
                keep += 1;
                self.at[usize::from(slot)] = u32::try_from(keep).unwrap_or(u32::MAX);
            }
        }
        self.list.truncate(keep);
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;
    use crate::config::Op;

    fn add(open: &mut OpenGroups, slot: u16, offset: u64) {
        let op = Op::slot(
            vec![Bytes::from_static(b"INCR"), Bytes::from_static(b"k")],
            slot,
            offset,
        );
        let g = open.get_or_open(slot, || OpenGroup {
            db: offset,
            ..OpenGroup::default()
        });
        g.ops.push((op, offset, 0));
        g.bytes += 1;
    }

    /// (slot, offsets of its ops) of `groups`.
    fn show(groups: &[(u16, OpenGroup)]) -> Vec<(u16, Vec<u64>)> {
        groups
            .iter()
            .map(|(s, g)| (*s, g.ops.iter().map(|(o, _, _)| o.offset).collect()))
            .collect()
    }

    #[test]
    fn groups_gather_per_slot_and_seal_in_opening_order_keeping_the_rest() {
        let mut open = OpenGroups::default();
        assert!(open.is_empty());
        for (slot, offset) in [(9, 1), (3, 2), (9, 3), (16383, 4), (0, 5), (3, 6)] {
            add(&mut open, slot, offset);
        }
        let mut out = Vec::new();
        open.take_ready(|s| s == 3 || s == 0, &mut out);
        assert_eq!(show(&out), [(3, vec![2, 6]), (0, vec![5])]);
        // The first op's db stays the group's.
        assert_eq!(out[0].1.db, 2);
        // Kept in order, found again by slot; a sealed slot opens anew.
        add(&mut open, 16383, 7);
        add(&mut open, 3, 8);
        add(&mut open, 9, 9);
        out.clear();
        open.take_ready(|_| true, &mut out);
        assert_eq!(
            show(&out),
            [(9, vec![1, 3, 9]), (16383, vec![4, 7]), (3, vec![8])]
        );
        assert!(open.is_empty());
        out.clear();
        open.take_ready(|_| true, &mut out);
        assert!(out.is_empty());
        // Past the slots (not produced by `key_slot`): still no panic.
        add(&mut open, u16::MAX, 10);
        open.take_ready(|_| true, &mut out);
        assert_eq!(show(&out), [(u16::MAX, vec![10])]);
    }
}

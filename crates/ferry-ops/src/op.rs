//! [`Op`]: one write for the target, the unit the translator produces and
//! the cluster writer sends.

use bytes::Bytes;

/// One write for the cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Op {
    /// The command and its arguments.
    pub args: Vec<Bytes>,
    /// The slot of its keys (all in one slot: split first); `None` sends it
    /// to every master (`FLUSHALL`, `FUNCTION LOAD`, ...).
    pub slot: Option<u16>,
    /// The source replication offset of the command it came from (several
    /// ops may share one). Non-decreasing across submits.
    pub offset: u64,
}

impl Op {
    /// An op for one slot.
    pub fn slot(args: Vec<Bytes>, slot: u16, offset: u64) -> Op {
        Op {
            args,
            slot: Some(slot),
            offset,
        }
    }

    /// An op for every master.
    pub fn all_masters(args: Vec<Bytes>, offset: u64) -> Op {
        Op {
            args,
            slot: None,
            offset,
        }
    }
}

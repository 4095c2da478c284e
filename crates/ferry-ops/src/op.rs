//! [`Op`]: one write for the target, the unit the translator produces and
//! the cluster writer sends.

#[cfg(test)]
use bytes::Bytes;

/// A command's arguments: up to three held inline (`SET key value`, `DEL
/// key`, ... need no allocation of their own), more on the heap. An op is
/// built on the translator's thread and dropped on the writer's, so a
/// heap `Vec` per op is a cross-thread allocation each time. The same type
/// as the stream decoder's ([`ferry_resp::Args`]): a replicated command's
/// arguments become its op's as they are.
pub use ferry_resp::Args;

/// One write for the cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Op {
    /// The command and its arguments.
    pub args: Args,
    /// The slot of its keys (all in one slot: split first); `None` sends it
    /// to every master (`FLUSHALL`, `FUNCTION LOAD`, ...).
    pub slot: Option<u16>,
    /// The source replication offset of the command it came from (several
    /// ops may share one). Non-decreasing across submits.
    pub offset: u64,
    /// An error reply that means "already done" for this op (counted by
    /// the writer, not an error); [`Tolerate::Nothing`] for almost all.
    pub tolerate: Tolerate,
}

/// An error reply an op may get that the writer counts instead of
/// stopping on: the op is a second copy of a command another pipeline
/// has already applied, and the reply says its effect is in place.
///
/// Only the translator sets it, only where such copies are expected
/// (every-master commands of a cluster source, which a client runs on
/// each source master, so each shard's stream carries one copy).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum Tolerate {
    /// Every error reply is an error.
    #[default]
    Nothing,
    /// `FUNCTION DELETE <library>` answered `ERR Library not found`: the
    /// library is already gone (another shard's copy deleted it), which is
    /// what the command wants.
    LibraryNotFound,
}

impl Tolerate {
    /// Whether the error reply `message` (without the leading `-`) is the
    /// tolerated one.
    pub fn accepts(self, message: &[u8]) -> bool {
        match self {
            Tolerate::Nothing => false,
            // The exact reply of Redis and Valkey (7.0+); nothing else of
            // FUNCTION DELETE's replies (syntax, ACL, a replica) passes.
            Tolerate::LibraryNotFound => message == b"ERR Library not found",
        }
    }

    /// The name of its counter in `/status` and of its log line.
    pub fn as_str(self) -> &'static str {
        match self {
            Tolerate::Nothing => "none",
            Tolerate::LibraryNotFound => "function_delete_absent",
        }
    }
}

impl Op {
    /// An op for one slot.
    pub fn slot(args: impl Into<Args>, slot: u16, offset: u64) -> Op {
        Op {
            args: args.into(),
            slot: Some(slot),
            offset,
            tolerate: Tolerate::Nothing,
        }
    }

    /// An op for every master.
    pub fn all_masters(args: impl Into<Args>, offset: u64) -> Op {
        Op {
            args: args.into(),
            slot: None,
            offset,
            tolerate: Tolerate::Nothing,
        }
    }

    /// The op, counting `tolerate`'s reply instead of failing on it.
    pub fn tolerating(mut self, tolerate: Tolerate) -> Op {
        self.tolerate = tolerate;
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_exact_reply_is_tolerated() {
        let t = Tolerate::LibraryNotFound;
        assert!(t.accepts(b"ERR Library not found"));
        assert!(!t.accepts(b"ERR unknown subcommand 'DELETE'"));
        assert!(!t.accepts(b"NOPERM this user has no permissions"));
        assert!(!t.accepts(b"READONLY You can't write against a read only replica."));
        assert!(!t.accepts(b"ERR Library not found in this universe"));
        assert!(!Tolerate::Nothing.accepts(b"ERR Library not found"));
        assert_eq!(Tolerate::default(), Tolerate::Nothing);
    }

    /// An op is moved several times per command (route, op, action,
    /// writer queue): up to 128 bytes a move is inline stores, past it a
    /// `memcpy` call each time (four inline arguments made an op 152 bytes:
    /// +640 instructions per streamed command, D83).
    #[test]
    fn ops_stay_small() {
        if size_of::<usize>() == 8 {
            assert!(size_of::<Args>() <= 104, "{}", size_of::<Args>());
            assert!(size_of::<Op>() <= 120, "{}", size_of::<Op>());
        }
    }

    #[test]
    fn an_op_is_built_tolerating_nothing() {
        let op = Op::all_masters(vec![Bytes::from_static(b"FUNCTION")], 7);
        assert_eq!(op.tolerate, Tolerate::Nothing);
        let op = op.tolerating(Tolerate::LibraryNotFound);
        assert_eq!(op.tolerate, Tolerate::LibraryNotFound);
        assert_eq!(op.tolerate.as_str(), "function_delete_absent");
    }
}

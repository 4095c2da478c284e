//! The engine's plain data: what waits in a node queue or a slot hold
//! ([`Entry`], typed by [`Body`]), per-node state, holds, and the reply
//! classification the state machine uses.

use std::collections::VecDeque;
use std::time::Instant;

use bytes::Bytes;
use ferry_ops::{ErrorKind, Tolerate};

use crate::checkpoint::KeyCache;
use crate::config::Op;

/// `*1\r\n$6\r\nASKING\r\n`.
pub(super) const ASKING: &[u8] = b"*1\r\n$6\r\nASKING\r\n";

/// One unit on its way to one node: a user op, a transaction, or a `WAIT`.
#[derive(Debug, Clone)]
pub(super) struct Entry {
    /// Submission order (0 for `WAIT`); holds resend by it.
    pub(super) seq: u64,
    /// The slot (`None`: an op or barrier for every master, or a `WAIT`).
    pub(super) slot: Option<u16>,
    /// The bytes written (for a `Txn`: `MULTI ... EXEC`).
    pub(super) wire: Bytes,
    /// Send `ASKING` first (after `-ASK`).
    pub(super) asking: bool,
    /// The `ASKING` reply has been consumed.
    pub(super) asking_done: bool,
    /// Failed attempts (redirects included).
    pub(super) attempts: u32,
    /// When the first failed attempt was answered.
    pub(super) first_failure: Option<Instant>,
    /// What it is.
    pub(super) body: Body,
}

/// The kind of an [`Entry`], with the state only that kind has.
#[derive(Debug, Clone)]
pub(super) enum Body {
    /// A user op, sent as is (its arguments live only in the wire);
    /// acknowledges `group` once. `select`: the db of a `SELECT` op, noted
    /// when acknowledged (standalone target).
    /// `tolerate`/`offset`: the op's [`ferry_ops::Tolerate`] and offset
    /// (for counting and logging the one refusal it tolerates).
    Op {
        group: u64,
        select: Option<u64>,
        tolerate: Tolerate,
        offset: u64,
    },
    /// `MULTI, ops..., SET <key> <value>, EXEC` (boxed: a transaction is
    /// one entry per group, and an unboxed state made every plain entry,
    /// moved several times per op, 136 bytes instead of 112).
    Txn(Box<TxnState>),
    /// `WAIT 1 <ms>` after committed transactions.
    Wait,
}

/// A transaction's ops, their progress groups and encoded lengths (measured
/// once, when the op is taken; `u32::MAX` past that, which only costs a
/// second measure when encoding). A plain `Vec` (24 bytes, cheap to move
/// between the open groups and the box) taken from and given back to
/// [`SpareTxns`], so that a stream's transactions allocate none.
pub(super) type TxnOps = Vec<(Op, u64, u32)>;

/// The parts of a transaction.
#[derive(Debug, Clone)]
pub(super) struct Txn {
    /// The ops inside (for error messages) and their progress groups,
    /// acknowledged on commit.
    pub(super) ops: TxnOps,
    /// The checkpoint or barrier key set inside.
    pub(super) key: TxnKey,
    /// The offset written into it.
    pub(super) offset: u64,
    /// Standalone target: `SELECT`s ferry added around the ops (the ops'
    /// db before them, db 0 for the key): replies before the first op.
    pub(super) lead: u32,
    /// All `SELECT`s ferry added (extra replies of a full attempt).
    pub(super) extra: u32,
}

/// The key a transaction sets, named by its slot: its bytes are built
/// only where they are needed (a probe, an error message), not kept per
/// transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum TxnKey {
    /// The checkpoint key of this slot.
    Ckpt(u16),
    /// The barrier key of this slot.
    Barrier(u16),
}

impl TxnKey {
    /// The slot the key is for.
    pub(super) fn slot(self) -> u16 {
        match self {
            TxnKey::Ckpt(slot) | TxnKey::Barrier(slot) => slot,
        }
    }

    /// The key's bytes in the namespace of `keys`.
    pub(super) fn bytes(self, keys: &KeyCache) -> Bytes {
        match self {
            TxnKey::Ckpt(slot) => keys.ckpt_key(slot),
            TxnKey::Barrier(slot) => Bytes::from(keys.barrier_key(slot)),
        }
    }
}

/// A transaction entry's progress on the current attempt.
#[derive(Debug, Clone)]
pub(super) struct TxnState {
    pub(super) parts: Txn,
    /// Replies consumed in the current attempt.
    pub(super) replies: u32,
    /// The first error reply while queueing.
    pub(super) queue_error: Option<Bytes>,
    /// Written and not known to have failed: a resend needs a probe first.
    pub(super) written: bool,
    /// A probe `GET` is in flight on this connection generation.
    pub(super) probe: Option<u64>,
}

impl TxnState {
    /// Replies a full attempt consumes: `MULTI`, the ops, `SET`, `EXEC`.
    pub(super) fn expected_replies(&self) -> u32 {
        u32::try_from(self.parts.ops.len() + 3)
            .unwrap_or(u32::MAX)
            .saturating_add(self.parts.extra)
    }
}

impl Entry {
    /// An op entry: `wire` is the op's encoded command.
    pub(super) fn op(seq: u64, group: u64, op: &Op, wire: Bytes) -> Entry {
        let select = select_db(&op.args);
        let body = Body::Op {
            group,
            select,
            tolerate: op.tolerate,
            offset: op.offset,
        };
        Entry::new(seq, op.slot, wire, body)
    }

    /// A transaction entry for `slot`, in a box from `spare` if it has one.
    pub(super) fn txn(
        seq: u64,
        slot: Option<u16>,
        parts: Txn,
        wire: Bytes,
        spare: &mut SpareTxns,
    ) -> Entry {
        let state = TxnState {
            parts,
            replies: 0,
            queue_error: None,
            written: false,
            probe: None,
        };
        let body = match spare.boxes.pop() {
            Some(mut b) => {
                *b = state;
                b
            }
            None => Box::new(state),
        };
        Entry::new(seq, slot, wire, Body::Txn(body))
    }

    /// A `WAIT` entry.
    pub(super) fn wait(wire: Bytes) -> Entry {
        Entry::new(0, None, wire, Body::Wait)
    }

    fn new(seq: u64, slot: Option<u16>, wire: Bytes, body: Body) -> Entry {
        Entry {
            seq,
            slot,
            wire,
            asking: false,
            asking_done: false,
            attempts: 0,
            first_failure: None,
            body,
        }
    }

    /// Bytes it occupies in a node queue.
    pub(super) fn bytes(&self) -> usize {
        self.wire.len() + if self.asking { ASKING.len() } else { 0 }
    }

    /// The transaction state, for a `Txn` entry.
    pub(super) fn txn_state(&mut self) -> Option<&mut TxnState> {
        match &mut self.body {
            Body::Txn(t) => Some(t.as_mut()),
            _ => None,
        }
    }

    /// A probe of it is in flight on connection generation `generation`.
    pub(super) fn probing_on(&self, generation: u64) -> bool {
        matches!(&self.body, Body::Txn(t) if t.probe == Some(generation))
    }

    /// (command, key) for an error message: the op, or a transaction's
    /// first op.
    pub(super) fn describe(&self) -> (String, String) {
        let args = match &self.body {
            Body::Op { .. } => Some(first_args(&self.wire)),
            Body::Txn(t) => t.parts.ops.first().map(|(o, _, _)| o.args.to_vec()),
            Body::Wait => None,
        };
        match args {
            Some(a) => (show(a.first()), show(a.get(1))),
            None => ("WAIT".to_owned(), "-".to_owned()),
        }
    }
}

/// Boxes of finished transactions, kept for the next ones: a turn
/// allocates its transactions' boxes together and frees them together
/// when their replies come, more than malloc's per-thread cache holds, so
/// each box went the allocator's slow path twice (≈ 400 instructions per
/// transaction; `docs/decisions.md` D81). Also their op lists, emptied,
/// for the next open groups (`docs/decisions.md` D87).
#[derive(Debug, Default)]
pub(super) struct SpareTxns {
    // The boxes themselves are what is kept: each becomes an entry's body.
    #[allow(clippy::vec_box)]
    boxes: Vec<Box<TxnState>>,
    /// Emptied op lists, each with room for at most
    /// [`SpareTxns::OPS_MAX`] ops.
    ops: Vec<TxnOps>,
    /// The room of the lists in `ops`, in ops (at most
    /// [`SpareTxns::ROOM_MAX`]).
    room: usize,
}

impl SpareTxns {
    /// Most boxes kept (≈ 130 bytes each): one transaction per slot is in
    /// flight at a time, so with as many as there are slots none is
    /// allocated once the busiest turn has been answered.
    const MAX: usize = ferry_ops::SLOTS as usize;
    /// Largest op list kept (in ops, ≈ 136 bytes each): a bigger one is
    /// freed rather than pinned.
    const OPS_MAX: usize = 16;
    /// Most room kept in all lists together (in ops: ≈ 9 MB, 16 k lists
    /// of 4).
    const ROOM_MAX: usize = 64 * 1024;
    /// The room of a new list (most transactions hold one to four ops;
    /// growing a list costs a reallocation, ≈ 1.5 k instructions).
    const OPS_NEW: usize = 4;

    /// Keeps `entry`'s box (emptied: it pins no op arguments) and its op
    /// list (emptied) if it is a transaction and there is room; drops the
    /// rest.
    pub(super) fn recycle(&mut self, entry: Entry) {
        let Body::Txn(mut b) = entry.body else {
            return;
        };
        self.keep_ops(std::mem::take(&mut b.parts.ops));
        if self.boxes.len() < Self::MAX {
            b.queue_error = None;
            self.boxes.push(b);
        }
    }

    /// Keeps `ops` (emptied) for the next open groups if there is room.
    pub(super) fn keep_ops(&mut self, mut ops: TxnOps) {
        let room = ops.capacity();
        if room > 0 && room <= Self::OPS_MAX && self.room + room <= Self::ROOM_MAX {
            ops.clear();
            self.room += room;
            self.ops.push(ops);
        }
    }

    /// An empty op list: a kept one if any.
    pub(super) fn ops(&mut self) -> TxnOps {
        match self.ops.pop() {
            Some(ops) => {
                self.room -= ops.capacity();
                ops
            }
            None => Vec::with_capacity(Self::OPS_NEW),
        }
    }
}

/// Where a held entry goes when its hold is released.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Target {
    /// Wherever the slot map says.
    Map,
    /// `ASKING` + the op on this node, once.
    Ask(usize),
}

/// Entries of one slot waiting to be sent again, in order.
#[derive(Debug)]
pub(super) struct Hold {
    /// Answered with a redirect or a retryable error; resent by `seq`.
    pub(super) resend: Vec<(Entry, Target)>,
    /// Submitted while the hold existed; sent after `resend`.
    pub(super) queued: VecDeque<Entry>,
    /// Not released before this.
    pub(super) not_before: Instant,
    /// The last refusal was a retryable error (`CLUSTERDOWN`, `TRYAGAIN`,
    /// ...): the oldest entry goes out alone first, the rest once it is
    /// answered (see `Core::release`).
    pub(super) pilot: bool,
}

/// One master: its queue of entries in flight, in order.
#[derive(Debug)]
pub(super) struct NodeState {
    pub(super) addr: String,
    pub(super) host: String,
    /// A connection is up (the driver holds it).
    pub(super) connected: bool,
    /// Connection generation: events of older ones are ignored.
    pub(super) generation: u64,
    pub(super) connecting: bool,
    pub(super) queue: VecDeque<Entry>,
    /// Entries of `queue` written on the current connection.
    pub(super) sent: usize,
    /// Bytes of the entries in `queue`.
    pub(super) bytes: usize,
    /// When the oldest unanswered write was sent or the last reply came.
    pub(super) waiting_since: Option<Instant>,
    /// Unreachable since (connection lost or never made).
    pub(super) lost_at: Option<Instant>,
    /// Barrier read at connect time (`skip_applied`).
    pub(super) barrier: u64,
    /// Probes in flight, on connection generation `.1`.
    pub(super) probes: (usize, u64),
    /// Committed transactions no replica is known to have yet
    /// (`wait_replicas`), oldest first.
    pub(super) unconfirmed: Vec<Entry>,
    /// A `WAIT` entry is in `queue`.
    pub(super) wait_queued: bool,
}

impl NodeState {
    pub(super) fn new(addr: String, host: String) -> NodeState {
        NodeState {
            addr,
            host,
            connected: false,
            generation: 0,
            connecting: false,
            queue: VecDeque::new(),
            sent: 0,
            bytes: 0,
            waiting_since: None,
            lost_at: None,
            barrier: 0,
            probes: (0, 0),
            unconfirmed: Vec::new(),
            wait_queued: false,
        }
    }

    /// Probes in flight on the current connection.
    pub(super) fn probing(&self) -> usize {
        if self.probes.1 == self.generation {
            self.probes.0
        } else {
            0
        }
    }
}

/// The db of a `SELECT <db>` command, `None` for any other.
fn select_db(args: &[Bytes]) -> Option<u64> {
    match args {
        [name, db] if name.eq_ignore_ascii_case(b"SELECT") => {
            std::str::from_utf8(db).ok()?.parse().ok()
        }
        _ => None,
    }
}

/// The first two arguments of an encoded command (`*<n>` of `$<len>`
/// bulk strings), for an error message; fewer if `wire` is cut short.
pub(super) fn first_args(wire: &[u8]) -> Vec<Bytes> {
    fn line(b: &[u8], pos: usize) -> Option<(usize, usize)> {
        let end = pos + b.get(pos..)?.windows(2).position(|w| w == b"\r\n")?;
        let n = std::str::from_utf8(b.get(pos + 1..end)?)
            .ok()?
            .parse()
            .ok()?;
        Some((n, end + 2))
    }
    let mut out = Vec::new();
    let Some((count, mut pos)) = line(wire, 0).filter(|_| wire.first() == Some(&b'*')) else {
        return out;
    };
    while out.len() < count.min(2) {
        let Some((len, start)) = line(wire, pos).filter(|_| wire.get(pos) == Some(&b'$')) else {
            break;
        };
        let Some(arg) = wire.get(start..start + len) else {
            break;
        };
        out.push(Bytes::copy_from_slice(arg));
        pos = start + len + 2;
    }
    out
}

/// A command argument for an error message: escaped, cut at 64 bytes; `-`
/// when absent.
pub(super) fn show(b: Option<&Bytes>) -> String {
    b.map_or_else(
        || "-".to_owned(),
        |b| {
            let mut s = b[..b.len().min(64)].escape_ascii().to_string();
            if b.len() > 64 {
                s.push_str(&format!("...({} bytes)", b.len()));
            }
            s
        },
    )
}

/// An error reply that says the node is not (or no longer) a master able to
/// take this: `WAIT` on a replica, or `UNBLOCKED` (a blocked command of a
/// master that turned into a replica; the server closes the connection
/// after it).
pub(super) fn demoted(message: &[u8]) -> bool {
    let m = message.strip_prefix(b"-").unwrap_or(message);
    m.starts_with(b"UNBLOCKED") || m.starts_with(b"ERR WAIT cannot be used with replica")
}

/// An error reply a master gives while it is demoted, fails or restarts
/// (redirects, `READONLY`, `LOADING`, `CLUSTERDOWN`, `MASTERDOWN`,
/// `TRYAGAIN`, `BUSY`, [`demoted`]): a topology change to follow, never
/// fatal by itself (retries stay bounded by `retry_for`).
pub(super) fn topology_changing(message: &[u8]) -> bool {
    let kind = ErrorKind::classify(message);
    kind.is_redirect() || kind.is_transient() || demoted(message)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_args_reads_name_and_key_from_the_wire() {
        let args = first_args(b"*3\r\n$3\r\nSET\r\n$5\r\nk:\r\nx\r\n$1\r\nv\r\n");
        assert_eq!(
            args,
            [Bytes::from_static(b"SET"), Bytes::from_static(b"k:\r\nx")]
        );
        assert_eq!(
            first_args(b"*1\r\n$4\r\nPING\r\n"),
            [Bytes::from_static(b"PING")]
        );
        // Cut short or not a command: what can be read, never a panic.
        assert_eq!(
            first_args(b"*2\r\n$3\r\nDEL\r\n$9\r\nab"),
            [Bytes::from_static(b"DEL")]
        );
        assert!(first_args(b"+OK\r\n").is_empty());
        assert!(first_args(b"*x\r\n").is_empty());
        assert!(first_args(b"").is_empty());
    }

    #[test]
    fn entries_stay_small() {
        // Moved several times per op (route, push, queue, reply): past 128
        // bytes each move became a `memcpy` call (a boxed `TxnState` keeps
        // a plain entry at 112).
        assert!(size_of::<Entry>() <= 112, "{}", size_of::<Entry>());
    }

    #[test]
    fn a_recycled_transaction_box_pins_nothing_and_is_reused() {
        let op = Op::slot(
            vec![Bytes::from_static(b"SET"), Bytes::from(vec![b'k'; 100])],
            7,
            42,
        );
        let parts = || Txn {
            ops: vec![(op.clone(), 1, 0)],
            key: TxnKey::Ckpt(7),
            offset: 42,
            lead: 0,
            extra: 0,
        };
        let mut spare = SpareTxns::default();
        let e = Entry::txn(1, Some(7), parts(), Bytes::from_static(b"w"), &mut spare);
        let Body::Txn(t) = &e.body else {
            panic!("a txn")
        };
        let first: *const TxnState = &**t;
        spare.recycle(e);
        let Some(kept) = spare.boxes.last() else {
            panic!("kept")
        };
        assert!(kept.parts.ops.is_empty() && kept.parts.ops.capacity() == 0);
        assert!(kept.queue_error.is_none());
        // The next transaction gets the same box, filled anew.
        let e = Entry::txn(2, Some(7), parts(), Bytes::from_static(b"w"), &mut spare);
        let Body::Txn(t) = &e.body else {
            panic!("a txn")
        };
        assert!(std::ptr::eq(first, &**t));
        assert_eq!(t.parts.ops.len(), 1);
        assert!(spare.boxes.is_empty());
        // Anything else is dropped, not kept.
        spare.recycle(Entry::wait(Bytes::from_static(b"w")));
        assert!(spare.boxes.is_empty());
    }

    #[test]
    fn a_recycled_op_list_is_kept_emptied_unless_big() {
        let op = Op::slot(
            vec![Bytes::from_static(b"INCR"), Bytes::from_static(b"k")],
            7,
            1,
        );
        let txn = |n: usize, spare: &mut SpareTxns| {
            let mut ops = spare.ops();
            ops.extend((0..n).map(|g| (op.clone(), g as u64, 0)));
            let parts = Txn {
                ops,
                key: TxnKey::Ckpt(7),
                offset: 1,
                lead: 0,
                extra: 0,
            };
            Entry::txn(1, Some(7), parts, Bytes::from_static(b"w"), spare)
        };
        let mut spare = SpareTxns::default();
        // Kept, emptied, and handed to the next list.
        let e = txn(3, &mut spare);
        spare.recycle(e);
        assert_eq!((spare.ops.len(), spare.boxes.len()), (1, 1));
        let room = spare.room;
        assert!(room >= 3);
        let kept = spare.ops();
        assert!(kept.is_empty() && kept.capacity() == room);
        assert_eq!(spare.room, 0);
        // None kept: a new one with a little room.
        assert_eq!(spare.ops().capacity(), SpareTxns::OPS_NEW);
        // Past the bound: freed, not pinned (the box is kept).
        let e = txn(SpareTxns::OPS_MAX + 1, &mut spare);
        spare.recycle(e);
        assert!(spare.ops.is_empty());
        assert_eq!((spare.room, spare.boxes.len()), (0, 1));
        // The room kept in all lists is bounded.
        for _ in 0..SpareTxns::ROOM_MAX {
            let parts = Txn {
                ops: Vec::with_capacity(SpareTxns::OPS_MAX),
                key: TxnKey::Ckpt(7),
                offset: 1,
                lead: 0,
                extra: 0,
            };
            let e = Entry::txn(1, Some(7), parts, Bytes::new(), &mut spare);
            spare.recycle(e);
        }
        assert!(spare.room <= SpareTxns::ROOM_MAX);
        assert_eq!(
            spare.room,
            spare.ops.iter().map(Vec::capacity).sum::<usize>()
        );
    }

    #[test]
    fn select_db_only_for_select() {
        let a = |v: &[&'static [u8]]| v.iter().map(|b| Bytes::from_static(b)).collect::<Vec<_>>();
        assert_eq!(select_db(&a(&[b"select", b"3"])), Some(3));
        assert_eq!(select_db(&a(&[b"SET", b"3"])), None);
        assert_eq!(select_db(&a(&[b"SELECT", b"x"])), None);
        assert_eq!(select_db(&a(&[b"SELECT", b"1", b"2"])), None);
    }
}

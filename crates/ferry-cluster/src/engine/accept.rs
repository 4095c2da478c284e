//! Taking ops from the handle: the in-flight bound, plain entries,
//! checkpoint mode's open groups sealed into transactions, barriers.

use std::sync::atomic::Ordering;
use std::time::Instant;

use bytes::{Bytes, BytesMut};
use ferry_resp::put_command;

use super::core::{Core, WIRE_CHUNK};
use super::entry::{Entry, NodeState, Txn, TxnKey, TxnOps};
use super::open::OpenGroup;
use crate::checkpoint;
use crate::config::Op;
use crate::progress::Progress;

impl Core {
    /// One op from the handle.
    pub(crate) fn submit(&mut self, op: Op, now: Instant) {
        self.now = now;
        self.note_offset(op.offset);
        self.take_one(op);
    }

    /// Ops to commit together if they share a slot (checkpoint mode).
    pub(crate) fn submit_group(&mut self, ops: Vec<Op>, now: Instant) {
        self.now = now;
        for op in &ops {
            self.note_offset(op.offset);
        }
        let Some(slot) = ops.first().map(|o| o.slot) else {
            return;
        };
        let one_slot = slot.is_some() && ops.iter().all(|o| o.slot == slot);
        if self.txn_on && one_slot {
            self.take(ops);
        } else {
            if !one_slot {
                self.shared.split_groups.fetch_add(1, Ordering::Relaxed);
            }
            for op in ops {
                self.take_one(op);
            }
        }
    }

    /// The bytes of a transaction's key (a probe, an error message).
    pub(super) fn key_bytes(&self, key: TxnKey) -> Bytes {
        key.bytes(&self.ckpt_keys)
    }

    /// Checkpoint mode on or off for the ops after this.
    pub(crate) fn set_checkpointing(&mut self, on: bool) {
        self.seal(true);
        let on = on && self.config.checkpoint.is_some();
        if on && !self.txn_on {
            // Transactions start from (and leave the connection on) db 0.
            self.rest_on_db0();
        }
        self.txn_on = on;
    }

    /// A new source history: checkpoints read at connect time no longer
    /// apply; progress restarts when idle.
    pub(crate) fn new_history(&mut self, history: String) {
        self.seal(true);
        self.ckpt_keys.set_history(history);
        self.slot_resume.iter_mut().for_each(|c| *c = 0);
        for node in &mut self.nodes {
            node.barrier = 0;
        }
        if self.is_idle() {
            self.progress = Progress::default();
            self.shared.applied.store(0, Ordering::Release);
            self.last_offset = 0;
            self.complete = 0;
        }
    }

    /// Every op with an offset at or below `offset` has been submitted.
    pub(crate) fn mark_complete(&mut self, offset: u64) {
        self.complete = self.complete.max(offset.min(self.last_offset));
    }

    /// A flush: everything before it is taken.
    pub(crate) fn all_taken(&mut self) {
        self.complete = self.last_offset;
    }

    /// An op for `offset` arrived: every lower offset is completely
    /// submitted (ops come in offset order).
    fn note_offset(&mut self, offset: u64) {
        if offset > self.last_offset {
            self.complete = self.complete.max(self.last_offset);
            self.last_offset = offset;
        }
    }

    /// Accepts a unit now if it fits and nothing waits before it, else
    /// queues it.
    fn take(&mut self, unit: Vec<Op>) {
        if self.pending.is_empty() && self.has_room(&unit) {
            self.accept_unit(unit);
        } else {
            self.pending.push_back(unit);
        }
    }

    /// [`Core::take`] for a unit of one op, without allocating the unit
    /// unless it has to wait.
    fn take_one(&mut self, op: Op) {
        // Measured once for the bound and the encoding.
        let len = ferry_resp::command_len(&op.args);
        if self.pending.is_empty() && self.fits(op.slot, len) {
            self.accept_one(op, len, false);
        } else {
            self.pending.push_back(vec![op]);
        }
    }

    /// Accepts the units waiting for room, in order, while they fit.
    pub(crate) fn retry_pending(&mut self, now: Instant) {
        self.now = now;
        while self.pending.front().is_some_and(|u| self.has_room(u)) {
            if let Some(unit) = self.pending.pop_front() {
                self.accept_unit(unit);
            }
        }
    }

    fn accept_unit(&mut self, unit: Vec<Op>) {
        // A source transaction of several ops stays one on the target.
        let atomic = unit.len() > 1;
        for op in unit {
            let len = ferry_resp::command_len(&op.args);
            self.accept_one(op, len, atomic);
        }
    }

    /// `len`: the op's encoded length; `atomic`: part of a source
    /// transaction of several ops.
    fn accept_one(&mut self, op: Op, len: usize, atomic: bool) {
        let before = self.note_select(&op);
        if self.txn_on {
            self.accept_txn(op, len, before, atomic);
        } else {
            self.align_plain(&op);
            self.accept(op, len);
        }
    }

    /// Whether node `i` or slot `slot` already holds `offset` by the
    /// connect-time checkpoints (checkpoint mode with `skip_applied`).
    fn applied_on(&self, i: Option<usize>, slot: Option<u16>, offset: u64) -> bool {
        if !self.txn_on {
            return false;
        }
        // 0 is "no checkpoint".
        let by_slot = slot.is_some_and(|s| {
            let c = self.slot_resume[usize::from(s)];
            c > 0 && offset <= c
        });
        let by_barrier = i
            .and_then(|i| self.nodes.get(i))
            .is_some_and(|n| n.barrier > 0 && offset <= n.barrier);
        by_slot || by_barrier
    }

    /// Checkpoint mode: a slot op joins its slot's open group; an op for
    /// every master becomes one barrier transaction per master.
    /// `len`: the op's encoded length; `db`: a standalone target's db
    /// before `op`.
    fn accept_txn(&mut self, op: Op, len: usize, db: u64, atomic: bool) {
        let Some(slot) = op.slot else {
            return self.accept_barrier(op);
        };
        let node = self.topology.slots.node_for(slot);
        if self.applied_on(node, Some(slot), op.offset) {
            self.shared.skipped.fetch_add(1, Ordering::Relaxed);
            self.progress.add(op.offset, 0);
            return;
        }
        let group = self.progress.add(op.offset, 1);
        let spare = &mut self.spare_txns;
        let g = self.open.get_or_open(slot, || OpenGroup {
            db,
            // Room for a second op without an allocation, if a committed
            // transaction left some.
            ops: spare.ops(),
            bytes: 0,
            atomic: false,
        });
        g.atomic |= atomic;
        g.ops
            .push((op, group, u32::try_from(len).unwrap_or(u32::MAX)));
        g.bytes += len;
        self.open_bytes += len;
    }

    fn accept_barrier(&mut self, op: Op) {
        let serving = self.serving();
        let targets: Vec<(usize, u16)> = (0..self.nodes.len())
            .filter(|&i| serving[i] && !self.applied_on(Some(i), None, op.offset))
            .filter_map(|i| {
                let (lo, _, _) = self.topology.slots.ranges().find(|(_, _, n)| *n == i)?;
                Some((i, lo))
            })
            .collect();
        let skipped = serving.iter().filter(|s| **s).count() - targets.len();
        if skipped > 0 {
            self.shared
                .skipped
                .fetch_add(skipped as u64, Ordering::Relaxed);
        }
        let copies = u32::try_from(targets.len()).unwrap_or(u32::MAX);
        let group = self.progress.add(op.offset, copies);
        let len = ferry_resp::command_len(&op.args);
        let offset = op.offset;
        let pair = (op, group, u32::try_from(len).unwrap_or(u32::MAX));
        for (i, slot) in targets {
            let key = TxnKey::Barrier(slot);
            let dbs = self.db;
            let (wire, lead, extra) =
                self.txn_wire(std::slice::from_ref(&pair), len, key, offset, (dbs, dbs));
            self.seq += 1;
            let parts = Txn {
                ops: vec![pair.clone()],
                key,
                offset,
                lead,
                extra,
            };
            let entry = Entry::txn(self.seq, None, parts, wire, &mut self.spare_txns);
            self.push(i, entry);
        }
    }

    /// Whether `unit` fits under the in-flight bound of where it goes. A
    /// node with nothing in flight always takes one unit, however big.
    fn has_room(&self, unit: &[Op]) -> bool {
        let Some(op) = unit.first() else {
            return true;
        };
        let len: usize = unit.iter().map(|o| ferry_resp::command_len(&o.args)).sum();
        self.fits(op.slot, len)
    }

    /// [`Core::has_room`] for a unit of `len` bytes whose first op is for
    /// `slot`.
    fn fits(&self, slot: Option<u16>, len: usize) -> bool {
        let limit = self.config.max_inflight_bytes;
        let open = self.open_bytes;
        let fits = |n: &NodeState| {
            (n.queue.is_empty() || n.bytes + len <= limit) && (open == 0 || open + len <= limit)
        };
        let held_fits = self.held_bytes == 0 || self.held_bytes + len <= limit;
        match slot {
            Some(slot) if !self.holds.is_empty() && self.holds.contains_key(&slot) => held_fits,
            Some(slot) => match self.topology.slots.node_for(slot) {
                Some(i) => fits(&self.nodes[i]),
                None => held_fits,
            },
            // A barrier: everything before it must be acknowledged, so a
            // redirected or retried op cannot land after a FLUSHALL it
            // preceded at the source.
            None => self.progress.is_idle() && self.holds.is_empty(),
        }
    }

    /// Plain mode: one entry per op (per master for `slot: None`).
    pub(super) fn accept(&mut self, op: Op, len: usize) {
        let targets: Vec<usize> = match op.slot {
            Some(_) => Vec::new(),
            // Every node that serves slots now (a master demoted by a
            // failover stays in `nodes` without slots).
            None => {
                let serving = self.serving();
                (0..self.nodes.len()).filter(|&i| serving[i]).collect()
            }
        };
        if op.slot.is_none() && targets.is_empty() {
            self.progress.add(op.offset, 0);
            return;
        }
        let copies = u32::try_from(targets.len().max(1)).unwrap_or(u32::MAX);
        let group = self.progress.add(op.offset, copies);
        let slot = op.slot;
        let entry = self.op_entry(&op, group, len);
        drop(op);
        match slot {
            Some(slot) => self.route(slot, entry),
            None => {
                for i in targets {
                    self.push(i, entry.clone());
                }
            }
        }
    }

    /// Seals the open group of every slot with no transaction in flight
    /// or held into a `Txn` entry and routes it (`all`: every open group,
    /// when leaving checkpoint mode).
    ///
    /// One transaction per slot at a time: a later group of a slot must not
    /// commit (and checkpoint a higher offset) while an earlier one may
    /// still be refused and retried. Ops arriving meanwhile join the open
    /// group, so a busy slot commits bigger groups.
    pub(super) fn seal(&mut self, all: bool) {
        if self.open.is_empty() {
            return;
        }
        let mut ready = std::mem::take(&mut self.sealing);
        let (inflight, holds) = (&self.inflight, &self.holds);
        self.open.take_ready(
            |s| {
                all || (inflight[usize::from(s)] == 0
                    && (holds.is_empty() || !holds.contains_key(&s)))
            },
            &mut ready,
        );
        let plain =
            self.config.plain_groups && !self.standalone() && self.config.wait_replicas.is_none();
        for (slot, g) in ready.drain(..) {
            self.open_bytes -= g.bytes;
            if plain
                && !g.atomic
                && self
                    .plain_runs
                    .plain(slot, g.ops.iter().map(|(o, _, _)| &o.args[..]))
            {
                self.send_plain(slot, g.ops);
                continue;
            }
            let offset = g.ops.last().map_or(0, |(o, _, _)| o.offset);
            let key = TxnKey::Ckpt(slot);
            let end = if self.standalone() {
                g.ops
                    .iter()
                    .rev()
                    .find_map(|(o, _, _)| super::dbs::select_target(&o.args))
                    .unwrap_or(g.db)
            } else {
                g.db
            };
            let (wire, lead, extra) = self.txn_wire(&g.ops, g.bytes, key, offset, (g.db, end));
            self.seq += 1;
            let parts = Txn {
                ops: g.ops,
                key,
                offset,
                lead,
                extra,
            };
            let entry = Entry::txn(self.seq, Some(slot), parts, wire, &mut self.spare_txns);
            self.route(slot, entry);
        }
        self.sealing = ready;
    }

    /// A sealed group of replay-safe ops (see the `plain` module) as plain
    /// entries of `slot`, in order; each acknowledges its progress group
    /// when answered, as outside checkpoint mode.
    fn send_plain(&mut self, slot: u16, mut ops: TxnOps) {
        for (op, group, len) in ops.drain(..) {
            // Measured when taken: a `u32::MAX` (never exact) only costs a
            // second measure.
            let entry = self.op_entry(&op, group, len as usize);
            self.route(slot, entry);
        }
        self.spare_txns.keep_ops(ops);
    }

    /// `op` as a plain entry of progress group `group`, encoded (`len`
    /// bytes) into the shared wire buffer, grown once if short.
    fn op_entry(&mut self, op: &Op, group: u64, len: usize) -> Entry {
        if self.wire_buf.capacity() < len {
            self.wire_buf = BytesMut::with_capacity(len.max(WIRE_CHUNK));
        }
        ferry_resp::put_command_sized(&mut self.wire_buf, &op.args, len);
        let wire = self.wire_buf.split().freeze();
        self.seq += 1;
        Entry::op(self.seq, group, op, wire)
    }

    /// `MULTI, ops..., SET key <history>:<offset>, EXEC`, and the replies
    /// added before the ops and in all. A standalone target's transaction
    /// starts and ends on db 0, where its key lives: `MULTI, [SELECT
    /// <dbs.0>], ops..., [SELECT 0], SET key …, EXEC` (`dbs`: the ops' db
    /// before and after them; each `SELECT` only when not 0). `ops_len`:
    /// the ops' encoded length. Encoded into the shared wire buffer, grown
    /// once; a checkpoint `SET` from its slot's precomputed start (see
    /// [`checkpoint::KeyCache`]), a barrier's (rare) formatted.
    fn txn_wire(
        &mut self,
        ops: &[(Op, u64, u32)],
        ops_len: usize,
        key: TxnKey,
        offset: u64,
        dbs: (u64, u64),
    ) -> (Bytes, u32, u32) {
        const MULTI: &[u8] = b"*1\r\n$5\r\nMULTI\r\n";
        const EXEC: &[u8] = b"*1\r\n$4\r\nEXEC\r\n";
        let standalone = self.standalone();
        let (before, after) = if standalone { dbs } else { (0, 0) };
        let (set_len, barrier) = match key {
            TxnKey::Ckpt(_) => (self.ckpt_keys.set_len_max(), None),
            TxnKey::Barrier(slot) => {
                let key = self.ckpt_keys.barrier_key(slot);
                let value = checkpoint::encode(self.ckpt_keys.history(), offset);
                let len = ferry_resp::command_len(&[b"SET", key.as_bytes(), value.as_bytes()]);
                (len, Some((key, value)))
            }
        };
        let selects = if before != 0 || after != 0 { 80 } else { 0 };
        let len = MULTI.len() + ops_len + set_len + EXEC.len() + selects;
        if self.wire_buf.capacity() < len {
            self.wire_buf = BytesMut::with_capacity(len.max(WIRE_CHUNK));
        }
        let wire = &mut self.wire_buf;
        wire.extend_from_slice(MULTI);
        let lead = u32::from(before != 0);
        if before != 0 {
            put_command(wire, &super::dbs::select(before));
        }
        for (o, _, len) in ops {
            // Measured when taken: a `u32::MAX` (never exact) only costs a
            // second measure.
            ferry_resp::put_command_sized(wire, &o.args, *len as usize);
        }
        let tail = u32::from(after != 0);
        if after != 0 {
            put_command(wire, &super::dbs::select(0));
        }
        match barrier {
            Some((key, value)) => put_command(wire, &[b"SET", key.as_bytes(), value.as_bytes()]),
            None => self.ckpt_keys.put_set(wire, key.slot(), offset),
        }
        wire.extend_from_slice(EXEC);
        (wire.split().freeze(), lead, lead + tail)
    }

    /// Sends `entry` for `slot` where it belongs now: behind a hold, to the
    /// slot's node, or into a new hold if no node serves the slot.
    pub(super) fn route(&mut self, slot: u16, mut entry: Entry) {
        if !self.holds.is_empty()
            && let Some(hold) = self.holds.get_mut(&slot)
        {
            self.held_bytes += entry.wire.len();
            hold.queued.push_back(entry);
            return;
        }
        match self.topology.slots.node_for(slot) {
            Some(i) => self.push(i, entry),
            None => {
                if self.count_failure(slot, &mut entry, "slot not served by any node") {
                    let backoff = self.backoff(entry.attempts);
                    self.hold_retry(slot, entry, backoff);
                }
            }
        }
    }

    /// Appends `entry` to node `i`'s queue (connecting it if needed).
    pub(super) fn push(&mut self, i: usize, entry: Entry) {
        if let Some(slot) = entry.slot {
            self.inflight[usize::from(slot)] += 1;
        }
        let node = &mut self.nodes[i];
        node.bytes += entry.bytes();
        node.queue.push_back(entry);
        if !node.connected && !node.connecting {
            self.connect(i);
        }
    }
}

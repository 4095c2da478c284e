//! Execute what the [`Translator`] decides: submit ops to the cluster
//! writer, run emulation plans that read the target, keep the target state
//! file and report applied positions.
//!
//! ```text
//! LinkEvent ─▶ Translator (ferry_ops, pure) ─▶ Actions ─▶ Applier (here)
//!   FullSync                  NewHistory          finish writes, new history,
//!                                                 FLUSHALL if the target was empty at start
//!   Rdb(item)                 Write(op)           ClusterWriter::submit
//!   Stream(command)           Group(ops)          ClusterWriter::submit_group
//!                             Emulate(plan)       barrier, DUMP/PTTL/LINDEX reads,
//!                                                 destination written first, barrier
//!                             FlushPrefixes       barrier, SCAN + DEL per prefix, barrier
//!                             Checkpointing       writer checkpoints on
//!                             Skip                logged with key and reason (counted)
//! Applied tokens  → reported to the link once the writer has acknowledged
//!                   every op at or below their offset
//! ```
//!
//! What each key or command becomes is decided in `ferry_ops::translate`
//! (tested there without servers); this module only does the I/O.
//!
//! Checkpoints (`target.checkpoints`, see `docs/design.md`): the snapshot is
//! written with plain idempotent commands; from the snapshot's end on, the
//! writer commits each slot's ops with a checkpoint key, and a source
//! `MULTI`/`EXEC` block is submitted as one group (one transaction when its
//! keys share a slot). A full sync starts a new history (recorded in
//! `state_dir/target.json`); when ferry had written to a target that was
//! empty at its first start, the target's masters are flushed first.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};
use bytes::Bytes;
use ferry_cluster::checkpoint::is_reserved;
use ferry_cluster::{ClusterWriter, Op, SUBMIT_BATCH_BYTES, SUBMIT_BATCH_OPS};
use ferry_ops::{
    Action, Counters, End, Plan, Skip, SkipReason, SlotGate, Translator, TranslatorConfig,
    command_keys, key_slot,
};
use ferry_replica::{Applied, LinkEvent, StreamEvent};
use ferry_resp::Value as Reply;

pub use ferry_ops::TargetFormat;

use crate::config::Filter;
use crate::hold::HoldFile;

mod reads;
mod state;
pub use state::{TargetState, history_name};

/// Whether a shard's slot gate lets `op` through: always without a gate,
/// always for ops without keys; on a standalone target ops carry no slot,
/// so the first key's slot is used.
pub fn gate_passes(gate: Option<&SlotGate>, standalone: bool, op: &Op) -> bool {
    let Some(gate) = gate else {
        return true;
    };
    let slot = if standalone {
        match command_keys(&op.args)
            .ok()
            .and_then(|k| k.indexes.first().copied())
        {
            Some(i) => key_slot(&op.args[i]),
            None => return true,
        }
    } else {
        match op.slot {
            Some(s) => s,
            None => return true,
        }
    };
    gate.owns(slot)
}

/// Feeds the cluster writer and tracks what is applied.
pub struct Applier {
    writer: ClusterWriter,
    tr: Translator,
    /// Actions decided for the event being applied (reused).
    actions: Vec<Action>,
    /// Tokens to report, with the offset of the last op submitted before them.
    tokens: VecDeque<(u64, Applied)>,
    last_op_offset: u64,
    /// `state_dir` and what it records about the target.
    state_dir: PathBuf,
    state: TargetState,
    /// The last offset declared complete to the writer.
    marked: u64,
    /// Names of keys written with a held TTL (`state_dir/ttl-hold.bin`).
    hold: HoldFile,
    /// Ops submitted but not yet handed to the writer: sent as one
    /// message per batch (see [`Applier::send_pending`]).
    pending: Vec<Op>,
    /// Argument bytes in `pending`.
    pending_bytes: usize,
    /// For one shard of a cluster source: the slots it owns now (ops of
    /// other slots are dropped, counted as `moved_slot_dropped`).
    gate: Option<Arc<SlotGate>>,
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

fn lossy(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

impl Applier {
    /// Two-way sync (`mode: two_way`): the opposite ferry's transactions
    /// are not carried back; conflicts are counted.
    pub fn set_two_way(&mut self, on: bool) {
        self.tr.set_two_way(on);
    }

    /// Whether two-way sync is on.
    pub fn two_way(&self) -> bool {
        self.tr.two_way()
    }

    /// An applier writing through `writer`; `ttl_hold`: hold short TTLs
    /// through the snapshot and its catch-up (`snapshot.ttl_hold`).
    ///
    /// # Errors
    /// The TTL hold's file in `state_dir` cannot be opened.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        writer: ClusterWriter,
        target: TargetFormat,
        restore: bool,
        filter: Filter,
        checkpoints: bool,
        ttl_hold: bool,
        state_dir: PathBuf,
        state: TargetState,
        gate: Option<Arc<SlotGate>>,
    ) -> Result<Applier> {
        let tr = Translator::new(TranslatorConfig {
            target,
            restore,
            filter,
            standalone: writer.is_standalone(),
            checkpoints,
            ttl_hold,
            source_shard: gate.is_some(),
            two_way: false,
        });
        let hold = HoldFile::open(&state_dir)?;
        Ok(Applier {
            writer,
            tr,
            actions: Vec::new(),
            tokens: VecDeque::new(),
            last_op_offset: 0,
            state_dir,
            state,
            marked: 0,
            hold,
            pending: Vec::with_capacity(SUBMIT_BATCH_OPS),
            pending_bytes: 0,
            gate,
        })
    }

    /// Whether the gate lets `op` through (see [`gate_passes`]).
    fn gate_passes(&self, op: &Op) -> bool {
        gate_passes(self.gate.as_deref(), self.writer.is_standalone(), op)
    }

    /// Counters for the status page.
    pub fn counters(&self) -> &Counters {
        &self.tr.counters
    }

    /// Module types whose module the target lacks (see
    /// [`Translator::set_missing_module_types`]).
    pub fn set_missing_module_types(&mut self, types: std::collections::BTreeMap<String, String>) {
        self.tr.set_missing_module_types(types);
    }

    /// Logs and counts a skip (the translator counted it for `/status`).
    fn log_skip(skip: &Skip) {
        if !skip.reason.is_filter() {
            crate::events::KeySkipped {
                reason: skip.reason.as_str(),
                what: &skip.detail,
            }
            .emit();
        }
    }

    /// A cross-slot command found unreplayable while executing its plan:
    /// counted and logged.
    fn skip_unreplayable(&mut self, what: &str) {
        self.tr.counters.skip(SkipReason::Unreplayable);
        crate::events::KeySkipped {
            reason: SkipReason::Unreplayable.as_str(),
            what,
        }
        .emit();
    }

    /// Queues `op` for the writer; a full batch is handed over at once,
    /// the rest by [`Applier::send_pending`] before anything else reaches
    /// the writer (so the order of ops and requests is unchanged).
    async fn submit(&mut self, op: Op) -> Result<()> {
        if self.queue(op) {
            self.send_pending().await?;
        }
        Ok(())
    }

    /// Queues `op` without waiting; `true` when the batch is full and must
    /// be handed over ([`Applier::send_pending`]) before the next op.
    fn queue(&mut self, op: Op) -> bool {
        self.last_op_offset = op.offset;
        if self.gate.is_some() && !self.gate_passes(&op) {
            self.tr.counters.moved_slot_dropped += 1;
            return false;
        }
        self.pending_bytes += op.args.iter().map(Bytes::len).sum::<usize>();
        self.pending.push(op);
        self.pending.len() >= SUBMIT_BATCH_OPS || self.pending_bytes >= SUBMIT_BATCH_BYTES
    }

    /// Hands the queued ops to the writer as one message (one channel send
    /// and engine wake-up per batch instead of per op).
    async fn send_pending(&mut self) -> Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let ops = std::mem::replace(&mut self.pending, Vec::with_capacity(SUBMIT_BATCH_OPS));
        self.pending_bytes = 0;
        self.writer
            .submit_batch(ops)
            .await
            .context("writing to the target cluster")
    }

    async fn submit_group(&mut self, mut ops: Vec<Op>) -> Result<()> {
        self.send_pending().await?;
        if let Some(last) = ops.last() {
            self.last_op_offset = last.offset;
        }
        if self.gate.is_some() {
            let before = ops.len();
            ops.retain(|op| self.gate_passes(op));
            self.tr.counters.moved_slot_dropped += (before - ops.len()) as u64;
            if ops.is_empty() {
                return Ok(());
            }
        }
        self.writer
            .submit_group(ops)
            .await
            .context("writing to the target cluster")
    }

    /// A full sync begins: a new history. Everything before is finished
    /// first; a target ferry wrote to is flushed if it was empty at the
    /// first start (keys deleted on the source since must not survive).
    async fn new_history(&mut self, replid: &str, offset: u64) -> Result<()> {
        let history = history_name(replid, offset);
        self.send_pending().await?;
        self.writer
            .new_history(history.clone())
            .await
            .context("finishing writes before a full resync")?;
        self.tokens.clear();
        self.last_op_offset = 0;
        self.marked = 0;
        self.writer
            .set_checkpointing(false)
            .await
            .context("target cluster")?;
        if let Some(gate) = self.gate.clone() {
            // One shard of several: the target also holds the other
            // shards' keys, so only this shard's slots are emptied.
            if self.state.history.is_some() || !self.state.empty_at_start {
                self.delete_slots(&gate, offset + 1, "full sync of this source shard")
                    .await?;
            }
        } else if self.state.history.is_some() {
            if self.state.empty_at_start {
                tracing::warn!(
                    "full resync: flushing the target's masters before loading the new snapshot \
                     (the target was empty when ferry first started)"
                );
                self.submit(Op::all_masters(vec!["FLUSHALL".into()], offset + 1))
                    .await?;
            } else {
                tracing::warn!(
                    "full resync into a target that was not empty when ferry first started: \
                     keys deleted on the source since the last sync may remain in the target"
                );
            }
        }
        self.state.history = Some(history);
        self.state.save(&self.state_dir)
    }

    /// Tells the writer that every op up to the last one is submitted (all
    /// snapshot ops share one offset, a split command several ops): its
    /// applied offset may then reach it.
    ///
    /// Call it after each batch of events: within a batch, an op with a
    /// higher offset already tells the writer the lower ones are complete.
    pub async fn mark_complete(&mut self) -> Result<()> {
        // Held names reach the file before a position covering them is
        // reported (the link saves it).
        self.hold.flush()?;
        self.send_pending().await?;
        if self.last_op_offset > self.marked {
            self.marked = self.last_op_offset;
            self.writer
                .mark_complete(self.last_op_offset)
                .await
                .context("writing to the target cluster")?;
        }
        Ok(())
    }

    /// Applies a batch of link events (what the link decoded from one
    /// read) in order, then declares them complete (see
    /// [`Applier::mark_complete`]). The wall clock is read once for the
    /// batch; each event is translated where it lies in `batch` (a record
    /// is a few hundred bytes: not moved again), and `batch` is left empty.
    /// `on_reconnect` sees the reason of each `Reconnecting` event first.
    pub async fn apply_batch(
        &mut self,
        batch: &mut Vec<LinkEvent>,
        mut on_reconnect: impl FnMut(&str),
    ) -> Result<()> {
        let now = now_ms();
        let mut actions = std::mem::take(&mut self.actions);
        let mut result = Ok(());
        for ev in batch.iter_mut() {
            if let LinkEvent::Reconnecting { reason } = ev {
                on_reconnect(reason);
            }
            let token = self.translate(ev, now, &mut actions);
            // Plain writes (almost every action) are queued here without
            // an await; the rest goes through `execute_one`.
            for action in actions.drain(..) {
                result = match action {
                    Action::Write(op) => {
                        if self.queue(op) {
                            self.send_pending().await
                        } else {
                            Ok(())
                        }
                    }
                    other => self.execute_one(other).await,
                };
                if result.is_err() {
                    break;
                }
            }
            if result.is_err() {
                break;
            }
            if let Some(applied) = token {
                self.tokens.push_back((self.last_op_offset, applied));
            }
        }
        actions.clear();
        self.actions = actions;
        batch.clear();
        result?;
        self.mark_complete().await
    }

    /// What `ev` becomes (into `actions`, its bytes taken out of `ev`) and
    /// the position to report once they are applied.
    fn translate(
        &mut self,
        ev: &mut LinkEvent,
        now: i64,
        actions: &mut Vec<Action>,
    ) -> Option<Applied> {
        match ev {
            LinkEvent::FullSync { replid, offset, .. } => {
                self.tr.full_sync(replid, *offset, now, actions);
                None
            }
            LinkEvent::Continue { .. } => {
                self.tr.resume();
                None
            }
            LinkEvent::Reconnecting { .. } => None,
            LinkEvent::Rdb(item) => {
                self.tr.rdb_in_place(item, now, actions);
                None
            }
            LinkEvent::SnapshotEnd { applied } => {
                self.tr.snapshot_end(actions);
                Some(*applied)
            }
            LinkEvent::Stream { event, applied } => {
                match event {
                    StreamEvent::Command {
                        cmd,
                        db,
                        end_offset,
                    } => self
                        .tr
                        .command_in(&mut cmd.args, *db, *end_offset, now, actions),
                    StreamEvent::Multi { end_offset } => {
                        self.tr.stream_position(*end_offset);
                        self.tr.multi(actions)
                    }
                    StreamEvent::Exec { end_offset } => {
                        self.tr.stream_position(*end_offset);
                        self.tr.exec(actions)
                    }
                    other => self.tr.stream_position(other.end_offset()),
                }
                Some(*applied)
            }
        }
    }

    /// Runs the actions in order.
    async fn execute(&mut self, actions: &mut Vec<Action>) -> Result<()> {
        for action in actions.drain(..) {
            self.execute_one(action).await?;
        }
        Ok(())
    }

    /// Runs one action.
    async fn execute_one(&mut self, action: Action) -> Result<()> {
        {
            match action {
                Action::Write(op) => self.submit(op).await?,
                Action::Group(ops) => self.submit_group(ops).await?,
                Action::NewHistory { replid, offset } => {
                    self.hold.reset()?;
                    self.new_history(&replid, offset).await?
                }
                Action::Checkpointing => {
                    self.send_pending().await?;
                    self.writer
                        .set_checkpointing(true)
                        .await
                        .context("target cluster")?;
                }
                Action::Skip(skip) => Self::log_skip(&skip),
                Action::Emulate { plan, args, offset } => {
                    self.flush().await?;
                    let done = self.emulate_reads(plan, &args, offset).await?;
                    self.flush().await?;
                    if done {
                        self.tr.counters.emulated += 1;
                        self.tr.counters.commands_applied += 1;
                    }
                }
                Action::FlushPrefixes { prefixes, offset } => {
                    self.flush_prefixes(&prefixes, offset).await?
                }
                Action::FlushSlots { offset } => match self.gate.clone() {
                    Some(gate) => {
                        self.delete_slots(&gate, offset, "FLUSHALL/FLUSHDB in the source's stream")
                            .await?;
                    }
                    None => anyhow::bail!("FLUSHALL of a source shard without a slot gate"),
                },
                Action::Hold { db, key } => self.hold.add(db, key)?,
                Action::FixUp { offset } => self.fixup(offset).await?,
            }
        }
        Ok(())
    }

    /// Snapshot progress (percent, `None` unknown), replication lag and
    /// the source's offset (INFO poller, else the link's received offset),
    /// from the status loop: the TTL hold's fix-up runs once caught up.
    pub async fn progress(
        &mut self,
        percent: Option<f64>,
        lag_seconds: f64,
        source_offset: Option<u64>,
    ) -> Result<()> {
        let mut actions = std::mem::take(&mut self.actions);
        let lag_ms = (lag_seconds * 1000.0) as u64;
        self.tr
            .progress(percent, lag_ms, source_offset, now_ms(), &mut actions);
        let result = self.execute(&mut actions).await;
        actions.clear();
        self.actions = actions;
        result
    }

    /// The TTL hold's fix-up at `offset`: the guarded script for every
    /// remembered name, through the writer (checkpointed like the stream),
    /// acknowledged before the names are forgotten. Postponed while
    /// `offset` is not past every slot's checkpoint of a restart (the
    /// writer would skip the ops there).
    async fn fixup(&mut self, offset: u64) -> Result<()> {
        if (0..ferry_ops::SLOTS).any(|s| self.writer.committed_before_connect(s, offset)) {
            self.tr.fixup_postponed();
            return Ok(());
        }
        let started = std::time::Instant::now();
        let mut reader = self.hold.reader()?;
        let mut ops = Vec::new();
        let mut names = 0u64;
        loop {
            let chunk = reader.next_chunk(4096)?;
            if chunk.is_empty() {
                break;
            }
            for (db, key) in chunk {
                names += 1;
                self.tr.fixup_op(db, key, offset, &mut ops);
            }
            for action in ops.drain(..) {
                if let Action::Write(op) = action {
                    self.submit(op).await?;
                }
            }
        }
        self.flush().await?;
        self.hold.reset()?;
        if names > 0 {
            tracing::info!(
                names,
                ms = started.elapsed().as_millis() as u64,
                "TTL hold: caught up, true expiries restored on keys written with a held TTL"
            );
        }
        Ok(())
    }

    /// The newest token whose ops are all acknowledged (to hand to the link).
    pub fn applied(&mut self) -> Option<Applied> {
        let acked = self.writer.applied_offset();
        let mut last = None;
        while let Some((op_offset, token)) = self.tokens.front() {
            if *op_offset > acked && *op_offset != 0 {
                break;
            }
            last = Some(*token);
            self.tokens.pop_front();
        }
        last
    }

    /// The writer's counters (redirects, retries, reconnects).
    pub fn writer_stats(&self) -> ferry_cluster::WriterStats {
        self.writer.stats()
    }

    /// The writer's error, if it stopped.
    pub fn writer_error(&self) -> Option<ferry_cluster::WriterError> {
        self.writer.error()
    }

    /// Wait until everything submitted is acknowledged.
    pub async fn flush(&mut self) -> Result<()> {
        self.send_pending().await?;
        self.writer
            .flush()
            .await
            .context("flushing the target cluster")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_gate_drops_ops_of_slots_it_does_not_own() {
        let op = |args: &str, slot: Option<u16>| Op {
            args: args.split(' ').map(|a| Bytes::from(a.to_owned())).collect(),
            slot,
            offset: 1,
            tolerate: ferry_ops::Tolerate::Nothing,
        };
        let k = key_slot(b"k");
        let gate = SlotGate::from_ranges(&[(k, k)]);
        let other = op("SET x 1", Some(key_slot(b"x")));
        assert!(gate_passes(None, false, &other), "no gate: everything");
        assert!(gate_passes(Some(&gate), false, &op("SET k 1", Some(k))));
        assert!(!gate_passes(Some(&gate), false, &other));
        // Every-master ops and keyless ops pass.
        assert!(gate_passes(Some(&gate), false, &op("FUNCTION FLUSH", None)));
        // A standalone target: the slot of the first key (ops carry 0).
        assert!(gate_passes(Some(&gate), true, &op("SET k 1", Some(0))));
        assert!(!gate_passes(Some(&gate), true, &op("SET x 1", Some(0))));
        assert!(gate_passes(Some(&gate), true, &op("SELECT 0", Some(0))));
    }
}

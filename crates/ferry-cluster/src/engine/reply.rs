//! Replies, matched front to back against a node's queue: plain ops,
//! transactions (`EXEC` decides), probes of transactions whose reply was
//! lost, and `WAIT`.

use std::sync::atomic::Ordering;
use std::time::Instant;

use bytes::Bytes;
use ferry_ops::Tolerate;
use ferry_resp::{Reply, Value};

use super::core::Core;
use super::entry::{Body, Entry, Txn, show, topology_changing};
use super::events::WriterEvent;
use crate::checkpoint;
use crate::config::TargetMode;
use crate::error::WriterError;

impl Core {
    /// Replies from node `i`'s connection `generation`, in order.
    pub(crate) fn on_replies(
        &mut self,
        i: usize,
        generation: u64,
        values: Vec<Reply>,
        now: Instant,
    ) {
        self.now = now;
        if self.generation(i) != Some(generation) {
            return;
        }
        let mut touched: Vec<u16> = Vec::with_capacity(values.len());
        for value in values {
            self.on_one_reply(i, value, &mut touched);
            if self.fatal.is_some() {
                break;
            }
        }
        // One atomic add per batch instead of one per op.
        let acked = std::mem::take(&mut self.acked_batch);
        self.shared.acked.fetch_add(acked, Ordering::Relaxed);
        if self.fatal.is_some() {
            return;
        }
        let node = &mut self.nodes[i];
        node.waiting_since = (node.sent > 0).then_some(now);
        self.release_touched(touched);
    }

    fn unexpected(&mut self, i: usize, reply: String) {
        let node = self.nodes[i].addr.clone();
        self.fail(WriterError::Unexpected { node, reply });
    }

    fn on_one_reply(&mut self, i: usize, value: Reply, touched: &mut Vec<u16>) {
        let node = &mut self.nodes[i];
        if node.queue.is_empty() {
            return self.unexpected(i, format!("{value:?}"));
        }
        if node.sent == 0 {
            // Nothing written normally is unanswered: a probe's answer
            // (probes go out in queue order, after the normal writes).
            return self.on_probe_reply(i, value, touched);
        }
        let front = &mut node.queue[0];
        if front.asking && !front.asking_done {
            front.asking_done = true;
            // A node restarting or changing role may refuse `ASKING` like
            // anything else: the entry's own reply follows and decides.
            if let Some(m) = value.error()
                && !topology_changing(m)
            {
                self.unexpected(i, format!("{value:?} to ASKING"));
            }
            return;
        }
        if let Some(t) = front.txn_state() {
            t.replies += 1;
            if t.replies < t.expected_replies() {
                if let Some(m) = value.error() {
                    t.queue_error.get_or_insert_with(|| m.clone());
                }
                return;
            }
        }
        let Some(entry) = node.queue.pop_front() else {
            return;
        };
        node.sent = node.sent.saturating_sub(1);
        node.bytes -= entry.bytes();
        if let Some(slot) = entry.slot {
            self.inflight[usize::from(slot)] -= 1;
            touched.push(slot);
        }
        match entry.body {
            Body::Txn(_) => self.on_txn_reply(i, entry, value),
            Body::Wait => self.on_wait_reply(i, &value),
            Body::Op { .. } => self.on_op_reply(i, entry, &value),
        }
    }

    /// The answer to the next probe of node `i`.
    fn on_probe_reply(&mut self, i: usize, value: Reply, touched: &mut Vec<u16>) {
        let node = &mut self.nodes[i];
        let generation = node.generation;
        let Some(k) = node.queue.iter().position(|e| e.probing_on(generation)) else {
            return self.unexpected(i, format!("{value:?}"));
        };
        node.probes.0 = node.probes.0.saturating_sub(1);
        let history = self.ckpt_keys.history();
        let verdict = match node.queue[k].txn_state() {
            Some(t) => {
                t.probe = None;
                probe_says_committed(history, &t.parts, &value)
            }
            None => None,
        };
        if verdict == Some(false) {
            // Not there: written again after the probes.
            if let Some(t) = node.queue[k].txn_state() {
                t.written = false;
            }
            return;
        }
        let Some(entry) = node.queue.remove(k) else {
            return;
        };
        node.bytes -= entry.bytes();
        if let Some(slot) = entry.slot {
            self.inflight[usize::from(slot)] -= 1;
            touched.push(slot);
        }
        if verdict == Some(true) {
            // It committed before its reply was lost.
            self.shared.verified.fetch_add(1, Ordering::Relaxed);
            self.committed_on(i, entry);
        } else {
            // An error reply (e.g. the slot moved): handled like one to
            // the transaction; probed again where it goes next.
            let message = match value.error() {
                Some(m) => m.clone(),
                None => Bytes::from(format!("{value:?} to GET")),
            };
            self.on_error(i, entry, &message);
        }
    }

    fn on_op_reply(&mut self, i: usize, entry: Entry, value: &Reply) {
        if let Some(message) = value.error() {
            match &entry.body {
                Body::Op {
                    tolerate, offset, ..
                } if tolerate.accepts(message) => {
                    let args = wire_args(&entry.wire);
                    self.tolerated(i, *tolerate, *offset, &args, message);
                }
                _ => return self.on_error(i, entry, message),
            }
        }
        if let Body::Op { group, select, .. } = &entry.body {
            if let Some(db) = *select {
                self.shared.selected_db.store(db, Ordering::Release);
            }
            self.progress.ack(*group);
            self.acked_batch += 1;
        }
    }

    /// An op (`args`, at `offset`) got the error reply it tolerates (see
    /// [`ferry_ops::Tolerate`]) from node `i`: counted, and logged once per
    /// source command (its copies to the other masters share the offset
    /// and the command).
    fn tolerated(
        &mut self,
        i: usize,
        tolerate: Tolerate,
        offset: u64,
        args: &[Bytes],
        message: &[u8],
    ) {
        match tolerate {
            Tolerate::LibraryNotFound => {
                self.shared
                    .function_delete_absent
                    .fetch_add(1, Ordering::Relaxed);
            }
            Tolerate::Nothing => return,
        }
        if self
            .last_tolerated
            .as_ref()
            .is_some_and(|(o, a)| *o == offset && a[..] == *args)
        {
            return;
        }
        self.last_tolerated = Some((offset, args.to_vec()));
        self.note_tolerated(WriterEvent::Tolerated {
            node: self.nodes[i].addr.clone(),
            command: args
                .iter()
                .map(|a| show(Some(a)))
                .collect::<Vec<_>>()
                .join(" "),
            reply: String::from_utf8_lossy(message).into_owned(),
            counter: tolerate.as_str(),
        });
    }

    /// The final reply (`EXEC`) of a `Txn` entry.
    fn on_txn_reply(&mut self, i: usize, mut entry: Entry, value: Reply) {
        let Some(t) = entry.txn_state() else { return };
        match value {
            // No error inside (an array of `+OK` and integers only).
            Reply::Plain(_) => {
                self.shared.checkpoints.fetch_add(1, Ordering::Relaxed);
                self.committed_on(i, entry);
            }
            Reply::Value(Value::Array(results)) => {
                let parts = &t.parts;
                for (k, r) in results.iter().enumerate() {
                    if let Value::Error(message) = r {
                        let op_k = k.checked_sub(parts.lead as usize);
                        if let Some((op, _, _)) = op_k.and_then(|k| parts.ops.get(k))
                            && op.tolerate.accepts(message)
                        {
                            self.tolerated(i, op.tolerate, op.offset, &op.args, message);
                            continue;
                        }
                        let (command, key) = match op_k.and_then(|k| parts.ops.get(k)) {
                            Some((op, _, _)) => (show(op.args.first()), show(op.args.get(1))),
                            None => ("SET".to_owned(), show(Some(&self.key_bytes(parts.key)))),
                        };
                        self.fail(WriterError::Rejected {
                            node: self.nodes[i].addr.clone(),
                            command,
                            key,
                            reply: String::from_utf8_lossy(message).into_owned(),
                        });
                        return;
                    }
                }
                self.shared.checkpoints.fetch_add(1, Ordering::Relaxed);
                self.committed_on(i, entry);
            }
            Reply::Value(Value::Error(message)) => {
                // Nothing of it was applied: redirect or retry it whole.
                let cause = t.queue_error.take().unwrap_or(message);
                t.written = false;
                self.on_error(i, entry, &cause);
            }
            other => self.unexpected(i, format!("{other:?} to EXEC")),
        }
    }

    /// A transaction committed on node `i`: acknowledged now, or, with
    /// `wait_replicas`, once a `WAIT` on that node says a replica has it.
    pub(super) fn committed_on(&mut self, i: usize, mut entry: Entry) {
        let Some(t) = entry.txn_state() else { return };
        if self.config.wait_replicas.is_some() {
            t.probe = None;
            t.written = true;
            self.nodes[i].unconfirmed.push(entry);
            return;
        }
        self.committed(&t.parts);
        self.spare_txns.recycle(entry);
    }

    /// The reply to a `WAIT 1 <ms>` on node `i`: every transaction
    /// committed before it is on a replica when the count is at least 1.
    fn on_wait_reply(&mut self, i: usize, value: &Reply) {
        self.nodes[i].wait_queued = false;
        match value {
            Reply::Value(Value::Integer(n)) if *n >= 1 => {
                let done = std::mem::take(&mut self.nodes[i].unconfirmed);
                for e in done {
                    if let Body::Txn(t) = &e.body {
                        self.committed(&t.parts);
                    }
                    self.spare_txns.recycle(e);
                }
            }
            Reply::Value(Value::Integer(_)) => {
                // No replica within the timeout: the transactions stay
                // unconfirmed (the applied offset waits) and the next
                // `WAIT` asks again.
                self.shared.wait_timeouts.fetch_add(1, Ordering::Relaxed);
            }
            // The node is no longer a master that can confirm anything
            // (demoted by a failover: `ERR WAIT cannot be used with replica
            // instances`, or `UNBLOCKED` when it was demoted during the
            // `WAIT`; restarting; cut off): a topology change.
            Reply::Value(Value::Error(message))
                if self.config.mode != TargetMode::Standalone && topology_changing(message) =>
            {
                self.on_demoted(i, message);
            }
            other => self.unexpected(i, format!("{other:?} to WAIT")),
        }
    }

    /// Acknowledges every op of a committed transaction.
    pub(super) fn committed(&mut self, txn: &Txn) {
        for (_, g, _) in &txn.ops {
            self.progress.ack(*g);
        }
        self.shared
            .acked
            .fetch_add(txn.ops.len() as u64, Ordering::Relaxed);
    }
}

/// The reply to a probe of a transaction (its key, read before a resend):
/// `Some(true)` if it committed, `Some(false)` if not, `None` for an error.
fn probe_says_committed(history: &str, txn: &Txn, value: &Reply) -> Option<bool> {
    match value {
        Reply::Value(Value::Null) => Some(false),
        Reply::Value(Value::Bulk(b)) => {
            Some(checkpoint::decode(b).is_some_and(|(h, o)| h == history && o >= txn.offset))
        }
        _ => None,
    }
}

/// Every argument of the command encoded in `wire` (an op's own bytes;
/// read only on the rare tolerated refusal, for its log line).
fn wire_args(wire: &Bytes) -> Vec<Bytes> {
    let mut buf = bytes::BytesMut::from(&wire[..]);
    match ferry_resp::split_command(&mut buf) {
        Ok(Some(cmd)) => cmd.args,
        _ => Vec::new(),
    }
}

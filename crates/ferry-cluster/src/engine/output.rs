//! What goes on the wire at the end of a loop turn: every unwritten entry
//! (probes first for transactions written before without a reply), then a
//! `WAIT` where transactions wait for a replica.

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use ferry_resp::put_command;

use super::core::{Action, Core};
use super::entry::{ASKING, Body, Entry};

/// Chunks larger than this are passed to the driver without copying.
const COPY_MAX: usize = 64 * 1024;

impl Core {
    /// Writes every entry not yet written, one chunk per node. A `Txn`
    /// entry written before without a final reply is preceded by a probe
    /// (`GET` of its key), and nothing after it is written until the probe
    /// is answered.
    pub(super) fn write_out(&mut self) {
        let now = self.now;
        for (i, node) in self.nodes.iter_mut().enumerate() {
            if !node.connected || node.sent >= node.queue.len() || node.probing() > 0 {
                // (Nothing more until every probe is answered.)
                continue;
            }
            let generation = node.generation;
            // Sized once: growing it entry by entry copied it again at
            // every doubling.
            let want: usize = node
                .queue
                .range(node.sent..)
                .map(|e| {
                    if e.wire.len() > COPY_MAX {
                        0
                    } else {
                        e.bytes()
                    }
                })
                .sum();
            let mut buf = BytesMut::with_capacity(want);
            let mut written = node.sent;
            let mut probes = 0;
            for e in node.queue.range_mut(node.sent..) {
                let asking = e.asking && !e.asking_done;
                if let Body::Txn(t) = &mut e.body {
                    if t.written {
                        // Written before, no final reply: did it commit?
                        // Probe this and the following ones, then wait.
                        let key = t.parts.key.bytes(&self.ckpt_keys);
                        put_command(&mut buf, &[&b"GET"[..], &key]);
                        t.probe = Some(generation);
                        probes += 1;
                        continue;
                    }
                    if probes == 0 {
                        t.written = true;
                        t.replies = 0;
                        t.queue_error = None;
                    }
                }
                if probes > 0 {
                    break;
                }
                if asking {
                    buf.extend_from_slice(ASKING);
                }
                if e.wire.len() > COPY_MAX {
                    if !buf.is_empty() {
                        let bytes = buf.split().freeze();
                        self.actions.push(Action::Send { node: i, bytes });
                    }
                    let bytes = e.wire.clone();
                    self.actions.push(Action::Send { node: i, bytes });
                } else {
                    buf.extend_from_slice(&e.wire);
                }
                written += 1;
            }
            if !buf.is_empty() {
                let bytes = buf.freeze();
                self.actions.push(Action::Send { node: i, bytes });
            }
            if probes > 0 {
                node.probes = (probes, generation);
            }
            if node.sent == 0 {
                node.waiting_since = Some(now);
            }
            node.sent = written;
        }
        if let Some(timeout) = self.config.wait_replicas {
            self.write_waits(timeout);
        }
    }

    /// Appends and writes a `WAIT 1 <ms>` on every connected node with
    /// committed or in-flight transactions, no probe in flight and no
    /// `WAIT` pending.
    fn write_waits(&mut self, timeout: Duration) {
        let ms = Bytes::from(timeout.as_millis().max(1).to_string());
        let now = self.now;
        for (i, node) in self.nodes.iter_mut().enumerate() {
            if !node.connected
                || node.wait_queued
                || node.probing() > 0
                || node.sent < node.queue.len()
            {
                continue;
            }
            let wanted = !node.unconfirmed.is_empty()
                || node.queue.iter().any(|e| matches!(e.body, Body::Txn(_)));
            if !wanted {
                continue;
            }
            let mut wire = BytesMut::new();
            put_command(&mut wire, &[&b"WAIT"[..], b"1", &ms]);
            let entry = Entry::wait(wire.freeze());
            self.actions.push(Action::Send {
                node: i,
                bytes: entry.wire.clone(),
            });
            node.bytes += entry.bytes();
            if node.sent == 0 {
                node.waiting_since = Some(now);
            }
            node.queue.push_back(entry);
            node.wait_queued = true;
            node.sent += 1;
        }
    }
}

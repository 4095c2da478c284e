//! Connections and topology: connects, lost connections, topology
//! refreshes, and moving entries whose slot another node serves now.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use ferry_ops::{SlotMap, Topology};

use super::core::{Action, Core, REFRESH_EVERY};
use super::entry::{Body, Entry, Target};
use super::events::WriterEvent;
use crate::conn::ConnError;
use crate::error::WriterError;

impl Core {
    /// Asks the driver to connect node `i` for its current generation.
    pub(super) fn connect(&mut self, i: usize) {
        let now = self.now;
        let node = &mut self.nodes[i];
        node.connecting = true;
        node.lost_at.get_or_insert(now);
        self.actions.push(Action::Connect {
            node: i,
            generation: node.generation,
            addr: node.addr.clone(),
        });
    }

    /// The connection of [`Action::Connect`] is up; `false` if it is for
    /// an older generation (the driver drops it).
    pub(crate) fn on_connected(&mut self, i: usize, generation: u64, now: Instant) -> bool {
        self.now = now;
        let Some(node) = self.nodes.get_mut(i).filter(|n| n.generation == generation) else {
            return false;
        };
        node.connecting = false;
        node.connected = true;
        node.sent = 0;
        node.lost_at = None;
        if generation > 0 {
            self.shared.reconnects.fetch_add(1, Ordering::Relaxed);
            let addr = node.addr.clone();
            self.note(WriterEvent::Reconnected { node: addr });
        }
        true
    }

    /// [`Action::Connect`] gave up (after `reconnect_for`, or at once for
    /// a bad certificate, `AUTH` or `SELECT`).
    pub(crate) fn on_connect_failed(
        &mut self,
        i: usize,
        generation: u64,
        reason: ConnError,
        now: Instant,
    ) {
        self.now = now;
        let serves = self.serving().get(i).copied().unwrap_or(false);
        let Some(node) = self.nodes.get_mut(i).filter(|n| n.generation == generation) else {
            return;
        };
        node.connecting = false;
        // A master that a failover replaced, with nothing left to send:
        // forget it (connected again if it ever gets slots back).
        if !serves && node.queue.is_empty() {
            return;
        }
        let e = WriterError::Unreachable {
            node: node.addr.clone(),
            over: self.config.reconnect_for,
            reason,
        };
        self.fail(e);
    }

    /// The connection of node `i` (`generation`) is lost: everything
    /// unanswered is written again on the next one (transactions after a
    /// probe), parked transactions are probed again, and a reconnect
    /// starts. `false` if the event is for an older generation.
    pub(crate) fn on_lost(&mut self, i: usize, generation: u64, now: Instant) -> bool {
        self.now = now;
        let Some(node) = self.nodes.get_mut(i).filter(|n| n.generation == generation) else {
            return false;
        };
        node.connected = false;
        node.generation += 1;
        node.sent = 0;
        node.waiting_since = None;
        for e in &mut node.queue {
            e.asking_done = false;
        }
        // A `WAIT` is asked again on the next connection.
        if node.wait_queued {
            node.wait_queued = false;
            node.queue.retain(|e| !matches!(e.body, Body::Wait));
            node.bytes = node.queue.iter().map(Entry::bytes).sum();
        }
        // Committed transactions no replica confirmed may be lost with
        // the node (asynchronous replication): probe them again wherever
        // their slot is served next, before anything newer of the slot.
        let unconfirmed = std::mem::take(&mut node.unconfirmed);
        let addr = node.addr.clone();
        self.note(WriterEvent::Lost {
            node: addr,
            parked: unconfirmed.len(),
        });
        self.shared
            .reprobed
            .fetch_add(unconfirmed.len() as u64, Ordering::Relaxed);
        for e in unconfirmed.into_iter().rev() {
            match (e.slot, &e.body) {
                (Some(slot), _) => {
                    self.inflight[usize::from(slot)] += 1;
                    let node = &mut self.nodes[i];
                    node.bytes += e.bytes();
                    node.queue.push_front(e);
                }
                // A barrier transaction (an op for every master) cannot
                // move to another node: acknowledged as committed (a
                // documented limit).
                (None, Body::Txn(t)) => {
                    self.committed(&t.parts);
                }
                (None, _) => {}
            }
        }
        self.connect(i);
        true
    }

    pub(super) fn request_refresh(&mut self) {
        self.refresh.wanted = true;
        self.maybe_start_refresh();
    }

    /// Starts a refresh if one is wanted, none runs and the last one
    /// started at least [`REFRESH_EVERY`] ago.
    pub(super) fn maybe_start_refresh(&mut self) {
        let r = &self.refresh;
        if !r.wanted
            || r.running
            || self.fatal.is_some()
            || r.started
                .is_some_and(|t| self.now.saturating_duration_since(t) < REFRESH_EVERY)
        {
            return;
        }
        // Reachable masters that serve slots, other reachable nodes, the
        // unreachable ones, then every other address seen.
        let serving = self.serving();
        let mut order: Vec<(u8, String)> = self
            .nodes
            .iter()
            .zip(&serving)
            .map(|(n, &serves)| {
                let rank = match (n.connected, serves) {
                    (true, true) => 0,
                    (true, false) => 1,
                    (false, _) => 3,
                };
                (rank, n.addr.clone())
            })
            .collect();
        order.extend(self.refresh.known.iter().map(|a| (2, a.clone())));
        order.sort_by_key(|(rank, _)| *rank);
        let mut addrs: Vec<String> = Vec::with_capacity(order.len());
        for (_, a) in order {
            if !addrs.contains(&a) {
                addrs.push(a);
            }
        }
        self.refresh.wanted = false;
        self.refresh.running = true;
        self.refresh.started = Some(self.now);
        self.actions.push(Action::Refresh { addrs });
    }

    /// The result of [`Action::Refresh`]: the topology and every node
    /// address it names.
    pub(crate) fn on_refreshed(
        &mut self,
        result: Result<(Topology, Vec<String>), WriterError>,
        now: Instant,
    ) {
        self.now = now;
        self.refresh.running = false;
        match result {
            Err(e) => {
                let since = *self.refresh.failing_since.get_or_insert(now);
                let over = now.saturating_duration_since(since);
                if over > self.config.reconnect_for {
                    self.fail(WriterError::TopologyRefresh {
                        over,
                        last: e.to_string(),
                    });
                    return;
                }
                self.refresh.wanted = true;
            }
            Ok((topology, known)) => {
                self.refresh.failing_since = None;
                self.shared.refreshes.fetch_add(1, Ordering::Relaxed);
                for a in known {
                    if !self.refresh.known.contains(&a) {
                        self.refresh.known.push(a);
                    }
                }
                self.apply_topology(&topology);
            }
        }
    }

    /// Replaces the slot map with `new`'s (keeping node indexes), connects
    /// to masters that serve slots and have no connection, and moves every
    /// entry that now belongs elsewhere into its slot's hold.
    pub(super) fn apply_topology(&mut self, new: &Topology) {
        let index: Vec<usize> = new
            .masters
            .iter()
            .map(|m| {
                self.topology.index_of(&m.host, m.port).unwrap_or_else(|| {
                    self.topology.masters.push(m.clone());
                    self.topology.masters.len() - 1
                })
            })
            .collect();
        let mut slots = SlotMap::new();
        for (start, end, n) in new.slots.ranges() {
            // Ranges of a parsed map never overlap.
            let _ = slots.set_range(start, end, index[n]);
        }
        let old = std::mem::replace(&mut self.topology.slots, slots);
        let changed = old != self.topology.slots;
        self.sync_nodes();
        self.note_topology(&old, changed);
        let serving = self.serving();
        for (i, &serves) in serving.iter().enumerate() {
            let node = &self.nodes[i];
            if serves && !node.connected && !node.connecting {
                self.connect(i);
            }
        }
        self.reroute();
        if changed {
            // Retry what the old map made wait, now.
            let now = self.now;
            for hold in self.holds.values_mut() {
                hold.not_before = hold.not_before.min(now);
            }
        }
        self.release_ready();
    }

    /// Moves every unsent slot entry whose slot another node serves now (on
    /// a disconnected node: every such entry, sent or not) into its slot's
    /// hold.
    fn reroute(&mut self) {
        let mut touched: Vec<u16> = Vec::new();
        for i in 0..self.nodes.len() {
            let slots = &self.topology.slots;
            let node = &mut self.nodes[i];
            let disconnected = !node.connected;
            let from = node.sent;
            // Entries whose probes are in flight stay: their replies are
            // due (a MOVED on the resend redirects them later).
            if (!disconnected && node.probing() > 0) || from >= node.queue.len() {
                continue;
            }
            let tail: Vec<Entry> = node.queue.drain(from..).collect();
            let mut moved = Vec::new();
            for e in tail {
                let elsewhere = e
                    .slot
                    .filter(|_| disconnected || !e.asking)
                    .filter(|&s| slots.node_for(s) != Some(i));
                match elsewhere {
                    Some(slot) => {
                        node.bytes -= e.bytes();
                        moved.push((slot, e));
                    }
                    None => node.queue.push_back(e),
                }
            }
            for (slot, e) in moved {
                self.inflight[usize::from(slot)] -= 1;
                touched.push(slot);
                self.hold(slot, e, Target::Map, Duration::ZERO);
            }
        }
        self.release_touched(touched);
    }
}

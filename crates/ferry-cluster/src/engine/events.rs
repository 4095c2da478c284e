//! The writer's log lines as typed events: failovers, topology changes,
//! lost connections and reconnects, bursts of redirects. Each kind is
//! rate-limited (at most one line per [`LOG_EVERY`], the rest counted and
//! reported with the next line), so a failover that answers thousands of
//! ops with `MOVED` logs a handful of lines. The counters of `/status`
//! (`moved`, `reconnects`, `refreshes`, ...) are kept where they were.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use ferry_ops::{SLOTS, SlotMap};

use super::core::Core;

/// Least time between two lines of one kind.
pub(super) const LOG_EVERY: Duration = Duration::from_secs(1);

/// Something worth a log line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum WriterEvent {
    /// A `MOVED` (or `ASK`) reply; logged as bursts.
    Redirected { ask: bool },
    /// A node's connection is up again.
    Reconnected { node: String },
    /// A node's connection was lost; `parked` transactions go back to the
    /// probe.
    Lost { node: String, parked: usize },
    /// A node refused `WAIT` as a replica (or while failing).
    Demoted {
        node: String,
        reply: String,
        parked: usize,
    },
    /// A refreshed topology moved slots: (from, to, slots) per pair;
    /// `failovers`: (old master, new master) where the old one serves no
    /// slot any more and the new one took them.
    TopologyChanged {
        moves: Vec<(String, String, u32)>,
        failovers: Vec<(String, String)>,
    },
    /// An op got the error reply it tolerates (a second copy of an
    /// every-master command); logged once per source command, not
    /// rate-limited (see `Core::tolerated`).
    Tolerated {
        node: String,
        command: String,
        reply: String,
        counter: &'static str,
    },
}

impl WriterEvent {
    fn kind(&self) -> &'static str {
        match self {
            WriterEvent::Redirected { .. } => "redirects",
            WriterEvent::Reconnected { .. } => "reconnected",
            WriterEvent::Lost { .. } => "lost",
            WriterEvent::Demoted { .. } => "demoted",
            WriterEvent::TopologyChanged { .. } => "topology",
            WriterEvent::Tolerated { .. } => "tolerated",
        }
    }
}

/// Rate limits and burst counts of the log lines.
#[derive(Debug, Default)]
pub(super) struct Telemetry {
    /// Per kind: when its last line was logged, lines suppressed since.
    last: HashMap<&'static str, (Instant, u64)>,
    /// Redirects since the last burst line: (`MOVED`, `ASK`).
    redirects: (u64, u64),
    /// Lines logged (for tests).
    #[cfg(test)]
    pub(super) logged: Vec<WriterEvent>,
}

impl Telemetry {
    /// Logs `event` unless its kind logged within [`LOG_EVERY`]; returns
    /// whether it did.
    pub(super) fn note(&mut self, event: WriterEvent, now: Instant) -> bool {
        if let WriterEvent::Redirected { ask } = event {
            if ask {
                self.redirects.1 += 1;
            } else {
                self.redirects.0 += 1;
            }
        }
        let slot = self.last.entry(event.kind());
        let suppressed = match slot {
            std::collections::hash_map::Entry::Occupied(mut o) => {
                let (at, n) = *o.get();
                if now.saturating_duration_since(at) < LOG_EVERY {
                    o.insert((at, n + 1));
                    return false;
                }
                o.insert((now, 0));
                n
            }
            std::collections::hash_map::Entry::Vacant(v) => {
                v.insert((now, 0));
                0
            }
        };
        emit(&event, suppressed, std::mem::take(&mut self.redirects));
        #[cfg(test)]
        self.logged.push(event);
        true
    }

    /// Logs `event` without a rate limit (the caller logs each once).
    pub(super) fn always(&mut self, event: WriterEvent) {
        emit(&event, 0, (0, 0));
        #[cfg(test)]
        self.logged.push(event);
    }

    /// Logs the redirects of a burst not reported yet, once the line
    /// interval has passed.
    pub(super) fn flush(&mut self, now: Instant) {
        if self.redirects != (0, 0)
            && self
                .last
                .get("redirects")
                .is_none_or(|(at, _)| now.saturating_duration_since(*at) >= LOG_EVERY)
        {
            self.last.insert("redirects", (now, 0));
            let event = WriterEvent::Redirected { ask: false };
            emit(&event, 0, std::mem::take(&mut self.redirects));
            #[cfg(test)]
            self.logged.push(event);
        }
    }
}

fn emit(event: &WriterEvent, suppressed: u64, (moved, ask): (u64, u64)) {
    let more = if suppressed > 0 {
        format!(" (+{suppressed} more like it)")
    } else {
        String::new()
    };
    match event {
        WriterEvent::Redirected { .. } => tracing::info!(
            moved,
            ask,
            "target redirects: {moved} MOVED, {ask} ASK since the last line (slots moving or a failover)"
        ),
        WriterEvent::Reconnected { node } => {
            tracing::info!(node = %node, "reconnected to target node {node}{more}");
        }
        WriterEvent::Lost { node, parked } => tracing::warn!(
            node = %node,
            parked,
            "connection to target node {node} lost; unanswered writes go out again after probes ({parked} unconfirmed transactions to probe){more}"
        ),
        WriterEvent::Demoted {
            node,
            reply,
            parked,
        } => tracing::warn!(
            node = %node,
            parked,
            "target node {node} is no longer a master ({reply}); re-reading the topology, {parked} unconfirmed transactions to probe on the new master{more}"
        ),
        WriterEvent::TopologyChanged { moves, failovers } => {
            for (old, new) in failovers {
                tracing::warn!(old = %old, new = %new, "target master failover: {old} replaced by {new}");
            }
            let text: Vec<String> = moves
                .iter()
                .map(|(from, to, n)| format!("{n} slots {from} -> {to}"))
                .collect();
            tracing::info!("target topology changed: {}{more}", text.join(", "));
        }
        WriterEvent::Tolerated {
            node,
            command,
            reply,
            counter,
        } => tracing::info!(
            node = %node,
            counter,
            "{command}: target node {node} answered '{reply}': already done by another copy \
             of the command (each source shard carries one); counted as {counter}, not an error"
        ),
    }
}

/// Slots that changed owner from `old` to `new`, per (from, to) pair of
/// node indexes (`None`: unserved).
pub(super) fn slot_moves(
    old: &SlotMap,
    new: &SlotMap,
) -> BTreeMap<(Option<usize>, Option<usize>), u32> {
    let mut moves = BTreeMap::new();
    for slot in 0..SLOTS {
        let (a, b) = (old.node_for(slot), new.node_for(slot));
        if a != b {
            *moves.entry((a, b)).or_insert(0) += 1;
        }
    }
    moves
}

impl Core {
    /// Logs `event` (rate-limited).
    pub(super) fn note(&mut self, event: WriterEvent) {
        self.telemetry.note(event, self.now);
    }

    /// Logs a tolerated refusal (deduplicated by the caller).
    pub(super) fn note_tolerated(&mut self, event: WriterEvent) {
        self.telemetry.always(event);
    }

    /// Logs what a topology refresh changed (a failover shows as every slot
    /// of one node moving to another).
    pub(super) fn note_topology(&mut self, old: &SlotMap, changed: bool) {
        if !changed {
            tracing::debug!("target topology re-read: unchanged");
            return;
        }
        let name = |n: Option<usize>, nodes: &[super::entry::NodeState]| {
            n.and_then(|i| nodes.get(i))
                .map_or_else(|| "(none)".to_owned(), |n| n.addr.clone())
        };
        let serving = self.serving();
        let moved = slot_moves(old, &self.topology.slots);
        let failovers = moved
            .keys()
            .filter_map(|&(a, b)| Some((a?, b?)))
            .filter(|(a, _)| !serving.get(*a).copied().unwrap_or(false))
            .map(|(a, b)| (name(Some(a), &self.nodes), name(Some(b), &self.nodes)))
            .collect();
        let moves = moved
            .into_iter()
            .map(|((a, b), n)| (name(a, &self.nodes), name(b, &self.nodes), n))
            .collect();
        self.note(WriterEvent::TopologyChanged { moves, failovers });
    }
}

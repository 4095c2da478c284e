//! Cluster topology: `CLUSTER SHARDS` / `CLUSTER SLOTS` replies into a slot map.
//!
//! ```text
//! CLUSTER SLOTS  (RESP2 and RESP3 alike; deprecated in 7.0, still everywhere)
//!   [ [start, end, [endpoint, port, id, {ip|hostname meta}], replica..., ], ... ]
//! CLUSTER SHARDS (7.0+; maps in RESP3, flat key/value arrays in RESP2)
//!   [ { slots: [start, end, start, end, ...],
//!       nodes: [ { id, port, tls-port?, ip, endpoint, hostname?, role,
//!                  replication-offset, health }, ... ] }, ... ]
//!
//! endpoint (cluster-preferred-endpoint-type of the node that answered):
//!   ip or hostname  -> used as is
//!   "?"             -> hostname preferred but not announced: the node's ip
//!                      (SHARDS `ip`, SLOTS meta `ip`), else the answering host
//!   "" / null       -> unknown-endpoint: the host of the node that answered
//! ```
//!
//! [`SlotMap`] is keyed by range end: `BTreeMap<end, (start, node)>`, with a
//! flat per-slot copy beside it so that a lookup (once or twice per op on
//! the writer's hot path) is one index, not a tree walk. It is also what the writer mutates
//! after `-MOVED` ([`SlotMap::set`], [`Topology::apply_redirect`]); adjacent
//! ranges of one node are merged, so a resharding moving slots one by one
//! does not grow the map. `CLUSTER SHARDS` also lists masters serving no
//! slot (they still need `FLUSHALL`/`FUNCTION LOAD`); `CLUSTER SLOTS` cannot.

use std::collections::BTreeMap;
use std::fmt;

use bytes::Bytes;
use ferry_resp::Value;

use crate::endpoint::HostPort;
use crate::nodes::{ShardNode, SlotsNode, field, pairs, text};
use crate::redirect::{Redirect, RedirectKind};
use crate::show;
use crate::slot::MAX_SLOT;

/// A master node.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Node {
    /// The 40-character node id; `None` when learned from a redirect (or a
    /// pre-4.0 `CLUSTER SLOTS`).
    pub id: Option<String>,
    /// Host to connect to (ip or hostname; IPv6 without brackets), endpoint
    /// rules applied.
    pub host: String,
    /// Client port.
    pub port: u16,
}

impl Node {
    /// `host:port`, with brackets around an IPv6 host.
    pub fn addr(&self) -> String {
        HostPort(&self.host, self.port).to_string()
    }
}

impl fmt::Display for Node {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        HostPort(&self.host, self.port).fmt(f)
    }
}

/// Slot ranges to node indexes, keyed by range end.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SlotMap {
    /// end -> (start, node index); ranges never overlap.
    ranges: BTreeMap<u16, (u16, usize)>,
    /// The same per slot ([`UNSERVED`] for none); empty until a range is set.
    by_slot: Vec<u32>,
}

/// `SlotMap::by_slot` value of a slot no node serves.
const UNSERVED: u32 = u32::MAX;

impl SlotMap {
    /// An empty map (every slot uncovered).
    pub fn new() -> SlotMap {
        SlotMap::default()
    }

    /// The node index serving `slot`, if any.
    #[inline]
    pub fn node_for(&self, slot: u16) -> Option<usize> {
        match self.by_slot.get(usize::from(slot)) {
            Some(&n) if n != UNSERVED => Some(n as usize),
            _ => None,
        }
    }

    /// Points one slot at `node` (after `-MOVED`).
    ///
    /// # Errors
    /// [`TopologyError::BadRange`] if `slot` > 16383.
    pub fn set(&mut self, slot: u16, node: usize) -> Result<(), TopologyError> {
        self.set_range(slot, slot, node)
    }

    /// Points slots `start..=end` at `node`, replacing whatever served them.
    ///
    /// # Errors
    /// [`TopologyError::BadRange`] if `start > end` or `end` > 16383.
    pub fn set_range(&mut self, start: u16, end: u16, node: usize) -> Result<(), TopologyError> {
        if start > end || end > MAX_SLOT {
            return Err(TopologyError::BadRange {
                start: start.into(),
                end: end.into(),
            });
        }
        let overlapping: Vec<(u16, (u16, usize))> = self
            .ranges
            .range(start..)
            .take_while(|(_, (s, _))| *s <= end)
            .map(|(e, v)| (*e, *v))
            .collect();
        for (e, (s, n)) in overlapping {
            self.ranges.remove(&e);
            if s < start {
                self.ranges.insert(start - 1, (s, n));
            }
            if e > end {
                self.ranges.insert(e, (end + 1, n));
            }
        }
        let (mut lo, mut hi) = (start, end);
        if let Some(before) = start.checked_sub(1)
            && let Some(&(s, n)) = self.ranges.get(&before)
            && n == node
        {
            self.ranges.remove(&before);
            lo = s;
        }
        if end < MAX_SLOT
            && let Some((&e, &(s, n))) = self.ranges.range(end + 1..).next()
            && s == end + 1
            && n == node
        {
            self.ranges.remove(&e);
            hi = e;
        }
        self.ranges.insert(hi, (lo, node));
        if self.by_slot.is_empty() {
            self.by_slot = vec![UNSERVED; usize::from(MAX_SLOT) + 1];
        }
        // Node indexes are list positions (a handful of masters).
        let n = u32::try_from(node).unwrap_or(UNSERVED - 1);
        self.by_slot[usize::from(start)..=usize::from(end)].fill(n);
        Ok(())
    }

    /// Whether any slot in `start..=end` is already served.
    fn overlaps(&self, start: u16, end: u16) -> bool {
        self.ranges
            .range(start..)
            .next()
            .is_some_and(|(_, (s, _))| *s <= end)
    }

    /// The slot ranges no node serves, in order (empty when complete).
    pub fn uncovered(&self) -> Vec<(u16, u16)> {
        let mut out = Vec::new();
        let mut next: u32 = 0;
        for (&end, &(start, _)) in &self.ranges {
            if u32::from(start) > next {
                out.push((next as u16, start - 1));
            }
            next = u32::from(end) + 1;
        }
        if next <= u32::from(MAX_SLOT) {
            out.push((next as u16, MAX_SLOT));
        }
        out
    }

    /// Whether every slot is served.
    pub fn is_complete(&self) -> bool {
        self.uncovered().is_empty()
    }

    /// The ranges as `(start, end, node index)`, in slot order.
    pub fn ranges(&self) -> impl Iterator<Item = (u16, u16, usize)> + '_ {
        self.ranges.iter().map(|(&e, &(s, n))| (s, e, n))
    }
}

/// The masters of a cluster and the slots each serves.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Topology {
    /// Master nodes; [`SlotMap`] values index this list.
    pub masters: Vec<Node>,
    /// Which master serves each slot.
    pub slots: SlotMap,
}

/// Why a topology reply could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TopologyError {
    /// The node answered with an error (e.g. cluster support disabled, or
    /// `CLUSTER SHARDS` unknown before 7.0).
    #[error("the node answered with an error: {}", show(.message))]
    ErrorReply {
        /// The error text.
        message: Bytes,
    },
    /// A part of the reply has the wrong type or length.
    #[error("{at}: expected {expected}")]
    Shape {
        /// Where, e.g. `reply[2][2]` or `shard 1 nodes[0]`.
        at: String,
        /// What was expected there.
        expected: &'static str,
    },
    /// A required field of a `CLUSTER SHARDS` map is missing.
    #[error("{at}: missing field {field:?}")]
    MissingField {
        /// Where.
        at: String,
        /// The field name.
        field: &'static str,
    },
    /// A port outside 1..=65535.
    #[error("{at}: bad port {value}")]
    BadPort {
        /// Where.
        at: String,
        /// The value received.
        value: i64,
    },
    /// A slot range with start > end or a slot outside 0..=16383.
    #[error("bad slot range {start}-{end}")]
    BadRange {
        /// First slot as received.
        start: i64,
        /// Last slot as received.
        end: i64,
    },
    /// Two ranges of the reply share slots.
    #[error("slot range {start}-{end} overlaps another range of the reply")]
    Overlap {
        /// First slot.
        start: u16,
        /// Last slot.
        end: u16,
    },
    /// A shard serves slots but lists no master.
    #[error("{at}: serves slots but lists no master")]
    NoMaster {
        /// Where.
        at: String,
    },
}

impl Topology {
    /// Parses a `CLUSTER SHARDS` reply (RESP2 or RESP3). `answered_by` is the
    /// host of the connection that got it, used for empty endpoints.
    ///
    /// # Errors
    /// [`TopologyError`] on an error reply or a malformed one.
    pub fn from_shards(reply: &Value, answered_by: &str) -> Result<Topology, TopologyError> {
        Topology::from_shards_with(reply, answered_by, false)
    }

    /// [`Topology::from_shards`] for a client that connects over TLS when
    /// `tls` is set: a node's `tls-port` is then preferred to its `port`
    /// (a cluster with `tls-cluster yes` lists both when it also has a
    /// plaintext port, only `tls-port` when it is TLS only). Either way the
    /// other port is used when the preferred one is absent or 0.
    ///
    /// # Errors
    /// As [`Topology::from_shards`].
    pub fn from_shards_with(
        reply: &Value,
        answered_by: &str,
        tls: bool,
    ) -> Result<Topology, TopologyError> {
        let mut topo = Topology::default();
        for (i, shard) in array(reply, || "reply".into())?.iter().enumerate() {
            let at = || format!("shard {i}");
            let fields = pairs(shard).ok_or_else(|| shape(at(), "a map"))?;
            let slots = field(&fields, "slots").ok_or_else(|| missing(at(), "slots"))?;
            let slots = array(slots, || format!("{} slots", at()))?;
            if slots.len() % 2 != 0 {
                return Err(shape(format!("{} slots", at()), "start/end pairs"));
            }
            let nodes = field(&fields, "nodes").ok_or_else(|| missing(at(), "nodes"))?;
            let mut master: Option<(Node, bool)> = None;
            for (j, node) in array(nodes, || format!("{} nodes", at()))?
                .iter()
                .enumerate()
            {
                let at = || format!("shard {i} nodes[{j}]");
                let n =
                    ShardNode::parse(node, answered_by, tls).ok_or_else(|| shape(at(), "a map"))?;
                if n.role != Some("master") {
                    continue;
                }
                let online = n.health == Some("online");
                if master.as_ref().is_some_and(|(_, best)| *best || !online) {
                    continue;
                }
                let port = n.port.ok_or_else(|| missing(at(), "port"))?;
                let node = Node {
                    id: n.id.map(str::to_owned),
                    host: n.host,
                    port: port_u16(port, at)?,
                };
                master = Some((node, online));
            }
            let Some((node, online)) = master else {
                if slots.is_empty() {
                    continue;
                }
                return Err(TopologyError::NoMaster { at: at() });
            };
            // (`health` is absent before Redis 7.0's SHARDS: not a failure.)
            let reported_down = !online && shard_health(nodes, node.id.as_deref()).is_some();
            if slots.is_empty() && reported_down {
                // A failed master that lost its slots (e.g. after a
                // failover, until it is forgotten): nothing to reach.
                continue;
            }
            let index = topo.add_master(node);
            for (k, pair) in slots.chunks_exact(2).enumerate() {
                let at = || format!("shard {i} slots[{}]", 2 * k);
                let start = pair[0].as_int().ok_or_else(|| shape(at(), "an integer"))?;
                let end = pair[1].as_int().ok_or_else(|| shape(at(), "an integer"))?;
                topo.add_range(start, end, index)?;
            }
        }
        Ok(topo)
    }

    /// Parses a `CLUSTER SLOTS` reply (RESP2 or RESP3). `answered_by` is the
    /// host of the connection that got it, used for empty endpoints.
    ///
    /// # Errors
    /// [`TopologyError`] on an error reply or a malformed one.
    pub fn from_slots(reply: &Value, answered_by: &str) -> Result<Topology, TopologyError> {
        let mut topo = Topology::default();
        for (i, entry) in array(reply, || "reply".into())?.iter().enumerate() {
            let at = || format!("reply[{i}]");
            let items = array(entry, at)?;
            if items.len() < 3 {
                return Err(shape(at(), "[start, end, master, replicas...]"));
            }
            let start = items[0]
                .as_int()
                .ok_or_else(|| shape(format!("reply[{i}][0]"), "an integer"))?;
            let end = items[1]
                .as_int()
                .ok_or_else(|| shape(format!("reply[{i}][1]"), "an integer"))?;
            let at = || format!("reply[{i}][2]");
            if let Value::Error(message) = &items[2] {
                return Err(TopologyError::ErrorReply {
                    message: message.clone(),
                });
            }
            let n = SlotsNode::parse(&items[2], answered_by).map_err(|e| shape(at(), e))?;
            let node = Node {
                id: n.id.map(str::to_owned),
                host: n.host,
                port: port_u16(n.port, at)?,
            };
            let index = topo.add_master(node);
            topo.add_range(start, end, index)?;
        }
        Ok(topo)
    }

    /// The master serving `slot`, if any.
    pub fn node_for(&self, slot: u16) -> Option<&Node> {
        self.slots.node_for(slot).and_then(|i| self.masters.get(i))
    }

    /// The index of the master at `host:port`, if known.
    pub fn index_of(&self, host: &str, port: u16) -> Option<usize> {
        self.masters
            .iter()
            .position(|n| n.port == port && n.host == host)
    }

    /// Applies a redirect received on a connection to `answered_by`: returns
    /// the index of the node to send to, adding it to
    /// [`masters`](Topology::masters) if unknown; for `MOVED` also points the
    /// slot at it (`ASK` leaves the map alone).
    pub fn apply_redirect(&mut self, redirect: &Redirect, answered_by: &str) -> usize {
        let host = redirect.host_or(answered_by);
        let index = self.index_of(host, redirect.port).unwrap_or_else(|| {
            self.masters.push(Node {
                id: None,
                host: host.to_owned(),
                port: redirect.port,
            });
            self.masters.len() - 1
        });
        if redirect.kind == RedirectKind::Moved {
            // Redirect::parse only yields slots <= 16383, so this cannot fail.
            let _ = self.slots.set(redirect.slot, index);
        }
        index
    }

    /// Adds `node` unless a master with the same id (or, without ids, the
    /// same address) is known; returns its index.
    fn add_master(&mut self, node: Node) -> usize {
        let same = |m: &Node| match (&m.id, &node.id) {
            (Some(a), Some(b)) => a == b,
            _ => m.host == node.host && m.port == node.port,
        };
        self.masters.iter().position(same).unwrap_or_else(|| {
            self.masters.push(node);
            self.masters.len() - 1
        })
    }

    /// Adds a range from a reply: checked, and never over another.
    fn add_range(&mut self, start: i64, end: i64, node: usize) -> Result<(), TopologyError> {
        let bad = TopologyError::BadRange { start, end };
        let (Ok(s), Ok(e)) = (u16::try_from(start), u16::try_from(end)) else {
            return Err(bad);
        };
        if s > e || e > MAX_SLOT {
            return Err(bad);
        }
        if self.slots.overlaps(s, e) {
            return Err(TopologyError::Overlap { start: s, end: e });
        }
        self.slots.set_range(s, e, node)
    }
}

/// The `health` a `CLUSTER SHARDS` node list reports for the node `id`.
fn shard_health(nodes: &Value, id: Option<&str>) -> Option<String> {
    let list = match nodes {
        Value::Array(a) => a,
        _ => return None,
    };
    list.iter().find_map(|n| {
        let fields = pairs(n)?;
        let f = |name| field(&fields, name).and_then(text);
        (f("id") == id).then(|| f("health").map(str::to_owned))?
    })
}

fn shape(at: String, expected: &'static str) -> TopologyError {
    TopologyError::Shape { at, expected }
}

fn missing(at: String, field: &'static str) -> TopologyError {
    TopologyError::MissingField { at, field }
}

fn port_u16(value: i64, at: impl Fn() -> String) -> Result<u16, TopologyError> {
    u16::try_from(value)
        .ok()
        .filter(|&p| p != 0)
        .ok_or_else(|| TopologyError::BadPort { at: at(), value })
}

/// The elements of an array (or set); an error reply or anything else is an error.
fn array(v: &Value, at: impl Fn() -> String) -> Result<&[Value], TopologyError> {
    match v {
        Value::Error(message) => Err(TopologyError::ErrorReply {
            message: message.clone(),
        }),
        _ => v.as_array().ok_or_else(|| shape(at(), "an array")),
    }
}

#[cfg(test)]
mod tests;

//! What a cluster node says about the cluster and about itself: `CLUSTER
//! NODES` text (ownership, replicas, and the node's own slot migration
//! markers) and Valkey 9's `CLUSTER GETSLOTMIGRATIONS` reply (atomic slot
//! migrations, which `CLUSTER NODES` does not show).
//!
//! ```text
//! CLUSTER NODES, one line per node:
//!   <id> <ip:port@cport[,hostname[,aux=...]]> <flags> <master id|-> <ping> <pong> <epoch> <link> <slot>...
//!   flags: myself, master, slave|replica, fail?, fail, handshake, noaddr, nofailover
//!   slot:  "5461"  "0-5460"  "[93->-<id>]" (migrating to <id>)  "[93-<-<id>]" (importing from <id>)
//!   markers are only printed by the node that holds them, on its own line
//!
//! CLUSTER GETSLOTMIGRATIONS (Valkey 9), one map per job (RESP2: flat array):
//!   { name, operation: IMPORT|EXPORT, slot_ranges: "0-99 200-299", ..., state, message, ... }
//!   state success | cancelled | failed: a log entry; anything else: under way
//! ```

use ferry_resp::Value;

use crate::endpoint::{HostPort, split_host_port};
use crate::nodes::{field, pairs, text};
use crate::slot::MAX_SLOT;

/// One line of `CLUSTER NODES`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeLine {
    /// The node id.
    pub id: String,
    /// `host:port` (brackets around IPv6); `None` when the node has no
    /// address yet (`:0`).
    pub addr: Option<String>,
    /// The flags, as listed.
    pub flags: Vec<String>,
    /// The master's id for a replica.
    pub master_id: Option<String>,
    /// Slot ranges served (inclusive).
    pub slots: Vec<(u16, u16)>,
    /// Slots this node is migrating away, with the receiving node's id.
    pub migrating: Vec<(u16, String)>,
    /// Slots this node is importing, with the sending node's id.
    pub importing: Vec<(u16, String)>,
}

impl NodeLine {
    /// Whether the line has flag `f`.
    pub fn has_flag(&self, f: &str) -> bool {
        self.flags.iter().any(|x| x == f)
    }

    /// A master (failed or not).
    pub fn is_master(&self) -> bool {
        self.has_flag("master")
    }

    /// A replica (`slave` or `replica`).
    pub fn is_replica(&self) -> bool {
        self.has_flag("slave") || self.has_flag("replica")
    }

    /// The node that answered.
    pub fn is_myself(&self) -> bool {
        self.has_flag("myself")
    }

    /// Marked failed by the cluster (`fail`, not a mere suspicion `fail?`).
    pub fn is_failed(&self) -> bool {
        self.has_flag("fail")
    }
}

/// A `CLUSTER NODES` line that could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("CLUSTER NODES line {line}: {reason}: {text:?}")]
pub struct NodesError {
    /// 1-based line number.
    pub line: usize,
    /// What was wrong.
    pub reason: &'static str,
    /// The line (cut after 200 bytes).
    pub text: String,
}

/// Parses `CLUSTER NODES` text; blank lines are skipped.
///
/// # Errors
/// [`NodesError`] naming the first line with too few fields, a bad address
/// or a bad slot.
pub fn parse_cluster_nodes(input: &str) -> Result<Vec<NodeLine>, NodesError> {
    let mut out = Vec::new();
    for (i, line) in input.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let err = |reason| NodesError {
            line: i + 1,
            reason,
            text: line.chars().take(200).collect(),
        };
        let f: Vec<&str> = line.split(' ').filter(|s| !s.is_empty()).collect();
        if f.len() < 8 {
            return Err(err("fewer than 8 fields"));
        }
        let addr = parse_addr(f[1]).ok_or_else(|| err("bad address"))?;
        let mut node = NodeLine {
            id: f[0].to_owned(),
            addr,
            flags: f[2].split(',').map(str::to_owned).collect(),
            master_id: (f[3] != "-").then(|| f[3].to_owned()),
            slots: Vec::new(),
            migrating: Vec::new(),
            importing: Vec::new(),
        };
        for s in &f[8..] {
            parse_slot_field(s, &mut node).ok_or_else(|| err("bad slot field"))?;
        }
        out.push(node);
    }
    Ok(out)
}

/// `ip:port@cport[,hostname,...]` into `host:port`; `Ok(None)` for `:0`.
fn parse_addr(s: &str) -> Option<Option<String>> {
    let s = s.split(',').next()?;
    let s = s.split('@').next()?;
    if s.ends_with(":0") {
        return Some(None);
    }
    let (host, port) = split_host_port(s)?;
    if host.is_empty() {
        return Some(None);
    }
    Some(Some(HostPort(host, port).to_string()))
}

fn parse_slot_field(s: &str, node: &mut NodeLine) -> Option<()> {
    if let Some(inner) = s.strip_prefix('[').and_then(|x| x.strip_suffix(']')) {
        if let Some((slot, peer)) = inner.split_once("->-") {
            node.migrating.push((slot_number(slot)?, peer.to_owned()));
        } else if let Some((slot, peer)) = inner.split_once("-<-") {
            node.importing.push((slot_number(slot)?, peer.to_owned()));
        } else {
            return None;
        }
        return Some(());
    }
    let (lo, hi) = match s.split_once('-') {
        Some((a, b)) => (slot_number(a)?, slot_number(b)?),
        None => (slot_number(s)?, slot_number(s)?),
    };
    (lo <= hi).then(|| node.slots.push((lo, hi)))
}

fn slot_number(s: &str) -> Option<u16> {
    s.parse().ok().filter(|n| *n <= MAX_SLOT)
}

/// One job of `CLUSTER GETSLOTMIGRATIONS` (Valkey 9 atomic slot migration).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlotMigration {
    /// The job name.
    pub name: String,
    /// `IMPORT` or `EXPORT`.
    pub operation: String,
    /// The slot ranges moved (inclusive).
    pub slots: Vec<(u16, u16)>,
    /// The job state (`snapshotting`, `success`, ...).
    pub state: String,
}

impl SlotMigration {
    /// Still under way (or cleaning up): anything but `success`,
    /// `cancelled` and `failed`.
    pub fn is_active(&self) -> bool {
        !matches!(self.state.as_str(), "success" | "cancelled" | "failed")
    }
}

/// Reads a `CLUSTER GETSLOTMIGRATIONS` reply (RESP2 or RESP3). `None` when
/// the reply is not an array of maps with `slot_ranges` and `state`, so a
/// reply ferry cannot read is never taken for "nothing under way".
pub fn parse_slot_migrations(reply: &Value) -> Option<Vec<SlotMigration>> {
    let mut out = Vec::new();
    for job in reply.as_array()? {
        let fields = pairs(job)?;
        let get = |name| field(&fields, name).and_then(text).map(str::to_owned);
        let ranges = get("slot_ranges")?;
        let mut slots = Vec::new();
        for r in ranges.split(' ').filter(|r| !r.is_empty()) {
            let (lo, hi) = match r.split_once('-') {
                Some((a, b)) => (slot_number(a)?, slot_number(b)?),
                None => (slot_number(r)?, slot_number(r)?),
            };
            slots.push((lo.min(hi), lo.max(hi)));
        }
        out.push(SlotMigration {
            name: get("name").unwrap_or_default(),
            operation: get("operation").unwrap_or_default(),
            slots,
            state: get("state")?,
        });
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const NODES: &str = "\
07c37dfeb235213a872192d90877d0cd55635b91 127.0.0.1:30004@31004,host4 slave e7d1eecce10fd6bb5eb35b9f99a514335d9ba9ca 0 1426238317239 4 connected
67ed2db8d677e59ec4a4cefb06858cf2a1a89fa1 127.0.0.1:30002@31002 master - 0 1426238316232 2 connected 5461-10922 [5462->-e7d1eecce10fd6bb5eb35b9f99a514335d9ba9ca]
e7d1eecce10fd6bb5eb35b9f99a514335d9ba9ca 127.0.0.1:30001@31001 myself,master - 0 0 1 connected 0-5460 [5462-<-67ed2db8d677e59ec4a4cefb06858cf2a1a89fa1]
6ec23923021cf3ffec47632106199cb7f496ce01 :0@0 master,fail,noaddr - 1426238316232 1426238315232 5 disconnected 10923 10924-16383

";

    #[test]
    fn reads_every_field() {
        let n = parse_cluster_nodes(NODES).unwrap();
        assert_eq!(n.len(), 4);
        assert!(n[0].is_replica() && !n[0].is_master());
        assert_eq!(n[0].addr.as_deref(), Some("127.0.0.1:30004"));
        assert_eq!(
            n[0].master_id.as_deref(),
            Some("e7d1eecce10fd6bb5eb35b9f99a514335d9ba9ca")
        );
        assert_eq!(n[1].slots, [(5461, 10922)]);
        assert_eq!(n[1].migrating[0].0, 5462);
        assert_eq!(n[1].master_id, None);
        assert!(n[2].is_myself() && n[2].is_master());
        assert_eq!(n[2].importing[0], (5462, n[1].id.clone()));
        assert_eq!(n[3].addr, None);
        assert!(n[3].is_failed());
        assert_eq!(n[3].slots, [(10923, 10923), (10924, 16383)]);
    }

    #[test]
    fn ipv6_and_suspected_failure() {
        let n = parse_cluster_nodes("a ::1:7000@17000 master,fail? - 0 0 1 connected 1\n").unwrap();
        assert_eq!(n[0].addr.as_deref(), Some("[::1]:7000"));
        assert!(!n[0].is_failed());
    }

    #[test]
    fn bad_lines_are_named() {
        let e = parse_cluster_nodes("x\n").unwrap_err();
        assert_eq!((e.line, e.reason), (1, "fewer than 8 fields"));
        let e = parse_cluster_nodes("a h:1@2 master - 0 0 1 connected 16384\n").unwrap_err();
        assert_eq!(e.reason, "bad slot field");
        let e = parse_cluster_nodes("\na h:1@2 master - 0 0 1 connected 9-3\n").unwrap_err();
        assert_eq!(e.line, 2);
        let e = parse_cluster_nodes("a h:x@2 master - 0 0 1 connected\n").unwrap_err();
        assert_eq!(e.reason, "bad address");
        let e = parse_cluster_nodes("a h:1@2 master - 0 0 1 connected [5-x-y]\n").unwrap_err();
        assert_eq!(e.reason, "bad slot field");
    }

    fn b(s: &str) -> Value {
        Value::bulk(s.to_owned())
    }

    #[test]
    fn slot_migrations_resp2_and_resp3() {
        let job = |state: &str| {
            vec![
                (b("name"), b("j1")),
                (b("operation"), b("EXPORT")),
                (b("slot_ranges"), b("0-99 200")),
                (b("create_time"), Value::Integer(1)),
                (b("state"), b(state)),
            ]
        };
        let resp3 = Value::Array(vec![Value::Map(job("snapshotting"))]);
        let m = parse_slot_migrations(&resp3).unwrap();
        assert_eq!(m[0].slots, [(0, 99), (200, 200)]);
        assert!(m[0].is_active());
        let flat: Vec<Value> = job("success")
            .into_iter()
            .flat_map(|(k, v)| [k, v])
            .collect();
        let m = parse_slot_migrations(&Value::Array(vec![Value::Array(flat)])).unwrap();
        assert!(!m[0].is_active());
        assert_eq!(m[0].operation, "EXPORT");
        assert!(
            parse_slot_migrations(&Value::Array(vec![]))
                .unwrap()
                .is_empty()
        );
        assert!(parse_slot_migrations(&Value::Integer(1)).is_none());
        let no_state = Value::Array(vec![Value::Map(vec![(b("slot_ranges"), b("1"))])]);
        assert!(parse_slot_migrations(&no_state).is_none());
        let bad = Value::Array(vec![Value::Map(vec![
            (b("slot_ranges"), b("1-x")),
            (b("state"), b("failed")),
        ])]);
        assert!(parse_slot_migrations(&bad).is_none());
    }
}

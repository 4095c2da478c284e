//! Node entries of `CLUSTER SHARDS` / `CLUSTER SLOTS` replies: the one
//! place a node's address is read (endpoint rules, TLS port choice), used
//! by [`Topology`](crate::Topology) for masters and by [`shards_node_addrs`]
//! / [`slots_node_addrs`] for every node (fallback seeds).
//!
//! ```text
//! SHARDS node:  { id, port, tls-port?, ip, endpoint, hostname?, role, health, ... }
//! SLOTS node:   [endpoint, port, id?, {ip|hostname meta}?]
//!
//! endpoint ip/hostname -> as is; "?" -> the node's ip, else the answering
//! host; "" / null -> the answering host
//! ```

use ferry_resp::Value;

use crate::endpoint::HostPort;

/// One node of a `CLUSTER SHARDS` shard, endpoint rules applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ShardNode<'a> {
    /// `id`.
    pub id: Option<&'a str>,
    /// `role` (`master`, `replica`).
    pub role: Option<&'a str>,
    /// `health` (`online`, `failed`, `loading`; absent before 7.0).
    pub health: Option<&'a str>,
    /// Host to connect to.
    pub host: String,
    /// The client port (`tls-port` first for a TLS client); `None` when
    /// both are absent or 0.
    pub port: Option<i64>,
}

impl<'a> ShardNode<'a> {
    /// Reads a node map; `None` when it is not a map.
    pub(crate) fn parse(node: &'a Value, answered_by: &str, tls: bool) -> Option<ShardNode<'a>> {
        let fields = pairs(node)?;
        let text_field = |name| field(&fields, name).and_then(text);
        let port = |name| {
            field(&fields, name)
                .and_then(Value::as_int)
                .filter(|p| *p != 0)
        };
        let (first, second) = if tls {
            ("tls-port", "port")
        } else {
            ("port", "tls-port")
        };
        Some(ShardNode {
            id: text_field("id"),
            role: text_field("role"),
            health: text_field("health"),
            host: resolve_host(text_field("endpoint"), text_field("ip"), answered_by),
            port: port(first).or_else(|| port(second)),
        })
    }
}

/// One node of a `CLUSTER SLOTS` range, endpoint rules applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SlotsNode<'a> {
    /// The id (third element), absent before 4.0.
    pub id: Option<&'a str>,
    /// Host to connect to.
    pub host: String,
    /// The port as received.
    pub port: i64,
}

impl<'a> SlotsNode<'a> {
    /// Reads `[endpoint, port, id?, meta?]`; `Err(what was expected)`.
    pub(crate) fn parse(node: &'a Value, answered_by: &str) -> Result<SlotsNode<'a>, &'static str> {
        let node = match node {
            Value::Array(a) | Value::Set(a) => a,
            _ => return Err("an array"),
        };
        if node.len() < 2 {
            return Err("[endpoint, port, id, meta]");
        }
        let endpoint = match &node[0] {
            Value::Null => None,
            v => Some(text(v).ok_or("a string endpoint")?),
        };
        let port = node[1].as_int().ok_or("an integer port")?;
        let meta = node.get(3).and_then(pairs).unwrap_or_default();
        let ip = field(&meta, "ip").and_then(text);
        Ok(SlotsNode {
            id: node.get(2).and_then(text),
            host: resolve_host(endpoint, ip, answered_by),
            port,
        })
    }
}

/// `host:port` of every node (replicas included) a `CLUSTER SHARDS` reply
/// names, TLS ports when `tls`; entries without a usable port are skipped.
pub fn shards_node_addrs(reply: &Value, answered_by: &str, tls: bool) -> Vec<String> {
    let mut out = Vec::new();
    for shard in reply.as_array().unwrap_or_default() {
        let fields = pairs(shard).unwrap_or_default();
        let nodes = field(&fields, "nodes")
            .and_then(Value::as_array)
            .unwrap_or_default();
        for node in nodes {
            let Some(n) = ShardNode::parse(node, answered_by, tls) else {
                continue;
            };
            out.extend(addr(&n.host, n.port));
        }
    }
    out
}

/// `host:port` of every node (replicas included) a `CLUSTER SLOTS` reply
/// names; malformed entries are skipped.
pub fn slots_node_addrs(reply: &Value, answered_by: &str) -> Vec<String> {
    let mut out = Vec::new();
    for range in reply.as_array().unwrap_or_default() {
        for node in range.as_array().unwrap_or_default().iter().skip(2) {
            if let Ok(n) = SlotsNode::parse(node, answered_by) {
                out.extend(addr(&n.host, Some(n.port)));
            }
        }
    }
    out
}

fn addr(host: &str, port: Option<i64>) -> Option<String> {
    let port = u16::try_from(port?).ok().filter(|p| *p != 0)?;
    Some(HostPort(host, port).to_string())
}

/// The endpoint rules (see the module docs).
fn resolve_host(endpoint: Option<&str>, ip: Option<&str>, answered_by: &str) -> String {
    match endpoint {
        None | Some("") => answered_by,
        Some("?") => ip
            .filter(|ip| !ip.is_empty() && *ip != "?")
            .unwrap_or(answered_by),
        Some(e) => e,
    }
    .to_owned()
}

/// A map's pairs: a RESP3 map, or a RESP2 flat array of even length.
pub(crate) fn pairs(v: &Value) -> Option<Vec<(&Value, &Value)>> {
    match v {
        Value::Map(m) => Some(m.iter().map(|(k, v)| (k, v)).collect()),
        Value::Array(a) if a.len() % 2 == 0 => {
            Some(a.chunks_exact(2).map(|kv| (&kv[0], &kv[1])).collect())
        }
        _ => None,
    }
}

/// The value of the first pair whose key is the string `name`.
pub(crate) fn field<'a>(pairs: &[(&'a Value, &'a Value)], name: &str) -> Option<&'a Value> {
    pairs
        .iter()
        .find(|(k, _)| text(k) == Some(name))
        .map(|(_, v)| *v)
}

/// A string value as UTF-8.
pub(crate) fn text(v: &Value) -> Option<&str> {
    v.as_bytes().and_then(|b| std::str::from_utf8(b).ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(s: &str) -> Value {
        Value::bulk(s.to_owned())
    }

    #[test]
    fn every_node_of_a_shards_reply() {
        let node = |ep: &str, port: i64, tls_port: i64| {
            Value::Array(vec![
                b("endpoint"),
                b(ep),
                b("ip"),
                b("10.0.0.9"),
                b("port"),
                Value::Integer(port),
                b("tls-port"),
                Value::Integer(tls_port),
                b("role"),
                b("replica"),
            ])
        };
        let reply = Value::Array(vec![Value::Map(vec![
            (b("slots"), Value::Array(vec![])),
            (
                b("nodes"),
                Value::Array(vec![
                    node("h1", 7000, 8000),
                    node("?", 7001, 0),
                    node("", 0, 8002),
                    node("::1", 7003, 0),
                    Value::Integer(1),
                ]),
            ),
        ])]);
        assert_eq!(
            shards_node_addrs(&reply, "seed", false),
            ["h1:7000", "10.0.0.9:7001", "seed:8002", "[::1]:7003"]
        );
        assert_eq!(
            shards_node_addrs(&reply, "seed", true),
            ["h1:8000", "10.0.0.9:7001", "seed:8002", "[::1]:7003"]
        );
        assert!(shards_node_addrs(&Value::Integer(1), "seed", false).is_empty());
    }

    #[test]
    fn every_node_of_a_slots_reply() {
        let reply = Value::Array(vec![Value::Array(vec![
            Value::Integer(0),
            Value::Integer(16383),
            Value::Array(vec![b("h1"), Value::Integer(7000), b("id1")]),
            Value::Array(vec![
                b("?"),
                Value::Integer(7001),
                b("id2"),
                Value::Map(vec![(b("ip"), b("10.0.0.2"))]),
            ]),
            Value::Array(vec![Value::Null, Value::Integer(7002)]),
            Value::Array(vec![b("bad")]),
            Value::Array(vec![b("h"), Value::Integer(0)]),
        ])]);
        assert_eq!(
            slots_node_addrs(&reply, "seed"),
            ["h1:7000", "10.0.0.2:7001", "seed:7002"]
        );
    }
}

//! Finding the masters: `CLUSTER SHARDS` (fallback `CLUSTER SLOTS`) from a
//! seed or any known node, seed URLs, standalone targets.

use ferry_ops::{ErrorKind, Topology, TopologyError};
use ferry_resp::Value;

use crate::config::{TargetMode, WriterConfig};
use crate::conn::{Auth, Conn};
use crate::error::WriterError;

/// `host:port` and credentials from `host:port` or
/// `redis[s]://[[user]:password@]host:port[/db]` (TLS itself is
/// [`WriterConfig::tls`]).
pub(crate) fn parse_seed(seed: &str) -> (String, Auth) {
    let Some(rest) = seed
        .strip_prefix("redis://")
        .or_else(|| seed.strip_prefix("rediss://"))
    else {
        return (seed.to_owned(), Auth::none());
    };
    let rest = rest.split('/').next().unwrap_or(rest);
    let Some((creds, host)) = rest.rsplit_once('@') else {
        return (rest.to_owned(), Auth::none());
    };
    let auth = match creds.split_once(':') {
        Some(("", pw)) => Auth::password(pw),
        Some((user, pw)) => Auth::user(user, pw),
        None => Auth::password(creds),
    };
    (host.to_owned(), auth)
}

/// The masters of the cluster at `seed` (credentials from the URL when
/// `config.auth` has none) and the config with those credentials.
pub(crate) async fn masters_of(
    seed: &str,
    mut config: WriterConfig,
) -> Result<(Vec<String>, WriterConfig), WriterError> {
    let (addr, url_auth) = parse_seed(seed);
    if config.auth.password.is_none() {
        config.auth = url_auth;
    }
    let (topology, _) = discover(&addr, &config).await?;
    Ok((topology.masters.iter().map(|n| n.addr()).collect(), config))
}

/// Reads the topology from `seed` (`host:port` or a `redis[s]://` URL) the
/// way [`crate::ClusterWriter::connect_with`] does (`CLUSTER SHARDS`, else
/// `CLUSTER SLOTS`; TLS ports when `config.tls` is set), without connecting
/// to the masters. For tools that read the target (`ferry verify`).
///
/// # Errors
/// [`WriterError::NotACluster`] for a standalone seed; connection, `AUTH`
/// and topology errors.
pub async fn discover_topology(seed: &str, config: &WriterConfig) -> Result<Topology, WriterError> {
    let (addr, url_auth) = parse_seed(seed);
    let mut config = config.clone();
    if config.auth.password.is_none() {
        config.auth = url_auth;
    }
    discover(&addr, &config).await.map(|(t, _)| t)
}

/// Re-reads the topology from the first of `addrs` that answers with a
/// usable one (the engine puts reachable masters first, then every other
/// address it has seen). Returns it with every node address it names, or
/// the last error.
pub(crate) async fn refresh_topology(
    addrs: Vec<String>,
    config: WriterConfig,
) -> Result<(Topology, Vec<String>), WriterError> {
    let mut last = WriterError::Stopped;
    for addr in addrs {
        match discover(&addr, &config).await {
            Ok(found) => return Ok(found),
            Err(e) => last = e,
        }
    }
    Err(last)
}

/// `CLUSTER SHARDS`, falling back to `CLUSTER SLOTS`; also returns the
/// address of every node the reply names (replicas included), as fallback
/// seeds for a later topology refresh.
pub(crate) async fn discover(
    addr: &str,
    config: &WriterConfig,
) -> Result<(Topology, Vec<String>), WriterError> {
    if config.mode == TargetMode::Standalone {
        return Ok((standalone_topology(addr)?, Vec::new()));
    }
    let mut conn = Conn::connect_tls(
        addr,
        &config.auth,
        config.connect_timeout,
        config.tls.as_ref(),
    )
    .await?;
    let host = addr.rsplit_once(':').map_or(addr, |(h, _)| h);
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let not_a_cluster = |reply: &Value| match reply {
        Value::Error(e) if contains(e, b"cluster support disabled") => {
            Some(WriterError::NotACluster {
                addr: addr.to_owned(),
                message: String::from_utf8_lossy(e).into_owned(),
            })
        }
        _ => None,
    };
    let topo_err = |source: TopologyError| WriterError::Topology {
        addr: addr.to_owned(),
        source,
    };
    let reply = conn
        .call(&["CLUSTER", "SHARDS"], config.connect_timeout)
        .await?;
    if let Some(e) = not_a_cluster(&reply) {
        return Err(e);
    }
    let (topology, known) = match &reply {
        Value::Error(e) if ErrorKind::classify(e) == ErrorKind::Other => {
            // Before 7.0: unknown subcommand.
            let reply = conn
                .call(&["CLUSTER", "SLOTS"], config.connect_timeout)
                .await?;
            if let Some(e) = not_a_cluster(&reply) {
                return Err(e);
            }
            let topology = Topology::from_slots(&reply, host).map_err(topo_err)?;
            (topology, slots_addrs(&reply, host))
        }
        _ => {
            let tls = config.tls.is_some();
            let topology = Topology::from_shards_with(&reply, host, tls).map_err(topo_err)?;
            (topology, shards_addrs(&reply, host, tls))
        }
    };
    if topology.masters.is_empty() {
        return Err(WriterError::Topology {
            addr: addr.to_owned(),
            source: TopologyError::NoMaster {
                at: "CLUSTER SHARDS".into(),
            },
        });
    }
    Ok((topology, known))
}

/// A standalone server as a one-master topology serving every slot.
fn standalone_topology(addr: &str) -> Result<Topology, WriterError> {
    let bad = || WriterError::Topology {
        addr: addr.to_owned(),
        source: TopologyError::NoMaster {
            at: "a standalone address without a port".into(),
        },
    };
    let (host, port) = addr.rsplit_once(':').ok_or_else(bad)?;
    let port = port.parse().map_err(|_| bad())?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let mut topology = Topology::default();
    topology.masters.push(ferry_ops::Node {
        id: None,
        host: host.to_owned(),
        port,
    });
    topology
        .slots
        .set_range(0, ferry_ops::SLOTS - 1, 0)
        .map_err(|source| WriterError::Topology {
            addr: addr.to_owned(),
            source,
        })?;
    Ok(topology)
}

/// Key/value pairs of a RESP2 flat array or a RESP3 map.
fn pairs(v: &Value) -> Vec<(&Value, &Value)> {
    match v {
        Value::Map(m) => m.iter().map(|(k, v)| (k, v)).collect(),
        Value::Array(a) if a.len() % 2 == 0 => {
            a.chunks_exact(2).map(|kv| (&kv[0], &kv[1])).collect()
        }
        _ => Vec::new(),
    }
}

fn text(v: &Value) -> Option<&str> {
    v.as_bytes().and_then(|b| std::str::from_utf8(b).ok())
}

/// `host:port` for a node entry, with the endpoint rules of `ferry-ops`
/// (empty endpoint: the answering host; `?`: the ip).
fn node_addr(
    endpoint: Option<&str>,
    ip: Option<&str>,
    port: i64,
    answered_by: &str,
) -> Option<String> {
    let port = u16::try_from(port).ok().filter(|p| *p != 0)?;
    let host = match endpoint {
        None | Some("") => answered_by,
        Some("?") => ip
            .filter(|ip| !ip.is_empty() && *ip != "?")
            .unwrap_or(answered_by),
        Some(e) => e,
    };
    Some(
        ferry_ops::Node {
            id: None,
            host: host.to_owned(),
            port,
        }
        .addr(),
    )
}

/// Every node address in a `CLUSTER SHARDS` reply (TLS ports when `tls`).
fn shards_addrs(reply: &Value, answered_by: &str, tls: bool) -> Vec<String> {
    let mut out = Vec::new();
    for shard in reply.as_array().unwrap_or_default() {
        let shard = pairs(shard);
        let nodes = shard
            .iter()
            .find(|(k, _)| text(k) == Some("nodes"))
            .and_then(|(_, v)| v.as_array())
            .unwrap_or_default();
        for node in nodes {
            let f = pairs(node);
            let get = |name: &str| {
                f.iter()
                    .find(|(k, _)| text(k) == Some(name))
                    .map(|(_, v)| *v)
            };
            let port = |name| get(name).and_then(Value::as_int).filter(|p| *p != 0);
            let port = if tls {
                port("tls-port").or_else(|| port("port"))
            } else {
                port("port").or_else(|| port("tls-port"))
            }
            .unwrap_or(0);
            let endpoint = get("endpoint").and_then(text);
            let ip = get("ip").and_then(text);
            out.extend(node_addr(endpoint, ip, port, answered_by));
        }
    }
    out
}

/// Every node address in a `CLUSTER SLOTS` reply.
fn slots_addrs(reply: &Value, answered_by: &str) -> Vec<String> {
    let mut out = Vec::new();
    for range in reply.as_array().unwrap_or_default() {
        for node in range.as_array().unwrap_or_default().iter().skip(2) {
            let node = node.as_array().unwrap_or_default();
            let endpoint = node.first().and_then(text);
            let port = node.get(1).and_then(Value::as_int).unwrap_or(0);
            out.extend(node_addr(endpoint, None, port, answered_by));
        }
    }
    out
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeds() {
        assert_eq!(
            parse_seed("127.0.0.1:7000"),
            ("127.0.0.1:7000".into(), Auth::none())
        );
        assert_eq!(
            parse_seed("redis://127.0.0.1:7000"),
            ("127.0.0.1:7000".into(), Auth::none())
        );
        assert_eq!(
            parse_seed("redis://:pw@h:1/0"),
            ("h:1".into(), Auth::password("pw"))
        );
        assert_eq!(
            parse_seed("rediss://:pw@h:1"),
            ("h:1".into(), Auth::password("pw"))
        );
        assert_eq!(
            parse_seed("redis://u:p:w@h:1"),
            ("h:1".into(), Auth::user("u", "p:w"))
        );
    }
}

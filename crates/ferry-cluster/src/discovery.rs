//! Finding the masters: `CLUSTER SHARDS` (fallback `CLUSTER SLOTS`) from a
//! seed or any known node, seed URLs, standalone targets.

use ferry_ops::{Endpoint, ErrorKind, Topology, TopologyError};
use ferry_resp::Value;

use crate::config::{TargetMode, WriterConfig};
use crate::conn::{Auth, Conn};
use crate::error::WriterError;

/// `host:port` and credentials from `host:port` or
/// `redis[s]://[[user]:password@]host:port[/db]` (TLS itself is
/// [`WriterConfig::tls`]).
pub(crate) fn parse_seed(seed: &str) -> Result<(String, Auth), WriterError> {
    let e = Endpoint::parse_seed(seed)?;
    Ok((e.addr(), e.auth))
}

/// The masters of the cluster at `seed` (credentials from the URL when
/// `config.auth` has none) and the config with those credentials.
pub(crate) async fn masters_of(
    seed: &str,
    mut config: WriterConfig,
) -> Result<(Vec<String>, WriterConfig), WriterError> {
    let (addr, url_auth) = parse_seed(seed)?;
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
    let (addr, url_auth) = parse_seed(seed)?;
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
    let host = ferry_ops::host_of(addr);
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
            (topology, ferry_ops::slots_node_addrs(&reply, host))
        }
        _ => {
            let tls = config.tls.is_some();
            let topology = Topology::from_shards_with(&reply, host, tls).map_err(topo_err)?;
            (topology, ferry_ops::shards_node_addrs(&reply, host, tls))
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
    let (host, port) = ferry_ops::split_host_port(addr).ok_or_else(bad)?;
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

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeds() {
        assert_eq!(
            parse_seed("127.0.0.1:7000").unwrap(),
            ("127.0.0.1:7000".into(), Auth::none())
        );
        assert_eq!(
            parse_seed("redis://127.0.0.1:7000").unwrap(),
            ("127.0.0.1:7000".into(), Auth::none())
        );
        assert_eq!(
            parse_seed("redis://:pw@h:1/0").unwrap(),
            ("h:1".into(), Auth::password("pw"))
        );
        assert_eq!(
            parse_seed("rediss://:pw@h:1").unwrap(),
            ("h:1".into(), Auth::password("pw"))
        );
        assert_eq!(
            parse_seed("redis://u:p:w@h:1").unwrap(),
            ("h:1".into(), Auth::user("u", "p:w"))
        );
        assert_eq!(
            parse_seed("[::1]:7000").unwrap(),
            ("[::1]:7000".into(), Auth::none())
        );
        assert!(matches!(parse_seed("h"), Err(WriterError::Seed(_))));
    }
}

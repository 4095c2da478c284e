//! Connections of `ferry verify` and of the sampled verify: the source
//! node(s) and every master of the target, keys routed by slot.
//!
//! A cluster source (`INFO cluster` says `cluster_enabled:1`) is read on
//! every master (`CLUSTER SHARDS`, fallback `CLUSTER SLOTS`, through
//! [`discover_topology`]), in the order of their addresses so that a saved
//! `--resume` state names them the same way on the next run.

use anyhow::{Context, Result, bail};
use ferry_cluster::{Auth, Conn, TargetMode, WriterConfig, discover_topology};
use ferry_ops::{Topology, key_slot};
use ferry_tls::TlsConfig;

use super::read::{Side, T, call, read};
use crate::config::{Config, SourceMode, parse_endpoint};

/// Where and how to connect to one side.
#[derive(Clone)]
pub(crate) struct Endpoints {
    /// One address per node to read (the source's nodes; the target's
    /// masters, indexed as in `topo`).
    pub addrs: Vec<String>,
    auth: Auth,
    tls: Option<TlsConfig>,
    /// A cluster source: the index in `addrs` of each slot's master
    /// (16384 entries); `None` for one node holding every key.
    owner: Option<Vec<Option<usize>>>,
}

impl Endpoints {
    /// A connection to node `i`, reading db `db` (no `SELECT` for db 0: a
    /// read-only user may lack it).
    pub async fn connect(&self, i: usize, db: u64) -> Result<Conn> {
        let addr = &self.addrs[i];
        let mut c = Conn::connect_tls(addr, &self.auth, T, self.tls.as_ref())
            .await
            .with_context(|| format!("node {addr}"))?;
        if db != 0 {
            call(&mut c, &[b"SELECT", db.to_string().as_bytes()]).await?;
        }
        Ok(c)
    }

    /// Whether this is a cluster source (several masters, keys by slot).
    pub fn is_cluster(&self) -> bool {
        self.owner.is_some()
    }

    /// The index of the node holding `key` (always 0 for one node).
    pub fn node_of(&self, key: &[u8]) -> Result<usize> {
        match &self.owner {
            None => Ok(0),
            Some(owner) => match owner[usize::from(key_slot(key))] {
                Some(n) => Ok(n),
                None => bail!("slot {} of the source is not served", key_slot(key)),
            },
        }
    }

    /// One connection per node, each reading db `db`.
    pub async fn connect_all(&self, db: u64) -> Result<Vec<Conn>> {
        let mut out = Vec::with_capacity(self.addrs.len());
        for i in 0..self.addrs.len() {
            out.push(self.connect(i, db).await?);
        }
        Ok(out)
    }
}

/// The source's nodes: the standalone server, or every master of a
/// cluster source (sorted by address): `source.mode`, or with `auto`
/// what `INFO cluster` says.
pub(crate) async fn source_endpoints(cfg: &Config) -> Result<Endpoints> {
    // A Sentinel source: the master the sentinels name now.
    let src = crate::source::resolve(cfg).await?;
    let addr = src.addr();
    let mut e = Endpoints {
        addrs: vec![addr.clone()],
        auth: src.endpoint.auth,
        tls: src.tls,
        owner: None,
    };
    let cluster = match cfg.source.mode {
        SourceMode::Cluster => true,
        SourceMode::Standalone | SourceMode::Sentinel => false,
        SourceMode::Auto if cfg.source.sentinel.is_some() => false,
        SourceMode::Auto => {
            let mut c = e
                .connect(0, 0)
                .await
                .with_context(|| format!("source {addr}"))?;
            cluster_enabled(&mut c).await?
        }
    };
    if !cluster {
        return Ok(e);
    }
    let wcfg = WriterConfig {
        auth: e.auth.clone(),
        tls: e.tls.clone(),
        connect_timeout: T,
        mode: TargetMode::Cluster,
        ..WriterConfig::default()
    };
    let topo = discover_topology(&addr, &wcfg)
        .await
        .with_context(|| format!("discovering the source cluster from {addr}"))?;
    let (addrs, owner) = by_address(&topo);
    e.addrs = addrs;
    e.owner = Some(owner);
    Ok(e)
}

/// The masters of `topo` sorted by address, and each slot's index among them.
fn by_address(topo: &Topology) -> (Vec<String>, Vec<Option<usize>>) {
    let mut addrs: Vec<String> = topo.masters.iter().map(|n| n.addr()).collect();
    addrs.sort();
    addrs.dedup();
    let mut owner = vec![None; usize::from(ferry_ops::SLOTS)];
    for (start, end, node) in topo.slots.ranges() {
        let a = topo.masters[node].addr();
        let i = addrs.iter().position(|x| *x == a);
        for slot in start..=end {
            owner[usize::from(slot)] = i;
        }
    }
    (addrs, owner)
}

/// `INFO cluster` says `cluster_enabled:1` (a server without the section,
/// or refusing `INFO`, is taken as standalone).
async fn cluster_enabled(c: &mut Conn) -> Result<bool> {
    let v = c.call(&[&b"INFO"[..], b"cluster"], T).await?;
    let text = ferry_ops::info_text(&v).unwrap_or_default();
    Ok(ferry_ops::Info::parse(&text).get_u64("cluster_enabled") == Some(1))
}

/// The target's masters and slot map, discovered once.
pub(crate) struct TargetPlan {
    pub topo: Topology,
    pub nodes: Endpoints,
    /// A standalone server: dbs are kept, `SELECT` before reading.
    pub standalone: bool,
}

impl TargetPlan {
    /// Discover the target from `cfg.target` (TLS, cluster or standalone).
    pub async fn discover(cfg: &Config) -> Result<TargetPlan> {
        let dst = parse_endpoint(&cfg.target.url)?;
        let auth = dst.auth.clone();
        let dst_addr = dst.addr();
        let tls = cfg.target.tls_config();
        let (_, mode) =
            crate::probe::target_format(&dst_addr, &auth, tls.as_ref(), cfg.target.mode).await?;
        let wcfg = WriterConfig {
            auth: auth.clone(),
            tls: tls.clone(),
            connect_timeout: T,
            mode,
            ..WriterConfig::default()
        };
        let topo = discover_topology(&dst_addr, &wcfg)
            .await
            .with_context(|| format!("target {dst_addr}"))?;
        let addrs = topo.masters.iter().map(|n| n.addr()).collect();
        Ok(TargetPlan {
            topo,
            nodes: Endpoints {
                addrs,
                auth,
                tls,
                owner: None,
            },
            standalone: mode == TargetMode::Standalone,
        })
    }

    /// The index of the master serving `key`'s slot.
    pub fn node_of(&self, key: &[u8]) -> Result<usize> {
        match self.topo.slots.node_for(key_slot(key)) {
            Some(n) => Ok(n),
            None => bail!("slot {} of the target is not served", key_slot(key)),
        }
    }
}

/// Connections to every master of the target (one for a standalone
/// target), by slot.
pub struct Target {
    plan: TargetPlan,
    nodes: Vec<Conn>,
}

impl Target {
    /// Discover the target from `cfg.target` (TLS, cluster or standalone)
    /// and connect to every master.
    pub async fn connect(cfg: &Config) -> Result<Target> {
        let plan = TargetPlan::discover(cfg).await?;
        let nodes = plan.nodes.connect_all(0).await?;
        Ok(Target { plan, nodes })
    }

    /// The connection to the master serving `key`'s slot.
    pub fn node_for(&mut self, key: &[u8]) -> Result<&mut Conn> {
        let n = self.plan.node_of(key)?;
        Ok(&mut self.nodes[n])
    }

    /// Read `key` from the master that owns it.
    pub async fn read(&mut self, key: &[u8]) -> Result<Side> {
        read(self.node_for(key)?, key).await
    }
}

/// Connect to the source's node(s) (read-only use): one connection per
/// node of [`Endpoints::addrs`].
pub(crate) async fn connect_source(cfg: &Config) -> Result<(Endpoints, Vec<Conn>)> {
    let src = source_endpoints(cfg).await?;
    let conns = src.connect_all(0).await.context("source")?;
    Ok((src, conns))
}

/// The dbs of a server that hold keys and how many each (`INFO keyspace`).
pub(crate) async fn keyspace(s: &mut Conn) -> Result<Vec<(u64, u64)>> {
    let info = call(s, &[b"INFO", b"keyspace"]).await?;
    let text = ferry_ops::info_text(&info).unwrap_or_default();
    Ok(parse_keyspace(&text))
}

/// `db3:keys=10,expires=0,avg_ttl=0` lines → `(3, 10)`.
fn parse_keyspace(text: &str) -> Vec<(u64, u64)> {
    ferry_ops::Info::parse(text)
        .keyspace()
        .into_iter()
        .map(|d| (d.db, d.keys))
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn keyspace_lines() {
        let text =
            "# Keyspace\r\ndb0:keys=5,expires=1,avg_ttl=3\r\ndb12:keys=7,expires=0,avg_ttl=0\r\n";
        assert_eq!(super::parse_keyspace(text), vec![(0, 5), (12, 7)]);
    }
}

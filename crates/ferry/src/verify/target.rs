//! Connections of `ferry verify` and of the sampled verify: the source
//! node(s) and every master of the target, keys routed by slot.

use anyhow::{Context, Result, bail};
use ferry_cluster::{Auth, Conn, TargetMode, WriterConfig, discover_topology};
use ferry_ops::{Topology, key_slot};
use ferry_tls::TlsConfig;

use super::read::{Side, T, call, read};
use crate::config::{Config, parse_endpoint};

/// Where and how to connect to one side.
#[derive(Clone)]
pub(crate) struct Endpoints {
    /// One address per node to read (the source's nodes; the target's
    /// masters, indexed as in `topo`).
    pub addrs: Vec<String>,
    auth: Auth,
    tls: Option<TlsConfig>,
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

    /// One connection per node, each reading db `db`.
    pub async fn connect_all(&self, db: u64) -> Result<Vec<Conn>> {
        let mut out = Vec::with_capacity(self.addrs.len());
        for i in 0..self.addrs.len() {
            out.push(self.connect(i, db).await?);
        }
        Ok(out)
    }
}

/// The source's nodes: a standalone server, or every master of a cluster
/// source (discovered from `source.url`).
pub(crate) async fn source_endpoints(cfg: &Config) -> Result<Endpoints> {
    let src = parse_endpoint(&cfg.source.url)?;
    let tls = cfg.source.tls_config();
    let mut addrs = vec![src.addr()];
    // INFO first (a read-only source user may not run CLUSTER SHARDS).
    let cluster = match cfg.source.mode {
        crate::config::SourceMode::Standalone => false,
        crate::config::SourceMode::Cluster => true,
        _ => {
            let mut c = Conn::connect_tls(&addrs[0], &src.auth, T, tls.as_ref())
                .await
                .with_context(|| format!("source {}", addrs[0]))?;
            let info = call(&mut c, &[b"INFO", b"cluster"]).await?;
            let text = ferry_ops::info_text(&info).unwrap_or_default();
            ferry_ops::Info::parse(&text).get("cluster_enabled") == Some("1")
        }
    };
    if cluster {
        let wcfg = ferry_cluster::WriterConfig {
            auth: src.auth.clone(),
            tls: tls.clone(),
            mode: ferry_cluster::TargetMode::Cluster,
            ..Default::default()
        };
        if let Ok(t) = ferry_cluster::discover_topology(&cfg.source.url, &wcfg).await {
            addrs = t.masters.iter().map(ferry_ops::Node::addr).collect();
        }
    }
    Ok(Endpoints {
        addrs,
        auth: src.auth,
        tls,
    })
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
            nodes: Endpoints { addrs, auth, tls },
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

/// Connect to the source (read-only use).
pub async fn connect_source(cfg: &Config) -> Result<Conn> {
    let src = source_endpoints(cfg).await?;
    src.connect(0, 0)
        .await
        .with_context(|| format!("source {}", src.addrs[0]))
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

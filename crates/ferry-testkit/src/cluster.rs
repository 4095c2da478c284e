//! A Redis Cluster on free loopback ports: masters only, or masters with
//! replicas ([`Cluster::start_with_replicas`]) for failover tests.
//!
//! Bring-up: start N servers with `cluster-enabled yes` (each on a port whose
//! bus port, port + 10000, is free too), run `redis-cli --cluster create
//! ... --cluster-replicas 0 --cluster-yes`, then wait (bounded) until every
//! node reports `cluster_state:ok`, knows all N nodes, sees all 16384 slots
//! assigned and returns the same `CLUSTER SLOTS` map. A fresh master needs at
//! least 2 s before it reports `ok`, so start one cluster per test binary
//! ([`Cluster::shared`]) and [`Cluster::flushall`] between tests.

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use crate::error::{Result, TestkitError};
use crate::flavor::Flavor;
use crate::server::{LOG_TAIL_LINES, Server, ServerBuilder, TlsFiles, info_field};
use crate::tools::run_bounded;

/// Bound on `redis-cli --cluster create`.
const CREATE_TIMEOUT: Duration = Duration::from_secs(60);
/// Bound on the wait for a consistent, healthy cluster.
const CONVERGE_TIMEOUT: Duration = Duration::from_secs(30);

/// A running cluster. Dropping it kills every node.
#[derive(Debug)]
pub struct Cluster {
    /// The nodes in start order (all masters, unless started with
    /// replicas).
    pub nodes: Vec<Server>,
}

/// One `CLUSTER SLOTS` range: (first slot, last slot, master port).
pub type SlotRange = (u16, u16, u16);

/// The port serving `slot` in `map` (see [`Cluster::slot_map`]).
pub fn port_of_slot(map: &[SlotRange], slot: u16) -> Option<u16> {
    map.iter()
        .find(|(lo, hi, _)| (*lo..=*hi).contains(&slot))
        .map(|(_, _, port)| *port)
}

impl Cluster {
    /// Starts `masters` nodes of `flavor` and joins them into a cluster.
    pub fn start(flavor: Flavor, masters: usize) -> Result<Cluster> {
        Cluster::start_with(flavor, masters, |b| b)
    }

    /// Like [`Cluster::start`], with `configure` applied to every node's
    /// builder (e.g. `|b| b.modules(true)` or `|b| b.password("p")`).
    pub fn start_with(
        flavor: Flavor,
        masters: usize,
        configure: impl Fn(ServerBuilder) -> ServerBuilder,
    ) -> Result<Cluster> {
        assert!(masters >= 1, "a cluster needs at least one master");
        let nodes = (0..masters)
            .map(|_| configure(Server::builder(flavor)).cluster(true).start())
            .collect::<Result<Vec<_>>>()?;
        let cluster = Cluster { nodes };
        cluster.create()?;
        cluster.wait_converged(CONVERGE_TIMEOUT)?;
        Ok(cluster)
    }

    /// Starts `masters` TLS-only nodes of `flavor` (see
    /// [`ServerBuilder::tls_only`]: clients and the cluster bus on TLS, no
    /// plaintext port) and joins them into a cluster. [`Cluster::seed_url`]
    /// is then a `rediss://` URL.
    pub fn start_tls(flavor: Flavor, masters: usize, files: &TlsFiles) -> Result<Cluster> {
        Cluster::start_with(flavor, masters, |b| b.tls_only(files.clone()))
    }

    /// A 3-master cluster of `flavor` shared by every test in this process.
    /// It is never dropped: its servers' watchdogs kill them when the test
    /// process exits. Call [`Cluster::flushall`] at the start of each test.
    ///
    /// # Panics
    /// If the cluster cannot be started.
    pub fn shared(flavor: Flavor) -> &'static Cluster {
        static SHARED: [OnceLock<Cluster>; 4] = [
            OnceLock::new(),
            OnceLock::new(),
            OnceLock::new(),
            OnceLock::new(),
        ];
        let idx = Flavor::all()
            .iter()
            .position(|f| *f == flavor)
            .expect("every flavor is in Flavor::all");
        SHARED[idx].get_or_init(|| {
            Cluster::start(flavor, 3).unwrap_or_else(|e| panic!("shared {flavor} cluster: {e}"))
        })
    }

    /// Starts `masters * (1 + replicas_per_master)` nodes of `flavor` with
    /// `cluster-node-timeout` 1000 ms (a killed master is replaced within
    /// seconds) and joins them with `--cluster-replicas`; waits until every
    /// node is `ok`, agrees on the slot map, sees every replica, and every
    /// replica's link to its master is up. Which node becomes a replica is
    /// up to `redis-cli`: find pairs with [`Cluster::master_replica_pair`].
    pub fn start_with_replicas(
        flavor: Flavor,
        masters: usize,
        replicas_per_master: usize,
    ) -> Result<Cluster> {
        Cluster::start_with_replicas_and(flavor, masters, replicas_per_master, |b| b)
    }

    /// Like [`Cluster::start_with_replicas`], with `configure` applied to
    /// every node's builder after the defaults (so it may override
    /// `cluster-node-timeout`).
    pub fn start_with_replicas_and(
        flavor: Flavor,
        masters: usize,
        replicas_per_master: usize,
        configure: impl Fn(ServerBuilder) -> ServerBuilder,
    ) -> Result<Cluster> {
        assert!(masters >= 3, "redis-cli needs at least 3 masters");
        let total = masters * (1 + replicas_per_master);
        let nodes = (0..total)
            .map(|_| {
                configure(
                    Server::builder(flavor)
                        .cluster(true)
                        .arg("cluster-node-timeout", "1000"),
                )
                .start()
            })
            .collect::<Result<Vec<_>>>()?;
        let cluster = Cluster { nodes };
        cluster.create_with(replicas_per_master)?;
        cluster.wait_converged(CONVERGE_TIMEOUT)?;
        let replicas = masters * replicas_per_master;
        cluster.wait_until(
            "every node to see every replica, replicas in sync",
            CONVERGE_TIMEOUT,
            |c| {
                c.nodes.iter().all(|n| {
                    cluster_nodes(n).is_some_and(|t| {
                        t.lines().filter(|l| l.contains("slave")).count() == replicas
                    })
                }) && c.nodes.iter().all(|n| {
                    let info = n.info("replication");
                    info_field(&info, "role").as_deref() == Some("master")
                        || info_field(&info, "master_link_status").as_deref() == Some("up")
                })
            },
        )?;
        Ok(cluster)
    }

    /// Waits (at most `timeout`) until `ready(self)`; the error names `what`
    /// and carries the nodes' log tails.
    pub fn wait_until(
        &self,
        what: &str,
        timeout: Duration,
        mut ready: impl FnMut(&Cluster) -> bool,
    ) -> Result<()> {
        let start = Instant::now();
        while !ready(self) {
            if start.elapsed() > timeout {
                return Err(TestkitError::Timeout {
                    what: what.to_owned(),
                    seconds: timeout.as_secs_f64(),
                    log_tail: self.log_tails(),
                });
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(())
    }

    /// (master index, replica index) of a master and one of its replicas,
    /// both other than node 0 (tests keep node 0 up as the seed), as node
    /// 0's `CLUSTER NODES` says. `None` if there is no such pair.
    pub fn master_replica_pair(&self) -> Option<(usize, usize)> {
        self.master_replica_pairs().into_iter().next()
    }

    /// Every (master index, replica index) pair of [`Cluster::master_replica_pair`],
    /// in `CLUSTER NODES` order of the replicas.
    pub fn master_replica_pairs(&self) -> Vec<(usize, usize)> {
        self.pairs().unwrap_or_default()
    }

    fn pairs(&self) -> Option<Vec<(usize, usize)>> {
        let text = cluster_nodes(&self.nodes[0])?;
        let mut port_of: std::collections::HashMap<&str, u16> = Default::default();
        let mut replicas: Vec<(u16, &str)> = Vec::new();
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            let f: Vec<&str> = line.split(' ').collect();
            let port = f
                .get(1)
                .and_then(|a| a.split('@').next())
                .and_then(|a| a.rsplit(':').next())
                .and_then(|p| p.parse().ok())?;
            port_of.insert(f[0], port);
            if f.get(2).is_some_and(|fl| fl.contains("slave")) {
                replicas.push((port, f.get(3)?));
            }
        }
        let index = |port: u16| self.nodes.iter().position(|n| n.port() == port);
        Some(
            replicas
                .iter()
                .filter_map(|(r, master)| Some((index(*port_of.get(master)?)?, index(*r)?)))
                .filter(|(m, r)| *m != 0 && *r != 0)
                .collect(),
        )
    }

    /// Waits (at most `timeout`) until node `promoted` reports
    /// `role:master`, node `demoted` (unless `None`, e.g. killed) reports
    /// `role:slave`, and every live node reports `cluster_state:ok`.
    pub fn wait_role_change(
        &self,
        promoted: usize,
        demoted: Option<usize>,
        dead: Option<usize>,
        timeout: Duration,
    ) -> Result<()> {
        self.wait_until(
            &format!("node {promoted} promoted (node {demoted:?} demoted)"),
            timeout,
            |c| {
                role(&c.nodes[promoted]).as_deref() == Some("master")
                    && demoted.is_none_or(|d| role(&c.nodes[d]).as_deref() == Some("slave"))
                    && c.all_ok(dead)
            },
        )
    }

    /// Every node but `dead` reports `cluster_state:ok`.
    pub fn all_ok(&self, dead: Option<usize>) -> bool {
        self.nodes
            .iter()
            .enumerate()
            .filter(|(i, _)| Some(*i) != dead)
            .all(|(_, n)| {
                n.try_conn()
                    .ok()
                    .and_then(|mut c| {
                        redis::cmd("CLUSTER")
                            .arg("INFO")
                            .query::<String>(&mut c)
                            .ok()
                    })
                    .and_then(|info| info_field(&info, "cluster_state"))
                    .as_deref()
                    == Some("ok")
            })
    }

    fn create(&self) -> Result<()> {
        self.create_with(0)
    }

    fn create_with(&self, replicas: usize) -> Result<()> {
        let mut cmd = std::process::Command::new(Flavor::cli_binary()?);
        cmd.arg("--cluster").arg("create");
        cmd.args(self.nodes.iter().map(Server::addr));
        cmd.args(["--cluster-replicas", &replicas.to_string(), "--cluster-yes"]);
        self.cli_args(&mut cmd);
        run_bounded(&mut cmd, CREATE_TIMEOUT).map_err(|e| match e {
            TestkitError::CommandFailed {
                command,
                status,
                output,
            } => TestkitError::CommandFailed {
                command,
                status,
                output: format!("{output}\n{}", self.log_tails()),
            },
            other => other,
        })?;
        Ok(())
    }

    /// Adds the password and TLS options of the nodes to a `redis-cli`
    /// command line.
    pub fn cli_args(&self, cmd: &mut std::process::Command) {
        if let Some(pw) = self.nodes[0].password() {
            cmd.args(["-a", pw, "--no-auth-warning"]);
        }
        if let Some(tls) = self.nodes[0].tls() {
            cmd.arg("--tls").arg("--cacert").arg(&tls.ca_cert);
        }
    }

    /// Waits until every node is healthy and agrees on the slot map.
    pub fn wait_converged(&self, timeout: Duration) -> Result<()> {
        let start = Instant::now();
        loop {
            let Err(last) = self.check_converged() else {
                return Ok(());
            };
            if start.elapsed() > timeout {
                return Err(TestkitError::Timeout {
                    what: format!(
                        "{}-node {} cluster to converge (last: {last})",
                        self.nodes.len(),
                        self.nodes[0].flavor()
                    ),
                    seconds: timeout.as_secs_f64(),
                    log_tail: self.log_tails(),
                });
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// `Ok` if converged, else what is still missing.
    fn check_converged(&self) -> std::result::Result<(), String> {
        let n = self.nodes.len();
        let mut first_map: Option<Vec<SlotRange>> = None;
        for node in &self.nodes {
            let mut conn = node.try_conn().map_err(|e| e.to_string())?;
            let info: String = redis::cmd("CLUSTER")
                .arg("INFO")
                .query(&mut conn)
                .map_err(|e| format!("{}: CLUSTER INFO: {e}", node.addr()))?;
            let field = |f: &str| info_field(&info, f).unwrap_or_default();
            if field("cluster_state") != "ok" {
                return Err(format!(
                    "{}: cluster_state:{}",
                    node.addr(),
                    field("cluster_state")
                ));
            }
            if field("cluster_known_nodes") != n.to_string() {
                return Err(format!(
                    "{}: knows {} of {n} nodes",
                    node.addr(),
                    field("cluster_known_nodes")
                ));
            }
            if field("cluster_slots_assigned") != "16384" {
                return Err(format!("{}: slots not all assigned", node.addr()));
            }
            let nodes: String = redis::cmd("CLUSTER")
                .arg("NODES")
                .query(&mut conn)
                .map_err(|e| format!("{}: CLUSTER NODES: {e}", node.addr()))?;
            for line in nodes.lines().filter(|l| !l.trim().is_empty()) {
                let fields: Vec<&str> = line.split(' ').collect();
                let flags = fields.get(2).copied().unwrap_or("");
                let link = fields.get(7).copied().unwrap_or("");
                if flags.contains("handshake") || flags.contains("fail") || link != "connected" {
                    return Err(format!("{}: not settled: {line}", node.addr()));
                }
            }
            let map =
                slot_map(&mut conn).map_err(|e| format!("{}: CLUSTER SLOTS: {e}", node.addr()))?;
            match &first_map {
                None => first_map = Some(map),
                Some(m) if *m != map => {
                    return Err(format!(
                        "{}: slot map differs from the first node's",
                        node.addr()
                    ));
                }
                Some(_) => {}
            }
        }
        Ok(())
    }

    /// The first node's URL (any node would do as a seed).
    pub fn seed_url(&self) -> String {
        self.nodes[0].url()
    }

    /// Every node's URL.
    pub fn urls(&self) -> Vec<String> {
        self.nodes.iter().map(Server::url).collect()
    }

    /// `FLUSHALL` on every node. Panics on error.
    pub fn flushall(&self) {
        for node in &self.nodes {
            let mut conn = node.conn();
            redis::cmd("FLUSHALL")
                .query::<()>(&mut conn)
                .unwrap_or_else(|e| node.fail(&e));
        }
    }

    /// The slot map as the first node reports it, sorted by first slot.
    pub fn slot_map(&self) -> Vec<SlotRange> {
        let node = &self.nodes[0];
        slot_map(&mut node.conn()).unwrap_or_else(|e| node.fail(&e))
    }

    /// The node that serves `key`, by asking `CLUSTER KEYSLOT` and looking
    /// the slot up in the slot map. Panics on error.
    pub fn node_for_key(&self, key: &[u8]) -> &Server {
        let seed = &self.nodes[0];
        let slot: u16 = redis::cmd("CLUSTER")
            .arg("KEYSLOT")
            .arg(key)
            .query(&mut seed.conn())
            .unwrap_or_else(|e| seed.fail(&e));
        let port = port_of_slot(&self.slot_map(), slot)
            .unwrap_or_else(|| panic!("slot {slot} is not served\n{}", self.log_tails()));
        self.nodes
            .iter()
            .find(|n| n.port() == port)
            .unwrap_or_else(|| panic!("slot {slot} served by unknown port {port}"))
    }

    /// Every node's log tail, labelled.
    pub fn log_tails(&self) -> String {
        self.nodes
            .iter()
            .map(|n| {
                format!(
                    "--- {} (pid {}) ---\n{}",
                    n.addr(),
                    n.pid(),
                    n.log_tail(LOG_TAIL_LINES)
                )
            })
            .collect::<Vec<_>>()
            .join("\n")
    }
}

/// A node's `role` (`master` / `slave`) from `INFO replication`; `None`
/// if it does not answer.
pub fn role(server: &Server) -> Option<String> {
    let mut conn = server.try_conn().ok()?;
    let info: String = redis::cmd("INFO")
        .arg("replication")
        .query(&mut conn)
        .ok()?;
    info_field(&info, "role")
}

/// A node's `CLUSTER NODES` text; `None` if it does not answer.
fn cluster_nodes(server: &Server) -> Option<String> {
    let mut conn = server.try_conn().ok()?;
    redis::cmd("CLUSTER").arg("NODES").query(&mut conn).ok()
}

/// `CLUSTER SLOTS` as sorted (first, last, master port) triples.
fn slot_map(conn: &mut redis::Connection) -> redis::RedisResult<Vec<SlotRange>> {
    let reply: Vec<redis::Value> = redis::cmd("CLUSTER").arg("SLOTS").query(conn)?;
    let mut out = Vec::new();
    for range in reply {
        let redis::Value::Array(items) = range else {
            continue;
        };
        let int = |v: Option<&redis::Value>| match v {
            Some(redis::Value::Int(i)) => u16::try_from(*i).ok(),
            _ => None,
        };
        let master_port = match items.get(2) {
            Some(redis::Value::Array(node)) => int(node.get(1)),
            _ => None,
        };
        if let (Some(lo), Some(hi), Some(port)) =
            (int(items.first()), int(items.get(1)), master_port)
        {
            out.push((lo, hi, port));
        }
    }
    out.sort_unstable();
    Ok(out)
}

//! The source-cluster watcher task: every second it reads the source's
//! topology from one reachable node (`CLUSTER NODES`; the next known node
//! when one fails), the migration markers of every master (their own
//! `CLUSTER NODES` lines, and Valkey 9's `CLUSTER GETSLOTMIGRATIONS`),
//! feeds [`ferry_ops::SourceWatch`] and applies its actions through
//! [`ShardControl`] (gate per shard, resync per shard) and [`WatchStatus`].
//!
//! ```text
//! tick (1 s) -> CLUSTER NODES @ last good node, else seeds and known nodes in turn
//!            -> per master serving slots: CLUSTER NODES (its markers)
//!                                         CLUSTER GETSLOTMIGRATIONS (Valkey 9; an
//!                                         error reply turns it off for that node)
//!               unreachable master: its last markers are kept
//!            -> SourceWatch::observe -> Gate / Resync / MasterChanged / Unfollowed
//! ```

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ferry_cluster::{Auth, Conn, ConnError};
use ferry_ops::{
    SlotSet, Snapshot, SourceWatch, WatchAction, parse_cluster_nodes, parse_slot_migrations,
};
use ferry_resp::Value;
use ferry_tls::TlsConfig;
use tokio_util::sync::CancellationToken;

/// What the watcher drives: one pipeline per source shard.
pub trait ShardControl: Send + Sync {
    /// Shard `shard` owns exactly `slots` now (its gate).
    fn set_slots(&self, shard: &str, slots: &SlotSet);
    /// Full sync of `shard` (`LinkHandle::resync(reason)`).
    fn resync(&self, shard: &str, reason: &str);
    /// The master of `shard` is now `addr` (informational: the link's
    /// locator finds the master itself).
    fn master_changed(&self, shard: &str, addr: Option<&str>) {
        tracing::info!(shard, addr, "source shard master changed");
    }
}

/// The watcher's state for `/status`.
#[derive(Debug, Default)]
pub struct WatchStatus {
    resharding: AtomicBool,
    resyncs: AtomicU64,
    polls_failed: AtomicU64,
    pending: Mutex<Vec<String>>,
    unfollowed: Mutex<Vec<String>>,
}

impl WatchStatus {
    /// Slots are moving on the source, or a resync it calls for is not yet
    /// requested. `ferry cutover` must refuse while this is set (and while a
    /// shard's link is in a full sync).
    pub fn resharding(&self) -> bool {
        self.resharding.load(Ordering::Relaxed)
    }

    /// Resyncs requested so far.
    pub fn resyncs(&self) -> u64 {
        self.resyncs.load(Ordering::Relaxed)
    }

    /// Polls where no source node answered.
    pub fn polls_failed(&self) -> u64 {
        self.polls_failed.load(Ordering::Relaxed)
    }

    /// Shards waiting for their resync.
    pub fn pending(&self) -> Vec<String> {
        self.pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// `shard (id): slots` of masters no pipeline follows.
    pub fn unfollowed(&self) -> Vec<String> {
        self.unfollowed
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

/// How to reach the source.
#[derive(Clone)]
pub struct WatchConfig {
    /// Source node addresses (`host:port`) to start from.
    pub seeds: Vec<String>,
    /// Credentials.
    pub auth: Auth,
    /// TLS, when the source uses it.
    pub tls: Option<TlsConfig>,
    /// Poll period (1 s).
    pub interval: Duration,
    /// Bound on each connect and reply.
    pub timeout: Duration,
}

/// One node's connection and what it supports.
struct NodeConn {
    conn: Conn,
    migrations: bool,
}

/// The poller: connections by address, last markers per master.
struct Poller {
    config: WatchConfig,
    conns: HashMap<String, NodeConn>,
    known: Vec<String>,
    markers: HashMap<String, SlotSet>,
}

impl Poller {
    async fn call(&mut self, addr: &str, args: &[&str]) -> Result<Value, ConnError> {
        if !self.conns.contains_key(addr) {
            let conn = Conn::connect_tls(
                addr,
                &self.config.auth,
                self.config.timeout,
                self.config.tls.as_ref(),
            )
            .await?;
            self.conns.insert(
                addr.to_owned(),
                NodeConn {
                    conn,
                    migrations: true,
                },
            );
        }
        let node = self.conns.get_mut(addr).expect("inserted above");
        let reply = node.conn.call(args, self.config.timeout).await;
        if reply.is_err() {
            self.conns.remove(addr);
        }
        reply
    }

    async fn nodes_text(&mut self, addr: &str) -> Result<String, String> {
        match self.call(addr, &["CLUSTER", "NODES"]).await {
            Ok(v) => match v.as_bytes() {
                Some(b) => Ok(String::from_utf8_lossy(b).into_owned()),
                None => Err(format!("{addr}: CLUSTER NODES answered {v:?}")),
            },
            Err(e) => Err(e.to_string()),
        }
    }

    /// One snapshot, or why none could be taken.
    async fn snapshot(&mut self) -> Result<Snapshot, String> {
        let mut order = self.known.clone();
        for s in &self.config.seeds {
            if !order.contains(s) {
                order.push(s.clone());
            }
        }
        let mut errors = Vec::new();
        let mut found = None;
        for addr in order {
            match self
                .nodes_text(&addr)
                .await
                .and_then(|t| parse_cluster_nodes(&t).map_err(|e| format!("{addr}: {e}")))
            {
                Ok(lines) => {
                    found = Some((addr, lines));
                    break;
                }
                Err(e) => errors.push(e),
            }
        }
        let Some((answered, lines)) = found else {
            return Err(errors.join("; "));
        };
        let mut snap = Snapshot::from_nodes(&lines);
        // Known nodes: the one that answered first, then every node listed.
        self.known = std::iter::once(answered.clone())
            .chain(lines.iter().filter_map(|n| n.addr.clone()))
            .fold(Vec::new(), |mut v, a| {
                if !v.contains(&a) {
                    v.push(a);
                }
                v
            });
        let masters: Vec<String> = lines
            .iter()
            .filter(|n| n.is_master() && !n.is_failed() && !n.slots.is_empty())
            .filter_map(|n| n.addr.clone())
            .collect();
        self.markers.retain(|a, _| masters.contains(a));
        for addr in masters {
            match self.markers_of(&addr).await {
                Ok(m) => {
                    self.markers.insert(addr, m);
                }
                Err(e) => {
                    tracing::debug!(%addr, error = %e, "source master's markers not read; last ones kept")
                }
            }
        }
        for m in self.markers.values() {
            snap.moving.union_with(m);
        }
        Ok(snap)
    }

    /// The slots master `addr` is migrating or importing.
    async fn markers_of(&mut self, addr: &str) -> Result<SlotSet, String> {
        let text = self.nodes_text(addr).await?;
        let lines = parse_cluster_nodes(&text).map_err(|e| format!("{addr}: {e}"))?;
        let mut snap = Snapshot::default();
        snap.add_markers(&lines);
        if self.conns.get(addr).is_some_and(|n| n.migrations) {
            let reply = self
                .call(addr, &["CLUSTER", "GETSLOTMIGRATIONS"])
                .await
                .map_err(|e| e.to_string())?;
            match parse_slot_migrations(&reply) {
                Some(jobs) => snap.add_migrations(&jobs),
                None if matches!(reply, Value::Error(_)) => {
                    if let Some(n) = self.conns.get_mut(addr) {
                        n.migrations = false;
                    }
                }
                None => {
                    return Err(format!(
                        "{addr}: CLUSTER GETSLOTMIGRATIONS answered {reply:?}"
                    ));
                }
            }
        }
        Ok(snap.moving)
    }
}

/// Runs the watcher until `cancel`.
pub async fn run(
    config: WatchConfig,
    mut watch: SourceWatch,
    control: Arc<dyn ShardControl>,
    status: Arc<WatchStatus>,
    cancel: CancellationToken,
) {
    let start = Instant::now();
    let mut tick = tokio::time::interval(config.interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut poller = Poller {
        config,
        conns: HashMap::new(),
        known: Vec::new(),
        markers: HashMap::new(),
    };
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tick.tick() => {}
        }
        let snap = tokio::select! {
            _ = cancel.cancelled() => return,
            s = poller.snapshot() => s,
        };
        let snap = match snap {
            Ok(s) => s,
            Err(e) => {
                status.polls_failed.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(error = %e, "source topology poll: no node answered");
                continue;
            }
        };
        for action in watch.observe(start.elapsed(), &snap) {
            apply(&action, control.as_ref(), &status);
        }
        *status.pending.lock().unwrap_or_else(|e| e.into_inner()) = watch.pending();
    }
}

fn apply(action: &WatchAction, control: &dyn ShardControl, status: &WatchStatus) {
    match action {
        WatchAction::Gate { shard, slots } => {
            if slots.is_empty() {
                tracing::warn!(
                    shard,
                    "source shard owns no slot now: its ops are all dropped"
                );
            } else {
                tracing::info!(shard, slots = %slots, "source shard owns these slots now");
            }
            control.set_slots(shard, slots);
        }
        WatchAction::Resync { shard, gained } => {
            let reason = format!("source resharding: gained slots {gained}");
            tracing::warn!(shard, %reason, "full sync of the shard");
            status.resyncs.fetch_add(1, Ordering::Relaxed);
            control.resync(shard, &reason);
        }
        WatchAction::MasterChanged { shard, addr, .. } => {
            control.master_changed(shard, addr.as_deref());
        }
        WatchAction::Unfollowed { shard, id, slots } => {
            tracing::error!(shard, id, slots = %slots,
                "a source master no ferry pipeline follows serves slots: they are not migrated; restart ferry to follow it");
            status
                .unfollowed
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(format!("{shard} ({id}): {slots}"));
        }
        WatchAction::Resharding(on) => {
            tracing::info!(resharding = on, "source resharding");
            status.resharding.store(*on, Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
#[path = "source_watch_tests.rs"]
mod tests;

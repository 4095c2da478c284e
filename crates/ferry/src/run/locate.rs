//! Where a cluster source shard's link connects: asks any known source
//! node for the current topology and returns the master of the shard that
//! owns this pipeline's slots (with `source.read_from: replica`, an online
//! replica of it, else one not reported failed; its master when there is
//! none). So after a source
//! failover (`CLUSTER FAILOVER`, or a killed master whose replica was
//! promoted) the link PSYNCs the shard's new master with the old replid
//! and offset: `+CONTINUE` when its history allows it, otherwise a full
//! sync of that shard alone.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ferry_cluster::{Auth, Conn};
use ferry_ops::{
    SlotGate, SourceShard, host_of, shards_node_addrs, slots_node_addrs, source_shards,
    source_shards_from_slots,
};
use ferry_replica::{LinkError, Locate};
use ferry_resp::Value;

use crate::config::ReadFrom;

const T: Duration = Duration::from_secs(3);

/// The [`Locate`] of one cluster source shard.
pub struct ShardLocator {
    name: String,
    /// Source nodes to ask, in order (the last that answered first).
    seeds: Mutex<Vec<String>>,
    auth: Auth,
    tls: Option<ferry_tls::TlsConfig>,
    gate: Arc<SlotGate>,
    read_from: ReadFrom,
    /// The address returned last (logged when it changes).
    last: Mutex<String>,
}

impl ShardLocator {
    /// A locator for shard `name` owning `gate`'s slots, asking `seeds`
    /// (every node of the source known at start).
    pub fn new(
        name: String,
        seeds: Vec<String>,
        auth: Auth,
        tls: Option<ferry_tls::TlsConfig>,
        gate: Arc<SlotGate>,
        read_from: ReadFrom,
        first: String,
    ) -> ShardLocator {
        ShardLocator {
            name,
            seeds: Mutex::new(seeds),
            auth,
            tls,
            gate,
            read_from,
            last: Mutex::new(first),
        }
    }

    /// The shards as `addr` sees them, and every node it names.
    async fn ask(&self, addr: &str) -> Result<(Vec<SourceShard>, Vec<String>), String> {
        let mut conn = Conn::connect_tls(addr, &self.auth, T, self.tls.as_ref())
            .await
            .map_err(|e| e.to_string())?;
        let host = host_of(addr).to_owned();
        let reply = conn
            .call(&["CLUSTER", "SHARDS"], T)
            .await
            .map_err(|e| e.to_string())?;
        if let Value::Error(_) = reply {
            let reply = conn
                .call(&["CLUSTER", "SLOTS"], T)
                .await
                .map_err(|e| e.to_string())?;
            let shards = source_shards_from_slots(&reply, &host).map_err(|e| e.to_string())?;
            return Ok((shards, slots_node_addrs(&reply, &host)));
        }
        let tls = self.tls.is_some();
        let shards = source_shards(&reply, &host, tls).map_err(|e| e.to_string())?;
        Ok((shards, shards_node_addrs(&reply, &host, tls)))
    }

    /// The node to replicate from in `shards`.
    fn pick(&self, shards: &[SourceShard]) -> Option<String> {
        let anchor = *self.gate.slots().first()?;
        let shard = shards.iter().find(|s| s.owns(anchor))?;
        if !shard.master.online && self.read_from == ReadFrom::Master {
            return None;
        }
        match self.read_from {
            ReadFrom::Master => Some(shard.master.addr.clone()),
            ReadFrom::Replica => shard
                .replica_to_read()
                .or(Some(&shard.master).filter(|m| m.online))
                .map(|m| m.addr.clone()),
        }
    }

    async fn locate_now(&self) -> Result<String, LinkError> {
        let seeds = self.seeds.lock().map(|s| s.clone()).unwrap_or_default();
        let mut tried = Vec::new();
        for seed in &seeds {
            match self.ask(seed).await {
                Ok((shards, nodes)) => match self.pick(&shards) {
                    Some(addr) => {
                        if let Ok(mut s) = self.seeds.lock() {
                            // The node that answered first next time, then
                            // every node it knows.
                            let mut next = vec![seed.clone()];
                            next.extend(nodes);
                            next.extend(s.iter().cloned());
                            let mut seen = std::collections::HashSet::new();
                            next.retain(|a| seen.insert(a.clone()));
                            next.truncate(64);
                            *s = next;
                        }
                        if let Ok(mut last) = self.last.lock()
                            && *last != addr
                        {
                            tracing::warn!(
                                shard = %self.name,
                                from = %last,
                                to = %addr,
                                "source shard: replicating from another node now (failover)"
                            );
                            *last = addr.clone();
                        }
                        return Ok(addr);
                    }
                    None => tried.push(format!(
                        "{seed}: no online node to replicate from for this shard's slots yet"
                    )),
                },
                Err(e) => tried.push(format!("{seed}: {e}")),
            }
        }
        Err(LinkError::Locate(format!(
            "source shard {}: {}",
            self.name,
            tried.join("; ")
        )))
    }
}

impl Locate for ShardLocator {
    fn locate(&self) -> Pin<Box<dyn Future<Output = Result<String, LinkError>> + Send + '_>> {
        Box::pin(self.locate_now())
    }
}

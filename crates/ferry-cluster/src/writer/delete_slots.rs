//! Deleting every key of some slots: what replaces `FLUSHALL` when one
//! source shard of several takes a full sync (or its stream carries
//! `FLUSHALL`/`FLUSHDB`): the target also holds the other shards' keys.
//!
//! ```text
//! cluster target     topology re-read, then per master serving the slots:
//!                    CLUSTER GETKEYSINSLOT <slot> 1000, pipelined over a
//!                    side connection; UNLINK of each key through the write
//!                    pipelines (MOVED/ASK followed there, per-slot order and
//!                    checkpoints as for any op); flush; again until no
//!                    deletable key is left
//! standalone target  SCAN over the whole db, CRC16 slot of each key, UNLINK
//!                    of those in the slots; flush
//! ```
//! Keys for which `keep` says yes (ferry's own checkpoint keys, keys the
//! filter does not carry) are left alone.

use std::collections::BTreeMap;

use bytes::Bytes;
use ferry_ops::{Op, key_slot};
use ferry_resp::Value;

use super::ClusterWriter;
use crate::error::WriterError;

/// Keys asked for per `CLUSTER GETKEYSINSLOT`.
const BATCH: usize = 1000;
/// Slots asked about in one pipelined round trip.
const SLOTS_PER_TRIP: usize = 512;

impl ClusterWriter {
    /// Deletes every key in `slots` of the target (but those `keep`
    /// protects) with `UNLINK` ops at `offset`, between two flushes: ops
    /// submitted before are acknowledged first, ops after it are submitted
    /// only once every `UNLINK` is. Returns how many keys were deleted.
    ///
    /// # Errors
    /// The writer's fatal error; connection and reply errors of the reads.
    pub async fn delete_slots(
        &mut self,
        slots: &[u16],
        offset: u64,
        keep: &(dyn Fn(&[u8]) -> bool + Send + Sync),
    ) -> Result<u64, WriterError> {
        self.flush().await?;
        let deleted = if self.standalone {
            self.delete_slots_scan(slots, offset, keep, false).await?
        } else {
            self.delete_slots_cluster(slots, offset, keep, false)
                .await?
        };
        self.flush().await?;
        Ok(deleted)
    }

    /// Whether the target holds a key in `slots` that `keep` does not
    /// protect (a lower bound of their number: up to 1000 per slot are
    /// looked at; 0 means none). Reads only.
    ///
    /// # Errors
    /// Connection and reply errors.
    pub async fn keys_in_slots(
        &mut self,
        slots: &[u16],
        keep: &(dyn Fn(&[u8]) -> bool + Send + Sync),
    ) -> Result<u64, WriterError> {
        if self.standalone {
            self.delete_slots_scan(slots, 0, keep, true).await
        } else {
            self.delete_slots_cluster(slots, 0, keep, true).await
        }
    }

    async fn delete_slots_cluster(
        &mut self,
        slots: &[u16],
        offset: u64,
        keep: &(dyn Fn(&[u8]) -> bool + Send + Sync),
        dry: bool,
    ) -> Result<u64, WriterError> {
        self.side_refresh().await;
        let mut pending: Vec<u16> = slots.to_vec();
        let mut deleted = 0u64;
        // Each round deletes up to BATCH keys of every slot still pending.
        while !pending.is_empty() {
            let mut by_master: BTreeMap<String, Vec<u16>> = BTreeMap::new();
            for &s in &pending {
                let Some(addr) = self.node_for_slot(s) else {
                    return Err(WriterError::RetriesExhausted {
                        slot: s,
                        attempts: 1,
                        over: std::time::Duration::ZERO,
                        last: "no target master serves the slot".into(),
                    });
                };
                by_master.entry(addr).or_default().push(s);
            }
            let mut next = Vec::new();
            for (addr, slots) in by_master {
                for chunk in slots.chunks(SLOTS_PER_TRIP) {
                    let cmds: Vec<Vec<Bytes>> = chunk
                        .iter()
                        .map(|s| {
                            vec![
                                Bytes::from_static(b"CLUSTER"),
                                Bytes::from_static(b"GETKEYSINSLOT"),
                                Bytes::from(s.to_string()),
                                Bytes::from(BATCH.to_string()),
                            ]
                        })
                        .collect();
                    let timeout = self.side.config.reply_timeout;
                    let conn = self.side_conn(&addr).await?;
                    let replies = match conn.call_many(&cmds, timeout).await {
                        Ok(r) => r,
                        Err(e) => {
                            self.side.conns.remove(&addr);
                            return Err(e.into());
                        }
                    };
                    for (&slot, reply) in chunk.iter().zip(replies) {
                        let keys = match reply {
                            Value::Array(keys) => keys,
                            other => {
                                return Err(WriterError::Rejected {
                                    node: addr.clone(),
                                    command: "CLUSTER GETKEYSINSLOT".into(),
                                    key: slot.to_string(),
                                    reply: format!("{other:?}"),
                                });
                            }
                        };
                        let full = keys.len() >= BATCH;
                        let mut ops = Vec::new();
                        for k in keys {
                            let Some(k) = k.as_bytes().cloned() else {
                                continue;
                            };
                            if keep(&k) {
                                continue;
                            }
                            ops.push(Op::slot(
                                vec![Bytes::from_static(b"UNLINK"), k],
                                slot,
                                offset,
                            ));
                        }
                        deleted += ops.len() as u64;
                        if dry {
                            continue;
                        }
                        if full && !ops.is_empty() {
                            next.push(slot);
                        }
                        if !ops.is_empty() {
                            self.submit_batch(ops).await?;
                        }
                    }
                }
            }
            if !next.is_empty() {
                // The next batch of those slots once these are gone.
                self.flush().await?;
            }
            pending = next;
        }
        Ok(deleted)
    }

    async fn delete_slots_scan(
        &mut self,
        slots: &[u16],
        offset: u64,
        keep: &(dyn Fn(&[u8]) -> bool + Send + Sync),
        dry: bool,
    ) -> Result<u64, WriterError> {
        let mut wanted = vec![false; usize::from(ferry_ops::SLOTS)];
        for &s in slots {
            if let Some(w) = wanted.get_mut(usize::from(s)) {
                *w = true;
            }
        }
        let mut deleted = 0u64;
        for master in self.masters.clone() {
            let mut cursor = b"0".to_vec();
            loop {
                let (next, keys) = self.scan(&master, &cursor, b"*", BATCH).await?;
                let mut ops = Vec::new();
                for k in keys {
                    let slot = key_slot(&k);
                    if !wanted[usize::from(slot)] || keep(&k) {
                        continue;
                    }
                    ops.push(Op::slot(
                        vec![Bytes::from_static(b"UNLINK"), k],
                        slot,
                        offset,
                    ));
                }
                deleted += ops.len() as u64;
                if dry && deleted > 0 {
                    return Ok(deleted);
                }
                if !ops.is_empty() && !dry {
                    self.submit_batch(ops).await?;
                }
                if next == b"0" {
                    break;
                }
                cursor = next;
            }
        }
        Ok(deleted)
    }
}

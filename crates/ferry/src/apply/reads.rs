//! The applier's reads of the target: cross-slot emulation (reads over
//! the writer's side connection, then writes through the writer), prefix
//! and slot flushes, and the single reads they are built from.

use anyhow::{Context, Result};
use bytes::Bytes;

use super::*;

impl Applier {
    /// Replays a cross-slot command by its [`Plan`] (see
    /// `ferry_ops::emulate` and `docs/decisions.md`), between two barriers
    /// the caller sets: reads over the writer's side connection, writes
    /// through the writer with the command's offset, the destination first:
    /// a crash between the writes replays correctly under per-slot
    /// checkpoints. `Ok(false)`: not replayable after all (an input missing
    /// on the target), counted and logged.
    pub(super) async fn emulate_reads(
        &mut self,
        plan: Plan,
        args: &[Bytes],
        offset: u64,
    ) -> Result<bool> {
        let cmd = lossy(&args[0]);
        match plan {
            Plan::Split(_) => Ok(true),
            Plan::CopyKey {
                from,
                to,
                delete_from,
            } => {
                let from_slot = key_slot(&from);
                if self.writer.committed_before_connect(key_slot(&to), offset) {
                    // Replayed after a restart: the copy is in; only the
                    // source key's change may be missing (skipped if not).
                    if delete_from {
                        self.submit(Op::slot(vec!["DEL".into(), from], from_slot, offset))
                            .await?;
                    }
                    return Ok(true);
                }
                let Some(payload) = self.read_dump(from_slot, &from).await? else {
                    self.skip_unreplayable(&format!(
                        "{cmd} {} {}: {} is missing on the target, nothing written",
                        lossy(&from),
                        lossy(&to),
                        lossy(&from)
                    ));
                    return Ok(false);
                };
                let ttl = match self
                    .read(from_slot, vec!["PTTL".into(), from.clone()])
                    .await?
                {
                    Reply::Integer(ms) if ms > 0 => ms,
                    _ => 0,
                };
                let restore = vec![
                    "RESTORE".into(),
                    to.clone(),
                    ttl.to_string().into(),
                    payload,
                    "REPLACE".into(),
                ];
                self.submit(Op::slot(restore, key_slot(&to), offset))
                    .await?;
                if delete_from {
                    self.flush().await?;
                    self.submit(Op::slot(vec!["DEL".into(), from], from_slot, offset))
                        .await?;
                }
                Ok(true)
            }
            Plan::ListMove {
                from,
                to,
                pop,
                push,
            } => {
                let from_slot = key_slot(&from);
                if self.writer.committed_before_connect(key_slot(&to), offset) {
                    // Replayed after a restart: the push is in.
                    self.submit(Op::slot(vec![pop.pop().into(), from], from_slot, offset))
                        .await?;
                    return Ok(true);
                }
                let index = if pop == End::Left { "0" } else { "-1" };
                let element = match self
                    .read(from_slot, vec!["LINDEX".into(), from.clone(), index.into()])
                    .await?
                {
                    Reply::Bulk(b) => b,
                    other => {
                        self.skip_unreplayable(
                            &format!(
                                "{cmd} {} {}: no element to move on the target ({other:?}),                                  nothing written",
                                lossy(&from),
                                lossy(&to)
                            ),
                        );
                        return Ok(false);
                    }
                };
                let args = vec![push.push().into(), to.clone(), element];
                self.submit(Op::slot(args, key_slot(&to), offset)).await?;
                self.flush().await?;
                self.submit(Op::slot(vec![pop.pop().into(), from], from_slot, offset))
                    .await?;
                Ok(true)
            }
            Plan::Compute {
                slot,
                inputs,
                command,
            } => {
                if self.writer.committed_before_connect(slot, offset) {
                    // Replayed after a restart: the whole group is in.
                    return Ok(true);
                }
                let mut ops = Vec::with_capacity(inputs.len() * 2 + 1);
                let mut temps = vec![Bytes::from_static(b"DEL")];
                for (input, tmp) in inputs {
                    // A missing input reads as empty, as it did on the source.
                    if let Some(payload) = self.read_dump(key_slot(&input), &input).await? {
                        let restore = vec![
                            "RESTORE".into(),
                            tmp.clone(),
                            "0".into(),
                            payload,
                            "REPLACE".into(),
                        ];
                        ops.push(Op::slot(restore, slot, offset));
                        temps.push(tmp);
                    }
                }
                ops.push(Op::slot(command, slot, offset));
                if temps.len() > 1 {
                    ops.push(Op::slot(temps, slot, offset));
                }
                self.last_op_offset = offset;
                self.submit_group(ops).await?;
                Ok(true)
            }
        }
    }

    /// `FLUSHDB` of a db mapped to a key prefix (`filter.db_prefix`):
    /// between two barriers, `SCAN MATCH prefix*` on every master and a
    /// `DEL` through the writer (with the command's offset) of each key the
    /// filter carries. Keys written after the command are submitted only
    /// once every `DEL` is acknowledged; after a crash, per-slot
    /// checkpoints skip the `DEL`s of slots that have them.
    pub(super) async fn flush_prefixes(&mut self, prefixes: &[Bytes], offset: u64) -> Result<()> {
        self.flush().await?;
        let mut deleted = 0u64;
        for prefix in prefixes {
            let mut pattern: Vec<u8> = Vec::with_capacity(prefix.len() + 1);
            for &b in prefix.iter() {
                if matches!(b, b'*' | b'?' | b'[' | b']' | b'\\') {
                    pattern.push(b'\\');
                }
                pattern.push(b);
            }
            pattern.push(b'*');
            for master in self.writer.serving_masters() {
                let mut cursor = b"0".to_vec();
                loop {
                    let (next, keys) = self
                        .writer
                        .scan(&master, &cursor, &pattern, 1000)
                        .await
                        .with_context(|| {
                            format!("scanning {master} for keys under {}", lossy(prefix))
                        })?;
                    for key in keys {
                        let name = &key[prefix.len().min(key.len())..];
                        if !key.starts_with(prefix)
                            || !self.tr.filter().key(name)
                            || is_reserved(name)
                        {
                            continue;
                        }
                        let slot = key_slot(&key);
                        self.submit(Op::slot(vec!["DEL".into(), key], slot, offset))
                            .await?;
                        deleted += 1;
                    }
                    if next == b"0" {
                        break;
                    }
                    cursor = next;
                }
            }
        }
        self.flush().await?;
        tracing::info!(
            deleted,
            prefixes = ?prefixes.iter().map(|p| lossy(p)).collect::<Vec<_>>(),
            "flush of a prefixed db replayed as DEL of its keys"
        );
        Ok(())
    }

    /// Deletes the target's keys in the slots `gate` owns (those the
    /// filter carries; never ferry's own keys), between two barriers, with
    /// `offset` (see `ClusterWriter::delete_slots`).
    pub(super) async fn delete_slots(
        &mut self,
        gate: &SlotGate,
        offset: u64,
        why: &str,
    ) -> Result<()> {
        self.send_pending().await?;
        let slots = gate.slots();
        let started = std::time::Instant::now();
        let filter = self.tr.filter().clone();
        let keep = move |k: &[u8]| is_reserved(k) || !filter.key(k);
        let deleted = self
            .writer
            .delete_slots(&slots, offset, &keep)
            .await
            .context("deleting the target's keys in this shard's slots")?;
        tracing::info!(
            deleted,
            slots = slots.len(),
            ms = started.elapsed().as_millis() as u64,
            "{why}: the target's keys in this shard's slots deleted"
        );
        Ok(())
    }

    /// A read on the target's side connection; an error reply is fatal.
    pub(super) async fn read(&mut self, slot: u16, args: Vec<Bytes>) -> Result<Reply> {
        self.send_pending().await?;
        let reply = self.writer.read(slot, &args).await.with_context(|| {
            format!(
                "reading {} {} on the target to replay a cross-slot command",
                lossy(&args[0]),
                lossy(args.get(1).map_or(&b""[..], |k| &k[..]))
            )
        })?;
        if let Reply::Error(e) = &reply {
            anyhow::bail!(
                "the target refused {} {} (slot {slot}): {}",
                lossy(&args[0]),
                lossy(args.get(1).map_or(&b""[..], |k| &k[..])),
                lossy(e)
            );
        }
        Ok(reply)
    }

    /// `DUMP key`: its payload, `None` if the key does not exist.
    pub(super) async fn read_dump(&mut self, slot: u16, key: &Bytes) -> Result<Option<Bytes>> {
        Ok(
            match self.read(slot, vec!["DUMP".into(), key.clone()]).await? {
                Reply::Bulk(b) => Some(b),
                _ => None,
            },
        )
    }
}

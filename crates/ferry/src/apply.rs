//! Turn what the replica link delivers into cluster writes.
//!
//! ```text
//! LinkEvent::Rdb(Key)        → RESTORE k ttl payload ABSTTL REPLACE   (target reads the format)
//!                            → DEL + SET/RPUSH/SADD/ZADD/HSET/XADD…   (otherwise, and big keys)
//! LinkEvent::Stream(Command) → ferry_ops::route: one slot, split per slot, every master
//!                            → cross-slot RENAME/COPY/LMOVE/SMOVE/*STORE/BITOP/PFMERGE:
//!                              emulated (ferry_ops::emulate plans; barrier, side reads
//!                              of DUMP/PTTL/LINDEX, destination written first, barrier)
//!                            → filter.db_prefix: keys of db N renamed N:key; FLUSHDB of
//!                              such a db as SCAN + DEL of its prefix
//! Applied tokens             → reported to the link once the writer has acknowledged
//!                              every op at or below their offset
//! ```
//! Anything not carried is counted by reason and logged with its key, never
//! dropped silently: keys in a db other than 0 (a cluster has only db 0),
//! already expired keys, commands that cannot be replayed on a cluster, keys
//! under ferry's reserved prefix (`__ferry:`).
//!
//! Checkpoints (`target.checkpoints`, see `docs/design.md`): the snapshot is
//! written with plain idempotent commands; from the snapshot's end on, the
//! writer commits each slot's ops with a checkpoint key, and a source
//! `MULTI`/`EXEC` block is submitted as one group (one transaction when its
//! keys share a slot). A full sync starts a new history (recorded in
//! `state_dir/target.json`); when ferry had written to a target that was
//! empty at its first start, the target's masters are flushed first.

use std::collections::{BTreeMap, VecDeque};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};
use bytes::Bytes;
use ferry_cluster::checkpoint::is_reserved;
use ferry_cluster::{ClusterWriter, Op};
use ferry_ops::{End, Plan, Route, Unreplayable, key_slot};
use ferry_rdb::commands::{CommandBuilder, CommandOptions};
use ferry_rdb::{Flavor, Item, KeyHeader, Value};
use ferry_replica::{Applied, LinkEvent, StreamEvent};
use ferry_resp::Value as Reply;
use serde::{Deserialize, Serialize};

use crate::config::Filter;

/// What the target can `RESTORE`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TargetFormat {
    /// Valkey (as opposed to Redis).
    pub valkey: bool,
    /// Highest RDB version it reads (Valkey: 11 for `REDIS` payloads, 80 for its own).
    pub rdb_version: u16,
}

impl TargetFormat {
    /// From `INFO server` text.
    pub fn from_info(info: &str) -> TargetFormat {
        let field = |name: &str| {
            info.lines()
                .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
                .map(str::trim)
        };
        let version = |v: &str| {
            let mut it = v.split('.').map(|p| p.parse::<u32>().unwrap_or(0));
            (it.next().unwrap_or(0), it.next().unwrap_or(0))
        };
        if let Some(v) = field("valkey_version") {
            let (major, _) = version(v);
            return TargetFormat {
                valkey: true,
                rdb_version: if major >= 9 { 80 } else { 11 },
            };
        }
        let (major, minor) = version(field("redis_version").unwrap_or("0.0"));
        let rdb_version = match (major, minor) {
            (m, _) if m >= 8 => 12,
            (7, n) if n >= 4 => 12,
            (7, n) if n >= 2 => 11,
            (7, _) => 10,
            (6, _) | (5, _) => 9,
            _ => 8,
        };
        TargetFormat {
            valkey: false,
            rdb_version,
        }
    }

    /// The version to stamp on a payload of `rdb_type` from a `flavor`/`version`
    /// file, or `None` if the target cannot read it (use commands).
    pub fn stamp(&self, flavor: Flavor, version: u16, rdb_type: u8) -> Option<u16> {
        match (flavor, self.valkey) {
            (Flavor::Redis, false) => (version <= self.rdb_version).then_some(version),
            (Flavor::Valkey, true) => (version <= self.rdb_version).then_some(version),
            // Valkey reads REDIS payloads up to 11 for types that exist there.
            (Flavor::Redis, true) => (rdb_type <= 21).then_some(version.min(11)),
            (Flavor::Valkey, false) => None,
        }
    }
}

/// Counters for the status page.
#[derive(Debug, Default, Clone)]
pub struct Counters {
    /// Snapshot keys written.
    pub keys_applied: u64,
    /// Stream commands written.
    pub commands_applied: u64,
    /// Cross-slot stream commands replayed by emulation (also counted in
    /// `commands_applied`).
    pub emulated: u64,
    /// Keys or commands not carried, by reason.
    pub skipped: BTreeMap<&'static str, u64>,
    /// Snapshot keys handled (written or skipped), fixed when the last
    /// snapshot ended; None while one is being applied.
    pub snapshot_keys: Option<u64>,
}

/// Name of the target state file in `state_dir`.
pub const TARGET_STATE_FILE: &str = "target.json";
/// Ops of one source transaction buffered at most; a bigger one is
/// submitted in parts (each part still one group).
const MAX_TXN_OPS: usize = 100_000;

/// What ferry records about the target, in `state_dir/target.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TargetState {
    /// `ferry-target/1`.
    pub format: String,
    /// The target held no key when ferry first started on this state_dir
    /// (a later full resync may then flush it).
    pub empty_at_start: bool,
    /// The source history (one full sync) the target's checkpoints belong
    /// to; `None` before the first full sync.
    pub history: Option<String>,
}

impl TargetState {
    /// A fresh state.
    pub fn new(empty_at_start: bool) -> TargetState {
        TargetState {
            format: "ferry-target/1".into(),
            empty_at_start,
            history: None,
        }
    }

    /// Loads `dir/target.json`; `None` if absent.
    pub fn load(dir: &Path) -> Result<Option<TargetState>> {
        let path = dir.join(TARGET_STATE_FILE);
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
        };
        let state: TargetState = serde_json::from_str(&text)
            .with_context(|| format!("corrupt {} (delete it to start over)", path.display()))?;
        Ok(Some(state))
    }

    /// Saves atomically (temp file, fsync, rename, fsync of the directory).
    pub fn save(&self, dir: &Path) -> Result<()> {
        use std::io::Write;
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        let path = dir.join(TARGET_STATE_FILE);
        let tmp = dir.join(format!("{TARGET_STATE_FILE}.tmp"));
        let body = serde_json::to_string(self).context("target state")?;
        let mut f = std::fs::File::create(&tmp)
            .with_context(|| format!("cannot write {}", tmp.display()))?;
        f.write_all(body.as_bytes())
            .and_then(|()| f.sync_all())
            .with_context(|| format!("cannot write {}", tmp.display()))?;
        std::fs::rename(&tmp, &path)
            .with_context(|| format!("cannot rename over {}", path.display()))?;
        if let Ok(d) = std::fs::File::open(dir) {
            let _ = d.sync_all();
        }
        Ok(())
    }
}

/// A name for a new history: the source's replid and offset, plus a nonce
/// so that two full syncs never share one.
pub fn history_name(replid: &str, offset: u64) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let nonce = (nanos as u64) ^ (u64::from(std::process::id()) << 32);
    let short = &replid[..replid.len().min(12)];
    format!("{short}-{offset}-{nonce:016x}")
}

/// Feeds the cluster writer and tracks what is applied.
pub struct Applier {
    writer: ClusterWriter,
    target: TargetFormat,
    restore: bool,
    builder: CommandBuilder,
    file: Option<(Flavor, u16)>,
    snapshot_offset: u64,
    big: Option<(KeyHeader, bool)>,
    /// Tokens to report, with the offset of the last op submitted before them.
    tokens: VecDeque<(u64, Applied)>,
    last_op_offset: u64,
    filter: Filter,
    /// Checkpoint mode for the stream (`target.checkpoints`).
    checkpoints: bool,
    /// `state_dir` and what it records about the target.
    state_dir: PathBuf,
    state: TargetState,
    /// Ops of the source transaction being read (between MULTI and EXEC).
    txn: Option<Vec<Op>>,
    /// A standalone target: dbs kept (`SELECT` before ops of another db),
    /// commands replayed as they are (no slot routing or splitting).
    standalone: bool,
    /// Standalone: the db the last `SELECT` submitted chose (0 at start).
    selected: u64,
    /// The last offset declared complete to the writer.
    marked: u64,
    /// Counters.
    pub counters: Counters,
    /// Modules the target lacks (preflight): values of their types are skipped.
    pub missing_modules: std::collections::BTreeSet<String>,
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

fn lossy(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

impl Applier {
    /// An applier writing through `writer`.
    pub fn new(
        writer: ClusterWriter,
        target: TargetFormat,
        restore: bool,
        filter: Filter,
        checkpoints: bool,
        state_dir: PathBuf,
        state: TargetState,
    ) -> Applier {
        Applier {
            standalone: writer.is_standalone(),
            selected: 0,
            marked: 0,
            writer,
            target,
            restore,
            builder: CommandBuilder::new(CommandOptions {
                replace: true,
                // Stream counters (ENTRIESADDED, ENTRIESREAD) need Redis 7.0+ / RDB 10+.
                stream_v2_args: target.rdb_version >= 10,
                ..Default::default()
            }),
            file: None,
            snapshot_offset: 0,
            big: None,
            tokens: VecDeque::new(),
            last_op_offset: 0,
            filter,
            checkpoints,
            state_dir,
            state,
            txn: None,
            counters: Counters::default(),
            missing_modules: Default::default(),
        }
    }

    /// Left out by the filter: counted, not an error.
    fn filtered(&mut self, reason: &'static str) {
        *self.counters.skipped.entry(reason).or_default() += 1;
        crate::events::KeyFiltered { reason }.emit();
    }

    fn skip(&mut self, reason: &'static str, what: &str) {
        *self.counters.skipped.entry(reason).or_default() += 1;
        crate::events::KeySkipped { reason, what }.emit();
    }

    async fn submit(&mut self, args: Vec<Bytes>, slot: Option<u16>, offset: u64) -> Result<()> {
        if let Some(txn) = &mut self.txn {
            txn.push(Op { args, slot, offset });
            if txn.len() >= MAX_TXN_OPS {
                self.submit_txn().await?;
                self.txn = Some(Vec::new());
            }
            return Ok(());
        }
        self.last_op_offset = offset;
        self.writer
            .submit(Op { args, slot, offset })
            .await
            .context("writing to the target cluster")
    }

    /// Submits the buffered source transaction as one group.
    async fn submit_txn(&mut self) -> Result<()> {
        let Some(ops) = self.txn.take() else {
            return Ok(());
        };
        if let Some(last) = ops.last() {
            self.last_op_offset = last.offset;
        }
        self.writer
            .submit_group(ops)
            .await
            .context("writing to the target cluster")
    }

    /// A full sync begins: a new history. Everything before is finished
    /// first; a target ferry wrote to is flushed if it was empty at the
    /// first start (keys deleted on the source since must not survive).
    async fn new_history(&mut self, replid: &str, offset: u64) -> Result<()> {
        self.txn = None;
        let history = history_name(replid, offset);
        self.writer
            .new_history(history.clone())
            .await
            .context("finishing writes before a full resync")?;
        self.tokens.clear();
        self.last_op_offset = 0;
        self.marked = 0;
        self.writer
            .set_checkpointing(false)
            .await
            .context("target cluster")?;
        if self.state.history.is_some() {
            if self.state.empty_at_start {
                tracing::warn!(
                    "full resync: flushing the target's masters before loading the new snapshot \
                     (the target was empty when ferry first started)"
                );
                self.submit(vec!["FLUSHALL".into()], None, offset + 1)
                    .await?;
            } else {
                tracing::warn!(
                    "full resync into a target that was not empty when ferry first started: \
                     keys deleted on the source since the last sync may remain in the target"
                );
            }
        }
        self.state.history = Some(history);
        self.state.save(&self.state_dir)
    }

    /// Standalone: submits `SELECT db` if the ops before were for another db.
    async fn select(&mut self, db: u64, offset: u64) -> Result<()> {
        if self.standalone && db != self.selected {
            self.selected = db;
            let args = vec![Bytes::from_static(b"SELECT"), db.to_string().into()];
            self.submit(args, Some(0), offset).await?;
        }
        Ok(())
    }

    /// The key prefix of source db `db` (`filter.db_prefix`; cluster only).
    fn prefix(&self, db: u64) -> Option<Bytes> {
        if self.standalone {
            return None;
        }
        self.filter.prefix_for(db)
    }

    /// Whether keys of `db` are carried.
    fn keep_db(&self, db: u64) -> bool {
        self.filter.carries_db(db, self.standalone)
    }

    /// Tells the writer that every op up to the last one is submitted (all
    /// snapshot ops share one offset, a split command several ops): its
    /// applied offset may then reach it.
    ///
    /// Call it after each batch of events: within a batch, an op with a
    /// higher offset already tells the writer the lower ones are complete.
    pub async fn mark_complete(&mut self) -> Result<()> {
        if self.last_op_offset > self.marked {
            self.marked = self.last_op_offset;
            self.writer
                .mark_complete(self.last_op_offset)
                .await
                .context("writing to the target cluster")?;
        }
        Ok(())
    }

    async fn submit_all(&mut self, cmds: Vec<Vec<Bytes>>, slot: u16, offset: u64) -> Result<()> {
        for c in cmds {
            self.submit(c, Some(slot), offset).await?;
        }
        Ok(())
    }

    /// Apply one link event.
    pub async fn event(&mut self, ev: LinkEvent) -> Result<()> {
        match ev {
            LinkEvent::FullSync { replid, offset, .. } => {
                self.new_history(&replid, offset).await?;
                self.snapshot_offset = offset;
                self.file = None;
                self.counters.snapshot_keys = None;
            }
            LinkEvent::Continue { .. } | LinkEvent::Reconnecting { .. } => {}
            LinkEvent::Rdb(item) => self.rdb(item).await?,
            LinkEvent::SnapshotEnd { applied } => {
                if self.checkpoints {
                    self.writer
                        .set_checkpointing(true)
                        .await
                        .context("target cluster")?;
                }
                self.tokens.push_back((self.last_op_offset, applied));
                let c = &self.counters;
                self.counters.snapshot_keys =
                    Some(c.keys_applied + c.skipped.values().sum::<u64>());
            }
            LinkEvent::Stream { event, applied } => {
                self.stream(event).await?;
                self.tokens.push_back((self.last_op_offset, applied));
            }
        }
        Ok(())
    }

    async fn rdb(&mut self, item: Item) -> Result<()> {
        // +1: a snapshot at offset 0 must still count as "something to acknowledge".
        let off = self.snapshot_offset + 1;
        match item {
            Item::Header { flavor, version } => self.file = Some((flavor, version)),
            Item::Function { code } => {
                let args = vec!["FUNCTION".into(), "LOAD".into(), "REPLACE".into(), code];
                self.submit(args, None, off).await?;
            }
            // A server loading the dump skips it too (and counts it).
            Item::EmptyKey(h) => self.skip("empty_key", &lossy(&h.key)),
            Item::ModuleAux { module, .. } => {
                self.skip(
                    "module_aux",
                    &format!("module aux data of {}", module.name()),
                );
            }
            Item::Key(k) => {
                let h = &k.header;
                if is_reserved(&h.key) {
                    self.skip("reserved_prefix", &lossy(&h.key));
                    return Ok(());
                }
                if !self.keep_db(h.db) {
                    self.filtered("filtered_db");
                    return Ok(());
                }
                if !self.filter.key(&h.key) {
                    self.filtered("filtered_key");
                    return Ok(());
                }
                if h.expire_ms.is_some_and(|t| t <= now_ms()) {
                    self.skip("expired", &lossy(&h.key));
                    return Ok(());
                }
                if let Value::Module(m) = &k.value
                    && let Some(module) = crate::modules::module_of_type(&m.id.name())
                    && self.missing_modules.contains(module)
                {
                    let what = format!("{} (module {module}, type {})", lossy(&h.key), m.id.name());
                    self.skip("module_missing", &what);
                    return Ok(());
                }
                self.select(h.db, off).await?;
                let mut k = k;
                if let Some(p) = self.prefix(k.header.db) {
                    k.header.key = ferry_ops::prefixed(&p, &k.header.key);
                }
                let h = &k.header;
                let slot = key_slot(&h.key);
                let stamp = match (self.restore, self.file) {
                    (true, Some((flavor, version))) => {
                        self.target.stamp(flavor, version, h.rdb_type)
                    }
                    _ => None,
                };
                let mut cmds = Vec::new();
                if let (Some(_), Value::String(v), None) = (stamp, &k.value, h.expire_ms) {
                    // A plain string without TTL: SET leaves the same key as
                    // RESTORE REPLACE and costs the target less (no payload
                    // to check and parse).
                    cmds.push(vec!["SET".into(), h.key.clone(), v.clone()]);
                } else if let Some(version) = stamp {
                    let mut c: Vec<Bytes> = vec![
                        "RESTORE".into(),
                        h.key.clone(),
                        h.expire_ms.unwrap_or(0).to_string().into(),
                        k.restore_payload(version),
                        "REPLACE".into(),
                    ];
                    if h.expire_ms.is_some() {
                        c.push("ABSTTL".into());
                    }
                    cmds.push(c);
                } else if let Err(u) = self
                    .builder
                    .whole(h, &k.value, &k.raw, &mut |c| cmds.push(c))
                {
                    self.skip(
                        "unsupported_value",
                        &format!("{}: {}", lossy(&u.key), u.reason),
                    );
                }
                self.submit_all(cmds, slot, off).await?;
                self.counters.keys_applied += 1;
            }
            Item::BigKeyStart(mut h) => {
                if is_reserved(&h.key) {
                    self.skip("reserved_prefix", &lossy(&h.key));
                    self.big = None;
                    return Ok(());
                }
                let keep = self.keep_db(h.db) && self.filter.key(&h.key);
                if keep {
                    self.select(h.db, off).await?;
                } else {
                    let reason = if self.keep_db(h.db) {
                        "filtered_key"
                    } else {
                        "filtered_db"
                    };
                    self.filtered(reason);
                }
                if let Some(p) = self.prefix(h.db) {
                    h.key = ferry_ops::prefixed(&p, &h.key);
                }
                self.big = keep.then_some((h, true));
            }
            Item::BigKeyChunk(v) => {
                if let Some((h, first)) = self.big.take() {
                    let mut cmds = Vec::new();
                    if let Err(u) = self.builder.chunk(&h, &v, first, &mut |c| cmds.push(c)) {
                        self.skip(
                            "unsupported_value",
                            &format!("{}: {}", lossy(&u.key), u.reason),
                        );
                    }
                    self.submit_all(cmds, key_slot(&h.key), off).await?;
                    self.big = Some((h, false));
                }
            }
            Item::BigKeyEnd => {
                if let Some((h, _)) = self.big.take() {
                    let mut cmds = Vec::new();
                    self.builder.finish_key(&h, &mut |c| cmds.push(c));
                    self.submit_all(cmds, key_slot(&h.key), off).await?;
                    self.counters.keys_applied += 1;
                }
            }
            _ => {}
        }
        Ok(())
    }

    async fn stream(&mut self, ev: StreamEvent) -> Result<()> {
        let (cmd, db, end_offset) = match ev {
            StreamEvent::Command {
                cmd,
                db,
                end_offset,
            } => (cmd, db, end_offset),
            StreamEvent::Multi { .. } => {
                // A nested MULTI cannot happen; keep what was read anyway.
                self.submit_txn().await?;
                self.txn = Some(Vec::new());
                return Ok(());
            }
            StreamEvent::Exec { .. } => return self.submit_txn().await,
            _ => return Ok(()),
        };
        if !self.keep_db(db) {
            self.filtered("filtered_db");
            return Ok(());
        }
        let Some(mut args) = self.filter_keys(cmd.args) else {
            return Ok(());
        };
        if let Some(p) = self.prefix(db) {
            let flushdb = args[0].eq_ignore_ascii_case(b"FLUSHDB");
            if flushdb || args[0].eq_ignore_ascii_case(b"FLUSHALL") {
                // A db is a prefix here: delete the keys under it (under
                // every carried db's prefix for FLUSHALL).
                let prefixes: Vec<Bytes> = if flushdb {
                    vec![p]
                } else {
                    let dbs = self.filter.dbs.clone();
                    dbs.iter().filter_map(|&d| self.prefix(d)).collect()
                };
                self.flush_prefixes(&prefixes, end_offset).await?;
                self.counters.emulated += 1;
                self.counters.commands_applied += 1;
                return Ok(());
            }
            args = match ferry_ops::prefix_keys(&args, &p) {
                Ok(a) => a,
                Err(e) => {
                    self.skip("unknown_command", &e.to_string());
                    return Ok(());
                }
            };
        }
        let route = match ferry_ops::route(&args) {
            Ok(r) => r,
            Err(e) => {
                self.skip("unknown_command", &e.to_string());
                return Ok(());
            }
        };
        if self.standalone {
            return self.stream_standalone(args, route, db, end_offset).await;
        }
        match route {
            Route::Slot(slot, args) => self.submit(args, Some(slot), end_offset).await?,
            Route::PerSlot(parts) => {
                for (slot, args) in parts {
                    self.submit(args, Some(slot), end_offset).await?;
                }
            }
            Route::AllMasters => {
                let flush = args.first().is_some_and(|n| {
                    n.eq_ignore_ascii_case(b"FLUSHALL") || n.eq_ignore_ascii_case(b"FLUSHDB")
                });
                let filtering = !self.filter.include_prefixes.is_empty()
                    || !self.filter.exclude_prefixes.is_empty()
                    || self.filter.dbs.len() > 1;
                if flush && filtering {
                    // It would also delete keys the filter keeps out of this migration.
                    self.skip(
                        "flush_with_filter",
                        &format!("{} (db {db})", lossy(&args[0])),
                    );
                    return Ok(());
                }
                self.submit(args, None, end_offset).await?
            }
            Route::None(_) => return Ok(()),
            Route::Unreplayable {
                reason: reason @ Unreplayable::CrossSlot { .. },
            } => match ferry_ops::plan(&args) {
                Ok(plan) => {
                    if !self.emulate(plan, &args, end_offset).await? {
                        return Ok(());
                    }
                    self.counters.emulated += 1;
                }
                Err(_) => {
                    self.skip("unreplayable", &reason.to_string());
                    return Ok(());
                }
            },
            Route::Unreplayable { reason } => {
                self.skip("unreplayable", &reason.to_string());
                return Ok(());
            }
        }
        self.counters.commands_applied += 1;
        Ok(())
    }

    /// Replays a cross-slot command by its [`Plan`] (see
    /// `ferry_ops::emulate` and `docs/decisions.md`). Plans that read the
    /// target run between two barriers (every earlier write acknowledged
    /// before the reads; every write of the plan acknowledged before the
    /// next command is submitted), read over the writer's side connection
    /// and write through the writer with the command's offset, the
    /// destination first: a crash between the writes replays correctly
    /// under per-slot checkpoints. `Ok(false)`: not replayable after all
    /// (an input missing on the target), counted and logged.
    async fn emulate(&mut self, plan: Plan, args: &[Bytes], offset: u64) -> Result<bool> {
        if let Plan::Split(parts) = plan {
            // No reads: the parts are independent writes, one slot each.
            for (slot, part) in parts {
                self.submit(part, Some(slot), offset).await?;
            }
            return Ok(true);
        }
        // Inside a source transaction: what it buffered goes first (one
        // group), the rest of it is buffered anew after the plan.
        let in_txn = self.txn.is_some();
        self.submit_txn().await?;
        self.flush().await?;
        let done = self.emulate_reads(plan, args, offset).await;
        if in_txn {
            self.txn = Some(Vec::new());
        }
        let done = done?;
        self.flush().await?;
        Ok(done)
    }

    async fn emulate_reads(&mut self, plan: Plan, args: &[Bytes], offset: u64) -> Result<bool> {
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
                        self.submit(vec!["DEL".into(), from], Some(from_slot), offset)
                            .await?;
                    }
                    return Ok(true);
                }
                let Some(payload) = self.read_dump(from_slot, &from).await? else {
                    self.skip(
                        "unreplayable",
                        &format!(
                            "{cmd} {} {}: {} is missing on the target, nothing written",
                            lossy(&from),
                            lossy(&to),
                            lossy(&from)
                        ),
                    );
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
                self.submit(restore, Some(key_slot(&to)), offset).await?;
                if delete_from {
                    self.flush().await?;
                    self.submit(vec!["DEL".into(), from], Some(from_slot), offset)
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
                    self.submit(vec![pop.pop().into(), from], Some(from_slot), offset)
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
                        self.skip(
                            "unreplayable",
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
                self.submit(args, Some(key_slot(&to)), offset).await?;
                self.flush().await?;
                self.submit(vec![pop.pop().into(), from], Some(from_slot), offset)
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
                self.writer
                    .submit_group(ops)
                    .await
                    .context("writing to the target cluster")?;
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
    async fn flush_prefixes(&mut self, prefixes: &[Bytes], offset: u64) -> Result<()> {
        let in_txn = self.txn.is_some();
        self.submit_txn().await?;
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
                        if !key.starts_with(prefix) || !self.filter.key(name) || is_reserved(name) {
                            continue;
                        }
                        let slot = key_slot(&key);
                        self.submit(vec!["DEL".into(), key], Some(slot), offset)
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
        if in_txn {
            self.txn = Some(Vec::new());
        }
        tracing::info!(
            deleted,
            prefixes = ?prefixes.iter().map(|p| lossy(p)).collect::<Vec<_>>(),
            "flush of a prefixed db replayed as DEL of its keys"
        );
        Ok(())
    }

    /// A read on the target's side connection; an error reply is fatal.
    async fn read(&mut self, slot: u16, args: Vec<Bytes>) -> Result<Reply> {
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
    async fn read_dump(&mut self, slot: u16, key: &Bytes) -> Result<Option<Bytes>> {
        Ok(
            match self.read(slot, vec!["DUMP".into(), key.clone()]).await? {
                Reply::Bulk(b) => Some(b),
                _ => None,
            },
        )
    }

    /// A stream command into a standalone target: in its db, as it is (no
    /// splitting: one server runs multi-key and cross-db commands itself).
    async fn stream_standalone(
        &mut self,
        args: Vec<Bytes>,
        route: Route,
        db: u64,
        end_offset: u64,
    ) -> Result<()> {
        match route {
            Route::None(_) => return Ok(()),
            Route::Unreplayable {
                reason: reason @ ferry_ops::Unreplayable::Publish { .. },
            } => {
                self.skip("unreplayable", &reason.to_string());
                return Ok(());
            }
            Route::AllMasters => {
                let flushall = args[0].eq_ignore_ascii_case(b"FLUSHALL");
                let filtering = !self.filter.include_prefixes.is_empty()
                    || !self.filter.exclude_prefixes.is_empty()
                    || (flushall && !self.filter.dbs.is_empty());
                if (args[0].eq_ignore_ascii_case(b"FLUSHDB") || flushall) && filtering {
                    // It would also delete keys the filter keeps out.
                    self.skip(
                        "flush_with_filter",
                        &format!("{} (db {db})", lossy(&args[0])),
                    );
                    return Ok(());
                }
            }
            _ => {}
        }
        self.select(db, end_offset).await?;
        self.submit(args, Some(0), end_offset).await?;
        self.counters.commands_applied += 1;
        Ok(())
    }

    /// Apply the key filter to a command: all keys pass → as is; none →
    /// `None` (counted); some → the passing keys of a per-key command
    /// (DEL, UNLINK, TOUCH, MSET), or `None` reported as unreplayable.
    fn filter_keys(&mut self, args: Vec<Bytes>) -> Option<Vec<Bytes>> {
        let keys = match ferry_ops::command_keys(&args) {
            Ok(k) => k,
            Err(_) => return Some(args), // reported by `route`
        };
        let pass: Vec<bool> = keys
            .indexes
            .iter()
            .map(|&i| self.filter.key(&args[i]) && !is_reserved(&args[i]))
            .collect();
        if pass.iter().all(|p| *p) {
            return Some(args);
        }
        if let Some(&i) = keys.indexes.iter().find(|&&i| is_reserved(&args[i])) {
            self.skip(
                "reserved_prefix",
                &format!("{} {}", lossy(&args[0]), lossy(&args[i])),
            );
            if !pass.iter().any(|p| *p) {
                return None;
            }
        }
        if !pass.iter().any(|p| *p) {
            self.filtered("filtered_key");
            return None;
        }
        let name = args[0].to_ascii_uppercase();
        let pairs = match &name[..] {
            b"DEL" | b"UNLINK" | b"TOUCH" => 1,
            b"MSET" | b"MSETNX" => 2,
            _ => {
                self.skip(
                    "unreplayable",
                    &format!(
                        "{} with keys both inside and outside the filter",
                        lossy(&args[0])
                    ),
                );
                return None;
            }
        };
        let mut out = vec![if pairs == 2 {
            Bytes::from_static(b"MSET")
        } else {
            args[0].clone()
        }];
        for (n, &i) in keys.indexes.iter().enumerate() {
            if pass[n] {
                out.extend(args[i..i + pairs].iter().cloned());
            }
        }
        Some(out)
    }

    /// The newest token whose ops are all acknowledged (to hand to the link).
    pub fn applied(&mut self) -> Option<Applied> {
        let acked = self.writer.applied_offset();
        let mut last = None;
        while let Some((op_offset, token)) = self.tokens.front() {
            if *op_offset > acked && *op_offset != 0 {
                break;
            }
            last = Some(*token);
            self.tokens.pop_front();
        }
        last
    }

    /// The writer's counters (redirects, retries, reconnects).
    pub fn writer_stats(&self) -> ferry_cluster::WriterStats {
        self.writer.stats()
    }

    /// The writer's error, if it stopped.
    pub fn writer_error(&self) -> Option<ferry_cluster::WriterError> {
        self.writer.error()
    }

    /// Wait until everything submitted is acknowledged.
    pub async fn flush(&mut self) -> Result<()> {
        self.writer
            .flush()
            .await
            .context("flushing the target cluster")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn target_formats() {
        let redis70 = TargetFormat::from_info("# Server\r\nredis_version:7.0.15\r\n");
        assert_eq!(
            redis70,
            TargetFormat {
                valkey: false,
                rdb_version: 10
            }
        );
        let valkey = TargetFormat::from_info("redis_version:7.2.4\r\nvalkey_version:9.1.2\r\n");
        assert_eq!(
            valkey,
            TargetFormat {
                valkey: true,
                rdb_version: 80
            }
        );
        assert_eq!(redis70.stamp(Flavor::Redis, 10, 18), Some(10));
        assert_eq!(redis70.stamp(Flavor::Redis, 12, 0), None);
        assert_eq!(valkey.stamp(Flavor::Redis, 12, 18), Some(11));
        assert_eq!(valkey.stamp(Flavor::Redis, 12, 25), None);
        assert_eq!(valkey.stamp(Flavor::Valkey, 80, 22), Some(80));
        assert_eq!(redis70.stamp(Flavor::Valkey, 80, 0), None);
    }
}

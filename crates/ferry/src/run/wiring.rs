//! Before the first byte moves: connect the target's writer, run the
//! probes (preflight, source dbs, an empty target), load or start the
//! target state, and start the replica link. Nothing here is spawned on the
//! daemon's tracker: the link owns its tasks and is joined by
//! `Link::shutdown`.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use ferry_cluster::{Auth, CheckpointConfig, ClusterWriter, TargetMode, WriterConfig};
use ferry_replica::{Link, LinkConfig, LinkEvents};
use tokio_util::sync::CancellationToken;

use crate::apply::{Applier, TargetFormat, TargetState, history_name};
use crate::config::{Config, RestoreMode, SyncMode, parse_endpoint, redact};
use crate::probe::{check_source_dbs, target_format, target_is_empty};
use crate::sentinel::Sentinels;

/// What the main loop runs on.
pub struct Wired {
    /// Decides what each event becomes and drives the target's writer.
    pub applier: Applier,
    /// The replica link to the source.
    pub link: Link,
    /// Its events.
    pub events: LinkEvents,
    /// Keys in the carried dbs of the source at start (for progress).
    pub keys_total: Option<u64>,
    /// The target is a standalone server.
    pub standalone: bool,
    /// The target's masters at start.
    pub masters: Vec<String>,
}

/// What makes a pipeline one shard of a cluster source (`cfg.source.url`
/// and `cfg.state_dir` are then the shard's node and subdirectory).
#[derive(Debug, Clone)]
pub struct ShardWire {
    /// The checkpoint namespace (the shard name).
    pub namespace: String,
    /// The slots the shard owns now.
    pub gate: Arc<ferry_ops::SlotGate>,
    /// Where the shard's link connects (follows a source failover).
    pub locator: Option<Arc<dyn ferry_replica::Locate>>,
}

/// Connects, probes and starts the link; `link_cancel` stops the link.
/// `shard`: one pipeline of a cluster source (see [`ShardWire`]); `None`
/// for a standalone source.
pub async fn wire(
    cfg: &Config,
    allow_nonempty_target: bool,
    link_cancel: CancellationToken,
    shard: Option<ShardWire>,
) -> Result<Wired> {
    let dst = parse_endpoint(&cfg.target.url)?;
    let dst_addr = dst.addr();
    let target_tls = cfg.target.tls_config();
    if let Some(w) = target_tls.as_ref().and_then(|t| t.warning()) {
        tracing::warn!("target: {w}");
    }
    let wauth = dst.auth;
    let (format, mode) =
        target_format(&dst_addr, &wauth, target_tls.as_ref(), cfg.target.mode).await?;
    let reverse = !cfg.source.start_positions.is_empty();
    let namespace = shard
        .as_ref()
        .map(|s| s.namespace.clone())
        .unwrap_or_default();
    let (mut writer, checkpoints, state) =
        connect_writer(cfg, &dst_addr, &wauth, mode, namespace, reverse).await?;
    let standalone = writer.is_standalone();
    let masters = writer.masters().to_vec();
    let resuming = cfg
        .state_dir
        .join(ferry_replica::link::POSITION_FILE)
        .exists();
    let src = match crate::source::resolve(cfg).await {
        Ok(src) => Some(src),
        // Resuming: the link's locator keeps asking the sentinels.
        Err(e) if resuming && cfg.source.sentinel.is_some() => {
            tracing::warn!("{e:#}; resuming, the link keeps asking");
            None
        }
        Err(e) => return Err(e.context(crate::source::describe(&cfg.source))),
    };
    // A reverse run: the position recorded for this master.
    let start = match (&src, reverse) {
        (Some(src), true) => {
            Some(crate::reverse::position_for(&cfg.source.start_positions, &src.addr())?.clone())
        }
        _ => None,
    };
    let facts = match &src {
        Some(src) => {
            let facts = crate::preflight::check(cfg, src, &masters, &wauth, resuming).await?;
            check_source_dbs(src, cfg, standalone).await?;
            facts
        }
        None => Default::default(),
    };
    let state = match state {
        Some(s) => s,
        // A reverse run continues a position both sides share: the
        // target holds the data (it is never flushed: not "empty at start").
        None if reverse => {
            let s = TargetState::new(false);
            s.save(&cfg.state_dir)?;
            s
        }
        None => {
            // A new migration.
            let empty = match &shard {
                // Other shards (other processes, too) write their own
                // slots: only this shard's slots must be empty.
                Some(s) => {
                    let keep = |k: &[u8]| ferry_ops::is_reserved(k);
                    let n = writer
                        .keys_in_slots(&s.gate.slots(), &keep)
                        .await
                        .context("looking for keys in this shard's slots on the target")?;
                    if n == 0 {
                        Ok(())
                    } else {
                        Err(format!(
                            "the target is not empty: it holds keys in the slots of source shard \
                             {} (at least {n}). Start with --allow-nonempty-target to migrate into \
                             it anyway (this shard's keys are deleted from those slots before its \
                             full sync; keys in other slots are left alone)",
                            s.namespace
                        ))
                    }
                }
                None => target_is_empty(&masters, &wauth, target_tls.as_ref()).await?,
            };
            if let Err(e) = &empty
                && !allow_nonempty_target
            {
                bail!("{e}");
            }
            let s = TargetState::new(empty.is_ok());
            s.save(&cfg.state_dir)?;
            s
        }
    };
    two_way_markers(cfg, src.as_ref(), &dst_addr, &wauth, checkpoints, reverse).await?;
    let gate = shard.as_ref().map(|s| s.gate.clone());
    let locator = shard.and_then(|s| s.locator);
    let mut applier = new_applier(cfg, writer, format, checkpoints, state, gate)?;
    applier.set_two_way(cfg.mode == SyncMode::TwoWay);
    applier.set_missing_module_types(crate::modules::types_of(&facts.missing_modules));

    let (auth, tls) = crate::source::node_access(&cfg.source)?;
    let mut lcfg = LinkConfig::new(
        src.as_ref().map(|s| s.addr()).unwrap_or_default(),
        cfg.state_dir.clone(),
    );
    lcfg.spool.memory_bytes = cfg.spool.memory_bytes;
    lcfg.spool.cap_bytes = cfg.spool.cap_bytes;
    lcfg.tls = tls;
    if let Some(w) = lcfg.tls.as_ref().and_then(|t| t.warning()) {
        tracing::warn!("source: {w}");
    }
    lcfg.auth = auth;
    if let Some(p) = &start {
        lcfg.start_position = Some(p.position());
        lcfg.refuse_full_sync = Some(p.refusal_hint());
    }
    let sentinels = cfg.source.sentinel.as_ref().map(Sentinels::new);
    lcfg.locator = match (&sentinels, locator) {
        (Some(s), _) => Some(Arc::new(s.clone())),
        (None, shard) => shard,
    };
    let (link, events) = Link::start(lcfg, link_cancel.clone())
        .with_context(|| format!("source {}", crate::source::describe(&cfg.source)))?;
    if let Some(s) = sentinels {
        // Follows +switch-master until the link stops.
        tokio::spawn(s.watch(link.handle(), link_cancel));
    }
    Ok(Wired {
        applier,
        link,
        events,
        keys_total: facts.keys_total,
        standalone,
        masters,
    })
}

fn new_applier(
    cfg: &Config,
    writer: ClusterWriter,
    format: TargetFormat,
    checkpoints: bool,
    state: TargetState,
    gate: Option<Arc<ferry_ops::SlotGate>>,
) -> Result<Applier> {
    Applier::new(
        writer,
        format,
        cfg.snapshot.restore != RestoreMode::Never,
        cfg.filter.clone(),
        checkpoints,
        cfg.snapshot.ttl_hold,
        cfg.state_dir.clone(),
        state,
        gate,
    )
}

/// The target state of `state_dir` (if any) and the writer that resumes
/// from its history's checkpoints; whether checkpoints are written.
async fn connect_writer(
    cfg: &Config,
    addr: &str,
    wauth: &Auth,
    mode: TargetMode,
    namespace: String,
    start_position: bool,
) -> Result<(ClusterWriter, bool, Option<TargetState>)> {
    let position = cfg.state_dir.join(ferry_replica::link::POSITION_FILE);
    let mut state = TargetState::load(&cfg.state_dir)?;
    if state.as_ref().is_none_or(|s| s.history.is_none()) && (position.exists() || start_position) {
        // A state_dir from before checkpoints, or a reverse run's start
        // position: start one history now (nothing of it is in the target
        // yet, so nothing is skipped).
        let mut s = state.clone().unwrap_or_else(|| TargetState::new(false));
        s.history = Some(history_name("resumed", 0));
        s.save(&cfg.state_dir)?;
        state = Some(s);
    }
    let history = state.as_ref().and_then(|s| s.history.clone());
    // A standalone target keeps several dbs: its checkpoint key lives in
    // db 0 and each transaction selects its way there (see the writer).
    let checkpoints = cfg.checkpoints();
    if cfg.target.wait_replicas.is_some() && !checkpoints {
        tracing::warn!("target.wait_replicas ignored (it needs target.checkpoints)");
    }
    let mut writer = ClusterWriter::connect_with(
        addr,
        WriterConfig {
            auth: wauth.clone(),
            checkpoint: checkpoints.then(|| CheckpointConfig {
                history: history.clone().unwrap_or_default(),
                namespace,
            }),
            skip_applied: checkpoints && history.is_some(),
            tls: cfg.target.tls_config(),
            mode,
            wait_replicas: cfg
                .target
                .wait_replicas
                .filter(|_| checkpoints)
                .map(Duration::from_millis),
            // The opposite ferry of a two-way sync recognises this one's
            // writes by their checkpoint key (D64): every group keeps one.
            plain_groups: cfg.mode != SyncMode::TwoWay,
            ..Default::default()
        },
    )
    .await
    .with_context(|| format!("target {}", redact(&cfg.target.url)))?;
    writer.set_rate_limit(ferry_cluster::RateLimit {
        ops_per_sec: cfg.target.max_ops_per_sec,
        bytes_per_sec: cfg.target.max_bytes_per_sec,
    });
    if writer.is_standalone() && cfg.filter.db_prefix.is_some() {
        bail!(
            "filter.db_prefix is for a cluster target; a standalone target keeps each db \
             (remove db_prefix)"
        );
    }
    if writer.is_standalone() {
        tracing::info!(server = ?writer.masters(), "standalone target (dbs kept)");
    } else {
        tracing::info!(masters = ?writer.masters(), "target cluster");
    }
    if checkpoints && history.is_some() {
        let c = writer.checkpoint_summary();
        tracing::info!(
            slots = c.slots,
            barriers = c.barriers,
            min = ?c.min,
            max = ?c.max,
            other_history = c.other_history,
            "checkpoints in the target: ops at or below them are not applied again"
        );
    }
    Ok((writer, checkpoints, state))
}

/// Two-way sync checks and markers (see `reverse::marker`): a two-way
/// ferry needs checkpoints (the other one recognises its writes by them)
/// and marks its target; one that starts at recorded positions (the
/// reverse, started second) needs its source marked by the forward one; a
/// one-way ferry refuses a source marked by a two-way one, and removes a
/// marker of its own from its target.
async fn two_way_markers(
    cfg: &Config,
    src: Option<&crate::source::SourceNode>,
    dst_addr: &str,
    wauth: &Auth,
    checkpoints: bool,
    reverse: bool,
) -> Result<()> {
    use crate::reverse::marker::{self, MARKER, Side};
    let two_way = cfg.mode == SyncMode::TwoWay;
    if two_way && !checkpoints {
        bail!(
            "mode: two_way needs target.checkpoints: true (the opposite ferry recognises this \
             one's writes by their checkpoint keys)"
        );
    }
    // A Sentinel source not resolved yet (resuming): nothing to check.
    let Some(src) = src else {
        return Ok(());
    };
    let source = Side {
        addr: src.addr(),
        auth: &src.endpoint.auth,
        tls: src.tls.as_ref(),
        name: "source",
    };
    // A one-way ferry's source user may not be allowed EXISTS: then there
    // is nothing to check.
    let marked = match marker::present(&source).await {
        Ok(m) => m,
        Err(e) if !two_way => {
            tracing::debug!("two-way marker not checked on the source: {e:#}");
            false
        }
        Err(e) => return Err(e),
    };
    if two_way && reverse && !marked {
        bail!(
            "mode: two_way, but the opposite direction is not: the source {} has no {MARKER} \
             marker, which a ferry writing into it in mode: two_way keeps there (start the \
             forward ferry with mode: two_way first, or run this one with mode: one_way)",
            source.addr
        );
    }
    if !two_way && marked {
        bail!(
            "the source {} is written by a ferry in mode: two_way (marker {MARKER}): set mode: \
             two_way here too, or, if that ferry is gone for good, delete its keys with ferry \
             cleanup --config <its configuration>",
            source.addr
        );
    }
    let dst_tls = cfg.target.tls_config();
    let target = Side {
        addr: dst_addr.to_owned(),
        auth: wauth,
        tls: dst_tls.as_ref(),
        name: "target",
    };
    if two_way || marker::present(&target).await.unwrap_or(false) {
        marker::set(&target, two_way).await?;
    }
    if two_way {
        tracing::info!(target = %dst_addr, "two-way sync: marked the target ({MARKER}); the opposite ferry's writes are not carried back");
    }
    Ok(())
}

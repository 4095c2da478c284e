//! `ferry run --config FILE`: the migration daemon.
//!
//! ```text
//! source ─PSYNC─▶ Link ─events─▶ Applier ─ops─▶ ClusterWriter ─▶ target masters
//!                  ▲                │
//!                  └── applied ◀────┘  (what the writer acknowledged)
//! ```
//! It prints one status line a second and serves `/` (the dashboard),
//! `/status` (JSON) and `/metrics` (Prometheus text) on `http.listen`.
//! SIGINT/SIGTERM stop it cleanly: in-flight writes are finished and the
//! position is saved; a second signal exits at once.
//!
//! The steps, each in its own module: [`shutdown`] (signals and the token
//! tree, first), [`http`] (bind the listener), [`wiring`] (target writer,
//! probes, state, the link), [`main_loop`] (events → applier → writer),
//! [`status`] (the `/status` document), then the drain below.
//!
//! Restart: the link resumes from `state_dir/position.json` (a lower bound
//! of what is applied); with `target.checkpoints` (the default) the writer
//! reads every slot's checkpoint at connect time and skips what the target
//! already committed, so every command is applied exactly once.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use anyhow::{Context, Result};
use clap::Args;

use crate::config::Config;
use crate::events;

pub mod cluster;
pub mod http;
pub mod locate;
pub mod main_loop;
pub mod reshard;
pub mod shutdown;
pub mod status;
pub mod status_metrics;
pub mod wiring;

use shutdown::Shutdown;
use status::{Assembler, Status};

/// Arguments of `ferry run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// The YAML configuration (see config/ferry.example.yaml).
    #[arg(long)]
    pub config: PathBuf,
    /// Start even if the target already holds keys (ferry overwrites the
    /// keys it migrates and leaves the others alone).
    #[arg(long)]
    pub allow_nonempty_target: bool,
}

/// Run `ferry run`.
pub fn run(args: &RunArgs) -> Result<()> {
    let cfg = Config::load(&args.config)?;
    // Few blocking threads (spool segment IO, position saves): each thread
    // that allocates gets its own malloc arena, and arenas fragment.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .max_blocking_threads(4)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    rt.block_on(async {
        // Signals before anything is spawned.
        let sd = Shutdown::install()?;
        let status = Arc::new(Mutex::new(Status::default()));
        // On a runtime worker, not this thread: the daemon's main loop
        // hands every batch to tasks on the workers and back, and from
        // `block_on`'s thread each hand-off is a wake-up of another thread
        // (`docs/decisions.md` D94).
        let task = tokio::spawn({
            let (cfg, status) = (cfg.clone(), status.clone());
            let allow = args.allow_nonempty_target;
            async move {
                let result = daemon(&cfg, allow, &sd, &status).await;
                (result, sd)
            }
        });
        // A panic in the daemon takes its shutdown tree with it: dropping
        // the runtime then stops the remaining tasks.
        let (result, sd) = match task.await {
            Ok((result, sd)) => (result, Some(sd)),
            Err(e) => (
                Err(anyhow::anyhow!("the daemon task ended abnormally: {e}")),
                None,
            ),
        };
        if let Err(e) = &result {
            let msg = format!("{e:#}");
            events::StoppedOnError { error: &msg }.emit();
            if let Ok(mut s) = status.lock() {
                s.failed(msg);
                status_metrics::StatusMetrics::default().record(&s);
            }
        }
        if let Some(sd) = sd {
            sd.finish().await;
        }
        result
    })
}

/// The daemon's steps: listener, wiring, tasks, main loop, drain.
async fn daemon(
    cfg: &Config,
    allow_nonempty_target: bool,
    sd: &Shutdown,
    status: &Arc<Mutex<Status>>,
) -> Result<()> {
    crate::telemetry::install()?;
    let listener = if cfg.http.listen.is_empty() {
        None
    } else {
        Some(
            http::bind(http::HttpConfig {
                listen: cfg.http.listen.clone(),
                token: cfg.http.token.clone(),
                protect_metrics: cfg.http.protect_metrics,
            })
            .await?,
        )
    };
    if let Some(l) = listener {
        let (status, stop, tracker) = (status.clone(), sd.root.child_token(), sd.tracker.clone());
        sd.tracker
            .spawn(async move { l.serve(status, stop, tracker).await });
    }

    if cluster::is_cluster(cfg).await? {
        return cluster::run(cfg, allow_nonempty_target, sd, status).await;
    }
    cluster::check_standalone(cfg)?;

    let wiring::Wired {
        mut applier,
        link,
        mut events,
        keys_total,
        standalone,
        masters,
    } = tokio::select! {
        w = wiring::wire(cfg, allow_nonempty_target, sd.root.child_token(), None) => w?,
        // Stopped before anything moved: nothing to drain.
        _ = sd.work.cancelled() => return Ok(()),
    };

    let sampler = Arc::new(crate::sampler::SamplerStats::default());
    {
        let status = status.clone();
        crate::sampler::spawn(
            cfg,
            sampler.clone(),
            move || sampler_progress(&status),
            sd.work.child_token(),
            &sd.tracker,
        );
    }
    let mut publish = main_loop::Publish {
        status: status.clone(),
        sampler,
        sample_per_second: cfg.verify.sample_per_second,
        metrics: Some(status_metrics::StatusMetrics::default()),
        assembler: Assembler::new(keys_total, standalone, masters),
        print_line: true,
    };
    let result = main_loop::run(&mut applier, &link, &mut events, &mut publish, &sd.work).await;

    // Drain: finish what is in flight, report it, then stop the link, which
    // saves the position of everything applied (the link's token is not
    // under `work`, so a signal does not make it save an earlier one).
    let flushed = applier.flush().await;
    if let Some(a) = applier.applied() {
        link.applied(a);
    }
    publish.snapshot(&link, &applier);
    sd.work.cancel();
    let link_result = link.shutdown().await;
    result?;
    flushed?;
    link_result.context("source link")?;
    if let Ok(mut s) = status.lock() {
        s.stopped();
        if let Some(m) = &publish.metrics {
            m.record(&s);
        }
    }
    Ok(())
}

/// What the sampled verify needs of the daemon's status: the offset
/// applied (a standalone source), or each link's with its replid (a
/// cluster source).
pub(crate) fn sampler_progress(status: &Mutex<status::Status>) -> crate::sampler::Progress {
    let s = status.lock().map(|s| s.clone()).unwrap_or_default();
    crate::sampler::Progress {
        streaming: s.phase == status::Phase::Streaming,
        applied: s.applied_offset,
        links: s
            .links
            .iter()
            .map(|l| crate::sampler::LinkProgress {
                replid: l.replid.clone(),
                streaming: l.phase == status::Phase::Streaming,
                applied: l.applied_offset,
            })
            .collect(),
    }
}

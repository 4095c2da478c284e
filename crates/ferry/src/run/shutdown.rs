//! One shutdown tree for `ferry run`.
//!
//! ```text
//! root ──┬── http            the listener and its connections: stop last,
//!        │                   so /status shows the drain (and an error)
//!        ├── link            the replica link: stopped by the drain once
//!        │                   everything in flight is applied, so the
//!        │                   position it saves covers all of it
//!        └── work ──┬── sampler   sampled verify
//!                   └── (main loop)
//! ```
//! SIGINT and SIGTERM are registered before anything is spawned. The first
//! cancels `work`: the main loop stops taking events, finishes in-flight
//! writes, reports them to the link and stops it (the position is saved). A second signal exits at once (status 130). Every task runs on
//! one [`TaskTracker`] and is joined before `ferry run` returns.

use anyhow::{Context, Result};
use tokio::signal::unix::{SignalKind, signal};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::events;

/// Exit status after a second signal (as a shell reports an interrupt).
pub const FORCED_EXIT: i32 = 130;

/// The token tree and the tasks of the daemon.
pub struct Shutdown {
    /// Cancelled last: everything stops.
    pub root: CancellationToken,
    /// Cancelled by the first signal or when the daemon stops on its own.
    pub work: CancellationToken,
    /// Every task the daemon spawns.
    pub tracker: TaskTracker,
    /// Ends the signal watcher once everything is joined.
    done: CancellationToken,
    watcher: JoinHandle<()>,
}

impl Shutdown {
    /// Registers SIGINT and SIGTERM and starts watching them. Call before
    /// spawning anything else.
    pub fn install() -> Result<Shutdown> {
        let mut term = signal(SignalKind::terminate()).context("registering SIGTERM")?;
        let mut int = signal(SignalKind::interrupt()).context("registering SIGINT")?;
        let root = CancellationToken::new();
        let work = root.child_token();
        let done = CancellationToken::new();
        let watcher = tokio::spawn({
            let (work, done) = (work.clone(), done.clone());
            async move {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = int.recv() => {}
                    _ = done.cancelled() => return,
                }
                events::StopRequested.emit();
                work.cancel();
                tokio::select! {
                    _ = term.recv() => {}
                    _ = int.recv() => {}
                    _ = done.cancelled() => return,
                }
                events::ForcedExit.emit();
                std::process::exit(FORCED_EXIT);
            }
        });
        Ok(Shutdown {
            root,
            work,
            tracker: TaskTracker::new(),
            done,
            watcher,
        })
    }

    /// Stops every task and waits for all of them (a second signal still
    /// forces the exit meanwhile).
    pub async fn finish(self) {
        self.work.cancel();
        self.root.cancel();
        self.tracker.close();
        self.tracker.wait().await;
        self.done.cancel();
        let _ = self.watcher.await;
    }
}

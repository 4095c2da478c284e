//! State shared between the handle and the engine task: counters, the
//! applied offset, the fatal error.

use std::sync::Mutex;
use std::sync::atomic::AtomicU64;

use crate::error::WriterError;

/// State shared between the handle and the engine.
#[derive(Debug, Default)]
pub(crate) struct Shared {
    pub(crate) applied: AtomicU64,
    pub(crate) acked: AtomicU64,
    pub(crate) moved: AtomicU64,
    pub(crate) ask: AtomicU64,
    pub(crate) retries: AtomicU64,
    pub(crate) reconnects: AtomicU64,
    pub(crate) skipped: AtomicU64,
    pub(crate) checkpoints: AtomicU64,
    pub(crate) verified: AtomicU64,
    pub(crate) split_groups: AtomicU64,
    pub(crate) refreshes: AtomicU64,
    pub(crate) reprobed: AtomicU64,
    pub(crate) wait_timeouts: AtomicU64,
    pub(crate) function_delete_absent: AtomicU64,
    /// Standalone target: the db of the last acknowledged `SELECT`.
    pub(crate) selected_db: AtomicU64,
    pub(crate) fatal: Mutex<Option<WriterError>>,
}

impl Shared {
    pub(crate) fn fail(&self, e: WriterError) {
        let mut fatal = self.fatal.lock().unwrap_or_else(|p| p.into_inner());
        fatal.get_or_insert(e);
    }

    pub(crate) fn error(&self) -> Option<WriterError> {
        self.fatal.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

//! The spool as the async tasks use it: the memory fast paths run inline,
//! anything that may touch a segment file (write, read, delete) runs on a
//! blocking thread (`spawn_blocking`), so a slow disk never stalls a tokio
//! worker (the ACKs, the INFO poller and the consumer share them).
//!
//! Order is kept because there is one pusher (the reader) and one popper
//! (the decoder), each awaiting its operation before the next. The inline
//! paths only `try_lock`: if a blocking thread holds the spool for file I/O,
//! the operation goes to a blocking thread too. Sizes are published in
//! atomics under the lock, so status and the cap check never wait for I/O.
//!
//! A push on a blocking thread holds the *gate* until it is done, and counts
//! its bytes in [`SharedSpool::pushed`] under the spool lock, so a push whose
//! future was dropped (the connection failed) still lands whole before
//! [`SharedSpool::settle`] returns: marks are placed after settling.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, TryLockError};

use bytes::Bytes;

use super::LinkError;
use crate::Spool;

/// A [`Spool`] shared by the reader, the decoder and status readers.
pub(super) struct SharedSpool {
    spool: Mutex<Spool>,
    cap: u64,
    len: AtomicU64,
    disk: AtomicU64,
    segments: AtomicU64,
    disk_written: AtomicU64,
    /// Bytes ever pushed.
    pushed: AtomicU64,
    /// Held by a push running on a blocking thread.
    gate: Arc<tokio::sync::Mutex<()>>,
}

impl SharedSpool {
    pub(super) fn new(spool: Spool) -> Arc<SharedSpool> {
        Arc::new(SharedSpool {
            cap: spool.config().cap_bytes,
            spool: Mutex::new(spool),
            len: AtomicU64::new(0),
            disk: AtomicU64::new(0),
            segments: AtomicU64::new(0),
            disk_written: AtomicU64::new(0),
            pushed: AtomicU64::new(0),
            gate: Arc::new(tokio::sync::Mutex::new(())),
        })
    }

    /// Bytes ever pushed (the spool position of the next byte). Counted
    /// only once the bytes are in the spool.
    pub(super) fn pushed(&self) -> u64 {
        self.pushed.load(Ordering::Acquire)
    }

    /// Waits until no push is in flight (one whose future was dropped may
    /// still be running on a blocking thread).
    pub(super) async fn settle(&self) {
        drop(self.gate.lock().await);
    }

    /// Bytes held (memory and disk).
    pub(super) fn len(&self) -> u64 {
        self.len.load(Ordering::Acquire)
    }

    /// Bytes held on disk.
    pub(super) fn disk_bytes(&self) -> u64 {
        self.disk.load(Ordering::Acquire)
    }

    /// Segment files created since the start.
    pub(super) fn segments_written(&self) -> u64 {
        self.segments.load(Ordering::Acquire)
    }

    /// Bytes written to segment files since the start.
    pub(super) fn disk_bytes_written(&self) -> u64 {
        self.disk_written.load(Ordering::Acquire)
    }

    /// Room under the cap. Only the reader adds bytes, so for the reader
    /// this is a lower bound that holds until its next push.
    pub(super) fn room(&self) -> u64 {
        self.cap.saturating_sub(self.len())
    }

    fn lock(&self) -> MutexGuard<'_, Spool> {
        self.spool.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn try_lock(&self) -> Option<MutexGuard<'_, Spool>> {
        match self.spool.try_lock() {
            Ok(g) => Some(g),
            Err(TryLockError::Poisoned(p)) => Some(p.into_inner()),
            Err(TryLockError::WouldBlock) => None,
        }
    }

    fn publish(&self, s: &Spool) {
        self.len.store(s.len(), Ordering::Release);
        self.disk.store(s.disk_bytes(), Ordering::Release);
        self.segments.store(s.segments_written(), Ordering::Release);
        self.disk_written
            .store(s.disk_bytes_written(), Ordering::Release);
    }

    /// Appends `data` (the caller checked [`SharedSpool::room`]).
    pub(super) async fn push(self: &Arc<Self>, mut data: Bytes) -> Result<(), LinkError> {
        let n = data.len() as u64;
        // Inline only when no blocking push is in flight (order) and no
        // blocking thread holds the spool.
        if let Ok(_gate) = self.gate.try_lock()
            && let Some(mut s) = self.try_lock()
        {
            match s.try_push_memory(data) {
                None => {
                    self.pushed.fetch_add(n, Ordering::AcqRel);
                    self.publish(&s);
                    return Ok(());
                }
                Some(back) => data = back,
            }
        }
        let gate = self.gate.clone().lock_owned().await;
        let me = self.clone();
        blocking(move || {
            let _gate = gate;
            let mut s = me.lock();
            let r = s.push(data);
            if r.is_ok() {
                me.pushed.fetch_add(n, Ordering::AcqRel);
            }
            me.publish(&s);
            r.map_err(LinkError::from)
        })
        .await
    }

    /// Takes up to `max` bytes from the front.
    pub(super) async fn pop(self: &Arc<Self>, max: usize) -> Result<Option<Bytes>, LinkError> {
        if let Some(mut s) = self.try_lock()
            && let Some(b) = s.pop_memory(max)
        {
            self.publish(&s);
            return Ok(Some(b));
        }
        let me = self.clone();
        blocking(move || {
            let mut s = me.lock();
            let r = s.pop(max);
            me.publish(&s);
            r.map_err(LinkError::from)
        })
        .await
    }
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, LinkError> + Send + 'static,
) -> Result<T, LinkError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| LinkError::Internal(format!("spool I/O thread: {e}")))?
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::SpoolConfig;

    /// Polls `fut` once; `true` if it completed.
    async fn poll_once(
        fut: std::pin::Pin<&mut (impl std::future::Future<Output = ()> + ?Sized)>,
    ) -> bool {
        tokio::select! {
            biased;
            _ = fut => true,
            _ = std::future::ready(()) => false,
        }
    }

    #[tokio::test]
    // Deliberate: the test holds the spool to keep a blocking push waiting.
    #[allow(clippy::await_holding_lock)]
    async fn a_push_cut_off_on_a_blocking_thread_lands_before_settle_returns() {
        let dir = tempfile::tempdir().expect("tmp");
        let spool = SharedSpool::new(
            Spool::new(SpoolConfig {
                dir: dir.path().to_path_buf(),
                memory_bytes: 0,
                segment_bytes: 1 << 20,
                cap_bytes: 1 << 30,
            })
            .expect("spool"),
        );
        // Hold the spool: the push must go to a blocking thread and wait.
        let held = spool.lock();
        {
            let push = async {
                spool.push(Bytes::from(vec![7; 1000])).await.expect("push");
            };
            tokio::pin!(push);
            assert!(!poll_once(push.as_mut()).await, "the push went inline");
        } // the push's future is dropped here, its blocking half is not
        assert_eq!(spool.pushed(), 0);
        let settle = spool.settle();
        tokio::pin!(settle);
        assert!(
            !poll_once(settle.as_mut()).await,
            "settled with a push in flight"
        );
        drop(held);
        settle.await;
        assert_eq!(
            (spool.pushed(), spool.len(), spool.disk_bytes()),
            (1000, 1000, 1000)
        );
        // Reading back goes through a blocking thread too.
        let b = spool.pop(4096).await.expect("pop").expect("bytes");
        assert_eq!(&b[..], &[7; 1000][..]);
        assert_eq!((spool.len(), spool.segments_written()), (0, 1));
    }
}

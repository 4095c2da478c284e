//! Log lines for what the cluster writer copes with (topology refreshes,
//! reconnects, bursts of redirects), from the changes of its counters
//! between status snapshots: the writer itself logs nothing, and its
//! counters are the one place these facts reach the daemon. Redirects are
//! summed over a window and logged at most once per window.

use std::time::{Duration, Instant};

use super::status::TargetStats;
use crate::events::{TargetReconnected, TargetRedirects, TargetTopologyRefreshed};

/// Redirects and retries are reported at most once per this window.
pub const REDIRECT_WINDOW: Duration = Duration::from_secs(10);

/// What changed since the last look, as events to emit.
#[derive(Debug, Default)]
pub struct Report {
    /// Topology refreshes.
    pub refreshed: Option<TargetTopologyRefreshed>,
    /// Reconnects.
    pub reconnected: Option<TargetReconnected>,
    /// A window's redirects and retries.
    pub redirects: Option<TargetRedirects>,
}

impl Report {
    /// Emit every event of the report.
    pub fn emit(self) {
        if let Some(e) = self.refreshed {
            e.emit();
        }
        if let Some(e) = self.reconnected {
            e.emit();
        }
        if let Some(e) = self.redirects {
            e.emit();
        }
    }
}

/// The counters last seen and the open redirect window.
#[derive(Debug)]
pub struct TargetWatch {
    last: TargetStats,
    /// Counters at the start of the redirect window, and when it opened.
    window: (TargetStats, Instant),
}

impl TargetWatch {
    /// Starts watching at `now` from zero counters.
    pub fn new(now: Instant) -> TargetWatch {
        TargetWatch {
            last: TargetStats::default(),
            window: (TargetStats::default(), now),
        }
    }

    /// Compares `t` (the writer's counters at `now`) with the last look.
    pub fn observe(&mut self, t: &TargetStats, now: Instant) -> Report {
        let mut r = Report::default();
        if t.refreshes > self.last.refreshes {
            r.refreshed = Some(TargetTopologyRefreshed {
                new: t.refreshes - self.last.refreshes,
                total: t.refreshes,
            });
        }
        if t.reconnects > self.last.reconnects {
            r.reconnected = Some(TargetReconnected {
                new: t.reconnects - self.last.reconnects,
                total: t.reconnects,
            });
        }
        self.last = *t;
        let (start, opened) = self.window;
        let elapsed = now.saturating_duration_since(opened);
        if elapsed >= REDIRECT_WINDOW {
            let (moved, ask, retry) = (
                t.moved.saturating_sub(start.moved),
                t.ask.saturating_sub(start.ask),
                t.retry.saturating_sub(start.retry),
            );
            if moved + ask + retry > 0 {
                r.redirects = Some(TargetRedirects {
                    moved,
                    ask,
                    retry,
                    seconds: elapsed.as_secs(),
                });
            }
            self.window = (*t, now);
        }
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changes_become_events_and_redirects_are_windowed() {
        let t0 = Instant::now();
        let mut w = TargetWatch::new(t0);
        let mut t = TargetStats::default();
        let r = w.observe(&t, t0);
        assert!(r.refreshed.is_none() && r.reconnected.is_none() && r.redirects.is_none());

        t.refreshes = 1;
        t.reconnects = 2;
        t.moved = 500;
        let r = w.observe(&t, t0 + Duration::from_secs(1));
        let refreshed = r.refreshed.expect("a refresh");
        assert_eq!((refreshed.new, refreshed.total), (1, 1));
        assert_eq!(r.reconnected.expect("reconnects").new, 2);
        assert!(r.redirects.is_none(), "the window is still open");

        // Nothing new: no refresh or reconnect reported again.
        t.moved = 900;
        t.ask = 3;
        let r = w.observe(&t, t0 + REDIRECT_WINDOW);
        assert!(r.refreshed.is_none() && r.reconnected.is_none());
        let red = r.redirects.expect("the window's redirects");
        assert_eq!((red.moved, red.ask, red.retry), (900, 3, 0));

        // A quiet window logs nothing.
        let r = w.observe(&t, t0 + 2 * REDIRECT_WINDOW);
        assert!(r.redirects.is_none());
    }
}

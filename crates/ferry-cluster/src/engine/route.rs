//! Slot holds: redirected and retried entries wait per slot until nothing
//! of the slot is in flight and their backoff has passed, then go out again
//! in submission order; error replies decide redirect, retry or stop.

use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;
use ferry_ops::{ErrorKind, Redirect};

use super::core::Core;
use super::entry::{Body, Entry, Hold, Target, demoted};
use super::events::WriterEvent;
use crate::config::TargetMode;
use crate::error::WriterError;

/// Redirects of one entry before they count against `retry_for`.
const FREE_REDIRECTS: u32 = 16;

impl Core {
    /// Counts a failed attempt; `false` (and fatal) once past `retry_for`.
    pub(super) fn count_failure(&mut self, slot: u16, entry: &mut Entry, last: &str) -> bool {
        entry.attempts += 1;
        let first = *entry.first_failure.get_or_insert(self.now);
        let over = self.now.saturating_duration_since(first);
        if over > self.config.retry_for {
            self.fail(WriterError::RetriesExhausted {
                slot,
                attempts: entry.attempts,
                over,
                last: last.to_owned(),
            });
            return false;
        }
        true
    }

    /// Exponential backoff for the `attempts`-th retry, bounded.
    pub(super) fn backoff(&self, attempts: u32) -> Duration {
        let factor = 1u32 << attempts.saturating_sub(1).min(16);
        (self.config.backoff_min * factor).min(self.config.backoff_max)
    }

    /// Puts an answered-with-redirect/retry entry into the slot's hold.
    pub(super) fn hold(&mut self, slot: u16, mut entry: Entry, target: Target, backoff: Duration) {
        entry.asking = matches!(target, Target::Ask(_));
        entry.asking_done = false;
        self.held_bytes += entry.wire.len();
        let not_before = self.now + backoff;
        let hold = self.holds.entry(slot).or_insert_with(|| Hold {
            resend: Vec::new(),
            queued: VecDeque::new(),
            not_before,
            pilot: false,
        });
        hold.not_before = hold.not_before.max(not_before);
        hold.resend.push((entry, target));
    }

    /// [`Core::hold`] after a retryable refusal: the condition may clear
    /// while a pipeline of the slot's entries is being answered, so when
    /// the hold is released its oldest entry goes out alone first.
    pub(super) fn hold_retry(&mut self, slot: u16, entry: Entry, backoff: Duration) {
        self.hold(slot, entry, Target::Map, backoff);
        if let Some(hold) = self.holds.get_mut(&slot) {
            hold.pilot = true;
        }
    }

    /// Releases the hold of `slot` if nothing of it is in flight and its
    /// backoff has passed.
    pub(super) fn maybe_release(&mut self, slot: u16) {
        if self.inflight[usize::from(slot)] == 0
            && self
                .holds
                .get(&slot)
                .is_some_and(|h| h.not_before <= self.now)
        {
            self.release(slot);
        }
    }

    /// [`Core::maybe_release`] for each of `slots` (sorted, deduplicated).
    pub(super) fn release_touched(&mut self, mut slots: Vec<u16>) {
        // The common case, no hold at all: no sort, no lookups.
        if self.holds.is_empty() {
            return;
        }
        slots.sort_unstable();
        slots.dedup();
        for slot in slots {
            self.maybe_release(slot);
        }
    }

    /// Sends the held entries of `slot` in submission order, then the ones
    /// queued behind them; the hold is removed. After a retryable refusal
    /// (`pilot`) only the oldest entry goes out and the rest stay held
    /// until it is answered: a node whose `CLUSTERDOWN` (or `TRYAGAIN`,
    /// `LOADING`, ...) clears while it works through a pipeline refuses
    /// the first entries and applies the later ones, which would put
    /// newer values of the slot before older ones.
    fn release(&mut self, slot: u16) {
        let Some(mut hold) = self.holds.remove(&slot) else {
            return;
        };
        hold.resend.sort_by_key(|(e, _)| e.seq);
        if hold.pilot && !hold.resend.is_empty() && hold.resend.len() + hold.queued.len() > 1 {
            let (entry, target) = hold.resend.remove(0);
            self.held_bytes -= entry.wire.len();
            self.send_held(slot, entry, target);
            // The rest wait (still counted in `held_bytes`) behind the
            // pilot, or behind a new hold if it could not go out.
            let now = self.now;
            let rest = self.holds.entry(slot).or_insert_with(|| Hold {
                resend: Vec::new(),
                queued: VecDeque::new(),
                not_before: now,
                pilot: false,
            });
            rest.resend.extend(hold.resend);
            rest.queued.extend(hold.queued);
            return;
        }
        for (entry, target) in hold.resend {
            self.held_bytes -= entry.wire.len();
            self.send_held(slot, entry, target);
        }
        for entry in hold.queued {
            self.held_bytes -= entry.wire.len();
            self.route(slot, entry);
        }
    }

    /// One resent entry: to the `ASK` node, else where the slot map says.
    fn send_held(&mut self, slot: u16, entry: Entry, target: Target) {
        match target {
            Target::Ask(i) if !self.holds.contains_key(&slot) => self.push(i, entry),
            _ => self.route(slot, entry),
        }
    }

    /// Releases every hold with nothing in flight whose backoff has passed.
    pub(super) fn release_ready(&mut self) {
        let now = self.now;
        let ready: Vec<u16> = self
            .holds
            .iter()
            .filter(|(s, h)| self.inflight[usize::from(**s)] == 0 && h.not_before <= now)
            .map(|(s, _)| *s)
            .collect();
        for slot in ready {
            self.release(slot);
        }
    }

    /// An error reply to `entry` (for a `Txn`: the cause of its abort):
    /// redirect, retry with backoff, or stop.
    pub(super) fn on_error(&mut self, i: usize, mut entry: Entry, message: &Bytes) {
        let kind = ErrorKind::classify(message);
        let text = String::from_utf8_lossy(message).into_owned();
        let redirect = if kind.is_redirect() {
            Redirect::parse(message)
        } else {
            None
        };
        let is_txn = matches!(entry.body, Body::Txn(_));
        match (entry.slot, kind, redirect) {
            // A transaction mixes keys that may be on either side of a
            // migrating slot, and its checkpoint key is one of them: it
            // cannot follow an ASK (the importing node would create the
            // keys still on the migrating node). It waits, with backoff,
            // until the migration ends and MOVED sends it whole to the new
            // owner.
            (Some(slot), ErrorKind::Ask, _) if is_txn => {
                self.shared.ask.fetch_add(1, Ordering::Relaxed);
                self.note(WriterEvent::Redirected { ask: true });
                if self.count_failure(slot, &mut entry, &text) {
                    let backoff = self.backoff(entry.attempts);
                    self.hold_retry(slot, entry, backoff);
                }
            }
            (Some(slot), ErrorKind::Moved | ErrorKind::Ask, Some(r)) => {
                let host = self.nodes[i].host.clone();
                let to = self.topology.apply_redirect(&r, &host);
                self.sync_nodes();
                let moved = kind == ErrorKind::Moved;
                let target = if moved {
                    self.shared.moved.fetch_add(1, Ordering::Relaxed);
                    Target::Map
                } else {
                    self.shared.ask.fetch_add(1, Ordering::Relaxed);
                    Target::Ask(to)
                };
                self.note(WriterEvent::Redirected { ask: !moved });
                // A redirect loop (e.g. two nodes disagreeing) is bounded
                // like any retry.
                if entry.attempts >= FREE_REDIRECTS && !self.count_failure(slot, &mut entry, &text)
                {
                    return;
                }
                entry.attempts += 1;
                self.hold(slot, entry, target, Duration::ZERO);
            }
            (Some(slot), _, _)
                if self.config.mode != TargetMode::Standalone
                    && (kind.is_transient() || demoted(message)) =>
            {
                self.shared.retries.fetch_add(1, Ordering::Relaxed);
                if kind.needs_refresh() || demoted(message) {
                    self.request_refresh();
                }
                if self.count_failure(slot, &mut entry, &text) {
                    let backoff = self.backoff(entry.attempts);
                    self.hold_retry(slot, entry, backoff);
                }
            }
            _ => {
                let (command, key) = entry.describe();
                self.fail(WriterError::Rejected {
                    node: self.nodes[i].addr.clone(),
                    command,
                    key,
                    reply: text,
                });
            }
        }
    }

    /// Node `i` refused a `WAIT` because it is no longer (or not yet) a
    /// master that can confirm: the topology is read again, and the
    /// transactions it committed without confirmation go into their slots'
    /// holds as written-without-reply, so they are probed (skipped if
    /// present, resent if absent) wherever their slot is served next,
    /// before anything newer of the slot (holds resend in submission
    /// order).
    pub(super) fn on_demoted(&mut self, i: usize, message: &Bytes) {
        let text = String::from_utf8_lossy(message).into_owned();
        self.shared.retries.fetch_add(1, Ordering::Relaxed);
        let unconfirmed = std::mem::take(&mut self.nodes[i].unconfirmed);
        self.note(WriterEvent::Demoted {
            node: self.nodes[i].addr.clone(),
            reply: text.clone(),
            parked: unconfirmed.len(),
        });
        self.request_refresh();
        self.shared
            .reprobed
            .fetch_add(unconfirmed.len() as u64, Ordering::Relaxed);
        for mut e in unconfirmed {
            let slot = e.slot;
            let Body::Txn(t) = &mut e.body else { continue };
            let Some(slot) = slot else {
                // A barrier transaction cannot move (as after a lost
                // connection): acknowledged as committed.
                self.committed(&t.parts);
                continue;
            };
            t.written = true;
            t.probe = None;
            if !self.count_failure(slot, &mut e, &text) {
                return;
            }
            let backoff = self.backoff(e.attempts);
            self.hold_retry(slot, e, backoff);
        }
    }
}

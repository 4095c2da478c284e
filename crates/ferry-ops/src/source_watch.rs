//! The source-cluster watcher's decisions: successive topology snapshots in,
//! [`WatchAction`]s out (gate updates, resyncs, master changes, the
//! `resharding` status). No I/O: the caller polls the source and applies
//! the actions.
//!
//! ```text
//! snapshot (masters, replicas, slots, slots moving) + now
//!   match each master (those serving slots first) to a shard: same master
//!   id; else a known node id of the shard whose master is gone (failed,
//!   absent, or serving nothing: a promoted replica); else the largest slot
//!   overlap with such a shard; else a new shard (no pipeline follows it)
//!   shard slots := its master's slots + its old slots nobody serves now
//!   changed -> Gate(shard, slots)             the applier drops the others
//!   gained  -> pending += gained; last_move := now
//!   any slot moving (MIGRATING/IMPORTING, atomic migration) -> last_move := now
//!   pending, nothing moving, now - last_move >= settle
//!           -> Resync(shard) once per pending shard; pending := {}
//!   resharding := something moving or a resync pending (edges reported)
//! ```
//!
//! Why a resync of the gaining shard: `MIGRATE` reaches ferry as a
//! `RESTORE-ASKING` on the importing shard's link and a `DEL` on the
//! exporting one's, and the two links are not ordered with each other. The
//! gate drops every op of a slot a shard does not own (the `RESTORE`s of an
//! importing slot, a late exporter's writes after the move), so nothing the
//! links carry can resurrect or lose a key for good; the full sync of the
//! gaining shard, once the moves settled, deletes the target's keys in its
//! slots and loads them as the source has them then.

use std::collections::BTreeSet;
use std::time::Duration;

use crate::cluster_nodes::{NodeLine, SlotMigration};
use crate::slot_set::SlotSet;

/// Default quiet period before a resync: no slot moving, no ownership change.
pub const DEFAULT_SETTLE: Duration = Duration::from_secs(5);

/// A master as one snapshot sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MasterView {
    /// Node id.
    pub id: String,
    /// `host:port`, if known.
    pub addr: Option<String>,
    /// Slots it serves.
    pub slots: SlotSet,
    /// Ids of its replicas.
    pub replicas: Vec<String>,
    /// Marked `fail` by the cluster.
    pub failed: bool,
}

/// One look at the source cluster.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Snapshot {
    /// The masters (failed ones included: they own their slots until a
    /// replica takes over).
    pub masters: Vec<MasterView>,
    /// Slots being moved: `MIGRATING`/`IMPORTING` markers of any node, and
    /// slots of atomic migrations under way.
    pub moving: SlotSet,
}

impl Snapshot {
    /// The masters, replicas and slots of one node's `CLUSTER NODES`, and
    /// the migration markers it shows (only its own line has any).
    pub fn from_nodes(lines: &[NodeLine]) -> Snapshot {
        let mut snap = Snapshot::default();
        for n in lines.iter().filter(|n| n.is_master()) {
            snap.masters.push(MasterView {
                id: n.id.clone(),
                addr: n.addr.clone(),
                slots: SlotSet::from_ranges(&n.slots),
                replicas: lines
                    .iter()
                    .filter(|r| r.is_replica() && r.master_id.as_deref() == Some(&n.id))
                    .map(|r| r.id.clone())
                    .collect(),
                failed: n.is_failed(),
            });
        }
        snap.add_markers(lines);
        snap
    }

    /// Adds the `MIGRATING`/`IMPORTING` slots of another node's
    /// `CLUSTER NODES` to [`Snapshot::moving`].
    pub fn add_markers(&mut self, lines: &[NodeLine]) {
        for n in lines {
            for (slot, _) in n.migrating.iter().chain(n.importing.iter()) {
                self.moving.insert(*slot);
            }
        }
    }

    /// Adds the slots of the atomic migrations under way.
    pub fn add_migrations(&mut self, jobs: &[SlotMigration]) {
        for job in jobs.iter().filter(|j| j.is_active()) {
            self.moving.union_with(&SlotSet::from_ranges(&job.slots));
        }
    }
}

/// A shard known before the first snapshot (from the state directory).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KnownShard {
    /// Its name (`shard-<lowest slot>`).
    pub name: String,
    /// Node ids seen in it, the last master first.
    pub node_ids: Vec<String>,
    /// The slots its pipeline last loaded (gains since then need a resync).
    pub slots: SlotSet,
    /// Whether this process runs its pipeline (`false`: another partition
    /// does; it is tracked for ownership, never resynced here).
    pub followed: bool,
}

/// What the caller must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WatchAction {
    /// The shard owns exactly these slots now.
    Gate {
        /// Shard name.
        shard: String,
        /// Its slots.
        slots: SlotSet,
    },
    /// Full sync of the shard: it gained `gained` since its last sync.
    Resync {
        /// Shard name.
        shard: String,
        /// The slots gained.
        gained: SlotSet,
    },
    /// The shard's master is another node (failover) or moved.
    MasterChanged {
        /// Shard name.
        shard: String,
        /// The new master's id.
        id: String,
        /// Its address.
        addr: Option<String>,
    },
    /// A master no shard of this process follows now serves slots (e.g. a
    /// master added to the source): its slots are not migrated.
    Unfollowed {
        /// The name given to it.
        shard: String,
        /// Its id.
        id: String,
        /// Its slots.
        slots: SlotSet,
    },
    /// Resharding started (`true`) or settled with every resync requested.
    Resharding(bool),
}

#[derive(Debug, Clone)]
struct Shard {
    name: String,
    master: Option<String>,
    addr: Option<String>,
    ids: BTreeSet<String>,
    slots: SlotSet,
    gained: SlotSet,
    followed: bool,
}

/// The watcher state machine (see the module docs).
#[derive(Debug, Clone)]
pub struct SourceWatch {
    settle: Duration,
    shards: Vec<Shard>,
    started: bool,
    last_move: Option<Duration>,
    resharding: bool,
}

impl SourceWatch {
    /// A watcher that names its shards from the first snapshot
    /// (`shard-<lowest slot>`, every master with slots followed).
    pub fn new(settle: Duration) -> SourceWatch {
        SourceWatch {
            settle,
            shards: Vec::new(),
            started: false,
            last_move: None,
            resharding: false,
        }
    }

    /// A watcher that matches masters to `known` shards (every shard of the
    /// source, this process's marked `followed`); a master matching none
    /// that serves slots is [`WatchAction::Unfollowed`].
    pub fn with_shards(settle: Duration, known: Vec<KnownShard>) -> SourceWatch {
        let mut w = SourceWatch::new(settle);
        w.shards = known
            .into_iter()
            .map(|k| Shard {
                name: k.name,
                master: k.node_ids.first().cloned(),
                addr: None,
                ids: k.node_ids.into_iter().collect(),
                slots: k.slots,
                gained: SlotSet::new(),
                followed: k.followed,
            })
            .collect();
        w
    }

    /// Whether resharding is under way or a resync is pending.
    pub fn resharding(&self) -> bool {
        self.resharding
    }

    /// The shards this process follows with a resync pending.
    pub fn pending(&self) -> Vec<String> {
        self.shards
            .iter()
            .filter(|s| s.followed && !s.gained.is_empty())
            .map(|s| s.name.clone())
            .collect()
    }

    /// Every shard's name and slots.
    pub fn shards(&self) -> Vec<(String, SlotSet)> {
        self.shards
            .iter()
            .map(|s| (s.name.clone(), s.slots.clone()))
            .collect()
    }

    /// Takes one snapshot seen at `now` (any monotonic clock).
    pub fn observe(&mut self, now: Duration, snap: &Snapshot) -> Vec<WatchAction> {
        let first = !self.started;
        self.started = true;
        let seeded = !self.shards.is_empty();
        let mut actions = Vec::new();
        let mut masters: Vec<&MasterView> = snap.masters.iter().collect();
        masters.sort_by_key(|m| m.slots.first().unwrap_or(u16::MAX));
        // Masters that still serve: a failed master, or one left without
        // slots (replaced by a promoted replica), is gone for matching.
        let serving: BTreeSet<&str> = masters
            .iter()
            .filter(|m| !m.failed && !m.slots.is_empty())
            .map(|m| m.id.as_str())
            .collect();

        // Match each master to a shard.
        let mut matched: Vec<Option<usize>> = vec![None; self.shards.len()];
        let mut covered = SlotSet::new();
        for (mi, m) in masters.iter().enumerate() {
            covered.union_with(&m.slots);
            let free = |i: usize| matched.get(i).is_some_and(Option::is_none);
            let gone = |s: &Shard| {
                s.master
                    .as_deref()
                    .is_none_or(|id| !serving.contains(id) || id == m.id)
            };
            let by_id = (0..self.shards.len())
                .find(|&i| free(i) && self.shards[i].master.as_deref() == Some(&m.id))
                .or_else(|| {
                    (0..self.shards.len()).find(|&i| {
                        free(i) && self.shards[i].ids.contains(&m.id) && gone(&self.shards[i])
                    })
                });
            let found = by_id.or_else(|| {
                (0..self.shards.len())
                    .filter(|&i| free(i) && gone(&self.shards[i]))
                    .map(|i| (self.shards[i].slots.intersection(&m.slots).len(), i))
                    .filter(|(overlap, _)| *overlap > 0)
                    .max_by_key(|(overlap, i)| (*overlap, usize::MAX - i))
                    .map(|(_, i)| i)
            });
            let i = match found {
                Some(i) => i,
                None if m.slots.is_empty() => continue,
                None => {
                    let lowest = m.slots.first().unwrap_or_default();
                    let mut name = format!("shard-{lowest}");
                    if self.shards.iter().any(|s| s.name == name) {
                        name = format!("{name}-{}", m.id.get(..8).unwrap_or(&m.id));
                    }
                    let followed = !seeded && first;
                    if !followed {
                        actions.push(WatchAction::Unfollowed {
                            shard: name.clone(),
                            id: m.id.clone(),
                            slots: m.slots.clone(),
                        });
                    }
                    self.shards.push(Shard {
                        name,
                        master: Some(m.id.clone()),
                        addr: m.addr.clone(),
                        ids: BTreeSet::new(),
                        slots: SlotSet::new(),
                        gained: SlotSet::new(),
                        followed,
                    });
                    matched.push(None);
                    self.shards.len() - 1
                }
            };
            matched[i] = Some(mi);
            let s = &mut self.shards[i];
            let changed = s.master.as_deref() != Some(&m.id) || (s.addr != m.addr && !first);
            if changed && s.master.is_some() && !first {
                actions.push(WatchAction::MasterChanged {
                    shard: s.name.clone(),
                    id: m.id.clone(),
                    addr: m.addr.clone(),
                });
            }
            s.master = Some(m.id.clone());
            s.addr = m.addr.clone();
            s.ids.insert(m.id.clone());
            s.ids.extend(m.replicas.iter().cloned());
        }

        // New ownership, gates, gains.
        let mut moved = !snap.moving.is_empty();
        for (i, s) in self.shards.iter_mut().enumerate() {
            let mut slots = s.slots.minus(&covered);
            if let Some(m) = matched[i] {
                slots.union_with(&masters[m].slots);
            }
            if slots == s.slots && !first {
                continue;
            }
            let gained = slots.minus(&s.slots);
            if (!first || seeded) && !gained.is_empty() {
                s.gained.union_with(&gained);
                moved = true;
            }
            moved |= !first;
            s.slots = slots;
            actions.push(WatchAction::Gate {
                shard: s.name.clone(),
                slots: s.slots.clone(),
            });
        }
        if moved {
            self.last_move = Some(now);
        }

        // Resyncs once settled.
        let pending = self.shards.iter().any(|s| !s.gained.is_empty());
        let quiet = snap.moving.is_empty()
            && self
                .last_move
                .is_none_or(|t| now.saturating_sub(t) >= self.settle);
        if pending && quiet {
            for s in self.shards.iter_mut().filter(|s| !s.gained.is_empty()) {
                let gained = std::mem::take(&mut s.gained);
                if s.followed {
                    actions.push(WatchAction::Resync {
                        shard: s.name.clone(),
                        gained,
                    });
                }
            }
        }
        let resharding = !snap.moving.is_empty() || (pending && !quiet);
        if resharding != self.resharding {
            self.resharding = resharding;
            actions.push(WatchAction::Resharding(resharding));
        }
        actions
    }
}

#[cfg(test)]
#[path = "source_watch_tests.rs"]
mod tests;

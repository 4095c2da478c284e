//! A [`Core`] driven by hand: a cluster of `n` masters on
//! `127.0.0.1:7000+i`, slots split in equal ranges; what the core writes is
//! decoded into command lines per node.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use ferry_ops::{Node, SLOTS, SlotMap, Topology};
use ferry_resp::Value;

use crate::checkpoint::{self, Resume};
use crate::config::{CheckpointConfig, Op, WriterConfig};
use crate::engine::core::{Action, Core};
use crate::error::WriterError;
use crate::shared::Shared;

/// A slot of node 0 (of 2 or 3 masters).
pub(super) const S0: u16 = 100;
/// Another slot of node 0.
pub(super) const S0B: u16 = 200;

/// How the writer commits in a test.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Mode {
    Plain,
    Checkpoints,
    WaitReplicas,
    /// Checkpoints, with replay-safe groups written without a transaction.
    PlainGroups,
}

pub(super) struct Harness {
    pub(super) core: Core,
    pub(super) now: Instant,
    pub(super) shared: Arc<Shared>,
    /// Actions not looked at yet.
    pub(super) actions: Vec<Action>,
}

/// `n` masters; node `i` serves the `i`-th of `n` equal slot ranges.
pub(super) fn topology(n: usize) -> Topology {
    let masters = (0..n)
        .map(|i| Node {
            id: None,
            host: "127.0.0.1".to_owned(),
            port: 7000 + i as u16,
        })
        .collect();
    let mut t = Topology {
        masters,
        slots: SlotMap::new(),
    };
    assign(&mut t, &(0..n).collect::<Vec<_>>());
    t
}

/// Gives the `k`-th of `owners.len()` equal slot ranges to `owners[k]`.
pub(super) fn assign(t: &mut Topology, owners: &[usize]) {
    let per = SLOTS / owners.len() as u16;
    let mut slots = SlotMap::new();
    for (k, &node) in owners.iter().enumerate() {
        let lo = k as u16 * per;
        let hi = if k + 1 == owners.len() {
            SLOTS - 1
        } else {
            lo + per - 1
        };
        slots.set_range(lo, hi, node).expect("ranges");
    }
    t.slots = slots;
}

pub(super) fn ok() -> Value {
    Value::Simple(Bytes::from_static(b"OK"))
}

pub(super) fn queued() -> Value {
    Value::Simple(Bytes::from_static(b"QUEUED"))
}

pub(super) fn err(text: &str) -> Value {
    Value::Error(Bytes::from(text.to_owned()))
}

/// `SET <key> <value>` for `slot` at `offset`.
pub(super) fn set(slot: u16, key: &str, value: &str, offset: u64) -> Op {
    Op::slot(
        vec![
            Bytes::from_static(b"SET"),
            Bytes::from(key.to_owned()),
            Bytes::from(value.to_owned()),
        ],
        slot,
        offset,
    )
}

/// The checkpoint value of `offset` (history "0").
pub(super) fn ckpt(offset: u64) -> Value {
    Value::Bulk(Bytes::from(checkpoint::encode("0", offset)))
}

/// The checkpoint key of `slot`.
pub(super) fn ckpt_key(slot: u16) -> String {
    checkpoint::ckpt_key(slot)
}

impl Harness {
    pub(super) fn new(masters: usize, mode: Mode) -> Harness {
        let config = WriterConfig {
            checkpoint: (mode != Mode::Plain).then(CheckpointConfig::default),
            wait_replicas: (mode == Mode::WaitReplicas).then_some(Duration::from_millis(100)),
            // The transaction tests write `SET`s: they test transactions
            // (`Mode::PlainGroups` tests the groups without one).
            plain_groups: mode == Mode::PlainGroups,
            ..WriterConfig::default()
        };
        let shared = Arc::new(Shared::default());
        let now = Instant::now();
        let core = Core::new(
            topology(masters),
            masters,
            Resume::default(),
            Vec::new(),
            config,
            Arc::clone(&shared),
            now,
        );
        Harness {
            core,
            now,
            shared,
            actions: Vec::new(),
        }
    }

    pub(super) fn advance(&mut self, d: Duration) {
        self.now += d;
    }

    pub(super) fn submit(&mut self, op: Op) {
        self.core.submit(op, self.now);
    }

    /// Ends a loop turn; returns the command lines written, per node.
    pub(super) fn turn(&mut self) -> Vec<(usize, String)> {
        self.core.end_turn(self.now, false);
        self.collect()
    }

    /// Takes the core's actions; returns the command lines written.
    pub(super) fn collect(&mut self) -> Vec<(usize, String)> {
        let mut lines = Vec::new();
        for a in self.core.take_actions() {
            if let Action::Send { node, bytes } = &a {
                lines.extend(commands(bytes).into_iter().map(|c| (*node, c)));
            } else {
                self.actions.push(a);
            }
        }
        lines
    }

    /// Command lines written to `node` at the end of a turn.
    pub(super) fn turn_on(&mut self, node: usize) -> Vec<String> {
        let lines = self.turn();
        assert!(
            lines.iter().all(|(n, _)| *n == node),
            "written elsewhere than node {node}: {lines:?}"
        );
        lines.into_iter().map(|(_, l)| l).collect()
    }

    /// Feeds `values` as node `node`'s replies, read the way the pipeline
    /// reader reads them (encoded, then `decode_replies_up_to`: `+OK`,
    /// `+QUEUED` and plain `EXEC` arrays arrive in their compact forms).
    pub(super) fn reply(&mut self, node: usize, values: Vec<Value>) {
        let generation = self.core.generation(node).expect("node");
        let mut wire = bytes::BytesMut::new();
        for v in &values {
            ferry_resp::put_value(&mut wire, v);
        }
        let mut replies = Vec::new();
        let used = ferry_resp::decode_replies_up_to(&wire, &mut replies, usize::MAX)
            .expect("replies encode and decode");
        assert_eq!((used, replies.len()), (wire.len(), values.len()));
        self.core.on_replies(node, generation, replies, self.now);
    }

    /// Replies for a whole committed transaction of `ops` ops.
    pub(super) fn commit(&mut self, node: usize, ops: usize) {
        let mut v = vec![ok()];
        v.extend((0..=ops).map(|_| queued()));
        v.push(Value::Array((0..=ops).map(|_| ok()).collect()));
        self.reply(node, v);
    }

    /// Loses node `i`'s connection; the reconnect succeeds at once.
    pub(super) fn cut(&mut self, node: usize) {
        let generation = self.core.generation(node).expect("node");
        assert!(self.core.on_lost(node, generation, self.now));
        self.collect();
        let connect = self.actions.iter().any(|a| {
            matches!(a, Action::Connect { node: n, generation: g, .. } if *n == node && *g == generation + 1)
        });
        assert!(connect, "no reconnect asked: {:?}", self.actions);
        assert!(self.core.on_connected(node, generation + 1, self.now));
    }

    /// Whether a topology refresh was asked since the last call.
    pub(super) fn refresh_asked(&mut self) -> bool {
        self.collect();
        let asked = self
            .actions
            .iter()
            .any(|a| matches!(a, Action::Refresh { .. }));
        self.actions
            .retain(|a| !matches!(a, Action::Refresh { .. }));
        asked
    }

    /// Answers the refresh with `owners` (see [`assign`]).
    pub(super) fn refreshed(&mut self, masters: usize, owners: &[usize]) {
        let mut t = topology(masters);
        assign(&mut t, owners);
        self.core.on_refreshed(Ok((t, Vec::new())), self.now);
    }

    /// The applied offset once every op so far counts as submitted (as
    /// after a flush).
    pub(super) fn applied(&mut self) -> u64 {
        self.core.all_taken();
        self.core.end_turn(self.now, false);
        self.shared.applied.load(Ordering::Acquire)
    }

    pub(super) fn stat(&self, f: impl Fn(&Shared) -> &std::sync::atomic::AtomicU64) -> u64 {
        f(&self.shared).load(Ordering::Relaxed)
    }

    pub(super) fn fatal(&self) -> Option<&WriterError> {
        self.core.fatal()
    }
}

/// The commands in `bytes`, as space-separated lines.
pub(super) fn commands(bytes: &Bytes) -> Vec<String> {
    let mut buf = BytesMut::from(&bytes[..]);
    let mut out = Vec::new();
    while let Ok(Some(cmd)) = ferry_resp::split_command(&mut buf) {
        let words: Vec<String> = cmd
            .args
            .iter()
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        out.push(words.join(" "));
    }
    assert!(buf.is_empty(), "undecodable bytes written: {buf:?}");
    out
}

/// `MULTI, SET key value..., SET <ckpt> 0:<offset>, EXEC` as lines.
pub(super) fn txn_lines(slot: u16, sets: &[(&str, &str)], offset: u64) -> Vec<String> {
    let mut v = vec!["MULTI".to_owned()];
    v.extend(sets.iter().map(|(k, val)| format!("SET {k} {val}")));
    v.push(format!("SET {} 0:{offset}", ckpt_key(slot)));
    v.push("EXEC".to_owned());
    v
}

//! A standalone target in checkpoint mode: the key in db 0, each
//! transaction selecting the ops' db then db 0 (see `engine::dbs`).

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use ferry_resp::Value;

use super::harness::{Harness, ckpt_key, ok, queued, set, topology};
use crate::checkpoint::Resume;
use crate::config::{CheckpointConfig, Op, TargetMode, WriterConfig};
use crate::engine::core::Core;
use crate::shared::Shared;

fn select(db: u64, offset: u64) -> Op {
    Op::slot(
        vec![Bytes::from_static(b"SELECT"), Bytes::from(db.to_string())],
        0,
        offset,
    )
}

/// A standalone core (one server serving every slot) with checkpoints;
/// `resume`: the connect-time checkpoint of slot 0.
fn standalone(resume: u64) -> Harness {
    let config = WriterConfig {
        checkpoint: Some(CheckpointConfig::default()),
        skip_applied: resume > 0,
        mode: TargetMode::Standalone,
        ..WriterConfig::default()
    };
    let shared = Arc::new(Shared::default());
    let now = Instant::now();
    let mut r = Resume {
        slot: vec![0; usize::from(ferry_ops::SLOTS)],
        node_barrier: vec![0],
        ..Resume::default()
    };
    r.slot[0] = resume;
    let core = Core::new(
        topology(1),
        1,
        r,
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

/// Replies of a committed transaction of `n` queued commands.
fn committed(n: usize) -> Vec<Value> {
    let mut v = vec![ok()];
    v.extend((0..n).map(|_| queued()));
    v.push(Value::Array((0..n).map(|_| ok()).collect()));
    v
}

#[test]
fn each_transaction_selects_its_db_then_db_0_for_the_key() {
    let mut h = standalone(0);
    let key = ckpt_key(0);
    h.submit(select(2, 1));
    h.submit(set(0, "a", "1", 2));
    assert_eq!(
        h.turn_on(0),
        [
            "MULTI".to_owned(),
            "SELECT 2".into(),
            "SET a 1".into(),
            "SELECT 0".into(),
            format!("SET {key} 0:2"),
            "EXEC".into(),
        ]
    );
    h.reply(0, committed(4));
    assert_eq!(h.applied(), 2);
    // The next one starts from db 0 on the wire, in db 2 for its ops.
    h.submit(set(0, "b", "2", 3));
    assert_eq!(
        h.turn_on(0),
        [
            "MULTI".to_owned(),
            "SELECT 2".into(),
            "SET b 2".into(),
            "SELECT 0".into(),
            format!("SET {key} 0:3"),
            "EXEC".into(),
        ]
    );
    // Its reply is lost: the probe reads db 0 (no SELECT needed).
    h.cut(0);
    let lines: Vec<String> = h.turn().into_iter().map(|(_, l)| l).collect();
    assert_eq!(lines, [format!("GET {key}")]);
}

#[test]
fn a_select_committed_before_a_restart_still_moves_the_db() {
    // Offsets up to 10 are in the target: SELECT 1 at 5 is skipped, but
    // the op at 12 still runs in db 1.
    let mut h = standalone(10);
    h.submit(select(1, 5));
    h.submit(set(0, "c", "3", 12));
    let lines = h.turn_on(0);
    assert_eq!(&lines[..3], ["MULTI", "SELECT 1", "SET c 3"], "{lines:?}");
}

#[test]
fn plain_ops_after_transactions_get_the_db_back() {
    let mut h = standalone(0);
    h.submit(select(3, 1));
    h.submit(set(0, "a", "1", 2));
    h.turn_on(0);
    h.reply(0, committed(4));
    // A full resync: checkpoints off, plain ops in db 3 (the connection is on 0).
    h.core.set_checkpointing(false);
    h.submit(set(0, "k", "v", 3));
    assert_eq!(h.turn_on(0), ["SELECT 3", "SET k v"]);
    h.reply(0, vec![ok(), ok()]);
    // Back to checkpoints: a SELECT 0 of ferry's own first.
    h.core.set_checkpointing(true);
    h.submit(set(0, "m", "w", 4));
    assert_eq!(h.turn_on(0), ["SELECT 0"]);
    h.reply(0, vec![ok()]);
    let lines = h.turn_on(0);
    assert_eq!(&lines[..3], ["MULTI", "SELECT 3", "SET m w"], "{lines:?}");
    assert_eq!(
        h.shared
            .selected_db
            .load(std::sync::atomic::Ordering::Acquire),
        0
    );
}

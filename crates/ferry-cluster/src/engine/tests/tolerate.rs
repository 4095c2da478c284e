//! Ops that tolerate one error reply (`ferry_ops::Tolerate`): a second copy
//! of an every-master command answered "already done" is counted and
//! acknowledged, in plain and checkpoint mode; any other refusal, or the
//! same one without the mark, still stops the writer. Also an
//! every-master op's barrier transactions: the key each sets, and its
//! probe after a lost reply.

use bytes::Bytes;
use ferry_ops::Tolerate;
use ferry_resp::Value;

use super::harness::{Harness, Mode, err, ok, queued};
use crate::config::Op;
use crate::engine::events::WriterEvent;

const NOT_FOUND: &str = "ERR Library not found";

fn delete(lib: &str, offset: u64, tolerate: Tolerate) -> Op {
    let args = vec![
        Bytes::from_static(b"FUNCTION"),
        Bytes::from_static(b"DELETE"),
        Bytes::from(lib.to_owned()),
    ];
    Op::all_masters(args, offset).tolerating(tolerate)
}

fn tolerated_lines(h: &Harness) -> usize {
    h.core
        .telemetry
        .logged
        .iter()
        .filter(|e| matches!(e, WriterEvent::Tolerated { .. }))
        .count()
}

/// The replies of node `node` to one every-master transaction whose op got
/// `reply` (queued, then `EXEC` with the op's result and the barrier's).
fn txn_replies(reply: Value) -> Vec<Value> {
    vec![ok(), queued(), queued(), Value::Array(vec![reply, ok()])]
}

#[test]
fn a_tolerated_refusal_is_counted_and_acknowledged_in_plain_mode() {
    let mut h = Harness::new(3, Mode::Plain);
    h.submit(delete("lib", 10, Tolerate::LibraryNotFound));
    let lines = h.turn();
    assert_eq!(lines.len(), 3, "one copy per master: {lines:?}");
    h.reply(0, vec![ok()]);
    h.reply(1, vec![err(NOT_FOUND)]);
    h.reply(2, vec![err(NOT_FOUND)]);
    assert!(h.fatal().is_none(), "{:?}", h.fatal());
    assert_eq!(h.stat(|s| &s.function_delete_absent), 2);
    assert_eq!(h.stat(|s| &s.acked), 3);
    assert_eq!(h.applied(), 10);
    assert_eq!(tolerated_lines(&h), 1, "one line per source command");
    // The next command (another offset) logs again.
    h.submit(delete("lib", 11, Tolerate::LibraryNotFound));
    h.turn();
    for n in 0..3 {
        h.reply(n, vec![err(NOT_FOUND)]);
    }
    assert!(h.fatal().is_none());
    assert_eq!(h.stat(|s| &s.function_delete_absent), 5);
    assert_eq!(h.applied(), 11);
    assert_eq!(tolerated_lines(&h), 2);
}

#[test]
fn a_tolerated_refusal_inside_exec_commits_the_barrier() {
    let mut h = Harness::new(2, Mode::Checkpoints);
    h.submit(delete("lib", 20, Tolerate::LibraryNotFound));
    let lines = h.turn();
    assert!(
        lines.iter().any(|(_, l)| l == "FUNCTION DELETE lib"),
        "{lines:?}"
    );
    h.reply(0, txn_replies(ok()));
    h.reply(1, txn_replies(err(NOT_FOUND)));
    assert!(h.fatal().is_none(), "{:?}", h.fatal());
    assert_eq!(h.stat(|s| &s.function_delete_absent), 1);
    assert_eq!(h.stat(|s| &s.checkpoints), 2);
    assert_eq!(h.applied(), 20);
    assert_eq!(tolerated_lines(&h), 1);
}

#[test]
fn other_refusals_and_unmarked_ops_still_stop_the_writer() {
    for mode in [Mode::Plain, Mode::Checkpoints] {
        for (tolerate, reply) in [
            (Tolerate::Nothing, NOT_FOUND),
            (
                Tolerate::LibraryNotFound,
                "NOPERM this user has no permissions",
            ),
        ] {
            let mut h = Harness::new(2, mode);
            h.submit(delete("lib", 30, tolerate));
            h.turn();
            let refusal = err(reply);
            h.reply(
                0,
                match mode {
                    Mode::Plain => vec![refusal],
                    _ => txn_replies(refusal),
                },
            );
            let fatal = h.fatal().map(|e| e.to_string()).unwrap_or_default();
            assert!(fatal.contains(reply), "{mode:?} {tolerate:?}: {fatal:?}");
            assert_eq!(h.stat(|s| &s.function_delete_absent), 0);
        }
    }
}

#[test]
fn a_barrier_sets_its_node_key_and_is_probed_by_it_after_a_lost_reply() {
    let mut h = Harness::new(2, Mode::Checkpoints);
    h.submit(delete("lib", 20, Tolerate::Nothing));
    // One transaction per master, each setting the barrier key of the
    // first slot it serves (0 and 8192 here).
    let keys = [
        crate::checkpoint::barrier_key(0),
        crate::checkpoint::barrier_key(8192),
    ];
    let lines = h.turn();
    for (node, key) in keys.iter().enumerate() {
        let set = (node, format!("SET {key} 0:20"));
        assert!(lines.contains(&set), "{set:?} in {lines:?}");
    }
    h.reply(1, txn_replies(ok()));
    // Node 0's reply is lost: its barrier key says whether it committed.
    h.cut(0);
    assert_eq!(h.turn_on(0), [format!("GET {}", keys[0])]);
    h.reply(0, vec![Value::Bulk(Bytes::from_static(b"0:20"))]);
    assert!(h.turn().is_empty());
    assert!(h.fatal().is_none(), "{:?}", h.fatal());
    assert_eq!(h.applied(), 20);
}

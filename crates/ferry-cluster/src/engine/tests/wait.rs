//! `wait_replicas`: `WAIT` confirms parked transactions; a timeout keeps
//! them parked; a demoted master's refusal is a topology change
//! (issue 17).

use ferry_resp::Value;

use super::harness::{Harness, Mode, S0, S0B, ckpt, ckpt_key, err, set, txn_lines};

const WAIT: &str = "WAIT 1 100";

#[test]
fn a_wait_timeout_keeps_transactions_unconfirmed_until_a_replica_has_them() {
    let mut h = Harness::new(2, Mode::WaitReplicas);
    h.submit(set(S0, "a", "1", 1));
    let mut lines = txn_lines(S0, &[("a", "1")], 1);
    lines.push(WAIT.to_owned());
    assert_eq!(h.turn_on(0), lines);
    h.commit(0, 1);
    h.reply(0, vec![Value::Integer(0)]);
    assert_eq!(h.applied(), 0, "counted without a replica");
    assert_eq!(h.stat(|s| &s.wait_timeouts), 1);
    assert_eq!(h.turn_on(0), [WAIT]);
    h.reply(0, vec![Value::Integer(1)]);
    assert_eq!(h.applied(), 1);
}

/// A graceful failover demotes node 0: it refuses the `WAIT`. Its parked
/// transactions are probed on the new master: the one there is skipped,
/// the missing one resent; nothing stops.
#[test]
fn a_wait_refused_by_a_demoted_master_probes_its_parked_transactions_on_the_new_one() {
    let mut h = Harness::new(2, Mode::WaitReplicas);
    h.submit(set(S0, "a", "1", 1));
    h.submit(set(S0B, "b", "2", 2));
    h.turn_on(0);
    h.commit(0, 1);
    h.commit(0, 1);
    h.reply(
        0,
        vec![err(
            "ERR WAIT cannot be used with replica instances. Please also note ...",
        )],
    );
    assert!(h.fatal().is_none(), "{:?}", h.fatal());
    assert!(h.refresh_asked());
    assert_eq!(h.stat(|s| &s.reprobed), 2);
    // Node 1 (the promoted replica) serves both slots now.
    h.refreshed(2, &[1, 1]);
    let mut probes = h.turn_on(1);
    probes.sort();
    let mut want = [
        format!("GET {}", ckpt_key(S0)),
        format!("GET {}", ckpt_key(S0B)),
    ];
    want.sort();
    assert_eq!(probes, want);
    // Order of the probes is the order of the holds released; answer each.
    let first_is_s0 = h.core.nodes[1]
        .queue
        .front()
        .is_some_and(|e| e.slot == Some(S0));
    let (a, b) = (ckpt(1), Value::Null);
    h.reply(1, if first_is_s0 { vec![a, b] } else { vec![b, a] });
    let mut resent = txn_lines(S0B, &[("b", "2")], 2);
    resent.push(WAIT.to_owned());
    assert_eq!(h.turn_on(1), resent);
    h.commit(1, 1);
    h.reply(1, vec![Value::Integer(1)]);
    assert_eq!(h.applied(), 2);
    assert_eq!(h.stat(|s| &s.verified), 1);
}

/// Demoted while the `WAIT` blocked: `UNBLOCKED`, then the server closes
/// the connection; a newer transaction answered `MOVED` meanwhile.
#[test]
fn unblocked_then_a_closed_connection_keeps_the_slot_order() {
    let mut h = Harness::new(2, Mode::WaitReplicas);
    h.submit(set(S0, "a", "1", 1));
    h.turn_on(0);
    h.commit(0, 1);
    h.submit(set(S0, "a", "2", 2));
    h.turn_on(0);
    h.reply(
        0,
        vec![err(
            "UNBLOCKED force unblock from blocking operation, instance state changed (master -> replica?)",
        )],
    );
    assert!(h.refresh_asked());
    h.cut(0);
    h.refreshed(2, &[1, 1]);
    // The parked one is probed first on the new master; the second
    // (written on the old connection, no reply) after it.
    let lines = h.turn_on(1);
    assert_eq!(lines.first(), Some(&format!("GET {}", ckpt_key(S0))));
    assert!(h.fatal().is_none(), "{:?}", h.fatal());
}

#[test]
fn readonly_or_loading_in_reply_to_wait_is_a_topology_change_too() {
    for reply in [
        "READONLY You can't write against a read only replica.",
        "LOADING Redis is loading the dataset in memory",
    ] {
        let mut h = Harness::new(2, Mode::WaitReplicas);
        h.submit(set(S0, "a", "1", 1));
        h.turn_on(0);
        h.commit(0, 1);
        h.reply(0, vec![err(reply)]);
        assert!(h.fatal().is_none(), "{reply}: {:?}", h.fatal());
        assert!(h.refresh_asked(), "{reply}");
        // Same map: probed again on node 0 once the backoff passed.
        h.refreshed(2, &[0, 1]);
        h.advance(std::time::Duration::from_millis(50));
        h.core.on_timer(h.now);
        assert_eq!(h.turn_on(0), [format!("GET {}", ckpt_key(S0))], "{reply}");
        h.reply(0, vec![ckpt(1)]);
        assert_eq!(h.turn_on(0), [WAIT]);
        h.reply(0, vec![Value::Integer(1)]);
        assert_eq!(h.applied(), 1);
    }
}

#[test]
fn a_wait_refused_for_a_reason_no_retry_heals_stops_the_writer() {
    let mut h = Harness::new(2, Mode::WaitReplicas);
    h.submit(set(S0, "a", "1", 1));
    h.turn_on(0);
    h.commit(0, 1);
    h.reply(
        0,
        vec![err(
            "NOPERM this user has no permissions to run the 'wait' command",
        )],
    );
    let e = h.fatal().expect("fatal").to_string();
    assert!(e.contains("WAIT"), "{e}");
}

/// The connection is reset while `WAIT` blocks: the parked transaction is
/// probed on the next connection (committed: parked again, not resent).
#[test]
fn a_connection_reset_during_wait_probes_the_parked_transactions_again() {
    let mut h = Harness::new(2, Mode::WaitReplicas);
    h.submit(set(S0, "a", "1", 1));
    h.turn_on(0);
    h.commit(0, 1);
    h.cut(0);
    assert_eq!(h.stat(|s| &s.reprobed), 1);
    assert_eq!(h.turn_on(0), [format!("GET {}", ckpt_key(S0))]);
    h.reply(0, vec![ckpt(1)]);
    assert_eq!(h.turn_on(0), [WAIT]);
    h.reply(0, vec![Value::Integer(1)]);
    assert_eq!(h.applied(), 1);
    assert_eq!(h.stat(|s| &s.checkpoints), 1, "resent");
}

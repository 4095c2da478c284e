//! Plain ops: redirects, retries and failovers keep per-slot order.

use std::time::Duration;

use ferry_resp::Value;

use super::harness::{Harness, Mode, S0, err, ok, set};
use crate::engine::events::WriterEvent;

const MOVED_TO_1: &str = "MOVED 100 127.0.0.1:7001";

#[test]
fn moved_in_the_middle_of_a_pipeline_resends_the_rest_in_order() {
    let mut h = Harness::new(2, Mode::Plain);
    for i in 1..=3 {
        h.submit(set(S0, "a", &i.to_string(), i));
    }
    assert_eq!(h.turn_on(0), ["SET a 1", "SET a 2", "SET a 3"]);
    // The slot moves after the first op: the second is redirected, the
    // third is still in flight, so nothing is resent yet.
    h.reply(0, vec![ok(), err(MOVED_TO_1)]);
    assert!(h.turn().is_empty());
    // A new op of the slot waits behind the held ones.
    h.submit(set(S0, "a", "4", 4));
    assert!(h.turn().is_empty());
    h.reply(0, vec![err(MOVED_TO_1)]);
    assert_eq!(h.turn_on(1), ["SET a 2", "SET a 3", "SET a 4"]);
    h.reply(1, vec![ok(), ok(), ok()]);
    assert_eq!(h.applied(), 4);
    assert_eq!(h.stat(|s| &s.moved), 2);
    assert!(h.fatal().is_none());
}

#[test]
fn ask_sends_asking_then_the_op_once_and_the_map_stays() {
    let mut h = Harness::new(2, Mode::Plain);
    h.submit(set(S0, "a", "1", 1));
    h.turn_on(0);
    h.reply(0, vec![err("ASK 100 127.0.0.1:7001")]);
    assert_eq!(h.turn_on(1), ["ASKING", "SET a 1"]);
    h.reply(1, vec![ok(), ok()]);
    // The next op of the slot goes to the owner of the map again.
    h.submit(set(S0, "a", "2", 2));
    assert_eq!(h.turn_on(0), ["SET a 2"]);
    h.reply(0, vec![ok()]);
    assert_eq!(h.applied(), 2);
    assert_eq!(h.stat(|s| &s.ask), 1);
}

#[test]
fn a_master_failover_reroutes_queued_ops_in_order() {
    let mut h = Harness::new(2, Mode::Plain);
    for i in 1..=3 {
        h.submit(set(S0, "a", &i.to_string(), i));
    }
    h.turn_on(0);
    // Node 0 dies with three ops unanswered; one more is submitted.
    let generation = h.core.generation(0).expect("node 0");
    assert!(h.core.on_lost(0, generation, h.now));
    h.submit(set(S0, "a", "4", 4));
    assert!(h.turn().is_empty());
    // It stays unreachable: after the grace, the topology is re-read.
    h.advance(Duration::from_millis(1100));
    h.core.on_timer(h.now);
    assert!(h.refresh_asked());
    // Its replica (node 1 here) serves every slot now.
    h.refreshed(2, &[1, 1]);
    assert_eq!(h.turn_on(1), ["SET a 1", "SET a 2", "SET a 3", "SET a 4"]);
    h.reply(1, vec![ok(), ok(), ok(), ok()]);
    assert_eq!(h.applied(), 4);
    assert!(h.fatal().is_none());
    // Logged: the lost connection, and the failover as slots moving.
    let logged = &h.core.telemetry.logged;
    assert!(logged.contains(&WriterEvent::Lost {
        node: "127.0.0.1:7000".to_owned(),
        parked: 0
    }));
    assert!(
        logged.contains(&WriterEvent::TopologyChanged {
            moves: vec![(
                "127.0.0.1:7000".to_owned(),
                "127.0.0.1:7001".to_owned(),
                8192
            )],
            failovers: vec![("127.0.0.1:7000".to_owned(), "127.0.0.1:7001".to_owned())],
        }),
        "{logged:?}"
    );
}

#[test]
fn readonly_retries_after_a_backoff_and_reads_the_topology_again() {
    let mut h = Harness::new(2, Mode::Plain);
    h.submit(set(S0, "a", "1", 1));
    h.turn_on(0);
    h.reply(
        0,
        vec![err("READONLY You can't write against a read only replica.")],
    );
    assert!(h.refresh_asked());
    assert!(h.turn().is_empty(), "resent before the backoff");
    h.advance(Duration::from_millis(50));
    h.core.on_timer(h.now);
    // The refresh says node 1 took the slot over.
    h.refreshed(2, &[1, 1]);
    assert_eq!(h.turn_on(1), ["SET a 1"]);
    h.reply(1, vec![ok()]);
    assert_eq!(h.applied(), 1);
    assert_eq!(h.stat(|s| &s.retries), 1);
}

#[test]
fn loading_retries_on_the_same_node_without_a_refresh() {
    let mut h = Harness::new(2, Mode::Plain);
    h.submit(set(S0, "a", "1", 1));
    h.turn_on(0);
    h.reply(
        0,
        vec![err("LOADING Redis is loading the dataset in memory")],
    );
    assert!(!h.refresh_asked());
    h.advance(Duration::from_millis(50));
    h.core.on_timer(h.now);
    assert_eq!(h.turn_on(0), ["SET a 1"]);
    h.reply(0, vec![ok()]);
    assert_eq!(h.applied(), 1);
}

#[test]
fn an_error_that_no_retry_can_heal_stops_the_writer_naming_the_op() {
    let mut h = Harness::new(2, Mode::Plain);
    h.submit(set(S0, "a", "1", 1));
    h.turn_on(0);
    h.reply(
        0,
        vec![err(
            "OOM command not allowed when used memory > 'maxmemory'.",
        )],
    );
    let e = h.fatal().expect("fatal").to_string();
    assert!(
        e.contains("SET") && e.contains('a') && e.contains("OOM"),
        "{e}"
    );
}

#[test]
fn a_burst_of_redirects_logs_two_lines_not_hundreds() {
    let mut h = Harness::new(2, Mode::Plain);
    for i in 1..=200 {
        h.submit(set(S0, "a", &i.to_string(), i));
    }
    h.turn_on(0);
    h.reply(0, (0..200).map(|_| err(MOVED_TO_1)).collect());
    assert_eq!(h.turn().len(), 200);
    h.advance(Duration::from_secs(2));
    h.core.on_timer(h.now);
    let lines = h.core.telemetry.logged.len();
    assert_eq!(lines, 2, "{:?}", h.core.telemetry.logged);
}

/// The values of `key` a node applies, in order, from the `SET`s written
/// to it and its replies (`OK` applies, an error does not).
fn applied_sets(key: &str, written: &[String], replies: &[Value], into: &mut Vec<String>) {
    for (line, reply) in written.iter().zip(replies) {
        if let (Some(v), Value::Simple(_)) = (line.strip_prefix(&format!("SET {key} ")), reply) {
            into.push(v.to_owned());
        }
    }
}

#[test]
fn a_clusterdown_that_clears_mid_pipeline_keeps_the_slot_in_order() {
    const DOWN: &str = "CLUSTERDOWN The cluster is down";
    let mut h = Harness::new(2, Mode::Plain);
    let mut applied = Vec::new();
    for i in 1..=3 {
        h.submit(set(S0, "a", &i.to_string(), i));
    }
    assert_eq!(h.turn_on(0), ["SET a 1", "SET a 2", "SET a 3"]);
    // A master elsewhere fails: the node refuses everything.
    h.reply(0, vec![err(DOWN), err(DOWN), err(DOWN)]);
    h.submit(set(S0, "a", "4", 4));
    assert!(h.turn().is_empty());
    // After the backoff the slot is retried; the node's state turns ok
    // while it works through what was written: the first entry is still
    // refused, whatever follows it is applied.
    h.advance(Duration::from_secs(1));
    h.core.on_timer(h.now);
    let written = h.turn_on(0);
    let mut replies = vec![err(DOWN)];
    replies.extend(written.iter().skip(1).map(|_| ok()));
    applied_sets("a", &written, &replies, &mut applied);
    h.reply(0, replies);
    // From now on everything is accepted.
    for _ in 0..4 {
        h.advance(Duration::from_secs(1));
        h.core.on_timer(h.now);
        let written = h.turn_on(0);
        let replies: Vec<Value> = written.iter().map(|_| ok()).collect();
        applied_sets("a", &written, &replies, &mut applied);
        h.reply(0, replies);
    }
    assert_eq!(applied, ["1", "2", "3", "4"]);
    assert_eq!(h.applied(), 4);
    assert!(h.fatal().is_none());
}

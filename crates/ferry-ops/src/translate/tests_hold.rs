//! Table tests of the TTL hold, without servers.

use bytes::Bytes;
use ferry_rdb::{Item, Kind};

use super::tests::{NOW, a, cfg, cmd, header, rdb, render, started, string_key, w};
use super::*;

fn hold_cfg() -> TranslatorConfig {
    TranslatorConfig {
        ttl_hold: true,
        ..cfg()
    }
}

/// Progress with the source at offset 0 or 1, each call a poll interval later.
fn progress(t: &mut Translator, percent: Option<f64>, lag_ms: u64) -> Vec<String> {
    use std::cell::Cell;
    thread_local!(static CLOCK: Cell<i64> = const { Cell::new(NOW + 10 * SOURCE_POLL_MS) });
    let now = CLOCK.with(|c| {
        c.set(c.get() + SOURCE_POLL_MS);
        c.get()
    });
    // 0 or 1, changing each call: a fresh poll, reached by any stream.
    let at = (now / SOURCE_POLL_MS % 2) as u64;
    source_at(t, percent, lag_ms, Some(at), now)
}

fn source_at(
    t: &mut Translator,
    percent: Option<f64>,
    lag_ms: u64,
    at: Option<u64>,
    now: i64,
) -> Vec<String> {
    let mut out = Vec::new();
    t.progress(percent, lag_ms, at, now, &mut out);
    render(&out)
}

#[test]
fn snapshot_keys_expiring_before_the_catch_up_are_held() {
    let mut t = started(hold_cfg());
    // Progress unknown: 10 minutes assumed, ×2, + 60 s.
    let soon = NOW + 1_500;
    assert_eq!(
        rdb(&mut t, string_key(0, "s", "v", Some(soon))),
        [
            "hold 0 s".to_owned(),
            w(
                "s",
                101,
                &format!("RESTORE s {} <bin> REPLACE ABSTTL", soon + HOLD_MS)
            )
        ]
    );
    let late = NOW + 2 * 600_000 + HOLD_MARGIN_MS + 1;
    assert_eq!(
        rdb(&mut t, string_key(0, "l", "v", Some(late))),
        [w(
            "l",
            101,
            &format!("RESTORE l {late} <bin> REPLACE ABSTTL")
        )]
    );
    // No TTL, or already expired: as without the hold.
    assert_eq!(
        rdb(&mut t, string_key(0, "n", "v", None)),
        [w("n", 101, "SET n v")]
    );
    assert_eq!(
        rdb(&mut t, string_key(0, "x", "v", Some(NOW - 1))),
        ["skip expired x"]
    );
    assert_eq!(t.counters.ttl_held, 1);
    // Expired after the snapshot was taken (its ctime) but before it is
    // decoded: the backlog may refresh it, so it is held, not skipped.
    let mut out = Vec::new();
    let ctime = Bytes::from((NOW / 1000 - 5).to_string());
    t.rdb(
        Item::Aux {
            key: Bytes::from_static(b"ctime"),
            value: ctime,
        },
        NOW,
        &mut out,
    );
    let e = NOW - 2_000;
    assert_eq!(
        rdb(&mut t, string_key(0, "r", "v", Some(e))),
        [
            "hold 0 r".to_owned(),
            w(
                "r",
                101,
                &format!("RESTORE r {} <bin> REPLACE ABSTTL", e + HOLD_MS)
            )
        ]
    );
    assert_eq!(
        rdb(&mut t, string_key(0, "x", "v", Some(NOW - 6_000))),
        ["skip expired x"]
    );
}

#[test]
fn the_horizon_follows_snapshot_progress_and_lag() {
    // Full sync at NOW; 50 % done 10 s later: 10 s to go.
    let mut t = started(hold_cfg());
    assert!(progress(&mut t, Some(50.0), 0).is_empty());
    let now = NOW + 10_000;
    let mut out = Vec::new();
    // Horizon: now + 2 × 10 s + 60 s = now + 80 s.
    for (key, e, held) in [("a", now + 79_000, true), ("b", now + 81_000, false)] {
        out.clear();
        t.rdb(string_key(0, key, "v", Some(e)), now, &mut out);
        assert_eq!(
            render(&out).first().is_some_and(|l| l.starts_with("hold")),
            held,
            "{key}"
        );
    }
    // 4 s of lag add 8 s.
    progress(&mut t, Some(50.0), 4_000);
    out.clear();
    t.rdb(string_key(0, "b", "v", Some(now + 81_000)), now, &mut out);
    assert!(render(&out)[0].starts_with("hold"));
}

#[test]
fn big_keys_in_command_form_get_the_held_expiry() {
    let mut t = started(TranslatorConfig {
        restore: false,
        ..hold_cfg()
    });
    let e = NOW + 1_000;
    assert_eq!(
        rdb(
            &mut t,
            Item::BigKeyStart(header(0, "big", Kind::Set, 2, Some(e)))
        ),
        ["hold 0 big"]
    );
    rdb(
        &mut t,
        Item::BigKeyChunk(ferry_rdb::Value::Set(vec![Bytes::from_static(b"m")])),
    );
    assert_eq!(
        rdb(&mut t, Item::BigKeyEnd),
        [w("big", 101, &format!("PEXPIREAT big {}", e + HOLD_MS))]
    );
}

#[test]
fn stream_expiries_are_held_until_caught_up() {
    let mut t = started(hold_cfg());
    let mut out = Vec::new();
    t.snapshot_end(&mut out);
    progress(&mut t, Some(100.0), 5_000);
    let e = NOW + 1_500;
    let held = e + HOLD_MS;
    for (line, want) in [
        // Options dropped: the master propagates only what it applied.
        (format!("PEXPIREAT k {e} GT"), format!("PEXPIREAT k {held}")),
        (
            format!("EXPIREAT k {}", e / 1000),
            format!("PEXPIREAT k {}", (e / 1000) * 1000 + HOLD_MS),
        ),
        (format!("SET k v PXAT {e}"), format!("SET k v PXAT {held}")),
        (
            format!("SET k v NX EXAT {}", e / 1000),
            format!("SET k v NX PXAT {}", (e / 1000) * 1000 + HOLD_MS),
        ),
        (
            format!("RESTORE k {e} payload ABSTTL REPLACE"),
            format!("RESTORE k {held} payload ABSTTL REPLACE"),
        ),
    ] {
        assert_eq!(
            cmd(&mut t, 0, 500, &line),
            ["hold 0 k".to_owned(), w("k", 500, &want)],
            "{line}"
        );
    }
    // Far expiries, relative ones and TTL-less writes pass as they are.
    for line in [
        format!("PEXPIREAT k {}", NOW + 3_600_000),
        "PEXPIRE k 100".to_owned(),
        "RESTORE k 100 payload".to_owned(),
        "SET k v".to_owned(),
        "HINCRBY k f 1".to_owned(),
    ] {
        assert_eq!(cmd(&mut t, 0, 501, &line), [w("k", 501, &line)], "{line}");
    }
    // A stamp moves with its key.
    assert_eq!(
        cmd(&mut t, 0, 502, "RENAME {t}a {t}b"),
        ["hold 0 {t}b".to_owned(), w("{t}a", 502, "RENAME {t}a {t}b")]
    );
    assert_eq!(
        cmd(&mut t, 0, 503, "COPY a b"),
        [
            "hold 0 b".to_owned(),
            r#"emulate@503 CopyKey { from: b"a", to: b"b", delete_from: false }"#.to_owned()
        ]
    );
    assert_eq!(
        cmd(&mut t, 0, 503, "MOVE a 4"),
        ["hold 4 a", "skip unreplayable a"]
    );
    // Caught up: the fix-up at the last stream offset, then no more holding.
    assert!(progress(&mut t, Some(100.0), CAUGHT_UP_MS).is_empty());
    assert!(progress(&mut t, Some(100.0), CAUGHT_UP_MS).is_empty());
    assert_eq!(progress(&mut t, Some(100.0), 100), ["fixup@503"]);
    assert!(progress(&mut t, Some(100.0), 100).is_empty());
    let line = format!("PEXPIREAT k {e}");
    assert_eq!(cmd(&mut t, 0, 504, &line), [w("k", 504, &line)]);
}

#[test]
fn the_fix_up_waits_for_the_snapshot_a_transaction_and_a_postponement() {
    let mut t = started(hold_cfg());
    let mut out = Vec::new();
    t.command(a("PING"), 0, 300, NOW, &mut out);
    assert!(
        progress(&mut t, Some(100.0), 0).is_empty(),
        "still in the snapshot"
    );
    t.snapshot_end(&mut out);
    // The stream shows at NOW; the source's offset polled then may predate
    // the backlog: not taken. Polled 1.5 s later (305): the backlog must be
    // translated first, whatever the lag says.
    assert!(source_at(&mut t, None, 0, Some(1), NOW).is_empty());
    let later = NOW + SOURCE_POLL_MS;
    assert!(
        source_at(&mut t, None, 0, Some(305), later).is_empty(),
        "backlog"
    );
    t.command(a("PING"), 0, 305, NOW, &mut out);
    t.multi(&mut out);
    assert!(
        progress(&mut t, None, 0).is_empty(),
        "inside a source transaction"
    );
    t.exec(&mut out);
    assert_eq!(progress(&mut t, None, 0), ["fixup@305"]);
    t.fixup_postponed();
    t.command(a("PING"), 0, 310, NOW, &mut out);
    assert_eq!(progress(&mut t, None, 0), ["fixup@310"]);
    // A resume holds again until caught up.
    t.resume();
    assert!(source_at(&mut t, None, 0, Some(320), NOW).is_empty());
    let later = NOW + SOURCE_POLL_MS;
    assert!(
        source_at(&mut t, None, 0, Some(320), later).is_empty(),
        "backlog"
    );
    let line = format!("PEXPIREAT k {}", NOW + 10);
    assert_eq!(cmd(&mut t, 0, 320, &line)[0], "hold 0 k");
    assert_eq!(progress(&mut t, None, 0), ["fixup@320"]);
}

#[test]
fn a_stream_that_never_gets_near_still_gets_its_fix_up() {
    let mut t = started(hold_cfg());
    let mut out = Vec::new();
    t.snapshot_end(&mut out);
    t.command(a("PING"), 0, 400, NOW, &mut out);
    let poll = NOW + SOURCE_POLL_MS;
    assert!(source_at(&mut t, None, 0, Some(300), NOW).is_empty());
    assert!(source_at(&mut t, None, 2_000, Some(400), poll).is_empty());
    let late = poll + MAX_WAIT_MS - 1;
    assert!(source_at(&mut t, None, 2_000, Some(900), late).is_empty());
    assert_eq!(
        source_at(&mut t, None, 2_000, Some(900), late + 1),
        ["fixup@400"]
    );
}

#[test]
fn a_stalled_source_poll_is_not_taken_for_the_backlog_end() {
    let mut t = started(hold_cfg());
    let mut out = Vec::new();
    t.snapshot_end(&mut out);
    t.command(a("PING"), 0, 500, NOW, &mut out);
    // The poller reports 500 when the stream shows, and still 500 later
    // (stalled): not taken, although the stream has reached it.
    assert!(source_at(&mut t, None, 0, Some(500), NOW).is_empty());
    let poll = NOW + SOURCE_POLL_MS;
    assert!(source_at(&mut t, None, 0, Some(500), poll + 1_000).is_empty());
    // A fresh value: taken; reached: the fix-up.
    assert!(source_at(&mut t, None, 0, Some(600), poll + 2_000).is_empty());
    t.command(a("PING"), 0, 600, NOW, &mut out);
    assert_eq!(
        source_at(&mut t, None, 0, Some(650), poll + 3_000),
        ["fixup@600"]
    );
    // An idle source whose offset never changes: taken after MAX_WAIT_MS.
    let mut t = started(hold_cfg());
    t.snapshot_end(&mut out);
    t.command(a("PING"), 0, 700, NOW, &mut out);
    assert!(source_at(&mut t, None, 0, Some(700), NOW).is_empty());
    assert!(source_at(&mut t, None, 0, Some(700), NOW + MAX_WAIT_MS - 1).is_empty());
    assert_eq!(
        source_at(&mut t, None, 0, Some(700), NOW + MAX_WAIT_MS),
        ["fixup@700"]
    );
}

#[test]
fn fix_up_ops_are_guarded_scripts_in_the_key_slot_or_db() {
    let mut t = started(hold_cfg());
    let mut out = Vec::new();
    t.fixup_op(0, Bytes::from_static(b"k"), 77, &mut out);
    let hold = HOLD_MS.to_string();
    assert_eq!(
        render(&out),
        [w("k", 77, &format!("EVAL <bin> 1 k {hold}"))]
    );
    let mut t = started(TranslatorConfig {
        standalone: true,
        ..hold_cfg()
    });
    out.clear();
    t.fixup_op(2, Bytes::from_static(b"k"), 77, &mut out);
    t.fixup_op(2, Bytes::from_static(b"j"), 77, &mut out);
    assert_eq!(
        render(&out),
        [
            "0@77 SELECT 2".to_owned(),
            format!("0@77 EVAL <bin> 1 k {hold}"),
            format!("0@77 EVAL <bin> 1 j {hold}"),
        ]
    );
    assert_eq!(t.counters.ttl_fixups, 2);
}

#[test]
fn without_the_hold_nothing_changes() {
    let mut t = started(cfg());
    assert_eq!(
        rdb(&mut t, string_key(0, "s", "v", Some(NOW + 5))),
        [w(
            "s",
            101,
            &format!("RESTORE s {} <bin> REPLACE ABSTTL", NOW + 5)
        )]
    );
    let line = format!("PEXPIREAT k {}", NOW + 5);
    assert_eq!(cmd(&mut t, 0, 200, &line), [w("k", 200, &line)]);
    let mut out = Vec::new();
    t.snapshot_end(&mut out);
    assert!(progress(&mut t, None, 0).is_empty());
}

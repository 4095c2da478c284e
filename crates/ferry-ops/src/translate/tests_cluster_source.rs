//! Translator table tests for a cluster source's shard: FLUSHALL of one
//! shard, copies of every-master commands, migrated keys.

use super::tests::*;
use super::*;
use crate::op::Tolerate;

#[test]
fn a_cluster_source_shard_flushes_only_its_slots() {
    for standalone in [false, true] {
        let mut t = started(TranslatorConfig {
            source_shard: true,
            standalone,
            ..cfg()
        });
        assert_eq!(cmd(&mut t, 0, 8, "FLUSHALL"), ["flush-slots@8"]);
        assert_eq!(cmd(&mut t, 0, 9, "FLUSHDB ASYNC"), ["flush-slots@9"]);
        // FUNCTION LOAD from every shard's stream: idempotent.
        let load = cmd(&mut t, 0, 12, "FUNCTION LOAD code");
        assert!(
            load.iter()
                .any(|l| l.ends_with("FUNCTION LOAD REPLACE code")),
            "{load:?}"
        );
        let load = cmd(&mut t, 0, 13, "FUNCTION LOAD REPLACE code");
        assert!(
            load.iter()
                .any(|l| l.ends_with("FUNCTION LOAD REPLACE code")),
            "{load:?}"
        );
        let restore = cmd(&mut t, 0, 14, "FUNCTION RESTORE payload");
        assert!(
            restore
                .iter()
                .any(|l| l.ends_with("FUNCTION RESTORE payload REPLACE")),
            "{restore:?}"
        );
        // Other every-master commands are applied as before.
        assert_eq!(cmd(&mut t, 0, 10, "SCRIPT FLUSH").len(), 1);
        assert_ne!(cmd(&mut t, 0, 11, "SCRIPT FLUSH"), ["flush-slots@11"]);
    }
    // Inside MULTI/EXEC: the open group is cut around it.
    let mut t = started(TranslatorConfig {
        source_shard: true,
        ..cfg()
    });
    let mut out = Vec::new();
    t.multi(&mut out);
    t.command(a("SET a 1"), 0, 5, NOW, &mut out);
    t.command(a("FLUSHALL"), 0, 6, NOW, &mut out);
    t.exec(&mut out);
    assert!(
        out.iter()
            .any(|a| matches!(a, Action::FlushSlots { offset: 6 })),
        "{out:?}"
    );
}

#[test]
fn a_cluster_source_shard_tolerates_a_second_function_delete() {
    fn ops(t: &mut Translator, line: &str) -> Vec<Op> {
        let mut out = Vec::new();
        t.command(a(line), 0, 20, NOW, &mut out);
        out.into_iter()
            .filter_map(|a| match a {
                Action::Write(op) => Some(op),
                _ => None,
            })
            .collect()
    }
    for standalone in [false, true] {
        let mut t = started(TranslatorConfig {
            source_shard: true,
            standalone,
            ..cfg()
        });
        let del = ops(&mut t, "FUNCTION DELETE mylib");
        let del = del.last().expect("the delete is written");
        assert_eq!(del.args.to_vec(), a("FUNCTION DELETE mylib"));
        assert_eq!(del.tolerate, Tolerate::LibraryNotFound, "{standalone}");
        // RESTORE … APPEND: a second copy would be refused; REPLACE is not.
        let restore = ops(&mut t, "FUNCTION RESTORE payload APPEND");
        assert_eq!(
            restore[0].args.to_vec(),
            a("FUNCTION RESTORE payload REPLACE")
        );
        for line in [
            "FUNCTION RESTORE payload FLUSH",
            "FUNCTION RESTORE payload REPLACE",
            "FUNCTION FLUSH",
            "FUNCTION FLUSH ASYNC",
            "SCRIPT FLUSH",
            "SCRIPT LOAD body",
        ] {
            // Idempotent as they are: unchanged, nothing tolerated.
            let op = &ops(&mut t, line)[0];
            assert_eq!(op.args.to_vec(), a(line), "{line}");
            assert_eq!(op.tolerate, Tolerate::Nothing, "{line}");
        }
        assert_eq!(t.counters.commands_applied, 8);
    }
    // A standalone source: one copy only, so every refusal is an error.
    let mut t = started(cfg());
    let del = ops(&mut t, "FUNCTION DELETE mylib");
    assert_eq!(del[0].tolerate, Tolerate::Nothing);
    let restore = ops(&mut t, "FUNCTION RESTORE payload APPEND");
    assert_eq!(
        restore[0].args.to_vec(),
        a("FUNCTION RESTORE payload APPEND")
    );
}

#[test]
fn a_migrated_keys_restore_asking_replaces_on_a_cluster_source() {
    for standalone in [false, true] {
        let mut t = started(TranslatorConfig {
            source_shard: true,
            standalone,
            ..cfg()
        });
        let out = cmd(&mut t, 0, 8, "RESTORE-ASKING k 0 payload");
        assert!(
            out.iter()
                .any(|l| l.ends_with("RESTORE k 0 payload REPLACE")),
            "{out:?}"
        );
        let out = cmd(&mut t, 0, 9, "RESTORE-ASKING k 0 payload REPLACE");
        assert!(
            out.iter()
                .any(|l| l.ends_with("RESTORE k 0 payload REPLACE")),
            "{out:?}"
        );
    }
    // A standalone source's RESTORE-ASKING is replayed as it is.
    let mut t = started(cfg());
    let out = cmd(&mut t, 0, 8, "RESTORE-ASKING k 0 payload");
    assert!(
        out.iter()
            .any(|l| l.ends_with("RESTORE-ASKING k 0 payload")),
        "{out:?}"
    );
}

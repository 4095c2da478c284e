//! `ferry rdb` against real servers: for every server flavor, a dump holding
//! every type in every encoding is decoded (whole and in random pieces),
//! turned into commands, loaded into a fresh server of the same flavor, and
//! compared with the original: `DEBUG DIGEST`, and every key's type, value
//! and TTL read back from a second dump (stream groups and pending entries
//! included).

use std::io::Write;
use std::process::{Command, Stdio};

use bytes::BytesMut;
use ferry_rdb::{DecodeOptions, Decoder, Item, decode_all};
use ferry_testkit::fixtures::{self, FixtureOptions};
use ferry_testkit::{Flavor, Server};

use crate::common::{normalize, pipe_into};

const FERRY: &str = env!("CARGO_BIN_EXE_ferry");

fn start(flavor: Flavor) -> Server {
    Server::builder(flavor)
        .modules(flavor == Flavor::RedisStack74)
        .start()
        .unwrap_or_else(|e| panic!("start {flavor}: {e}"))
}

fn decode_in_pieces(data: &[u8], seed: u64) -> Vec<Item> {
    let mut rng = seed;
    let mut next = || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    let mut d = Decoder::new(DecodeOptions::default());
    let mut buf = BytesMut::new();
    let mut out = Vec::new();
    let mut pos = 0;
    loop {
        while let Some(i) = d.decode(&mut buf).expect("decodes in pieces") {
            out.push(i);
        }
        if pos == data.len() {
            break;
        }
        let n = (next() % 5000 + 1) as usize;
        let end = (pos + n).min(data.len());
        buf.extend_from_slice(&data[pos..end]);
        pos = end;
    }
    d.finish(&buf).expect("complete");
    out
}

fn ferry_rdb(file: &std::path::Path, args: &[&str]) -> Vec<u8> {
    let out = Command::new(FERRY)
        .arg("rdb")
        .arg(file)
        .args(args)
        .output()
        .expect("run ferry");
    assert!(
        out.status.success(),
        "ferry rdb {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

fn roundtrip(flavor: Flavor) {
    let src = start(flavor);
    let info =
        fixtures::populate_with(&mut src.conn(), FixtureOptions::new(flavor)).expect("populate");
    let dump = src.dump_rdb().expect("dump");
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("dump.rdb");
    std::fs::write(&file, &dump).expect("write dump");

    // Decode: header, every expected type byte, pieces == whole.
    let items = decode_all(&dump).unwrap_or_else(|e| panic!("{flavor}: {e}"));
    assert!(
        matches!(items.first(), Some(Item::Header { version, .. }) if *version == flavor.rdb_version()),
        "{flavor}: header {:?}",
        items.first()
    );
    let keys = normalize(&items);
    assert_eq!(keys.len(), info.keys, "{flavor}: key count");
    for e in fixtures::expected_types(flavor, &info) {
        let k = items.iter().find_map(|i| match i {
            Item::Key(k) if k.header.db == u64::from(e.db) && k.header.key == e.key => Some(k),
            _ => None,
        });
        let k = k.unwrap_or_else(|| {
            panic!(
                "{flavor}: key {:?} not decoded",
                String::from_utf8_lossy(&e.key)
            )
        });
        assert_eq!(
            k.header.rdb_type,
            e.type_byte,
            "{flavor}: type of {:?}",
            String::from_utf8_lossy(&e.key)
        );
        assert_eq!(
            k.header.expire_ms.is_some(),
            e.expires,
            "{flavor}: TTL of {:?}",
            String::from_utf8_lossy(&e.key)
        );
    }
    for seed in [1u64, 7, 12345] {
        assert_eq!(
            decode_in_pieces(&dump, seed),
            items,
            "{flavor}: pieces (seed {seed})"
        );
    }

    // Commands → a fresh server of the same flavor → same data.
    let digest = src.digest();
    for mode in [&[][..], &["--restore"][..]] {
        let dst = start(flavor);
        let mut args = vec!["--format", "resp"];
        args.extend_from_slice(mode);
        pipe_into(&dst, &ferry_rdb(&file, &args));
        assert_eq!(
            dst.digest(),
            digest,
            "{flavor} {mode:?}: DEBUG DIGEST differs"
        );
        let again = normalize(&decode_all(&dst.dump_rdb().expect("dump")).expect("decode copy"));
        for (k, v) in &keys {
            assert_eq!(again.get(k), Some(v), "{flavor} {mode:?}: key {k:?}");
        }
        assert_eq!(
            again.len(),
            keys.len(),
            "{flavor} {mode:?}: key count of the copy"
        );
    }

    // JSON: one parseable object per key.
    let json = ferry_rdb(&file, &["--format", "json"]);
    let lines: Vec<serde_json::Value> = json
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .map(|l| serde_json::from_slice(l).expect("valid JSON line"))
        .collect();
    assert_eq!(lines.len(), info.keys, "{flavor}: JSON lines");
    // Summary.
    let summary = String::from_utf8(ferry_rdb(&file, &["--format", "summary"])).expect("utf8");
    assert!(
        summary.contains(&format!("keys: {} ", info.keys)),
        "{summary}"
    );
}

#[test]
fn redis_7_0_roundtrip() {
    roundtrip(Flavor::Redis70);
}

#[test]
fn redis_6_2_roundtrip() {
    roundtrip(Flavor::Redis62);
}

#[test]
fn redis_stack_7_4_roundtrip() {
    roundtrip(Flavor::RedisStack74);
}

#[test]
fn valkey_9_roundtrip() {
    roundtrip(Flavor::Valkey9);
}

#[test]
fn bad_files_fail_with_one_line_naming_the_offset() {
    let src = start(Flavor::Redis70);
    fixtures::populate_with(
        &mut src.conn(),
        FixtureOptions::new(Flavor::Redis70).single_db(),
    )
    .expect("populate");
    let dump = src.dump_rdb().expect("dump");
    let dir = tempfile::tempdir().expect("tempdir");
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "truncated",
            dump[..dump.len() / 2].to_vec(),
            "truncated RDB",
        ),
        (
            "bad checksum",
            {
                let mut d = dump.clone();
                let n = d.len();
                d[n - 1] ^= 0x55;
                d
            },
            "checksum mismatch",
        ),
        (
            "not an rdb",
            b"hello world, not a dump".to_vec(),
            "not an RDB file",
        ),
        (
            "unknown type",
            {
                let mut d = dump[..9].to_vec();
                d.extend_from_slice(&[0xFE, 0x00, 0x63, 0x01, b'k']);
                d
            },
            "unknown RDB type/opcode byte 99",
        ),
    ];
    for (name, bytes, want) in cases {
        let f = dir.path().join(name.replace(' ', "_"));
        std::fs::write(&f, &bytes).expect("write");
        for format in ["resp", "json", "summary"] {
            let out = Command::new(FERRY)
                .arg("rdb")
                .arg(&f)
                .args(["--format", format])
                .output()
                .expect("run");
            let err = String::from_utf8_lossy(&out.stderr);
            assert!(!out.status.success(), "{name}: exit 0");
            assert!(err.contains(want), "{name}: stderr {err:?} lacks {want:?}");
            assert!(
                err.contains("offset"),
                "{name}: stderr {err:?} names no offset"
            );
            assert_eq!(
                err.trim_end().lines().count(),
                1,
                "{name}: not one line: {err:?}"
            );
        }
    }
    // stdin works too.
    let mut child = Command::new(FERRY)
        .args(["rdb", "-", "--format", "summary"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(&dump)
        .expect("write");
    let out = child.wait_with_output().expect("wait");
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("REDIS RDB version 10"));
}

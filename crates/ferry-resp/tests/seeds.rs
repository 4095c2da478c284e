//! The fuzzer's seed files are real captures: each must decode completely,
//! and the replication-stream samples must be commands throughout.

use bytes::{Buf, Bytes};
use ferry_resp::{Value, decode_bytes, decode_command};

fn seeds() -> Vec<(String, Bytes)> {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/fuzz/seeds");
    let mut out: Vec<_> = std::fs::read_dir(dir)
        .expect("seed dir")
        .map(|e| {
            let path = e.expect("dir entry").path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            (name, Bytes::from(std::fs::read(&path).expect("seed file")))
        })
        .collect();
    out.sort();
    out
}

#[test]
fn every_seed_decodes_completely() {
    let all = seeds();
    assert!(all.len() >= 5);
    for (name, mut buf) in all {
        let mut frames = 0;
        while !buf.is_empty() {
            let (v, n) = decode_bytes(&buf)
                .unwrap_or_else(|e| panic!("{name}: {e}"))
                .unwrap_or_else(|| panic!("{name}: truncated frame"));
            assert!(!matches!(v, Value::Array(ref a) if a.is_empty()), "{name}");
            buf.advance(n);
            frames += 1;
        }
        assert!(frames > 0, "{name}");
    }
}

#[test]
fn stream_seeds_are_commands() {
    let mut total = 0;
    for (name, mut buf) in seeds()
        .into_iter()
        .filter(|(n, _)| n.starts_with("stream_"))
    {
        while !buf.is_empty() {
            let cmd = decode_command(&buf)
                .unwrap_or_else(|e| panic!("{name}: {e}"))
                .unwrap_or_else(|| panic!("{name}: truncated command"));
            assert!(!cmd.args.is_empty());
            buf.advance(cmd.wire_len);
            total += 1;
        }
    }
    assert!(total >= 10);
}

//! The client vocabulary exists once: `host:port` splitting, URL parsing,
//! credentials and `INFO` parsing live in `ferry-ops` (`endpoint.rs`,
//! `info.rs`) and nowhere else in the workspace's sources. A grep over the
//! source tree, so a second parser is caught when it is written.

use std::path::{Path, PathBuf};

/// Code shapes that mean "parsing it again here".
const PATTERNS: &[&str] = &[
    "rsplit_once(':')",
    "strip_prefix(\"redis://\")",
    "strip_prefix(\"rediss://\")",
    "pub struct Auth",
    "strip_prefix(\"master_repl_offset:\")",
    "strip_prefix(\"db\")",
    "split_once(\":keys=\")",
    ".strip_prefix(':'))",
];

/// Where a pattern may appear: the one home of each, and files that use
/// the same text for something else.
const ALLOWED: &[(&str, &str)] = &[
    ("ferry-ops/src/endpoint.rs", ""),
    ("ferry-ops/src/info.rs", ""),
    ("ferry-ops/tests/one_vocabulary.rs", ""),
    // `history:offset` checkpoint values, not an address.
    ("ferry-cluster/src/checkpoint.rs", "rsplit_once(':')"),
    // Still parse INFO themselves; to be ported onto `ferry_ops::Info`.
    ("ferry/src/verify.rs", "strip_prefix(\"db\")"),
];

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let path = e.path();
        let name = e.file_name();
        if name == "target" || name.to_string_lossy().starts_with('.') {
            continue;
        }
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|x| x == "rs") {
            out.push(path);
        }
    }
}

#[test]
fn each_parser_exists_once() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let mut files = Vec::new();
    rust_files(&root.join("crates"), &mut files);
    rust_files(&root.join("tests"), &mut files);
    assert!(files.len() > 50, "found only {} sources", files.len());
    let mut found = Vec::new();
    for path in &files {
        let rel = path.strip_prefix(&root).unwrap_or(path).to_string_lossy();
        let rel = rel.trim_start_matches("crates/").to_owned();
        let text = std::fs::read_to_string(path).unwrap_or_default();
        for p in PATTERNS {
            if !text.contains(p) {
                continue;
            }
            let ok = ALLOWED
                .iter()
                .any(|(file, what)| rel == *file && (what.is_empty() || what == p));
            if !ok {
                found.push(format!("{rel}: {p}"));
            }
        }
    }
    assert!(
        found.is_empty(),
        "parse these with ferry_ops (Endpoint, split_host_port, host_of, Auth, Info) instead:\n{}",
        found.join("\n")
    );
}

//! Helpers shared by the end-to-end tests: normalized key contents, so two
//! datasets can be compared by value (never by DUMP bytes: encodings differ).

#![allow(dead_code)]

pub mod daemon;

use std::collections::BTreeMap;

use std::io::Write;
use std::process::{Command, Stdio};

use bytes::Bytes;
use ferry_rdb::{Item, Value};
use ferry_testkit::{Flavor, Server};

/// Normalized content of one key: what must survive a migration.
#[derive(Debug, PartialEq)]
pub struct Norm {
    pub kind: &'static str,
    pub expire_ms: Option<i64>,
    pub value: String,
}

pub fn norm_value(v: &Value) -> String {
    let t = |b: &Bytes| format!("{b:?}");
    match v {
        Value::String(s) => t(s),
        Value::List(l) => format!("{:?}", l.iter().map(t).collect::<Vec<_>>()),
        Value::Set(s) => {
            let mut m: Vec<_> = s.iter().map(t).collect();
            m.sort();
            format!("{m:?}")
        }
        Value::SortedSet(z) => {
            // -0 loads as 0 on a replica; compare scores by value.
            let mut m: Vec<_> = z.iter().map(|(m, s)| (t(m), *s + 0.0)).collect();
            m.sort_by(|a, b| a.0.cmp(&b.0));
            format!("{m:?}")
        }
        Value::Hash(h) => {
            let mut m: Vec<_> = h
                .iter()
                .map(|f| (t(&f.field), t(&f.value), f.expire_ms))
                .collect();
            m.sort();
            format!("{m:?}")
        }
        Value::Stream(s) => {
            let meta = s.meta.as_ref().map(|m| {
                let groups: Vec<_> = m
                    .groups
                    .iter()
                    .map(|g| {
                        let mut consumers: Vec<_> =
                            g.consumers.iter().map(|c| t(&c.name)).collect();
                        consumers.sort();
                        let pel: Vec<_> = g
                            .pending
                            .iter()
                            .map(|p| {
                                (
                                    p.id,
                                    p.consumer.as_ref().map(t),
                                    p.delivery_time,
                                    p.delivery_count,
                                )
                            })
                            .collect();
                        format!(
                            "{} {} {:?} {consumers:?} {pel:?}",
                            t(&g.name),
                            g.last_id,
                            g.entries_read
                        )
                    })
                    .collect();
                format!(
                    "len={} last={} added={:?} maxdel={:?} groups={groups:?}",
                    m.length, m.last_id, m.entries_added, m.max_deleted_id
                )
            });
            format!("{:?} {meta:?}", s.entries)
        }
        Value::Module(m) => format!("module {}", m.id.name()),
    }
}

pub fn normalize(items: &[Item]) -> BTreeMap<(u64, Bytes), Norm> {
    items
        .iter()
        .filter_map(|i| match i {
            Item::Key(k) => Some((
                (k.header.db, k.header.key.clone()),
                Norm {
                    kind: k.header.kind.name(),
                    expire_ms: k.header.expire_ms,
                    value: norm_value(&k.value),
                },
            )),
            _ => None,
        })
        .collect()
}

/// Feeds `resp` to `redis-cli --pipe` against `server`; asserts no error reply.
pub fn pipe_into(server: &Server, resp: &[u8]) {
    let cli = Flavor::cli_binary().expect("redis-cli");
    let mut child = Command::new(cli)
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &server.port().to_string(),
            "--pipe",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn redis-cli");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(resp)
        .expect("write");
    let out = child.wait_with_output().expect("redis-cli --pipe");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("errors: 0"),
        "redis-cli --pipe reported errors:\n{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

//! Decode throughput of `ferry-rdb` against the `rdb` crate (0.4.0).
//!
//! Three dumps are generated in memory once per run (deterministic, nothing is
//! written to disk), all `REDIS0011` (Redis 7.2) with a CRC64 trailer:
//!
//! * `strings`: 1,000,000 string keys `key:%07d`, 100-byte incompressible
//!   values (xorshift bytes, written plain), ~120 MB.
//! * `collections`: 100,000 keys: listpack hashes (10 fields), quicklist2
//!   lists (20 elements), intsets, listpack zsets, and every 1000th key a
//!   type-4 hashtable hash with 1000 fields. Containers are written as
//!   Redis does (`string_auto`: LZF when it saves at least 4 bytes).
//! * `streams`: 20,000 type-21 streams, 50 entries over 3 nodes
//!   (20 + 20 + 10), one consumer group with 5 pending entries and one
//!   consumer.
//!
//! Per dump, three ways of decoding the same bytes, each counting the keys
//! it produced (so nothing is optimized away):
//!
//! * `ferry_decoder`: [`ferry_rdb::Decoder`] fed 256 KiB slices into a `BytesMut`.
//! * `ferry_reader`: [`ferry_rdb::RdbReader`] over a `&[u8]`.
//! * `rdb_crate`: `rdb::RdbDecoder` over a `std::io::Cursor`.
//!
//! Before measuring, each decoder runs once: ferry must produce every key;
//! if the `rdb` crate returns an error its benchmark is skipped and the
//! error recorded. With `FERRY_BENCH_META=<path>` the dump sizes, key counts
//! and those preflight results are written there as JSON (`benches/decode.sh`
//! reads it). With `FERRY_BENCH_DUMP_DIR=<dir>` the dumps are also written
//! there as `<dataset>.rdb`, e.g. to check them with `redis-check-rdb`.

// `criterion_group!` generates an undocumented `pub fn`.
#![allow(missing_docs)]

use std::hint::black_box;
use std::io::Cursor;
use std::time::Duration;

use bytes::BytesMut;
use criterion::{Criterion, SamplingMode, Throughput, criterion_group, criterion_main};
use ferry_rdb::build::{RdbWriter, StreamNodeEntry, stream_node_listpack};
use ferry_rdb::container::Entry;
use ferry_rdb::{Decoder, Item, RdbReader};

/// Slice size fed to [`Decoder::decode`] (the same as `RdbReader` reads).
const CHUNK: usize = 256 << 10;

/// xorshift64*: deterministic, fast, good enough to defeat LZF.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn fill(&mut self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(8) {
            let r = self.next().to_le_bytes();
            chunk.copy_from_slice(&r[..chunk.len()]);
        }
    }

    /// `len` printable characters (as in typical application values).
    fn ascii(&mut self, len: usize) -> Vec<u8> {
        const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
        (0..len)
            .map(|_| ALPHABET[self.below(ALPHABET.len() as u64) as usize])
            .collect()
    }
}

/// A generated dump and what decoding it must yield.
struct Dataset {
    name: &'static str,
    bytes: Vec<u8>,
    keys: u64,
}

fn header(keys: u64) -> RdbWriter {
    let mut w = RdbWriter::new("REDIS", 11);
    w.aux(b"redis-ver", b"7.2.4")
        .aux(b"redis-bits", b"64")
        .aux(b"ctime", b"1700000000")
        .aux(b"used-mem", b"1000000")
        .aux(b"aof-base", b"0")
        .select_db(0)
        .resize_db(keys, 0);
    w
}

fn strings() -> Dataset {
    const KEYS: u64 = 1_000_000;
    let mut rng = XorShift(0x9E37_79B9_7F4A_7C15);
    let mut w = header(KEYS);
    let mut value = [0u8; 100];
    for i in 0..KEYS {
        rng.fill(&mut value);
        w.key(0, format!("key:{i:07}").as_bytes()).string(&value);
    }
    Dataset {
        name: "strings",
        bytes: w.finish(),
        keys: KEYS,
    }
}

fn collections() -> Dataset {
    const KEYS: u64 = 100_000;
    let mut rng = XorShift(0x0123_4567_89AB_CDEF);
    let mut w = header(KEYS);
    let field_names: Vec<Vec<u8>> = (0..1000)
        .map(|j| format!("field:{j}").into_bytes())
        .collect();
    for i in 0..KEYS {
        if i % 1000 == 999 {
            // Type 4 (hashtable) hash, as Redis writes hashes past 128 fields.
            let values: Vec<Vec<u8>> = (0..1000).map(|_| rng.ascii(24)).collect();
            let pairs: Vec<(&[u8], &[u8])> = field_names
                .iter()
                .zip(&values)
                .map(|(f, v)| (f.as_slice(), v.as_slice()))
                .collect();
            w.key(4, format!("bighash:{i:06}").as_bytes())
                .hash_plain(&pairs);
            continue;
        }
        match i % 20 {
            // 35 %: listpack hash, 10 fields.
            0..7 => {
                let values: Vec<Vec<u8>> = (0..10)
                    .map(|j| {
                        if j % 3 == 0 {
                            rng.below(1_000_000).to_string().into_bytes()
                        } else {
                            rng.ascii(12)
                        }
                    })
                    .collect();
                let pairs: Vec<(&[u8], &[u8])> = field_names
                    .iter()
                    .zip(&values)
                    .map(|(f, v)| (f.as_slice(), v.as_slice()))
                    .collect();
                w.key(16, format!("user:{i:06}").as_bytes())
                    .hash_listpack(&pairs);
            }
            // 30 %: quicklist2 list, 20 elements in one node.
            7..13 => {
                let texts: Vec<Vec<u8>> = (0..20).map(|_| rng.ascii(16)).collect();
                let node: Vec<Entry> = texts
                    .iter()
                    .enumerate()
                    .map(|(j, t)| {
                        if j % 4 == 0 {
                            Entry::Int(rng.below(1 << 40) as i64)
                        } else {
                            Entry::Str(t)
                        }
                    })
                    .collect();
                w.key(18, format!("list:{i:06}").as_bytes())
                    .list_quicklist2(&[node]);
            }
            // 15 %: intset, 16–47 members.
            13..16 => {
                let n = 16 + rng.below(32);
                let mut members: Vec<i64> = (0..n).map(|_| rng.below(1 << 30) as i64).collect();
                members.sort_unstable();
                members.dedup();
                w.key(11, format!("ids:{i:06}").as_bytes())
                    .set_intset(&members);
            }
            // 20 %: listpack zset, 10 members, integral and fractional scores.
            _ => {
                let members: Vec<Vec<u8>> = (0..10)
                    .map(|j| format!("member:{j}:{}", rng.below(100_000)).into_bytes())
                    .collect();
                let mut pairs: Vec<(&[u8], f64)> = members
                    .iter()
                    .map(|m| {
                        let s = rng.below(10_000) as f64;
                        let s = if rng.below(2) == 0 { s } else { s / 8.0 };
                        (m.as_slice(), s)
                    })
                    .collect();
                pairs.sort_by(|a, b| a.1.total_cmp(&b.1).then(a.0.cmp(b.0)));
                w.key(17, format!("rank:{i:06}").as_bytes())
                    .zset_listpack(&pairs);
            }
        }
    }
    Dataset {
        name: "collections",
        bytes: w.finish(),
        keys: KEYS,
    }
}

fn streams() -> Dataset {
    const KEYS: u64 = 20_000;
    const ENTRIES: u64 = 50;
    const NODE_ENTRIES: u64 = 20;
    const PENDING: u64 = 5;
    const T: u8 = 21; // STREAM_LISTPACKS_3 (Redis 7.2, RDB 11)
    let master: [&[u8]; 3] = [b"event", b"user", b"amount"];
    let mut rng = XorShift(0xDEAD_BEEF_CAFE_F00D);
    let mut w = header(KEYS);
    for i in 0..KEYS {
        let base = 1_700_000_000_000 + i * 10_000;
        let values: Vec<[Vec<u8>; 3]> = (0..ENTRIES)
            .map(|_| {
                [
                    rng.ascii(8),
                    format!("u{}", rng.below(100_000)).into_bytes(),
                    rng.below(100_000).to_string().into_bytes(),
                ]
            })
            .collect();
        let nodes = ENTRIES.div_ceil(NODE_ENTRIES);
        w.key(T, format!("stream:{i:05}").as_bytes()).len(nodes);
        for n in 0..nodes {
            let first = n * NODE_ENTRIES;
            let last = (first + NODE_ENTRIES).min(ENTRIES);
            let entries: Vec<StreamNodeEntry> = (first..last)
                .map(|e| StreamNodeEntry {
                    ms_delta: (e - first) as i64,
                    seq_delta: 0,
                    deleted: false,
                    fields: master
                        .iter()
                        .zip(&values[e as usize])
                        .map(|(f, v)| (*f, v.as_slice()))
                        .collect(),
                })
                .collect();
            let lp = stream_node_listpack(&master, &entries);
            w.stream_node(base + first, 0, &lp);
        }
        let last_ms = base + ENTRIES - 1;
        // length, last id, first id, max deleted id, entries added
        w.len(ENTRIES).len(last_ms).len(0);
        w.len(base).len(0).len(0).len(0).len(ENTRIES);
        // One group that read the first PENDING entries, all still pending
        // with one consumer.
        w.len(1).string(b"workers").len(base + PENDING - 1).len(0);
        w.len(PENDING); // entries_read
        w.len(PENDING);
        for p in 0..PENDING {
            w.stream_id_raw(base + p, 0).u64_le(base + 100 + p).len(1);
        }
        w.len(1).string(b"worker-1");
        w.u64_le(base + 200).u64_le(base + 200); // seen, active
        w.len(PENDING);
        for p in 0..PENDING {
            w.stream_id_raw(base + p, 0);
        }
    }
    Dataset {
        name: "streams",
        bytes: w.finish(),
        keys: KEYS,
    }
}

fn count_ferry_item(item: &Item) -> u64 {
    match item {
        Item::Key(k) => {
            black_box(&k.value);
            1
        }
        Item::BigKeyStart(_) => 1,
        _ => 0,
    }
}

/// `Decoder` fed `CHUNK`-sized slices from memory; returns the key count.
fn ferry_decoder(data: &[u8]) -> u64 {
    ferry_decoder_with(data, true)
}

/// As [`ferry_decoder`], optionally without computing the CRC64 (the `rdb`
/// crate computes none), for a like-for-like comparison.
fn ferry_decoder_with(data: &[u8], verify_checksum: bool) -> u64 {
    let mut dec = Decoder::new(ferry_rdb::DecodeOptions {
        verify_checksum,
        ..Default::default()
    });
    let mut buf = BytesMut::with_capacity(2 * CHUNK);
    let mut keys = 0;
    for chunk in data.chunks(CHUNK) {
        buf.extend_from_slice(chunk);
        while let Some(item) = dec.decode(&mut buf).expect("ferry-rdb Decoder failed") {
            keys += count_ferry_item(&item);
        }
    }
    dec.finish(&buf)
        .expect("ferry-rdb Decoder: incomplete file");
    assert!(dec.is_done() && buf.is_empty());
    keys
}

/// `RdbReader` over the bytes; returns the key count.
fn ferry_reader(data: &[u8]) -> u64 {
    RdbReader::new(data)
        .map(|item| count_ferry_item(&item.expect("ferry-rdb RdbReader failed")))
        .sum()
}

/// The `rdb` crate over a `Cursor`; returns the key count or its error.
fn rdb_crate(data: &[u8]) -> Result<u64, String> {
    use rdb::RdbValue;
    let decoder = rdb::RdbDecoder::new(Cursor::new(data), rdb::filter::Simple::new())
        .map_err(|e| e.to_string())?;
    let mut keys = 0;
    for value in decoder {
        match value.map_err(|e| e.to_string())? {
            RdbValue::SelectDb(_)
            | RdbValue::ResizeDb { .. }
            | RdbValue::AuxField { .. }
            | RdbValue::Checksum(_) => {}
            v => {
                black_box(&v);
                keys += 1;
            }
        }
    }
    Ok(keys)
}

fn json_str(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn bench(c: &mut Criterion) {
    let datasets = [strings(), collections(), streams()];
    let mut meta = Vec::new();
    for ds in &datasets {
        let len = ds.bytes.len() as u64;
        if let Some(dir) = std::env::var_os("FERRY_BENCH_DUMP_DIR") {
            let path = std::path::Path::new(&dir).join(format!("{}.rdb", ds.name));
            std::fs::write(&path, &ds.bytes).expect("writing FERRY_BENCH_DUMP_DIR");
        }
        let ferry_keys = ferry_decoder(&ds.bytes);
        assert_eq!(ferry_keys, ds.keys, "{}: ferry Decoder key count", ds.name);
        assert_eq!(
            ferry_reader(&ds.bytes),
            ds.keys,
            "{}: ferry RdbReader key count",
            ds.name
        );
        let rdb = rdb_crate(&ds.bytes);
        eprintln!(
            "dataset {}: {} bytes, {} keys; rdb crate preflight: {:?}",
            ds.name, len, ds.keys, rdb
        );
        let rdb_json = match &rdb {
            Ok(n) => format!("{{\"ok\": true, \"keys\": {n}}}"),
            Err(e) => format!("{{\"ok\": false, \"error\": {}}}", json_str(e)),
        };
        meta.push(format!(
            "{{\"dataset\": {}, \"bytes\": {len}, \"keys\": {}, \"rdb_crate\": {rdb_json}}}",
            json_str(ds.name),
            ds.keys
        ));

        let mut group = c.benchmark_group(format!("rdb_decode_{}", ds.name));
        group
            .sample_size(10)
            .warm_up_time(Duration::from_secs(2))
            .measurement_time(Duration::from_secs(10))
            .sampling_mode(SamplingMode::Flat)
            .throughput(Throughput::Bytes(len));
        group.bench_function("ferry_decoder", |b| {
            b.iter(|| ferry_decoder(black_box(&ds.bytes)))
        });
        group.bench_function("ferry_decoder_nocrc", |b| {
            b.iter(|| ferry_decoder_with(black_box(&ds.bytes), false))
        });
        group.bench_function("ferry_reader", |b| {
            b.iter(|| ferry_reader(black_box(&ds.bytes)))
        });
        if rdb.is_ok() {
            group.bench_function("rdb_crate", |b| b.iter(|| rdb_crate(black_box(&ds.bytes))));
        }
        group.finish();
    }
    if let Some(path) = std::env::var_os("FERRY_BENCH_META") {
        let json = format!("[\n  {}\n]\n", meta.join(",\n  "));
        std::fs::write(&path, json).expect("writing FERRY_BENCH_META");
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);

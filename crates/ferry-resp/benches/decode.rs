//! Decode throughput on a replication-stream-like buffer of ~100-byte SETs.
//!
//! Run with `cargo bench -p ferry-resp --bench decode`.

// `criterion_group!` generates an undocumented `pub fn`.
#![allow(missing_docs)]

use bytes::{Buf, Bytes, BytesMut};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use ferry_resp::{Decoder, write_command};
use std::hint::black_box;

/// `n` commands `SET key:<12 digits> <64-byte value>`, 106 bytes each.
fn set_stream(n: usize) -> Bytes {
    let mut out = Vec::new();
    let value = [b'v'; 64];
    for i in 0..n {
        let key = format!("key:{i:012}");
        write_command(&mut out, &[&b"SET"[..], key.as_bytes(), &value]);
    }
    Bytes::from(out)
}

fn bench(c: &mut Criterion) {
    let stream = set_stream(10_000);
    let dec = Decoder::new();
    let mut g = c.benchmark_group("set_106B");
    g.throughput(Throughput::Bytes(stream.len() as u64));
    g.bench_function("decode_command", |b| {
        b.iter(|| {
            let mut buf = stream.clone();
            let mut args = 0;
            while let Some(cmd) = dec.decode_command(&buf).unwrap() {
                args += cmd.args.len();
                buf.advance(cmd.wire_len);
            }
            black_box(args)
        })
    });
    g.bench_function("split_command", |b| {
        b.iter(|| {
            let mut buf = BytesMut::from(&stream[..]);
            let mut args = 0;
            while let Some(cmd) = dec.split_command(&mut buf).unwrap() {
                args += cmd.args.len();
            }
            black_box(args)
        })
    });
    g.bench_function("split_args", |b| {
        b.iter(|| {
            let mut buf = BytesMut::from(&stream[..]);
            let mut args = 0;
            while let Some(cmd) = dec.split_args(&mut buf).unwrap() {
                args += cmd.args.len();
            }
            black_box(args)
        })
    });
    g.bench_function("decode_bytes", |b| {
        b.iter(|| {
            let mut buf = stream.clone();
            let mut n = 0;
            while let Some((v, used)) = dec.decode_bytes(&buf).unwrap() {
                n += usize::from(!v.is_null());
                buf.advance(used);
            }
            black_box(n)
        })
    });
    g.bench_function("decode_copying", |b| {
        b.iter(|| {
            let mut buf = &stream[..];
            let mut n = 0;
            while let Some((v, used)) = dec.decode(buf).unwrap() {
                n += usize::from(!v.is_null());
                buf = &buf[used..];
            }
            black_box(n)
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);

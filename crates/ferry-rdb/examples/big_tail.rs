//! Build a stream whose group holds N pending entries and a module value of
//! N opcodes, then decode them fed in 64 KiB pieces and print the time: the
//! decoder's cost must grow linearly with N (`cargo run --release --example
//! big_tail -- 1000000`).

use bytes::BytesMut;
use ferry_rdb::build::{RdbWriter, module_id};
use ferry_rdb::{Decoder, Item};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let n: u64 = std::env::args().nth(1).map_or(Ok(200_000), |a| a.parse())?;
    let mut w = RdbWriter::new("REDIS", 11);
    // A stream with no entries, one group with n pending entries owned by one consumer.
    w.key(21, b"s").len(0);
    w.len(0)
        .len(n + 1)
        .len(0)
        .len(0)
        .len(0)
        .len(0)
        .len(0)
        .len(n);
    w.len(1).string(b"g").len(n + 1).len(0).len(n).len(n);
    for i in 1..=n {
        w.stream_id_raw(i, 0).u64_le(1).len(1);
    }
    w.len(1).string(b"c").u64_le(1).u64_le(1).len(n);
    for i in 1..=n {
        w.stream_id_raw(i, 0);
    }
    w.key(7, b"m").len(module_id("ReJSON-RL", 3));
    for i in 0..n {
        w.module_uint(i);
    }
    w.module_eof();
    let data = w.finish();
    let start = std::time::Instant::now();
    let mut d = Decoder::default();
    let mut buf = BytesMut::new();
    let mut keys = 0;
    for piece in data.chunks(64 << 10) {
        buf.extend_from_slice(piece);
        while let Some(item) = d.decode(&mut buf)? {
            if let Item::Key(_) = item {
                keys += 1;
            }
        }
    }
    d.finish(&buf)?;
    println!(
        "n={n}: {keys} keys, {:.1} MB in {:.3} s",
        data.len() as f64 / 1e6,
        start.elapsed().as_secs_f64()
    );
    Ok(())
}

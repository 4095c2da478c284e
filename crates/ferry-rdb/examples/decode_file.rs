//! Decode a dump from disk, feeding the sans-IO decoder 256 KiB at a time,
//! and print counts and throughput (for profiling: `perf record`).

use std::io::Read;

use bytes::BytesMut;
use ferry_rdb::{DecodeOptions, Decoder, Item};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let path = std::env::args()
        .nth(1)
        .ok_or("usage: decode_file FILE [ROUNDS]")?;
    let rounds: usize = std::env::args().nth(2).map_or(Ok(1), |r| r.parse())?;
    let mut data = Vec::new();
    std::fs::File::open(&path)?.read_to_end(&mut data)?;
    let start = std::time::Instant::now();
    let mut keys = 0u64;
    for _ in 0..rounds {
        let opts = DecodeOptions {
            verify_checksum: std::env::var_os("NO_CRC").is_none(),
            ..Default::default()
        };
        let mut d = Decoder::new(opts);
        let mut buf = BytesMut::with_capacity(512 << 10);
        for piece in data.chunks(256 << 10) {
            buf.extend_from_slice(piece);
            while let Some(item) = d.decode(&mut buf)? {
                if matches!(item, Item::Key(_) | Item::BigKeyStart(_)) {
                    keys += 1;
                }
            }
        }
        d.finish(&buf)?;
    }
    let secs = start.elapsed().as_secs_f64();
    let mb = (data.len() * rounds) as f64 / 1e6;
    println!(
        "{keys} keys, {mb:.1} MB in {secs:.3} s: {:.0} MB/s",
        mb / secs
    );
    Ok(())
}

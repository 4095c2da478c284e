//! CRC-64 (Redis flavour) throughput of `ferry_rdb::crc64` on this CPU: the
//! carry-less-multiply engine where the CPU has it, the table engine
//! otherwise (docs/decisions.md D72).
//!
//! `cargo run --release -p ferry-rdb --example crc_speed -- [MiB]` (default 256),
//! hashed in 64 KiB calls, as the decoder does.

use std::time::Instant;

use ferry_rdb::crc64::Crc64;

fn main() {
    let mib: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(256);
    let block: Vec<u8> = (0..64 * 1024u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let rounds = mib * 16;
    let mut crc = Crc64::new();
    let start = Instant::now();
    for _ in 0..rounds {
        crc.update(&block);
    }
    let secs = start.elapsed().as_secs_f64();
    let bytes = (rounds * block.len()) as f64;
    println!(
        "{mib} MiB in {:.3} s: {:.2} GB/s (crc {:016x})",
        secs,
        bytes / secs / 1e9,
        crc.value()
    );
}

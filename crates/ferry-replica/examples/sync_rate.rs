//! Receive rate of one full sync with a no-op consumer: runs a [`Link`]
//! until `SnapshotEnd`, reporting every applied point at once, and prints
//! the wall time (from start to the snapshot's end, handshake and the
//! source's fork included, like `redis-cli --rdb`).
//!
//! ```text
//! cargo run --release -p ferry-replica --example sync_rate -- 127.0.0.1:6379 [--bytes N]
//! ferry seconds=3.214 decode_seconds=0.9 keys=1500000 items=1500007 spool_peak=N segments=0 disk_bytes=0 bytes=N mb_per_s=...
//! ```
//!
//! `decode_seconds` counts from the first decoded record (after the
//! source's fork/save) to the end: the part ferry's own speed decides.
//! `spool_peak` is the most bytes the spool held (sampled every 10 ms),
//! `segments` / `disk_bytes` what it wrote to segment files: with a consumer
//! that keeps up, both stay 0.
//!
//! `--bytes N` (the snapshot's size, e.g. from `redis-cli --rdb`) adds the
//! rate. Used by `benches/replica_rate.sh`.

use std::time::{Duration, Instant};

use ferry_rdb::Item;
use ferry_replica::{Link, LinkConfig, LinkEvent};
use tokio_util::sync::CancellationToken;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let addr = args
        .next()
        .ok_or("usage: sync_rate <host:port> [--bytes N]")?;
    let mut bytes: Option<u64> = None;
    while let Some(a) = args.next() {
        match a.as_str() {
            "--bytes" => bytes = Some(args.next().ok_or("--bytes needs a value")?.parse()?),
            other => return Err(format!("unknown argument {other}").into()),
        }
    }
    let dir = tempfile::tempdir()?;
    let mut cfg = LinkConfig::new(addr, dir.path());
    cfg.info_interval = None;
    cfg.timeout = Duration::from_secs(120);

    let started = Instant::now();
    let (link, mut rx) = Link::start(cfg, CancellationToken::new())?;
    let (mut keys, mut items) = (0u64, 0u64);
    let mut first_item: Option<Instant> = None;
    let peak = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let sampler = {
        let (handle, peak) = (link.handle(), peak.clone());
        tokio::spawn(async move {
            loop {
                peak.fetch_max(
                    handle.status().spool_bytes,
                    std::sync::atomic::Ordering::Relaxed,
                );
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
    };
    let elapsed = loop {
        match rx.recv().await {
            Some(LinkEvent::Rdb(item)) => {
                first_item.get_or_insert_with(Instant::now);
                items += 1;
                if matches!(item, Item::Key(_) | Item::BigKeyStart(_)) {
                    keys += 1;
                }
            }
            Some(LinkEvent::SnapshotEnd { applied }) => {
                link.applied(applied);
                break started.elapsed();
            }
            Some(LinkEvent::Stream { applied, .. }) => link.applied(applied),
            Some(LinkEvent::Reconnecting { reason }) => {
                return Err(format!("the link dropped during the snapshot: {reason}").into());
            }
            Some(_) => {}
            None => break started.elapsed(),
        }
    };
    sampler.abort();
    let status = link.status();
    drop(rx);
    link.shutdown().await?;
    let secs = elapsed.as_secs_f64();
    // From the first decoded record: the transfer and decoding alone,
    // without the handshake and the source's fork/save.
    let decode = first_item.map_or(0.0, |t| (started + elapsed).duration_since(t).as_secs_f64());
    let mut line = format!(
        "ferry seconds={secs:.3} decode_seconds={decode:.3} keys={keys} items={items} spool_peak={} segments={} disk_bytes={}",
        peak.load(std::sync::atomic::Ordering::Relaxed),
        status.spool_segments_written,
        status.spool_disk_bytes_written
    );
    if let Some(b) = bytes {
        line.push_str(&format!(" bytes={b} mb_per_s={:.1}", b as f64 / 1e6 / secs));
    }
    println!("{line}");
    Ok(())
}

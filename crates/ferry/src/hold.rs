//! The names of keys written with a held TTL (see `ferry_ops::translate`'s
//! TTL hold), in `state_dir/ttl-hold.bin`.
//!
//! Every name is appended to the file (buffered; flushed before an applied
//! position is reported, so a `kill -9` never loses a name whose command
//! the position already covers). A set of names in memory, bounded by
//! [`DEDUP_BYTES`], only keeps a key refreshed many times from being
//! written many times; past the bound names are appended as they come
//! (the fix-up is idempotent, a duplicate costs one more script call).
//! So memory stays bounded whatever the number of held keys, and the
//! names survive a crash for the fix-up to be run again.
//!
//! Record: db (u64 LE), key length (u32 LE), key bytes. A record cut by a
//! crash at the end of the file is ignored.

use std::collections::HashSet;
use std::fs::{File, OpenOptions};
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use bytes::Bytes;

/// Name of the file in `state_dir`.
pub const HOLD_FILE: &str = "ttl-hold.bin";
/// Bytes of names kept in memory to skip duplicates.
pub const DEDUP_BYTES: usize = 64 << 20;

/// The names file and its in-memory de-duplication set.
pub struct HoldFile {
    path: PathBuf,
    out: BufWriter<File>,
    seen: HashSet<(u64, Bytes)>,
    seen_bytes: usize,
    cap: usize,
    /// Names appended since the last reset.
    pub appended: u64,
}

impl HoldFile {
    /// Opens (creates) `dir/ttl-hold.bin`, keeping what it holds: names a
    /// crash left without their fix-up.
    pub fn open(dir: &Path) -> Result<HoldFile> {
        Self::open_with_cap(dir, DEDUP_BYTES)
    }

    /// [`HoldFile::open`] with another de-duplication bound.
    pub fn open_with_cap(dir: &Path, cap: usize) -> Result<HoldFile> {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        let path = dir.join(HOLD_FILE);
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .with_context(|| format!("cannot open {}", path.display()))?;
        Ok(HoldFile {
            path,
            out: BufWriter::with_capacity(64 << 10, file),
            seen: HashSet::new(),
            seen_bytes: 0,
            cap,
            appended: 0,
        })
    }

    /// Remembers `key` of source db `db`.
    pub fn add(&mut self, db: u64, key: Bytes) -> Result<()> {
        let entry = (db, key);
        if self.seen.contains(&entry) {
            return Ok(());
        }
        let key = &entry.1;
        let len = u32::try_from(key.len()).context("key name over 4 GiB")?;
        self.out
            .write_all(&db.to_le_bytes())
            .and_then(|()| self.out.write_all(&len.to_le_bytes()))
            .and_then(|()| self.out.write_all(key))
            .with_context(|| format!("cannot write {}", self.path.display()))?;
        self.appended += 1;
        let cost = key.len() + 48;
        if self.seen_bytes + cost <= self.cap {
            self.seen_bytes += cost;
            self.seen.insert(entry);
        }
        Ok(())
    }

    /// Hands the buffered names to the OS (enough against `kill -9`).
    pub fn flush(&mut self) -> Result<()> {
        self.out
            .flush()
            .with_context(|| format!("cannot write {}", self.path.display()))
    }

    /// Forgets every name (a new history, or a finished fix-up).
    pub fn reset(&mut self) -> Result<()> {
        self.flush()?;
        self.out
            .get_ref()
            .set_len(0)
            .with_context(|| format!("cannot truncate {}", self.path.display()))?;
        self.seen.clear();
        self.seen_bytes = 0;
        self.appended = 0;
        Ok(())
    }

    /// Reads the names back, in the order they were added.
    pub fn reader(&mut self) -> Result<HoldReader> {
        self.flush()?;
        let f = File::open(&self.path)
            .with_context(|| format!("cannot read {}", self.path.display()))?;
        Ok(HoldReader {
            path: self.path.clone(),
            inner: BufReader::with_capacity(64 << 10, f),
        })
    }
}

/// Names read back from a [`HoldFile`].
pub struct HoldReader {
    path: PathBuf,
    inner: BufReader<File>,
}

impl HoldReader {
    /// Up to `n` names; empty at the end.
    pub fn next_chunk(&mut self, n: usize) -> Result<Vec<(u64, Bytes)>> {
        let mut out = Vec::with_capacity(n.min(4096));
        while out.len() < n {
            let mut head = [0u8; 12];
            match read_full(&mut self.inner, &mut head)
                .with_context(|| format!("cannot read {}", self.path.display()))?
            {
                0 => break,
                12 => {}
                _ => {
                    tracing::warn!(file = %self.path.display(), "ignoring a cut record at the end");
                    break;
                }
            }
            let db = u64::from_le_bytes(head[..8].try_into().unwrap_or_default());
            let len = u32::from_le_bytes(head[8..].try_into().unwrap_or_default()) as usize;
            let mut key = vec![0u8; len];
            if read_full(&mut self.inner, &mut key)
                .with_context(|| format!("cannot read {}", self.path.display()))?
                < len
            {
                tracing::warn!(file = %self.path.display(), "ignoring a cut record at the end");
                break;
            }
            out.push((db, Bytes::from(key)));
        }
        Ok(out)
    }
}

/// Reads until `buf` is full or the end; the number of bytes read.
fn read_full(r: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        match r.read(&mut buf[got..])? {
            0 => break,
            n => got += n,
        }
    }
    Ok(got)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(h: &mut HoldFile) -> Vec<(u64, Bytes)> {
        let mut r = h.reader().expect("reader");
        let mut v = Vec::new();
        loop {
            let c = r.next_chunk(2).expect("chunk");
            if c.is_empty() {
                return v;
            }
            v.extend(c);
        }
    }

    #[test]
    fn names_survive_reopen_dedup_is_bounded_and_reset_forgets() {
        let dir = tempfile::tempdir().expect("tmp");
        let mut h = HoldFile::open_with_cap(dir.path(), 100).expect("open");
        h.add(0, Bytes::from_static(b"a")).expect("add");
        h.add(0, Bytes::from_static(b"a")).expect("add");
        h.add(3, Bytes::from_static(b"b")).expect("add");
        // Past the bound (2 × 49 bytes fit, not 3): duplicates are appended.
        h.add(0, Bytes::from_static(b"c")).expect("add");
        h.add(0, Bytes::from_static(b"c")).expect("add");
        assert_eq!(h.appended, 4);
        h.flush().expect("flush");
        drop(h);
        let mut h = HoldFile::open_with_cap(dir.path(), 100).expect("reopen");
        let got = all(&mut h);
        let want: Vec<(u64, Bytes)> = [(0, "a"), (3, "b"), (0, "c"), (0, "c")]
            .iter()
            .map(|(d, k)| (*d, Bytes::from(k.to_string())))
            .collect();
        assert_eq!(got, want);
        // A record cut by a crash is ignored.
        let path = dir.path().join(HOLD_FILE);
        let mut bytes = std::fs::read(&path).expect("read");
        bytes.extend_from_slice(&[1, 0, 0]);
        std::fs::write(&path, bytes).expect("write");
        assert_eq!(all(&mut h).len(), 4);
        h.reset().expect("reset");
        assert!(all(&mut h).is_empty());
        h.add(1, Bytes::from_static(b"z")).expect("add");
        assert_eq!(all(&mut h), [(1, Bytes::from_static(b"z"))]);
    }
}

//! The spool: bytes received from the source, waiting to be decoded and
//! applied. The link reads the socket at line rate into it whatever the
//! consumer's speed, so the source never drops ferry for
//! `client-output-buffer-limit replica`.
//!
//! ```text
//! push ─▶ [ memory (up to memory_bytes) ] ─▶ pop        normal case
//! push ─▶ [ segment files seg-N.spool … ] ─▶ [ memory ] ─▶ pop   consumer behind
//! ```
//! Order is kept: once anything is on disk, new bytes go to disk too until
//! the disk part is drained. Segments are deleted as soon as they are read.
//! Nothing is fsynced: after a crash ferry resumes from its checkpoint, not
//! from the spool.
//!
//! The type itself does blocking file I/O; [`Spool::try_push_memory`] and
//! [`Spool::pop_memory`] never touch a file, so an async caller can take
//! those fast paths inline and move everything else to a blocking thread. The total (memory + disk) is capped; [`Spool::push`]
//! refuses bytes beyond it and the link stops reading until there is room.

use std::collections::VecDeque;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use bytes::{Bytes, BytesMut};

/// Spool limits.
#[derive(Debug, Clone)]
pub struct SpoolConfig {
    /// Directory for segment files (created if missing).
    pub dir: PathBuf,
    /// Bytes kept in memory before spilling to disk.
    pub memory_bytes: usize,
    /// Size of one segment file.
    pub segment_bytes: usize,
    /// Most bytes held in total (memory and disk).
    pub cap_bytes: u64,
}

/// Spool failures.
#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    /// The cap is reached; read again after the consumer caught up.
    #[error("spool full: {held} bytes held, cap {cap}")]
    Full {
        /// Bytes held.
        held: u64,
        /// The configured cap.
        cap: u64,
    },
    /// A segment file could not be written or read.
    #[error("spool segment {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: io::Error,
    },
}

struct Segment {
    path: PathBuf,
    written: u64,
    read: u64,
    writer: Option<File>,
    reader: Option<File>,
}

/// A FIFO of bytes, memory first, overflowing into segment files.
pub struct Spool {
    cfg: SpoolConfig,
    mem: VecDeque<Bytes>,
    mem_bytes: usize,
    segs: VecDeque<Segment>,
    disk_bytes: u64,
    next_seg: u64,
    segments_written: u64,
    disk_bytes_written: u64,
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> SpoolError + '_ {
    move |source| SpoolError::Io {
        path: path.to_path_buf(),
        source,
    }
}

impl Spool {
    /// An empty spool; leftover segment files in `dir` (from a previous run) are removed.
    pub fn new(cfg: SpoolConfig) -> Result<Spool, SpoolError> {
        fs::create_dir_all(&cfg.dir).map_err(io_err(&cfg.dir))?;
        for entry in fs::read_dir(&cfg.dir).map_err(io_err(&cfg.dir))? {
            let path = entry.map_err(io_err(&cfg.dir))?.path();
            if path.extension().is_some_and(|e| e == "spool") {
                fs::remove_file(&path).map_err(io_err(&path))?;
            }
        }
        Ok(Spool {
            cfg,
            mem: VecDeque::new(),
            mem_bytes: 0,
            segs: VecDeque::new(),
            disk_bytes: 0,
            next_seg: 0,
            segments_written: 0,
            disk_bytes_written: 0,
        })
    }

    /// Bytes held (memory and disk).
    pub fn len(&self) -> u64 {
        self.mem_bytes as u64 + self.disk_bytes
    }

    /// True when nothing is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes held on disk.
    pub fn disk_bytes(&self) -> u64 {
        self.disk_bytes
    }

    /// Segment files written since the start (a measure of spilling).
    pub fn segments_written(&self) -> u64 {
        self.segments_written
    }

    /// Bytes written to segment files since the start.
    pub fn disk_bytes_written(&self) -> u64 {
        self.disk_bytes_written
    }

    /// The configured limits.
    pub fn config(&self) -> &SpoolConfig {
        &self.cfg
    }

    /// Appends `data` if it goes to memory (nothing is on disk and it fits
    /// under `memory_bytes` and the cap); otherwise hands it back untouched,
    /// for [`Spool::push`] (which may write a file). Never does I/O.
    pub fn try_push_memory(&mut self, data: Bytes) -> Option<Bytes> {
        if data.is_empty() {
            return None;
        }
        if self.segs.is_empty()
            && self.mem_bytes + data.len() <= self.cfg.memory_bytes
            && data.len() as u64 <= self.room()
        {
            self.mem_bytes += data.len();
            self.mem.push_back(data);
            return None;
        }
        Some(data)
    }

    /// Takes up to `max` bytes from the front when the front is in memory;
    /// `None` when it is on disk (use [`Spool::pop`]) or nothing is held.
    /// Never does I/O.
    pub fn pop_memory(&mut self, max: usize) -> Option<Bytes> {
        let mut front = self.mem.pop_front()?;
        if front.len() > max {
            let rest = front.split_off(max);
            self.mem.push_front(rest);
        }
        self.mem_bytes -= front.len();
        Some(front)
    }

    /// Room left under the cap.
    pub fn room(&self) -> u64 {
        self.cfg.cap_bytes.saturating_sub(self.len())
    }

    /// Append bytes; refused whole if they do not fit under the cap.
    pub fn push(&mut self, data: Bytes) -> Result<(), SpoolError> {
        if data.is_empty() {
            return Ok(());
        }
        if data.len() as u64 > self.room() {
            return Err(SpoolError::Full {
                held: self.len(),
                cap: self.cfg.cap_bytes,
            });
        }
        match self.try_push_memory(data) {
            None => Ok(()),
            Some(data) => self.write_disk(&data),
        }
    }

    fn write_disk(&mut self, mut data: &[u8]) -> Result<(), SpoolError> {
        while !data.is_empty() {
            let need_new = self
                .segs
                .back()
                .is_none_or(|s| s.writer.is_none() || s.written >= self.cfg.segment_bytes as u64);
            if need_new {
                if let Some(last) = self.segs.back_mut() {
                    last.writer = None;
                }
                let path = self.cfg.dir.join(format!("seg-{:08}.spool", self.next_seg));
                self.next_seg += 1;
                self.segments_written += 1;
                let f = OpenOptions::new()
                    .create(true)
                    .truncate(true)
                    .write(true)
                    .open(&path)
                    .map_err(io_err(&path))?;
                self.segs.push_back(Segment {
                    path,
                    written: 0,
                    read: 0,
                    writer: Some(f),
                    reader: None,
                });
            }
            let Some(seg) = self.segs.back_mut() else {
                break;
            };
            let room = (self.cfg.segment_bytes as u64)
                .saturating_sub(seg.written)
                .max(1) as usize;
            let n = room.min(data.len());
            if let Some(w) = seg.writer.as_mut() {
                w.write_all(&data[..n]).map_err(io_err(&seg.path))?;
            }
            seg.written += n as u64;
            self.disk_bytes += n as u64;
            self.disk_bytes_written += n as u64;
            data = &data[n..];
        }
        Ok(())
    }

    /// Take up to `max` bytes from the front (None when empty).
    pub fn pop(&mut self, max: usize) -> Result<Option<Bytes>, SpoolError> {
        if let Some(front) = self.pop_memory(max) {
            return Ok(Some(front));
        }
        let Some(seg) = self.segs.front_mut() else {
            return Ok(None);
        };
        if seg.reader.is_none() {
            if let Some(w) = seg.writer.as_mut() {
                w.flush().map_err(io_err(&seg.path))?;
            }
            seg.reader = Some(File::open(&seg.path).map_err(io_err(&seg.path))?);
        }
        let avail = (seg.written - seg.read).min(max as u64) as usize;
        let mut buf = BytesMut::zeroed(avail);
        if let Some(r) = seg.reader.as_mut() {
            r.read_exact(&mut buf).map_err(io_err(&seg.path))?;
        }
        seg.read += avail as u64;
        self.disk_bytes -= avail as u64;
        let drained = seg.read == seg.written;
        // A drained segment is deleted. If it was the last one, memory held
        // nothing older (it is read first), so new bytes may go to memory again.
        if drained && let Some(seg) = self.segs.pop_front() {
            drop(seg.writer);
            drop(seg.reader);
            fs::remove_file(&seg.path).map_err(io_err(&seg.path))?;
        }
        Ok(Some(buf.freeze()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spool(dir: &Path, mem: usize, seg: usize, cap: u64) -> Spool {
        Spool::new(SpoolConfig {
            dir: dir.to_path_buf(),
            memory_bytes: mem,
            segment_bytes: seg,
            cap_bytes: cap,
        })
        .expect("spool")
    }

    fn drain(s: &mut Spool, step: usize) -> Vec<u8> {
        let mut out = Vec::new();
        while let Some(b) = s.pop(step).expect("pop") {
            out.extend_from_slice(&b);
        }
        out
    }

    #[test]
    fn keeps_order_across_memory_and_disk_and_deletes_segments() {
        let dir = tempfile::tempdir().expect("tmp");
        let mut s = spool(dir.path(), 100, 64, 1 << 20);
        let mut all = Vec::new();
        for i in 0..50u8 {
            let chunk: Vec<u8> = (0..(i as usize % 17 + 1)).map(|j| i ^ j as u8).collect();
            all.extend_from_slice(&chunk);
            s.push(Bytes::from(chunk)).expect("push");
            if i % 7 == 0 {
                let b = s.pop(13).expect("pop").expect("some");
                let n = b.len();
                assert_eq!(&b[..], &all[..n]);
                all.drain(..n);
            }
        }
        assert!(s.segments_written() > 0, "spilled to disk");
        assert_eq!(drain(&mut s, 29), all);
        assert!(s.is_empty());
        let left: Vec<_> = fs::read_dir(dir.path()).expect("dir").collect();
        assert!(left.is_empty(), "segments left: {left:?}");
        // Back to memory once drained.
        s.push(Bytes::from_static(b"abc")).expect("push");
        assert_eq!(s.disk_bytes(), 0);
    }

    #[test]
    fn refuses_beyond_the_cap() {
        let dir = tempfile::tempdir().expect("tmp");
        let mut s = spool(dir.path(), 10, 16, 40);
        s.push(Bytes::from(vec![1; 30])).expect("fits");
        assert!(matches!(
            s.push(Bytes::from(vec![2; 11])),
            Err(SpoolError::Full { .. })
        ));
        s.push(Bytes::from(vec![3; 10])).expect("exactly fits");
        assert_eq!(drain(&mut s, 7).len(), 40);
    }

    #[test]
    fn no_disk_when_the_consumer_keeps_up() {
        let dir = tempfile::tempdir().expect("tmp");
        let mut s = spool(dir.path(), 1 << 16, 1 << 20, 1 << 30);
        for _ in 0..10_000 {
            s.push(Bytes::from(vec![7; 1000])).expect("push");
            assert_eq!(s.pop(1 << 20).expect("pop").map(|b| b.len()), Some(1000));
        }
        assert_eq!(s.segments_written(), 0);
    }
}

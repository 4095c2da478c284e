//! Checks of a dump that `ferry rdb` makes around decoding: the checksum
//! pass before any command is written (`--format resp` on a file), and the
//! count of empty keys a server would skip.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

use anyhow::Result;
use ferry_rdb::crc64::Crc64;
use ferry_rdb::{DecodeOptions, KeyHeader, RdbReader};

use super::json::text;

/// Verify `path`'s checksum before anything is written: one sequential
/// read hashing everything before the trailer. A file that does not end
/// with `0xFF` + checksum (bytes after the end, no checksum, an old
/// version) or whose checksum differs is decoded once without output, so
/// the error names the offset exactly as the real pass would.
pub(crate) fn verify(path: &Path, opts: DecodeOptions) -> Result<()> {
    let mut f = File::open(path)?;
    let len = f.metadata()?.len();
    if len >= 9 + 9 && fast_crc_ok(&mut f, len)? {
        return Ok(());
    }
    f.seek(SeekFrom::Start(0))?;
    let reader = RdbReader::with_options(f, opts);
    for item in reader {
        item?;
    }
    Ok(())
}

/// True when the file ends with `0xFF` + a non-zero CRC64 of all bytes before it.
fn fast_crc_ok(f: &mut File, len: u64) -> Result<bool> {
    let body = len - 8;
    let mut crc = Crc64::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut done = 0u64;
    let mut last = 0u8;
    while done < body {
        let want = ((body - done) as usize).min(buf.len());
        let n = f.read(&mut buf[..want])?;
        if n == 0 {
            return Ok(false);
        }
        crc.update(&buf[..n]);
        last = buf[n - 1];
        done += n as u64;
    }
    let mut stored = [0u8; 8];
    f.read_exact(&mut stored)?;
    let stored = u64::from_le_bytes(stored);
    Ok(last == 0xFF && stored != 0 && stored == crc.value())
}

/// Keys a server skips when loading (collections with no element).
#[derive(Default)]
pub(crate) struct EmptyKeys {
    count: u64,
    names: Vec<String>,
}

impl EmptyKeys {
    const SHOWN: usize = 10;

    /// Count one.
    pub(crate) fn add(&mut self, h: &KeyHeader) {
        self.count += 1;
        if self.names.len() < Self::SHOWN {
            self.names
                .push(format!("{} (db {}, {})", text(&h.key), h.db, h.kind.name()));
        }
    }

    /// Warn on stderr if any were seen.
    pub(crate) fn warn(&self) {
        if self.count == 0 {
            return;
        }
        let more = if self.count > self.names.len() as u64 {
            ", …"
        } else {
            ""
        };
        eprintln!(
            "ferry: warning: skipped {} empty key(s) (no elements; a server loading the dump \
             skips them too): {}{more}",
            self.count,
            self.names.join(", ")
        );
    }
}

//! The resume point of the replica link and the `REPLCONF ACK` it reports.
//!
//! A [`Position`] is what a restart needs to ask for a partial resync
//! instead of a full one: the source's replication id, the offset of the
//! last command fully applied (always at a boundary outside `MULTI`), and
//! the database selected at that point (after `+CONTINUE` the source does
//! not re-send `SELECT`).
//!
//! On disk it is one small JSON object, replaced atomically:
//!
//! ```text
//! {"format":"ferry-position/1","replid":"<40 hex>","offset":1234,"db":0}
//! ```
//!
//! [`Position::save`] writes a temp file in the same directory, fsyncs it,
//! renames it over the old file and fsyncs the directory, so after a crash
//! the file holds either the old or the new position, never a mix.
//! [`Position::load`] rejects anything else with a message naming the file.

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// The `format` tag of the file written by [`Position::save`].
pub const FORMAT: &str = "ferry-position/1";

/// Where a replica stands in the source's history.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Position {
    /// The source's replication id (40 hex digits), from `+FULLRESYNC` or a
    /// newer one from `+CONTINUE <id>`.
    pub replid: String,
    /// Replication offset of the last byte fully applied. A resume asks for
    /// the byte after it ([`Position::psync_offset`]).
    pub offset: u64,
    /// Database selected at `offset`.
    pub db: u64,
}

/// The on-disk form.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileFormat {
    format: String,
    replid: String,
    offset: u64,
    db: u64,
}

/// Why a position could not be saved or loaded.
#[derive(Debug, thiserror::Error)]
pub enum PositionError {
    /// A file system operation failed.
    #[error("cannot {action} {}: {source}", path.display())]
    Io {
        /// What was being done, e.g. `"rename the temp file over"`.
        action: &'static str,
        /// The file or directory involved.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
    /// The file exists but is not a position this version wrote. Delete it
    /// to force a full resync, or restore it from a backup.
    #[error("corrupt position file {}: {reason}", path.display())]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// The position to save is itself invalid.
    #[error("refusing to save an invalid position: {reason}")]
    Invalid {
        /// What is wrong with it.
        reason: String,
    },
}

impl Position {
    /// The offset `PSYNC` asks for: the byte after the last applied one.
    pub fn psync_offset(&self) -> u64 {
        self.offset.saturating_add(1)
    }

    /// Writes the position to `path` atomically and durably (temp file,
    /// fsync, rename, fsync of the directory).
    pub fn save(&self, path: &Path) -> Result<(), PositionError> {
        if !is_replid(self.replid.as_bytes()) {
            return Err(PositionError::Invalid {
                reason: format!("replid {:?} is not 40 hex digits", self.replid),
            });
        }
        let io = |action: &'static str, path: &Path| {
            let path = path.to_path_buf();
            move |source| PositionError::Io {
                action,
                path,
                source,
            }
        };
        let name = path.file_name().ok_or_else(|| PositionError::Io {
            action: "write",
            path: path.to_path_buf(),
            source: io::Error::new(io::ErrorKind::InvalidInput, "not a file name"),
        })?;
        let dir = match path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d,
            _ => Path::new("."),
        };
        let mut tmp_name = name.to_os_string();
        tmp_name.push(".tmp");
        let tmp = dir.join(tmp_name);

        let mut text = serde_json::to_vec(&FileFormat {
            format: FORMAT.to_string(),
            replid: self.replid.clone(),
            offset: self.offset,
            db: self.db,
        })
        .map_err(|e| PositionError::Invalid {
            reason: e.to_string(),
        })?;
        text.push(b'\n');

        let mut file = File::create(&tmp).map_err(io("create", &tmp))?;
        file.write_all(&text).map_err(io("write", &tmp))?;
        file.sync_all().map_err(io("fsync", &tmp))?;
        drop(file);
        fs::rename(&tmp, path).map_err(io("rename the temp file over", path))?;
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(io("fsync the directory", dir))?;
        Ok(())
    }

    /// Reads a position saved by [`Position::save`]. `Ok(None)` if the file
    /// does not exist; [`PositionError::Corrupt`] if it is not a valid
    /// position.
    pub fn load(path: &Path) -> Result<Option<Position>, PositionError> {
        let text = match fs::read(path) {
            Ok(t) => t,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(source) => {
                return Err(PositionError::Io {
                    action: "read",
                    path: path.to_path_buf(),
                    source,
                });
            }
        };
        let corrupt = |reason: String| PositionError::Corrupt {
            path: path.to_path_buf(),
            reason,
        };
        if text.iter().all(u8::is_ascii_whitespace) {
            return Err(corrupt("the file is empty".into()));
        }
        let file: FileFormat =
            serde_json::from_slice(&text).map_err(|e| corrupt(format!("invalid JSON: {e}")))?;
        if file.format != FORMAT {
            return Err(corrupt(format!(
                "format {:?} is not {FORMAT:?}",
                file.format
            )));
        }
        if !is_replid(file.replid.as_bytes()) {
            return Err(corrupt(format!(
                "replid {:?} is not 40 hex digits",
                file.replid
            )));
        }
        Ok(Some(Position {
            replid: file.replid,
            offset: file.offset,
            db: file.db,
        }))
    }
}

/// `REPLCONF ACK <offset>` as RESP bytes, ready to write.
///
/// ```
/// assert_eq!(
///     ferry_replica::ack_command(1234),
///     b"*3\r\n$8\r\nREPLCONF\r\n$3\r\nACK\r\n$4\r\n1234\r\n"
/// );
/// ```
pub fn ack_command(offset: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(48);
    ferry_resp::write_command(
        &mut out,
        &[&b"REPLCONF"[..], b"ACK", offset.to_string().as_bytes()],
    );
    out
}

/// Whether `id` looks like a replication id: exactly 40 ASCII hex digits.
pub(crate) fn is_replid(id: &[u8]) -> bool {
    id.len() == 40 && id.iter().all(u8::is_ascii_hexdigit)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "8f5b2c6e1d0a9b7c3e4f5a6b7c8d9e0f1a2b3c4d";

    #[test]
    fn save_load_roundtrip_and_overwrite() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("position.json");
        assert_eq!(Position::load(&path).unwrap(), None);
        let mut p = Position {
            replid: ID.into(),
            offset: u64::MAX,
            db: 15,
        };
        p.save(&path).unwrap();
        assert_eq!(Position::load(&path).unwrap(), Some(p.clone()));
        p.offset = 7;
        p.save(&path).unwrap();
        assert_eq!(Position::load(&path).unwrap(), Some(p));
        // Only the file itself is left behind.
        let names: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["position.json"]);
        let text = fs::read_to_string(&path).unwrap();
        assert_eq!(
            text,
            format!(
                "{{\"format\":\"ferry-position/1\",\"replid\":\"{ID}\",\"offset\":7,\"db\":15}}\n"
            )
        );
    }

    #[test]
    fn corrupt_files_are_rejected_with_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.json");
        for (content, needle) in [
            ("", "empty"),
            (
                "{\"format\":\"ferry-position/1\",\"replid\":\"",
                "invalid JSON",
            ),
            ("[1,2]", "invalid JSON"),
            (
                &format!("{{\"format\":\"other/9\",\"replid\":\"{ID}\",\"offset\":1,\"db\":0}}"),
                "format",
            ),
            (
                "{\"format\":\"ferry-position/1\",\"replid\":\"xyz\",\"offset\":1,\"db\":0}",
                "replid",
            ),
            (
                &format!(
                    "{{\"format\":\"ferry-position/1\",\"replid\":\"{ID}\",\"offset\":-1,\"db\":0}}"
                ),
                "invalid JSON",
            ),
            (
                &format!(
                    "{{\"format\":\"ferry-position/1\",\"replid\":\"{ID}\",\"offset\":1,\"db\":0,\"x\":1}}"
                ),
                "unknown field",
            ),
        ] {
            fs::write(&path, content).unwrap();
            let e = Position::load(&path).unwrap_err();
            let msg = e.to_string();
            assert!(matches!(e, PositionError::Corrupt { .. }), "{msg}");
            assert!(
                msg.contains("p.json") && msg.contains(needle),
                "{content:?}: {msg}"
            );
        }
    }

    #[test]
    fn invalid_position_is_not_saved() {
        let dir = tempfile::tempdir().unwrap();
        let p = Position {
            replid: "?".into(),
            offset: 0,
            db: 0,
        };
        assert!(matches!(
            p.save(&dir.path().join("p")),
            Err(PositionError::Invalid { .. })
        ));
    }

    #[test]
    fn ack_bytes() {
        assert_eq!(
            ack_command(0),
            b"*3\r\n$8\r\nREPLCONF\r\n$3\r\nACK\r\n$1\r\n0\r\n"
        );
        let p = Position {
            replid: ID.into(),
            offset: 9,
            db: 0,
        };
        assert_eq!(p.psync_offset(), 10);
    }
}

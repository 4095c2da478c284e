//! What ferry records about the target in `state_dir/target.json`, and
//! the names of source histories.

use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

/// Name of the target state file in `state_dir`.
pub const TARGET_STATE_FILE: &str = "target.json";

/// What ferry records about the target, in `state_dir/target.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TargetState {
    /// `ferry-target/1`.
    pub format: String,
    /// The target held no key when ferry first started on this state_dir
    /// (a later full resync may then flush it).
    pub empty_at_start: bool,
    /// The source history (one full sync) the target's checkpoints belong
    /// to; `None` before the first full sync.
    pub history: Option<String>,
}

impl TargetState {
    /// A fresh state.
    pub fn new(empty_at_start: bool) -> TargetState {
        TargetState {
            format: "ferry-target/1".into(),
            empty_at_start,
            history: None,
        }
    }

    /// Loads `dir/target.json`; `None` if absent.
    pub fn load(dir: &Path) -> Result<Option<TargetState>> {
        let path = dir.join(TARGET_STATE_FILE);
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
        };
        let state: TargetState = serde_json::from_str(&text)
            .with_context(|| format!("corrupt {} (delete it to start over)", path.display()))?;
        Ok(Some(state))
    }

    /// Saves atomically (temp file, fsync, rename, fsync of the directory).
    pub fn save(&self, dir: &Path) -> Result<()> {
        use std::io::Write;
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        let path = dir.join(TARGET_STATE_FILE);
        let tmp = dir.join(format!("{TARGET_STATE_FILE}.tmp"));
        let body = serde_json::to_string(self).context("target state")?;
        let mut f = std::fs::File::create(&tmp)
            .with_context(|| format!("cannot write {}", tmp.display()))?;
        f.write_all(body.as_bytes())
            .and_then(|()| f.sync_all())
            .with_context(|| format!("cannot write {}", tmp.display()))?;
        std::fs::rename(&tmp, &path)
            .with_context(|| format!("cannot rename over {}", path.display()))?;
        if let Ok(d) = std::fs::File::open(dir) {
            let _ = d.sync_all();
        }
        Ok(())
    }
}

/// A name for a new history: the source's replid and offset, plus a nonce
/// so that two full syncs never share one.
pub fn history_name(replid: &str, offset: u64) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let nonce = (nanos as u64) ^ (u64::from(std::process::id()) << 32);
    let short = &replid[..replid.len().min(12)];
    format!("{short}-{offset}-{nonce:016x}")
}

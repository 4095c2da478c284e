//! `ferry verify --resume`: where an interrupted run was, saved in
//! `state_dir/verify.json` every few seconds (only cursors whose keys are
//! all compared and counted), removed when a run completes.

use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};

use super::report::Tally;
use crate::config::Config;

/// One node's `SCAN` position.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Cursor {
    /// The node's address.
    pub node: String,
    /// The cursor to continue from (`0` with `done` false: not started).
    pub cursor: String,
    /// The scan of this node is complete.
    pub done: bool,
}

impl Cursor {
    /// A scan not started yet.
    pub fn start(node: &str) -> Cursor {
        Cursor {
            node: node.to_string(),
            cursor: "0".into(),
            done: false,
        }
    }
}

/// The saved state of a run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct State {
    /// Which configuration this state belongs to (a hash).
    pub fingerprint: String,
    /// The job (a db, in order) in progress; earlier ones are done.
    pub job: usize,
    /// Source → target: one cursor per source node.
    pub forward: Vec<Cursor>,
    /// Target → source: one cursor per target master.
    pub reverse: Vec<Cursor>,
    /// Everything counted so far.
    pub tally: Tally,
}

/// Where the state lives.
pub(crate) fn path(cfg: &Config) -> PathBuf {
    cfg.state_dir.join("verify.json")
}

/// A hash of what makes two runs comparable: the endpoints, the filter and
/// the TTL tolerance.
pub(crate) fn fingerprint(cfg: &Config, ttl_tolerance_ms: i64) -> String {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    (&cfg.source.url, &cfg.target.url, ttl_tolerance_ms).hash(&mut h);
    if let Some(s) = &cfg.source.sentinel {
        (&s.master_name, &s.addresses).hash(&mut h);
    }
    format!("{:?}", cfg.filter).hash(&mut h);
    format!("{:016x}", h.finish())
}

/// The saved state, if any; an error if it belongs to another
/// configuration or cannot be read.
pub(crate) fn load(path: &Path, fingerprint: &str) -> Result<Option<State>> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    let state: State = serde_json::from_str(&text)
        .with_context(|| format!("{}: not a saved verify state", path.display()))?;
    if state.fingerprint != fingerprint {
        bail!(
            "{} was saved by a verify of another configuration (endpoints, filter or \
             --ttl-tolerance-ms differ); run without --resume to start over",
            path.display()
        );
    }
    Ok(Some(state))
}

/// Save atomically (a temporary file renamed over the old one).
pub(crate) fn save(path: &Path, state: &State) -> Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let tmp = path.with_extension("json.tmp");
    let text = serde_json::to_string(state).context("encoding the verify state")?;
    std::fs::write(&tmp, text).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))
}

/// Forget the state (a run completed).
pub(crate) fn remove(path: &Path) -> Result<()> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(e).with_context(|| format!("removing {}", path.display()))
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn saved_state_round_trips_and_checks_its_config() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("sub").join("verify.json");
        assert_eq!(load(&p, "f").expect("no state"), None);
        let tally = Tally {
            compared: 7,
            ..Tally::default()
        };
        let s = State {
            fingerprint: "f".into(),
            job: 1,
            forward: vec![Cursor::start("a:1")],
            reverse: vec![Cursor {
                node: "b:2".into(),
                cursor: "42".into(),
                done: true,
            }],
            tally,
        };
        save(&p, &s).expect("save");
        assert_eq!(load(&p, "f").expect("load"), Some(s));
        let err = load(&p, "g").expect_err("another config");
        assert!(err.to_string().contains("without --resume"), "{err}");
        remove(&p).expect("remove");
        remove(&p).expect("remove twice");
        assert_eq!(load(&p, "f").expect("gone"), None);
    }
}

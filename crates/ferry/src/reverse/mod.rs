//! The way back (issue 14): start positions of a reverse run, and the
//! configuration `ferry cutover --reverse R.yaml` writes.
//!
//! ```text
//! forward F: old ──▶ new      cutover pause: applied == old's offset
//!                             record each new master's (replid, offset)
//! reverse R: new ──▶ old      PSYNC <replid> <offset+1> on every master:
//!                             +CONTINUE, or refused (never a full sync)
//! ```

pub mod cutover;
pub mod marker;
pub mod yaml;

use anyhow::{Result, bail};
use ferry_replica::Position;
use serde::{Deserialize, Serialize};

/// One master's replication position: where a reverse run starts reading.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct StartPosition {
    /// The master, `host:port` as ferry reaches it.
    pub master: String,
    /// Its `master_replid` when recorded.
    pub replid: String,
    /// Its `master_repl_offset` when recorded: the last byte the other
    /// side already holds (the stream starts after it).
    pub offset: u64,
}

impl StartPosition {
    /// Checks the fields (a replid is 40 hex digits).
    pub fn check(&self) -> Result<()> {
        if self.replid.len() != 40 || !self.replid.bytes().all(|b| b.is_ascii_hexdigit()) {
            bail!(
                "source.start_positions: replid {:?} of master {} is not 40 hex digits",
                self.replid,
                self.master
            );
        }
        if !self.master.contains(':') {
            bail!(
                "source.start_positions: master {:?} is not host:port",
                self.master
            );
        }
        Ok(())
    }

    /// As a link position (db 0: the recorded offset follows a write of
    /// ferry's own in db 0, or a cluster's only db).
    pub fn position(&self) -> Position {
        Position {
            replid: self.replid.clone(),
            offset: self.offset,
            db: 0,
        }
    }

    /// What the link says when the master answers `+FULLRESYNC`.
    pub fn refusal_hint(&self) -> String {
        format!(
            "the position is no longer in the backlog; remove source.start_positions to allow a \
             full sync, which overwrites the target (recorded: master {} replid {} offset {})",
            self.master, self.replid, self.offset
        )
    }
}

/// The entry of `positions` for the master at `addr` (`host:port`).
///
/// # Errors
/// No entry for `addr`, or an entry with bad fields.
pub fn position_for<'a>(positions: &'a [StartPosition], addr: &str) -> Result<&'a StartPosition> {
    for p in positions {
        p.check()?;
    }
    match positions.iter().find(|p| p.master == addr) {
        Some(p) => Ok(p),
        None => bail!(
            "source.start_positions has no entry for master {addr} (entries: {})",
            positions
                .iter()
                .map(|p| p.master.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pos(master: &str) -> StartPosition {
        StartPosition {
            master: master.into(),
            replid: "a".repeat(40),
            offset: 7,
        }
    }

    #[test]
    fn picks_the_entry_of_the_master() {
        let all = [pos("h:1"), pos("h:2")];
        assert_eq!(position_for(&all, "h:2").expect("found").master, "h:2");
        let e = position_for(&all, "h:3").unwrap_err().to_string();
        assert!(
            e.contains("no entry for master h:3") && e.contains("h:1, h:2"),
            "{e}"
        );
        let mut bad = pos("h:1");
        bad.replid = "xyz".into();
        assert!(position_for(&[bad], "h:1").is_err());
        let hint = pos("h:1").refusal_hint();
        assert!(hint.contains("no longer in the backlog") && hint.contains("h:1"));
        assert_eq!(pos("h:1").position().offset, 7);
    }
}

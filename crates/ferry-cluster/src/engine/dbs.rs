//! A standalone target's dbs in checkpoint mode.
//!
//! A standalone target keeps the source's dbs: the translator emits
//! `SELECT n` ops when the db changes. Checkpoint keys live in db 0 only, so
//! every transaction starts and ends on db 0:
//!
//! ```text
//! MULTI, [SELECT <db of its first op>], ops..., [SELECT 0], SET <key> …, EXEC
//! ```
//!
//! and the connection rests on db 0 between transactions, so the probe of a
//! transaction whose reply was lost (`GET <key>`) reads db 0 too. The core
//! keeps two dbs: `db`, the one the ops expect (every `SELECT` op moves it,
//! also one skipped as committed before a restart), and `wire_db`, the one
//! the connection is on after everything queued. Plain ops (checkpoint mode
//! off: the snapshot) are preceded by a `SELECT <db>` of ferry's own when
//! the two differ, and turning checkpoint mode on queues a `SELECT 0`.

use bytes::Bytes;

use super::core::Core;
use crate::config::{Op, TargetMode};

/// `SELECT n`.
pub(super) fn select(db: u64) -> [Bytes; 2] {
    [Bytes::from_static(b"SELECT"), Bytes::from(db.to_string())]
}

/// The db of a `SELECT n` command.
pub(super) fn select_target(args: &[Bytes]) -> Option<u64> {
    match args {
        [name, db] if name.eq_ignore_ascii_case(b"SELECT") => {
            std::str::from_utf8(db).ok()?.parse().ok()
        }
        _ => None,
    }
}

impl Core {
    /// The target is one standalone server.
    pub(super) fn standalone(&self) -> bool {
        self.config.mode == TargetMode::Standalone
    }

    /// Notes a `SELECT` op (standalone); returns the db before it.
    pub(super) fn note_select(&mut self, op: &Op) -> u64 {
        let before = self.db;
        if self.standalone()
            && let Some(n) = select_target(&op.args)
        {
            self.db = n;
        }
        before
    }

    /// Before a plain op: put the connection on the ops' db if a
    /// transaction left it on db 0.
    pub(super) fn align_plain(&mut self, op: &Op) {
        if !self.standalone() {
            return;
        }
        if let Some(n) = select_target(&op.args) {
            self.wire_db = n;
        } else if self.wire_db != self.db {
            self.queue_select(self.db);
        }
    }

    /// Before the first transaction: the connection on db 0.
    pub(super) fn rest_on_db0(&mut self) {
        if self.standalone() && self.wire_db != 0 {
            self.queue_select(0);
        }
    }

    /// Queues a plain `SELECT db` of ferry's own (at the last offset, so
    /// the applied offset waits for it like for the op it precedes).
    fn queue_select(&mut self, db: u64) {
        self.wire_db = db;
        let op = Op::slot(select(db).to_vec(), 0, self.last_offset);
        let len = ferry_resp::command_len(&op.args);
        self.accept(op, len);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn select_targets() {
        let args =
            |a: &[&str]| -> Vec<Bytes> { a.iter().map(|s| Bytes::from(s.to_string())).collect() };
        assert_eq!(select_target(&args(&["select", "3"])), Some(3));
        assert_eq!(select_target(&args(&["SELECT", "x"])), None);
        assert_eq!(select_target(&args(&["SET", "3"])), None);
        assert_eq!(select_target(&select(5)), Some(5));
    }
}

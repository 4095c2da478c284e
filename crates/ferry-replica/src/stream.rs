//! The replication command stream: commands with exact offsets.
//!
//! After the snapshot (or right after `+CONTINUE`) a master sends nothing
//! but RESP arrays of bulk strings. Every byte of them counts toward the
//! replication offset, including the ones a migrator drops:
//!
//! ```text
//! *2 SELECT <db>          -> Select   (also inside MULTI, before the first wrapped command)
//! *1 MULTI … *1 EXEC      -> Multi / Command… / Exec
//! *1 PING                 -> Ping     (14 bytes, every repl-ping-replica-period)
//! *3 REPLCONF GETACK *    -> GetAck   (37 bytes: send REPLCONF ACK at once)
//! *n REPLCONF … / OPINFO  -> Ignored  (vendor noise: ElastiCache REPLCONF TIMESTAMP, Aliyun OPINFO)
//! anything else           -> Command  (with the db it applies to)
//! ```
//!
//! Offsets: a [`CommandStream`] starts at the `+FULLRESYNC` offset, or at a
//! resume position's offset (the last byte applied, so the first byte
//! received is `offset + 1`). Each event carries `end_offset`, the offset
//! after its last byte; once every received command is decoded,
//! [`CommandStream::offset`] equals the source's `master_repl_offset`.
//!
//! Checkpoints: like a real replica, the position only counts as reached at
//! a command boundary *outside* `MULTI`. [`CommandStream::checkpoint`] is the
//! last such boundary with the db selected there; a resume from inside a
//! transaction would replay half of it.

use bytes::{Bytes, BytesMut};
use ferry_resp::{InlineCommand, RespError};

use crate::parse_decimal;

/// One decoded unit of the command stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StreamEvent {
    /// A command to replay (data command, `FLUSHALL`, `PUBLISH`, …).
    Command {
        /// The command, name first, with its wire length (its first
        /// arguments inline: no allocation for a short command).
        cmd: InlineCommand,
        /// The database it applies to.
        db: u64,
        /// Replication offset after this command's last byte.
        end_offset: u64,
    },
    /// `SELECT <db>`: later commands apply to `db`.
    Select {
        /// The newly selected database.
        db: u64,
        /// Replication offset after this command.
        end_offset: u64,
    },
    /// `MULTI`: a transaction starts.
    Multi {
        /// Replication offset after this command.
        end_offset: u64,
    },
    /// `EXEC`: the transaction ends.
    Exec {
        /// Replication offset after this command.
        end_offset: u64,
    },
    /// `PING` from the master's cron: count it, never answer or forward it.
    Ping {
        /// Replication offset after this command.
        end_offset: u64,
    },
    /// `REPLCONF GETACK *`: the master wants a `REPLCONF ACK` now.
    GetAck {
        /// Replication offset after this command.
        end_offset: u64,
    },
    /// A command that is counted and dropped: any `REPLCONF` but `GETACK`,
    /// `OPINFO`, or the empty command `*0`.
    Ignored {
        /// Its name in upper case, with the subcommand for `REPLCONF`
        /// (e.g. `"REPLCONF TIMESTAMP"`); empty for `*0`.
        name: String,
        /// Replication offset after this command.
        end_offset: u64,
    },
}

impl StreamEvent {
    /// Replication offset after the event's last byte.
    pub fn end_offset(&self) -> u64 {
        match *self {
            StreamEvent::Command { end_offset, .. }
            | StreamEvent::Select { end_offset, .. }
            | StreamEvent::Multi { end_offset }
            | StreamEvent::Exec { end_offset }
            | StreamEvent::Ping { end_offset }
            | StreamEvent::GetAck { end_offset }
            | StreamEvent::Ignored { end_offset, .. } => end_offset,
        }
    }
}

/// A position safe to persist: a command boundary outside `MULTI`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Checkpoint {
    /// Replication offset of the boundary.
    pub offset: u64,
    /// Database selected at the boundary.
    pub db: u64,
}

/// Why the command stream cannot be decoded. Errors are final: the link
/// must be dropped (and usually resumed from the last checkpoint).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StreamError {
    /// The bytes are not a RESP command.
    #[error(
        "invalid command in the replication stream at offset {offset}: {cause} (counted from the command's first byte)"
    )]
    Resp {
        /// Replication offset of the first byte of the bad frame.
        offset: u64,
        /// What the RESP decoder found (its offsets count from the frame).
        cause: RespError,
    },
    /// A `SELECT` without exactly one decimal database number.
    #[error("invalid SELECT in the replication stream at offset {offset}: {args:?}")]
    BadSelect {
        /// Replication offset of the first byte of the command.
        offset: u64,
        /// Its arguments after the name (lossy text).
        args: Vec<String>,
    },
    /// `MULTI` inside a transaction or `EXEC` outside one.
    #[error("unbalanced transaction in the replication stream at offset {offset}: {what}")]
    Transaction {
        /// Replication offset of the first byte of the command.
        offset: u64,
        /// What was wrong.
        what: &'static str,
    },
    /// The offset would pass `u64::MAX`.
    #[error("replication offset overflow at offset {offset}")]
    OffsetOverflow {
        /// The offset reached.
        offset: u64,
    },
}

/// Decodes the command stream; see the [module docs](self).
#[derive(Debug, Clone)]
pub struct CommandStream {
    offset: u64,
    db: u64,
    in_multi: bool,
    checkpoint: Checkpoint,
    failed: Option<StreamError>,
}

impl CommandStream {
    /// A stream whose next byte has offset `offset + 1`, with `db` selected
    /// (the resume position's db; after a full sync, the RDB's
    /// `repl-stream-db` aux field or 0: the master sends `SELECT` before its
    /// first command anyway).
    pub fn new(offset: u64, db: u64) -> CommandStream {
        CommandStream {
            offset,
            db,
            in_multi: false,
            checkpoint: Checkpoint { offset, db },
            failed: None,
        }
    }

    /// Replication offset after the last command decoded.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// The currently selected database.
    pub fn db(&self) -> u64 {
        self.db
    }

    /// Whether the last decoded command left a `MULTI` open.
    pub fn in_multi(&self) -> bool {
        self.in_multi
    }

    /// The current offset if it is safe to checkpoint (no `MULTI` open),
    /// `None` inside a transaction.
    pub fn checkpoint_offset(&self) -> Option<u64> {
        (!self.in_multi).then_some(self.offset)
    }

    /// The last command boundary outside `MULTI` and the db selected there:
    /// the current position outside a transaction, the position before its
    /// `MULTI` inside one.
    pub fn checkpoint(&self) -> Checkpoint {
        self.checkpoint
    }

    /// Decodes the next command from the front of `buf`, removing its bytes.
    /// `Ok(None)`: read more.
    pub fn next_event(&mut self, buf: &mut BytesMut) -> Result<Option<StreamEvent>, StreamError> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        let r = self.step(buf);
        if let Err(e) = &r {
            self.failed = Some(e.clone());
        }
        r
    }

    fn step(&mut self, buf: &mut BytesMut) -> Result<Option<StreamEvent>, StreamError> {
        let start = self.offset;
        let first = start.saturating_add(1);
        let cmd = match ferry_resp::Decoder::new().split_args(buf) {
            Ok(Some(cmd)) => cmd,
            Ok(None) => return Ok(None),
            Err(cause) => {
                return Err(StreamError::Resp {
                    offset: first,
                    cause,
                });
            }
        };
        let end_offset = start
            .checked_add(cmd.wire_len as u64)
            .ok_or(StreamError::OffsetOverflow { offset: start })?;
        let event = if !may_be_control(&cmd.args) {
            // Almost every command: no name comparisons below.
            StreamEvent::Command {
                cmd,
                db: self.db,
                end_offset,
            }
        } else if cmd.is("SELECT") {
            let db = match &cmd.args[..] {
                [_, db] => parse_decimal(db),
                _ => None,
            };
            let Some(db) = db else {
                return Err(StreamError::BadSelect {
                    offset: first,
                    args: cmd.args[1..]
                        .iter()
                        .map(|a| String::from_utf8_lossy(a).into_owned())
                        .collect(),
                });
            };
            self.db = db;
            StreamEvent::Select { db, end_offset }
        } else if cmd.is("MULTI") && cmd.args.len() == 1 {
            if self.in_multi {
                return Err(StreamError::Transaction {
                    offset: first,
                    what: "MULTI inside MULTI",
                });
            }
            self.in_multi = true;
            StreamEvent::Multi { end_offset }
        } else if cmd.is("EXEC") && cmd.args.len() == 1 {
            if !self.in_multi {
                return Err(StreamError::Transaction {
                    offset: first,
                    what: "EXEC without MULTI",
                });
            }
            self.in_multi = false;
            StreamEvent::Exec { end_offset }
        } else if cmd.is("PING") {
            StreamEvent::Ping { end_offset }
        } else if cmd.is("REPLCONF") && cmd.arg_is(1, "GETACK") {
            StreamEvent::GetAck { end_offset }
        } else if cmd.is("REPLCONF") || cmd.is("OPINFO") || cmd.args.is_empty() {
            let mut name = String::from_utf8_lossy(&cmd.name_upper()).into_owned();
            if let Some(sub) = cmd.args.get(1).filter(|_| cmd.is("REPLCONF")) {
                name.push(' ');
                name.push_str(&String::from_utf8_lossy(&sub.to_ascii_uppercase()));
            }
            StreamEvent::Ignored { name, end_offset }
        } else {
            StreamEvent::Command {
                cmd,
                db: self.db,
                end_offset,
            }
        };
        self.offset = end_offset;
        if !self.in_multi {
            self.checkpoint = Checkpoint {
                offset: end_offset,
                db: self.db,
            };
        }
        Ok(Some(event))
    }
}

/// Whether `args` may be one of the commands [`CommandStream`] handles
/// itself (`SELECT`, `MULTI`, `EXEC`, `PING`, `REPLCONF`, `OPINFO`, an
/// empty command): a cheap test on the name's length and first letter that
/// lets data commands skip the name comparisons.
fn may_be_control(args: &[Bytes]) -> bool {
    let Some(name) = args.first() else {
        return true;
    };
    matches!(
        (name.len(), name.first().map(u8::to_ascii_uppercase)),
        (6, Some(b'S' | b'O')) | (5, Some(b'M')) | (4, Some(b'E' | b'P')) | (8, Some(b'R'))
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_control_name_passes_the_cheap_test() {
        let args = |n: &str| vec![Bytes::copy_from_slice(n.as_bytes())];
        for n in ["SELECT", "MULTI", "EXEC", "PING", "REPLCONF", "OPINFO"] {
            assert!(may_be_control(&args(n)), "{n}");
            assert!(may_be_control(&args(&n.to_ascii_lowercase())), "{n}");
        }
        assert!(may_be_control(&[]));
        for n in [
            "SET",
            "INCR",
            "LPUSH",
            "HSET",
            "ZADD",
            "EXPIRE",
            "PEXPIREAT",
        ] {
            assert!(!may_be_control(&args(n)), "{n}");
        }
    }

    const PING: &[u8] = b"*1\r\n$4\r\nPING\r\n";
    const GETACK: &[u8] = b"*3\r\n$8\r\nREPLCONF\r\n$6\r\nGETACK\r\n$1\r\n*\r\n";
    const MULTI: &[u8] = b"*1\r\n$5\r\nMULTI\r\n";
    const EXEC: &[u8] = b"*1\r\n$4\r\nEXEC\r\n";
    const SELECT3: &[u8] = b"*2\r\n$6\r\nSELECT\r\n$1\r\n3\r\n";
    const SET: &[u8] = b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\nv\r\n";
    const INCR: &[u8] = b"*2\r\n$4\r\nINCR\r\n$1\r\nn\r\n";

    fn all(stream: &mut CommandStream, bytes: &[u8]) -> Vec<StreamEvent> {
        let mut buf = BytesMut::from(bytes);
        let mut out = Vec::new();
        while let Some(e) = stream.next_event(&mut buf).unwrap() {
            out.push(e);
        }
        assert!(buf.is_empty());
        out
    }

    #[test]
    fn wire_sizes() {
        assert_eq!(PING.len(), 14);
        assert_eq!(GETACK.len(), 37);
    }

    #[test]
    fn ping_and_getack_are_counted() {
        let mut s = CommandStream::new(1000, 0);
        let ev = all(&mut s, &[PING, GETACK].concat());
        assert_eq!(
            ev,
            [
                StreamEvent::Ping { end_offset: 1014 },
                StreamEvent::GetAck { end_offset: 1051 }
            ]
        );
        assert_eq!(s.offset(), 1051);
        assert_eq!(s.checkpoint_offset(), Some(1051));
    }

    #[test]
    fn select_inside_multi() {
        let mut s = CommandStream::new(0, 0);
        let mut buf = BytesMut::from(&[SET, MULTI, SELECT3, SET, INCR][..].concat()[..]);
        let e = s.next_event(&mut buf).unwrap().unwrap();
        assert!(matches!(
            e,
            StreamEvent::Command {
                db: 0,
                end_offset: 27,
                ..
            }
        ));
        assert_eq!(s.checkpoint(), Checkpoint { offset: 27, db: 0 });
        assert_eq!(
            s.next_event(&mut buf).unwrap(),
            Some(StreamEvent::Multi { end_offset: 42 })
        );
        assert!(s.in_multi());
        assert_eq!(s.checkpoint_offset(), None);
        assert_eq!(
            s.next_event(&mut buf).unwrap(),
            Some(StreamEvent::Select {
                db: 3,
                end_offset: 65
            })
        );
        let e = s.next_event(&mut buf).unwrap().unwrap();
        assert!(matches!(
            e,
            StreamEvent::Command {
                db: 3,
                end_offset: 92,
                ..
            }
        ));
        let e = s.next_event(&mut buf).unwrap().unwrap();
        assert!(
            matches!(&e, StreamEvent::Command { db: 3, end_offset: 113, cmd } if cmd.is("INCR"))
        );
        // Inside the transaction the checkpoint stays before MULTI, with db 0.
        assert_eq!(s.checkpoint(), Checkpoint { offset: 27, db: 0 });
        assert_eq!(s.next_event(&mut buf).unwrap(), None);
        buf.extend_from_slice(EXEC);
        assert_eq!(
            s.next_event(&mut buf).unwrap(),
            Some(StreamEvent::Exec { end_offset: 127 })
        );
        assert_eq!(s.checkpoint(), Checkpoint { offset: 127, db: 3 });
        assert_eq!(s.checkpoint_offset(), Some(127));
        assert_eq!(s.db(), 3);
    }

    #[test]
    fn vendor_noise_is_counted_and_ignored() {
        let mut s = CommandStream::new(5, 0);
        let ts = b"*3\r\n$8\r\nreplconf\r\n$9\r\ntimestamp\r\n$13\r\n1700000000000\r\n";
        let opinfo = b"*2\r\n$6\r\nOPINFO\r\n$1\r\nx\r\n";
        let ev = all(&mut s, &[&ts[..], opinfo, b"*0\r\n"].concat());
        let names: Vec<_> = ev
            .iter()
            .map(|e| match e {
                StreamEvent::Ignored { name, .. } => name.as_str(),
                _ => "?",
            })
            .collect();
        assert_eq!(names, ["REPLCONF TIMESTAMP", "OPINFO", ""]);
        assert_eq!(s.offset(), 5 + (ts.len() + opinfo.len() + 4) as u64);
    }

    #[test]
    fn errors() {
        let mut s = CommandStream::new(10, 0);
        let mut buf = BytesMut::from(&b"*2\r\n$6\r\nSELECT\r\n$1\r\nx\r\n"[..]);
        assert!(matches!(
            s.next_event(&mut buf),
            Err(StreamError::BadSelect { offset: 11, .. })
        ));
        // Sticky.
        assert!(s.next_event(&mut BytesMut::from(PING)).is_err());

        let mut s = CommandStream::new(0, 0);
        let mut buf = BytesMut::from(EXEC);
        assert!(matches!(
            s.next_event(&mut buf),
            Err(StreamError::Transaction { .. })
        ));

        let mut s = CommandStream::new(0, 0);
        let mut buf = BytesMut::from(&[MULTI, MULTI].concat()[..]);
        s.next_event(&mut buf).unwrap();
        assert!(matches!(
            s.next_event(&mut buf),
            Err(StreamError::Transaction { offset: 16, .. })
        ));

        let mut s = CommandStream::new(20, 0);
        let mut buf = BytesMut::from(&b"+OK\r\n"[..]);
        let e = s.next_event(&mut buf).unwrap_err();
        assert!(matches!(e, StreamError::Resp { offset: 21, .. }));
        assert!(e.to_string().contains("offset 21"));

        let mut s = CommandStream::new(u64::MAX - 3, 0);
        assert!(matches!(
            s.next_event(&mut BytesMut::from(PING)),
            Err(StreamError::OffsetOverflow { .. })
        ));
    }
}

//! The replica handshake: what to send before the snapshot or the stream
//! starts, and what the replies mean.
//!
//! ```text
//! batch 1 (pipelined)                      reply          on an error reply
//! PING                                     +PONG          NOAUTH, NOPERM ignored (AUTH follows); else fatal
//! AUTH [<user>] <password>      (if set)   +OK            WrongPassword / AuthFailed / Loading
//! REPLCONF listening-port <p>   (if set)   +OK            NOAUTH, NOPERM fatal; else ignored
//! REPLCONF capa eof capa psync2            +OK            NOAUTH, NOPERM fatal; else ignored
//! REPLCONF version <x.y.z>      (if set)   +OK            NOAUTH, NOPERM fatal; else ignored
//!                                                         (Redis: "-ERR Unrecognized REPLCONF option")
//! batch 2, once every reply of batch 1 is in
//! PSYNC <replid> <offset+1> | PSYNC ? -1   +FULLRESYNC <replid> <offset>  -> Outcome::FullResync
//!                                          +CONTINUE [<replid>]           -> Outcome::Continue
//!                                          -LOADING / -NOMASTERLINK       -> retriable errors
//! ```
//!
//! `PSYNC` cannot join the first batch: the master refuses it with
//! `-ERR SYNC and PSYNC are invalid with pending output` while the replies to
//! the earlier commands still sit in its output buffer, which they do when
//! the whole batch arrives in one read. So [`Handshake::take_requests`] hands
//! out the setup batch first and `PSYNC` only after [`Handshake::feed`] has
//! consumed every setup reply. A driver loop:
//!
//! ```text
//! loop {
//!     write_all(hs.take_request_bytes())      // may be empty
//!     if let Some(outcome) = hs.feed(&mut buf)? { break }
//!     if nothing new to write: read more into buf
//! }
//! ```
//!
//! Bare `\n` keepalives (sent while the master waits to fork) are skipped.
//! `feed` never consumes past the `PSYNC` reply line: whatever follows
//! (snapshot preamble or backlog bytes) stays in the buffer for the next
//! stage. After the outcome (or an error) `feed` keeps returning it without
//! consuming anything.

use std::collections::VecDeque;
use std::fmt;

use bytes::{Buf, Bytes, BytesMut};
use ferry_resp::{Decoder, Value};

use crate::parse_decimal;
use crate::position::{Position, is_replid};

/// Limits for handshake replies: short lines and tiny values only, so a
/// confused peer announcing a huge bulk is an error, not a long wait.
const REPLY_LIMITS: Decoder = Decoder {
    max_bulk_len: 64 * 1024,
    max_array_len: 64,
    max_depth: 2,
};

pub use ferry_ops::Auth;

/// What the handshake sends.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct HandshakeConfig {
    /// `AUTH` credentials ([`Auth::none`] sends no `AUTH`).
    pub auth: Auth,
    /// Port announced with `REPLCONF listening-port` (shown in the source's
    /// `INFO replication`); `None` skips the command.
    pub listening_port: Option<u16>,
    /// Version announced with `REPLCONF version`, e.g. `"9.0.0"`, so a Valkey
    /// source sends its newest RDB format. Redis answers with an error, which
    /// is ignored. `None` skips the command.
    pub announce_version: Option<String>,
    /// Where to resume: sends `PSYNC <replid> <offset + 1>`; `None` sends
    /// `PSYNC ? -1` (full resync).
    pub resume: Option<Position>,
}

/// How the source agreed to replicate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// `+FULLRESYNC`: a snapshot follows (see [`crate::snapshot`]), then the
    /// stream. The first stream byte has offset `offset + 1`, so a
    /// [`CommandStream`](crate::CommandStream) starts at `offset`.
    FullResync {
        /// The source's replication id: persist it.
        replid: String,
        /// The source's replication offset at the snapshot point.
        offset: u64,
    },
    /// `+CONTINUE`: the backlog follows at once, starting right after the
    /// resume position's offset; no snapshot.
    Continue {
        /// The source's replication id when it differs from the one asked
        /// for (the source changed history, e.g. after a failover): adopt it.
        /// `None` when it is the same, or the source sent none.
        replid: Option<String>,
    },
}

/// An error reply the handshake ignored, as Redis's own replica does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Warning {
    /// The request it answered, e.g. `"REPLCONF version"`.
    pub request: &'static str,
    /// The error message, without the leading `-`.
    pub message: String,
}

impl fmt::Display for Warning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} answered -{} (ignored)", self.request, self.message)
    }
}

/// Why the handshake failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HandshakeError {
    /// `-WRONGPASS` or `-ERR invalid password` to `AUTH`.
    #[error(
        "the source rejected the credentials (check the configured user and password): {message}"
    )]
    WrongPassword {
        /// The source's error message.
        message: String,
    },
    /// Any other error reply to `AUTH`, e.g. a password sent to a source
    /// that has none.
    #[error("AUTH failed: {message}")]
    AuthFailed {
        /// The source's error message.
        message: String,
    },
    /// An error reply to `PING` other than `-NOAUTH`/`-NOPERM` (which only
    /// mean that `AUTH` is still to come) and `-LOADING`, e.g.
    /// `-ERR max number of clients reached` or `-BUSY`: the source's
    /// momentary state, retried (as Redis's own replica does).
    #[error("the source answered PING with an error: {message}")]
    PingFailed {
        /// The source's error message.
        message: String,
    },
    /// `-NOAUTH` to `REPLCONF` or `PSYNC`: the source needs a password and
    /// none is configured.
    #[error("the source requires a password but none is configured: {message}")]
    NoAuth {
        /// The source's error message.
        message: String,
    },
    /// `-NOPERM`: the ACL user may not run `command` (a replica needs at
    /// least `+psync +replconf +ping`).
    #[error(
        "the source's ACL forbids {command} for this user (a replica needs +psync +replconf +ping): {message}"
    )]
    NoPermission {
        /// The refused command.
        command: &'static str,
        /// The source's error message.
        message: String,
    },
    /// `-LOADING`: the source is loading its dataset. Retry later.
    #[error("the source is loading its dataset; retry later: {message}")]
    Loading {
        /// The source's error message.
        message: String,
    },
    /// `-NOMASTERLINK` (or `-MASTERDOWN`): the source is a replica whose link
    /// to its own master is down, or it is failing over. Retry later.
    #[error(
        "the source cannot serve a sync now (its master link is down or it is failing over); retry later: {message}"
    )]
    NoMasterLink {
        /// The source's error message.
        message: String,
    },
    /// Any other error to `PSYNC`, e.g. `-ERR unknown command 'PSYNC'` on a
    /// managed service that renames or disables it.
    #[error("the source refused PSYNC (managed services may rename or disable it): {message}")]
    PsyncRefused {
        /// The source's error message.
        message: String,
    },
    /// Bytes that are not a valid reply at this point.
    #[error("protocol error in the handshake: {what}")]
    Protocol {
        /// What was wrong.
        what: String,
    },
}

impl HandshakeError {
    /// Whether the same handshake may succeed later without a configuration
    /// change (`Loading`, `NoMasterLink`, `PingFailed`).
    pub fn retriable(&self) -> bool {
        matches!(
            self,
            HandshakeError::Loading { .. }
                | HandshakeError::NoMasterLink { .. }
                | HandshakeError::PingFailed { .. }
        )
    }
}

/// One request of the handshake.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    Ping,
    Auth,
    ListeningPort,
    Capa,
    Version,
    Psync,
}

impl Step {
    fn label(self) -> &'static str {
        match self {
            Step::Ping => "PING",
            Step::Auth => "AUTH",
            Step::ListeningPort => "REPLCONF listening-port",
            Step::Capa => "REPLCONF capa",
            Step::Version => "REPLCONF version",
            Step::Psync => "PSYNC",
        }
    }
}

/// The handshake state machine; see the [module docs](self).
#[derive(Debug, Clone)]
pub struct Handshake {
    config: HandshakeConfig,
    setup_sent: bool,
    psync_sent: bool,
    /// Requests sent whose replies have not been read yet, oldest first.
    awaiting: VecDeque<Step>,
    warnings: Vec<Warning>,
    keepalives: u64,
    result: Option<Result<Outcome, HandshakeError>>,
}

impl Handshake {
    /// A handshake that has sent nothing yet.
    pub fn new(config: HandshakeConfig) -> Handshake {
        Handshake {
            config,
            setup_sent: false,
            psync_sent: false,
            awaiting: VecDeque::new(),
            warnings: Vec::new(),
            keepalives: 0,
            result: None,
        }
    }

    /// The configuration this handshake was built from.
    pub fn config(&self) -> &HandshakeConfig {
        &self.config
    }

    /// The requests to write now, each as its arguments, name first: the
    /// setup batch on the first call, `PSYNC` once every setup reply has
    /// been fed, otherwise nothing. Each request is handed out once.
    pub fn take_requests(&mut self) -> Vec<Vec<Bytes>> {
        if self.result.is_some() {
            return Vec::new();
        }
        if !self.setup_sent {
            self.setup_sent = true;
            let batch = self.setup_batch();
            self.awaiting.extend(batch.iter().map(|(step, _)| *step));
            return batch.into_iter().map(|(_, args)| args).collect();
        }
        if self.awaiting.is_empty() && !self.psync_sent {
            self.psync_sent = true;
            self.awaiting.push_back(Step::Psync);
            return vec![self.psync_request()];
        }
        Vec::new()
    }

    /// [`take_requests`](Self::take_requests), encoded as RESP, ready to
    /// write (empty when there is nothing to send).
    pub fn take_request_bytes(&mut self) -> Vec<u8> {
        let mut out = Vec::new();
        for req in self.take_requests() {
            ferry_resp::write_command(&mut out, &req);
        }
        out
    }

    /// Whether `PSYNC` has been handed out.
    pub fn psync_sent(&self) -> bool {
        self.psync_sent
    }

    /// Error replies that were ignored (to `PING` and the `REPLCONF`s), in
    /// arrival order. Worth logging: e.g. a Valkey source that rejects
    /// `REPLCONF version` sends an older RDB format.
    pub fn warnings(&self) -> &[Warning] {
        &self.warnings
    }

    /// Bare `\n` keepalives skipped so far.
    pub fn keepalives(&self) -> u64 {
        self.keepalives
    }

    /// Consumes replies from the front of `buf`. `Ok(None)`: read more (or,
    /// after the setup replies, send what [`take_requests`](Self::take_requests)
    /// now returns). Bytes after the `PSYNC` reply stay in `buf`.
    pub fn feed(&mut self, buf: &mut BytesMut) -> Result<Option<Outcome>, HandshakeError> {
        if let Some(done) = &self.result {
            return done.clone().map(Some);
        }
        loop {
            let newlines = buf.iter().take_while(|&&b| b == b'\n').count();
            buf.advance(newlines);
            self.keepalives += newlines as u64;
            if buf.is_empty() {
                return Ok(None);
            }
            // Nothing sent yet, or PSYNC not sent yet: the bytes wait for
            // the request they answer (a server may also speak first, e.g.
            // "-ERR max number of clients reached"; that then answers PING).
            let Some(&step) = self.awaiting.front() else {
                return Ok(None);
            };
            let (value, used) = match REPLY_LIMITS.decode(buf) {
                Ok(Some(decoded)) => decoded,
                Ok(None) => return Ok(None),
                Err(e) => {
                    return self.fail(HandshakeError::Protocol {
                        what: format!("invalid reply to {}: {e}", step.label()),
                    });
                }
            };
            buf.advance(used);
            self.awaiting.pop_front();
            match self.on_reply(step, value) {
                Ok(None) => {}
                Ok(Some(outcome)) => {
                    self.result = Some(Ok(outcome.clone()));
                    return Ok(Some(outcome));
                }
                Err(e) => return self.fail(e),
            }
        }
    }

    fn fail(&mut self, e: HandshakeError) -> Result<Option<Outcome>, HandshakeError> {
        self.result = Some(Err(e.clone()));
        Err(e)
    }

    fn setup_batch(&self) -> Vec<(Step, Vec<Bytes>)> {
        let mut batch = vec![(Step::Ping, args(&["PING"]))];
        if let Some(auth) = self.config.auth.command() {
            let a = auth.into_iter().map(Bytes::copy_from_slice).collect();
            batch.push((Step::Auth, a));
        }
        if let Some(port) = self.config.listening_port {
            let mut a = args(&["REPLCONF", "listening-port"]);
            a.push(Bytes::from(port.to_string()));
            batch.push((Step::ListeningPort, a));
        }
        batch.push((
            Step::Capa,
            args(&["REPLCONF", "capa", "eof", "capa", "psync2"]),
        ));
        if let Some(version) = &self.config.announce_version {
            let mut a = args(&["REPLCONF", "version"]);
            a.push(Bytes::copy_from_slice(version.as_bytes()));
            batch.push((Step::Version, a));
        }
        batch
    }

    fn psync_request(&self) -> Vec<Bytes> {
        match &self.config.resume {
            Some(p) => vec![
                Bytes::from_static(b"PSYNC"),
                Bytes::copy_from_slice(p.replid.as_bytes()),
                Bytes::from(p.psync_offset().to_string()),
            ],
            None => args(&["PSYNC", "?", "-1"]),
        }
    }

    fn on_reply(&mut self, step: Step, value: Value) -> Result<Option<Outcome>, HandshakeError> {
        match (step, value) {
            (_, Value::Error(msg)) => {
                self.on_error(step, String::from_utf8_lossy(&msg).into_owned())?;
                Ok(None)
            }
            (Step::Psync, Value::Simple(line)) => self.on_psync(&line).map(Some),
            (Step::Psync, other) => Err(HandshakeError::Protocol {
                what: format!("expected a +FULLRESYNC or +CONTINUE line to PSYNC, got {other:?}"),
            }),
            // Like Redis's replica, accept any non-error reply to setup commands.
            _ => Ok(None),
        }
    }

    /// Classifies an error reply: `Ok(())` means ignored (recorded as a warning).
    fn on_error(&mut self, step: Step, message: String) -> Result<(), HandshakeError> {
        let code = message
            .split(' ')
            .next()
            .unwrap_or_default()
            .to_ascii_uppercase();
        let fatal = match step {
            Step::Ping => {
                !matches!(code.as_str(), "NOAUTH" | "NOPERM")
                    && !message
                        .to_ascii_lowercase()
                        .starts_with("err operation not permitted")
            }
            Step::Auth => true,
            Step::ListeningPort | Step::Capa | Step::Version => {
                matches!(code.as_str(), "NOAUTH" | "NOPERM")
            }
            Step::Psync => true,
        };
        if !fatal {
            self.warnings.push(Warning {
                request: step.label(),
                message,
            });
            return Ok(());
        }
        Err(match (step, code.as_str()) {
            (Step::Auth, "WRONGPASS") => HandshakeError::WrongPassword { message },
            (Step::Auth, _)
                if message
                    .to_ascii_lowercase()
                    .starts_with("err invalid password") =>
            {
                HandshakeError::WrongPassword { message }
            }
            (_, "LOADING") => HandshakeError::Loading { message },
            (Step::Auth, _) => HandshakeError::AuthFailed { message },
            (Step::Ping, _) => HandshakeError::PingFailed { message },
            (_, "NOAUTH") => HandshakeError::NoAuth { message },
            (Step::Psync, "NOPERM") => HandshakeError::NoPermission {
                command: "PSYNC",
                message,
            },
            (_, "NOPERM") => HandshakeError::NoPermission {
                command: "REPLCONF",
                message,
            },
            (_, "NOMASTERLINK" | "MASTERDOWN") => HandshakeError::NoMasterLink { message },
            _ => HandshakeError::PsyncRefused { message },
        })
    }

    fn on_psync(&self, line: &[u8]) -> Result<Outcome, HandshakeError> {
        let bad = |why: &str| HandshakeError::Protocol {
            what: format!(
                "{why} in the PSYNC reply +{}",
                String::from_utf8_lossy(line)
            ),
        };
        let mut words = line.split(|&b| b == b' ');
        match words.next() {
            Some(b"FULLRESYNC") => {
                let (Some(replid), Some(offset), None) = (words.next(), words.next(), words.next())
                else {
                    return Err(bad("expected exactly a replication id and an offset"));
                };
                if !is_replid(replid) {
                    return Err(bad("the replication id is not 40 hex digits"));
                }
                let offset = parse_decimal(offset).ok_or_else(|| bad("invalid offset"))?;
                Ok(Outcome::FullResync {
                    replid: String::from_utf8_lossy(replid).into_owned(),
                    offset,
                })
            }
            Some(b"CONTINUE") => {
                let Some(asked) = &self.config.resume else {
                    return Err(bad("+CONTINUE answers PSYNC ? -1"));
                };
                let id = words.next().filter(|w| !w.is_empty());
                if words.next().is_some() {
                    return Err(bad("unexpected words after the replication id"));
                }
                match id {
                    None => Ok(Outcome::Continue { replid: None }),
                    Some(id) if !is_replid(id) => {
                        Err(bad("the replication id is not 40 hex digits"))
                    }
                    Some(id) if id == asked.replid.as_bytes() => {
                        Ok(Outcome::Continue { replid: None })
                    }
                    Some(id) => Ok(Outcome::Continue {
                        replid: Some(String::from_utf8_lossy(id).into_owned()),
                    }),
                }
            }
            _ => Err(bad("expected FULLRESYNC or CONTINUE")),
        }
    }
}

fn args(words: &[&'static str]) -> Vec<Bytes> {
    words
        .iter()
        .map(|w| Bytes::from_static(w.as_bytes()))
        .collect()
}

#[cfg(test)]
mod tests;

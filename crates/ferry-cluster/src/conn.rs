//! One connection to one node: a request/response mode for the handshake,
//! then a pipelined mode for the write path (`conn/pipeline.rs`).
//!
//! ```text
//! Conn::connect(addr, auth)      TCP (bounded by a timeout), NODELAY, AUTH
//! Conn::connect_tls(.., tls)     the same, with TLS when `tls` is given
//! Conn::call(args)               one command, one reply (discovery, handshake)
//! Conn::into_pipeline(tag, tx)   pipelined: writes from the caller's task
//!                                (plain TCP) or a writer task; replies read
//!                                by the caller
//! ```
//!
//! The pipeline does not know what it carries: matching replies to commands
//! (an in-flight queue per connection) is the engine's job. The caller bounds
//! the bytes in flight, which is why the command channel can be unbounded.

use std::io;
use std::time::Duration;

use bytes::{Buf, BytesMut};
use ferry_resp::{RespError, Value, write_command};
use ferry_tls::{ConnectError, Stream, TlsConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Read buffer growth step.
const READ_CHUNK: usize = 64 * 1024;

mod pipeline;

pub use ferry_ops::Auth;
pub use pipeline::{PipeEvent, Pipeline};

/// Why a connection failed. Cloneable (I/O errors are kept as text) so one
/// failure can be reported to every waiter.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConnError {
    /// A socket error.
    #[error("{addr}: {message}")]
    Io {
        /// The node.
        addr: String,
        /// The I/O error kind.
        kind: io::ErrorKind,
        /// The I/O error text.
        message: String,
    },
    /// Connecting or a handshake reply took too long.
    #[error("{addr}: {what} timed out after {} ms", .after.as_millis())]
    Timeout {
        /// The node.
        addr: String,
        /// What was being waited for.
        what: &'static str,
        /// The bound.
        after: Duration,
    },
    /// The node closed the connection.
    #[error("{addr}: connection closed by the server")]
    Closed {
        /// The node.
        addr: String,
    },
    /// The node sent bytes that are not RESP.
    #[error("{addr}: bad reply: {error}")]
    Protocol {
        /// The node.
        addr: String,
        /// The decoder's error.
        error: RespError,
    },
    /// TLS is misconfigured or the handshake was refused (bad
    /// certificate, not a TLS port): reconnecting will not help.
    #[error("{addr}: {message}")]
    Tls {
        /// The node.
        addr: String,
        /// What went wrong.
        message: String,
    },
    /// `AUTH` was refused.
    #[error("{addr}: AUTH refused: {reply}")]
    Auth {
        /// The node.
        addr: String,
        /// The error reply.
        reply: String,
    },
    /// `SELECT` was refused (a db the server does not have).
    #[error("{addr}: SELECT {db} refused: {reply}")]
    Select {
        /// The node.
        addr: String,
        /// The db.
        db: u64,
        /// The error reply.
        reply: String,
    },
}

impl ConnError {
    fn io(addr: &str, e: &io::Error) -> ConnError {
        ConnError::Io {
            addr: addr.to_owned(),
            kind: e.kind(),
            message: e.to_string(),
        }
    }
}

/// A connected, authenticated node in request/response mode.
#[derive(Debug)]
pub struct Conn {
    addr: String,
    stream: Stream,
    rbuf: BytesMut,
}

impl Conn {
    /// Connects to `addr` (`host:port`) and authenticates; both steps are
    /// bounded by `timeout`.
    ///
    /// # Errors
    /// [`ConnError`] if the node is unreachable, slow or refuses `AUTH`.
    pub async fn connect(addr: &str, auth: &Auth, timeout: Duration) -> Result<Conn, ConnError> {
        Conn::connect_tls(addr, auth, timeout, None).await
    }

    /// [`Conn::connect`], over TLS when `tls` is given.
    ///
    /// # Errors
    /// As [`Conn::connect`]; [`ConnError::Tls`] for TLS configuration and
    /// certificate errors.
    pub async fn connect_tls(
        addr: &str,
        auth: &Auth,
        timeout: Duration,
        tls: Option<&TlsConfig>,
    ) -> Result<Conn, ConnError> {
        let stream = ferry_tls::connect(addr, tls, timeout)
            .await
            .map_err(|e| match e {
                ConnectError::Timeout(after) => ConnError::Timeout {
                    addr: addr.to_owned(),
                    what: "connect",
                    after,
                },
                ConnectError::Io(e) => ConnError::io(addr, &e),
                ConnectError::Tls(e) => ConnError::Tls {
                    addr: addr.to_owned(),
                    message: e.to_string(),
                },
            })?;
        let mut conn = Conn {
            addr: addr.to_owned(),
            stream,
            rbuf: BytesMut::with_capacity(READ_CHUNK),
        };
        if let Some(args) = auth.command() {
            let reply = conn.call(&args, timeout).await?;
            if let Value::Error(e) = reply {
                return Err(ConnError::Auth {
                    addr: addr.to_owned(),
                    reply: String::from_utf8_lossy(&e).into_owned(),
                });
            }
        }
        Ok(conn)
    }

    /// `SELECT db` (a standalone target; a cluster only has db 0).
    ///
    /// # Errors
    /// [`ConnError::Select`] if refused; socket errors as [`Conn::call`].
    pub async fn select(&mut self, db: u64, timeout: Duration) -> Result<(), ConnError> {
        let reply = self.call(&["SELECT", &db.to_string()], timeout).await?;
        match reply {
            Value::Error(e) => Err(ConnError::Select {
                addr: self.addr.clone(),
                db,
                reply: String::from_utf8_lossy(&e).into_owned(),
            }),
            _ => Ok(()),
        }
    }

    /// The node's address as given to [`Conn::connect`].
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// Whether the connection is TLS.
    pub fn is_tls(&self) -> bool {
        self.stream.is_tls()
    }

    /// Sends every command in one write and reads one reply per command,
    /// in order (a pipelined batch of reads; error replies are returned as
    /// values).
    ///
    /// # Errors
    /// Connection, protocol and timeout errors (`timeout` bounds the write
    /// and each reply).
    pub async fn call_many<A: AsRef<[u8]>>(
        &mut self,
        commands: &[Vec<A>],
        timeout: Duration,
    ) -> Result<Vec<Value>, ConnError> {
        let mut out = Vec::new();
        for c in commands {
            write_command(&mut out, c);
        }
        let addr = self.addr.clone();
        let timed_out = || ConnError::Timeout {
            addr: addr.clone(),
            what: "reply",
            after: timeout,
        };
        let write = async {
            self.stream.write_all(&out).await?;
            self.stream.flush().await
        };
        tokio::time::timeout(timeout, write)
            .await
            .map_err(|_| timed_out())?
            .map_err(|e| ConnError::io(&self.addr, &e))?;
        let mut replies = Vec::with_capacity(commands.len());
        for _ in commands {
            replies.push(
                tokio::time::timeout(timeout, self.read_value())
                    .await
                    .map_err(|_| timed_out())??,
            );
        }
        Ok(replies)
    }

    /// Sends one command and reads its reply (an error reply is `Ok`).
    ///
    /// # Errors
    /// [`ConnError`] on a socket error, a timeout, EOF or bad RESP.
    pub async fn call<A: AsRef<[u8]>>(
        &mut self,
        args: &[A],
        timeout: Duration,
    ) -> Result<Value, ConnError> {
        let mut out = Vec::new();
        write_command(&mut out, args);
        let addr = self.addr.clone();
        let timed_out = || ConnError::Timeout {
            addr: addr.clone(),
            what: "reply",
            after: timeout,
        };
        let write = async {
            self.stream.write_all(&out).await?;
            self.stream.flush().await
        };
        tokio::time::timeout(timeout, write)
            .await
            .map_err(|_| timed_out())?
            .map_err(|e| ConnError::io(&self.addr, &e))?;
        tokio::time::timeout(timeout, self.read_value())
            .await
            .map_err(|_| timed_out())?
    }

    async fn read_value(&mut self) -> Result<Value, ConnError> {
        loop {
            if let Some((value, used)) =
                ferry_resp::decode(&self.rbuf).map_err(|error| ConnError::Protocol {
                    addr: self.addr.clone(),
                    error,
                })?
            {
                self.rbuf.advance(used);
                return Ok(value);
            }
            self.rbuf.reserve(READ_CHUNK);
            let n = self
                .stream
                .read_buf(&mut self.rbuf)
                .await
                .map_err(|e| ConnError::io(&self.addr, &e))?;
            if n == 0 {
                return Err(ConnError::Closed {
                    addr: self.addr.clone(),
                });
            }
        }
    }
}

//! A connection in pipelined mode: encoded commands out, replies in.
//!
//! ```text
//! Pipeline::send(bytes)
//!   plain TCP, nothing handed to the writer task unwritten:
//!       try_write on the socket from the caller's task (no task wake-up);
//!       what the socket does not take goes to the writer task
//!   otherwise (TLS, or the writer task still has bytes):
//!       the writer task, in order: big chunks as they are, small ones
//!       gathered into one write, flushed once its channel is empty
//! Pipeline::poll_event
//!   replies read by the caller's task and decoded in order, in batches of
//!   at most REPLIES_MAX (the engine polls its pipelines beside its
//!   channels), plain TCP and TLS alike
//! a failure is reported once as Lost: by poll_event, or as an event from
//! the writer task; the writer task is aborted when the Pipeline is dropped
//! ```
//!
//! Order: the caller writes directly only while `queued` (chunks given to
//! the writer task and not yet written whole) is 0; the writer task lowers
//! it only after the bytes it took are in the socket, so a direct write
//! never overtakes an earlier chunk (`docs/decisions.md` D101).

use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};

use bytes::{Buf, Bytes, BytesMut};
use ferry_resp::Reply;
use ferry_tls::Stream;
use std::pin::Pin;

use tokio::io::{AsyncRead, AsyncWriteExt, ReadBuf, ReadHalf};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::{Conn, ConnError, READ_CHUNK};

/// Most replies in one batch handed to the engine (a read with more is
/// handed on in several). 1024 replies are 40 KB: under glibc's 64 KB
/// free that consolidates the whole heap (`docs/decisions.md` D81).
const REPLIES_MAX: usize = 1024;
/// Small chunks are gathered into one write of up to this many bytes.
const WRITE_BUF: usize = 256 * 1024;
/// Chunks at least this big are written as they are, not copied first.
const WRITE_DIRECT: usize = 16 * 1024;

/// What a pipeline reports.
#[derive(Debug)]
pub enum PipeEvent {
    /// Replies, in the order the node sent them.
    Replies(Vec<Reply>),
    /// The connection is gone; nothing more comes from this pipeline.
    Lost(ConnError),
}

/// A pipelined connection: send encoded commands, replies arrive from
/// [`Pipeline::poll_event`] (a loss of the writer task's on the events
/// channel). Dropping it closes the connection.
#[derive(Debug)]
pub struct Pipeline<T> {
    tx: mpsc::UnboundedSender<Bytes>,
    /// Plain TCP only: the socket for direct writes.
    direct: Option<Direct>,
    read: ReadSide,
    rbuf: BytesMut,
    tag: T,
    addr: String,
    /// `Lost` was reported: nothing more comes from `read`.
    done: bool,
    writer: JoinHandle<()>,
}

/// A plain-TCP pipeline's direct writes.
#[derive(Debug)]
struct Direct {
    write: Arc<OwnedWriteHalf>,
    /// Chunks taken by or waiting for the writer task, not yet written whole.
    queued: Arc<AtomicUsize>,
}

/// The read half of either kind of connection.
#[derive(Debug)]
enum ReadSide {
    Plain(OwnedReadHalf),
    Tls(ReadHalf<Stream>),
}

impl AsyncRead for ReadSide {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            ReadSide::Plain(r) => Pin::new(r).poll_read(cx, buf),
            ReadSide::Tls(r) => Pin::new(r).poll_read(cx, buf),
        }
    }
}

impl<T: Clone> Pipeline<T> {
    /// Queues encoded commands for writing; `false` if the writer is gone
    /// (a [`PipeEvent::Lost`] is then on its way). On plain TCP with
    /// nothing else waiting, the bytes are written at once from the
    /// caller's task as far as the socket takes them.
    pub fn send(&self, mut bytes: Bytes) -> bool {
        if let Some(d) = &self.direct {
            if d.queued.load(Ordering::Acquire) == 0 {
                // An error is left to the writer task: it meets it again
                // on the rest and reports the connection lost.
                if let Ok(n) = d.write.try_write(&bytes) {
                    if n == bytes.len() {
                        return true;
                    }
                    bytes.advance(n);
                }
            }
            d.queued.fetch_add(1, Ordering::AcqRel);
        }
        self.tx.send(bytes).is_ok()
    }

    /// The next batch of replies read from the socket (at most
    /// `REPLIES_MAX`, in order), or its loss, reported once; `Pending`
    /// registers `cx` for the socket's readiness.
    pub fn poll_event(&mut self, cx: &mut Context<'_>) -> Poll<(T, PipeEvent)> {
        if self.done {
            return Poll::Pending;
        }
        let event = loop {
            if !self.rbuf.is_empty() {
                // Each batch allocated once: `+OK` is 5 bytes, so a batch
                // of them fits without regrowing.
                let mut replies = Vec::with_capacity((self.rbuf.len() / 5).min(REPLIES_MAX));
                match ferry_resp::decode_replies_up_to(&self.rbuf, &mut replies, REPLIES_MAX) {
                    Ok(used) => self.rbuf.advance(used),
                    Err(error) => {
                        let addr = self.addr.clone();
                        break PipeEvent::Lost(ConnError::Protocol { addr, error });
                    }
                }
                if !replies.is_empty() {
                    return Poll::Ready((self.tag.clone(), PipeEvent::Replies(replies)));
                }
            }
            self.rbuf.reserve(READ_CHUNK);
            // `poll_read` (not `try_read`): a short read marks the socket
            // drained, saving the next, empty read.
            let read = Pin::new(&mut self.read);
            match std::task::ready!(tokio_util::io::poll_read_buf(read, cx, &mut self.rbuf)) {
                Ok(0) => {
                    let addr = self.addr.clone();
                    break PipeEvent::Lost(ConnError::Closed { addr });
                }
                Ok(_) => {}
                Err(e) => break PipeEvent::Lost(ConnError::io(&self.addr, &e)),
            }
        };
        self.done = true;
        Poll::Ready((self.tag.clone(), event))
    }
}

impl<T: Clone + Send> Pipeline<T> {
    /// The next event of this pipeline alone: replies or a loss from its
    /// socket, or a loss from `events` (the writer task's).
    /// `None` once `events` is closed.
    pub async fn next_event(
        &mut self,
        events: &mut mpsc::UnboundedReceiver<(T, PipeEvent)>,
    ) -> Option<(T, PipeEvent)> {
        tokio::select! {
            biased;
            event = events.recv() => event,
            event = std::future::poll_fn(|cx| self.poll_event(cx)) => Some(event),
        }
    }
}

impl<T> Drop for Pipeline<T> {
    fn drop(&mut self) {
        self.writer.abort();
    }
}

impl Conn {
    /// Switches to pipelined mode: spawns the writer task, which reports a
    /// loss to `events` tagged with `tag`; replies come from
    /// [`Pipeline::poll_event`].
    pub fn into_pipeline<T>(
        self,
        tag: T,
        events: mpsc::UnboundedSender<(T, PipeEvent)>,
    ) -> Pipeline<T>
    where
        T: Clone + Send + 'static,
    {
        let Conn { addr, stream, rbuf } = self;
        let (tx, rx) = mpsc::unbounded_channel::<Bytes>();
        let lost = {
            let (tag, addr) = (tag.clone(), addr.clone());
            move |e: io::Error| {
                let _ = events.send((tag, PipeEvent::Lost(ConnError::io(&addr, &e))));
            }
        };
        let (read, direct, writer) = match stream {
            Stream::Plain(tcp) => {
                let (read, write) = tcp.into_split();
                let write = Arc::new(write);
                let queued = Arc::new(AtomicUsize::new(0));
                let out = Shared(write.clone());
                let writer = tokio::spawn(write_chunks(rx, out, Some(queued.clone()), lost));
                (
                    ReadSide::Plain(read),
                    Some(Direct { write, queued }),
                    writer,
                )
            }
            stream @ Stream::Tls(_) => {
                let (read, write) = tokio::io::split(stream);
                let writer = tokio::spawn(write_chunks(rx, Owned(write), None, lost));
                (ReadSide::Tls(read), None, writer)
            }
        };
        Pipeline {
            tx,
            direct,
            read,
            rbuf,
            tag,
            addr,
            done: false,
            writer,
        }
    }
}

/// Where the writer task puts its bytes.
trait Out {
    async fn put(&mut self, buf: &[u8]) -> io::Result<()>;
    async fn flush(&mut self) -> io::Result<()>;
}

/// A write half the writer task owns (TLS).
struct Owned<W>(W);

impl<W: tokio::io::AsyncWrite + Unpin> Out for Owned<W> {
    async fn put(&mut self, buf: &[u8]) -> io::Result<()> {
        self.0.write_all(buf).await
    }
    async fn flush(&mut self) -> io::Result<()> {
        self.0.flush().await
    }
}

/// A TCP write half shared with [`Pipeline::send`]'s direct writes.
struct Shared(Arc<OwnedWriteHalf>);

impl Out for Shared {
    async fn put(&mut self, mut buf: &[u8]) -> io::Result<()> {
        while !buf.is_empty() {
            self.0.writable().await?;
            match self.0.try_write(buf) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => buf = &buf[n..],
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
    async fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// The writer task: chunks from `rx` into `out`, in order; `queued` (plain
/// TCP) drops by the chunks taken once they are all written.
async fn write_chunks(
    mut rx: mpsc::UnboundedReceiver<Bytes>,
    mut out: impl Out,
    queued: Option<Arc<AtomicUsize>>,
    lost: impl FnOnce(io::Error),
) {
    // Small chunks gathered (in order) into one write; big ones (a loop
    // turn's writes for the node) go out without a copy.
    let mut stage: Vec<u8> = Vec::new();
    while let Some(chunk) = rx.recv().await {
        let mut next = Some(chunk);
        let mut taken = 0;
        let mut result = Ok(());
        while let Some(chunk) = next.take() {
            taken += 1;
            if chunk.len() >= WRITE_DIRECT {
                if !stage.is_empty() {
                    result = out.put(&stage).await;
                    stage.clear();
                }
                if result.is_ok() {
                    result = out.put(&chunk).await;
                }
            } else {
                stage.extend_from_slice(&chunk);
                if stage.len() >= WRITE_BUF {
                    result = out.put(&stage).await;
                    stage.clear();
                }
            }
            if result.is_err() {
                break;
            }
            next = rx.try_recv().ok();
        }
        if result.is_ok() && !stage.is_empty() {
            result = out.put(&stage).await;
            stage.clear();
        }
        if result.is_ok() {
            result = out.flush().await;
        }
        if let Err(e) = result {
            lost(e);
            return;
        }
        if let Some(queued) = &queued {
            queued.fetch_sub(taken, Ordering::AcqRel);
        }
    }
}

#[cfg(test)]
mod tests;

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
//! reader task: socket -> buffer -> every complete reply decoded, sent as
//!       one (tag, Replies(vec)) event per read, in order
//! either side failing sends (tag, Lost(error)) once; both tasks are aborted
//! when the Pipeline is dropped
//! ```
//!
//! Order: the caller writes directly only while `queued` (chunks given to
//! the writer task and not yet written whole) is 0; the writer task lowers
//! it only after the bytes it took are in the socket, so a direct write
//! never overtakes an earlier chunk (`docs/decisions.md` D101).

use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::{Buf, Bytes};
use ferry_resp::Reply;
use ferry_tls::Stream;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::OwnedWriteHalf;
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

/// A pipelined connection: send encoded commands, replies arrive as
/// [`PipeEvent`]s. Dropping it closes the connection.
#[derive(Debug)]
pub struct Pipeline {
    tx: mpsc::UnboundedSender<Bytes>,
    /// Plain TCP only: the socket for direct writes and the writer task's
    /// count of chunks taken or waiting and not yet written whole.
    direct: Option<(Arc<OwnedWriteHalf>, Arc<AtomicUsize>)>,
    reader: JoinHandle<()>,
    writer: JoinHandle<()>,
}

impl Pipeline {
    /// Queues encoded commands for writing; `false` if the writer is gone
    /// (a [`PipeEvent::Lost`] is then on its way). On plain TCP with
    /// nothing else waiting, the bytes are written at once from the
    /// caller's task as far as the socket takes them.
    pub fn send(&self, mut bytes: Bytes) -> bool {
        if let Some((half, queued)) = &self.direct {
            if queued.load(Ordering::Acquire) == 0 {
                // An error is left to the writer task: it meets it again
                // on the rest and reports the connection lost.
                if let Ok(n) = half.try_write(&bytes) {
                    if n == bytes.len() {
                        return true;
                    }
                    bytes.advance(n);
                }
            }
            queued.fetch_add(1, Ordering::AcqRel);
        }
        self.tx.send(bytes).is_ok()
    }
}

impl Drop for Pipeline {
    fn drop(&mut self) {
        self.reader.abort();
        self.writer.abort();
    }
}

impl Conn {
    /// Switches to pipelined mode: spawns the reader and writer tasks, which
    /// report to `events` tagged with `tag`.
    pub fn into_pipeline<T>(self, tag: T, events: mpsc::UnboundedSender<(T, PipeEvent)>) -> Pipeline
    where
        T: Clone + Send + 'static,
    {
        let Conn { addr, stream, rbuf } = self;
        let (tx, rx) = mpsc::unbounded_channel::<Bytes>();
        let lost = {
            let (events, tag, addr) = (events.clone(), tag.clone(), addr.clone());
            move |e: io::Error| {
                let _ = events.send((tag, PipeEvent::Lost(ConnError::io(&addr, &e))));
            }
        };
        let (reader, writer, direct) = match stream {
            Stream::Plain(tcp) => {
                let (read_half, write_half) = tcp.into_split();
                let half = Arc::new(write_half);
                let queued = Arc::new(AtomicUsize::new(0));
                let out = Shared(half.clone());
                let writer = tokio::spawn(write_chunks(rx, out, Some(queued.clone()), lost));
                let reader = tokio::spawn(read_replies(read_half, rbuf, tag, addr, events));
                (reader, writer, Some((half, queued)))
            }
            stream @ Stream::Tls(_) => {
                let (read_half, write_half) = tokio::io::split(stream);
                let writer = tokio::spawn(write_chunks(rx, Owned(write_half), None, lost));
                let reader = tokio::spawn(read_replies(read_half, rbuf, tag, addr, events));
                (reader, writer, None)
            }
        };
        Pipeline {
            tx,
            direct,
            reader,
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

/// The reader task: replies decoded from the socket, handed on in order.
async fn read_replies<R, T>(
    mut read_half: R,
    mut rbuf: bytes::BytesMut,
    tag: T,
    addr: String,
    events: mpsc::UnboundedSender<(T, PipeEvent)>,
) where
    R: AsyncRead + Unpin,
    T: Clone,
{
    loop {
        // Bounded batches, each allocated once: `+OK` is 5 bytes, so a
        // batch of them fits without regrowing.
        loop {
            let mut replies = Vec::with_capacity((rbuf.len() / 5).min(REPLIES_MAX));
            match ferry_resp::decode_replies_up_to(&rbuf, &mut replies, REPLIES_MAX) {
                Ok(used) => rbuf.advance(used),
                Err(error) => {
                    let _ =
                        events.send((tag, PipeEvent::Lost(ConnError::Protocol { addr, error })));
                    return;
                }
            }
            let full = replies.len() == REPLIES_MAX;
            if replies.is_empty() {
                break;
            }
            if events
                .send((tag.clone(), PipeEvent::Replies(replies)))
                .is_err()
            {
                return;
            }
            if !full {
                break;
            }
        }
        rbuf.reserve(READ_CHUNK);
        let lost = match read_half.read_buf(&mut rbuf).await {
            Ok(0) => ConnError::Closed { addr: addr.clone() },
            Ok(_) => continue,
            Err(e) => ConnError::io(&addr, &e),
        };
        let _ = events.send((tag, PipeEvent::Lost(lost)));
        return;
    }
}

#[cfg(test)]
mod tests {
    use bytes::BytesMut;
    use ferry_testkit::XorShift64;
    use tokio::net::{TcpSocket, TcpStream};

    use super::*;

    /// A connected pair over loopback with small socket buffers, so that
    /// direct writes meet full buffers and hand their rest to the task.
    async fn pair() -> (TcpStream, TcpStream) {
        let listen = TcpSocket::new_v4().unwrap();
        listen.set_recv_buffer_size(8 * 1024).unwrap();
        listen.bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let listener = listen.listen(1).unwrap();
        let client = TcpSocket::new_v4().unwrap();
        client.set_send_buffer_size(8 * 1024).unwrap();
        let (client, server) = tokio::join!(
            client.connect(listener.local_addr().unwrap()),
            listener.accept()
        );
        (client.unwrap(), server.unwrap().0)
    }

    /// Every chunk arrives whole and in order whether it went straight to
    /// the socket or through the writer task, and both ways are taken.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn direct_and_queued_writes_keep_order() {
        let (client, mut server) = pair().await;
        let conn = Conn {
            addr: "test".into(),
            stream: Stream::Plain(client),
            rbuf: BytesMut::new(),
        };
        let (events, _events_rx) = mpsc::unbounded_channel();
        let pipe = conn.into_pipeline(0u8, events);
        // A slow peer: reads in small pieces, pausing now and then.
        let peer = tokio::spawn(async move {
            let (mut got, mut buf, mut reads) = (Vec::new(), [0u8; 3000], 0u32);
            loop {
                let n = server.read(&mut buf).await.unwrap();
                if n == 0 {
                    return got;
                }
                got.extend_from_slice(&buf[..n]);
                reads += 1;
                if reads.is_multiple_of(16) {
                    tokio::time::sleep(std::time::Duration::from_millis(1)).await;
                }
            }
        });
        let (mut rng, mut want, mut queued_seen) = (XorShift64(7), Vec::new(), 0);
        for i in 0..3000u32 {
            // Mostly small chunks, some past WRITE_DIRECT.
            let len = match rng.next() % 10 {
                0 => 16 * 1024 + (rng.next() % 20_000) as usize,
                _ => 1 + (rng.next() % 600) as usize,
            };
            let chunk: Vec<u8> = (0..len).map(|j| (i as usize * 31 + j) as u8).collect();
            want.extend_from_slice(&chunk);
            assert!(pipe.send(Bytes::from(chunk)));
            let (_, queued) = pipe.direct.as_ref().unwrap();
            if queued.load(Ordering::Acquire) > 0 {
                queued_seen += 1;
            }
            if i % 64 == 0 {
                tokio::task::yield_now().await;
            }
        }
        // Everything written, then close (dropping the write half sends FIN).
        let (_, queued) = pipe.direct.as_ref().unwrap();
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
        while queued.load(Ordering::Acquire) > 0 {
            assert!(tokio::time::Instant::now() < deadline, "writer task stuck");
            tokio::time::sleep(std::time::Duration::from_millis(1)).await;
        }
        drop(pipe);
        let got = peer.await.unwrap();
        assert_eq!(got.len(), want.len());
        assert!(got == want, "bytes out of order");
        assert!(queued_seen > 0, "no write went through the writer task");
        assert!(queued_seen < 3000, "no write went straight to the socket");
    }
}

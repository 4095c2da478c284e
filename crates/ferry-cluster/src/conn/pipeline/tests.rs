//! The pipeline over real loopback sockets with small buffers.

use std::future::poll_fn;
use std::time::Duration;

use ferry_testkit::XorShift64;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

use super::*;

/// A pipeline (tag 7) over loopback with small socket buffers, so that
/// direct writes meet full buffers and hand their rest to the task, and
/// the peer's end of it.
async fn piped() -> (Pipeline<u8>, TcpStream) {
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
    let conn = Conn {
        addr: "test".into(),
        stream: Stream::Plain(client.unwrap()),
        rbuf: BytesMut::new(),
    };
    // Replies come from `poll_event`; the channel only carries a writer's loss.
    let (events, _) = mpsc::unbounded_channel();
    (conn.into_pipeline(7u8, events), server.unwrap().0)
}

/// Every chunk arrives whole and in order whether it went straight to the
/// socket or through the writer task, and both ways are taken.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn direct_and_queued_writes_keep_order() {
    let (pipe, mut server) = piped().await;
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
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        }
    });
    let queued = Arc::clone(&pipe.direct.as_ref().unwrap().queued);
    let (mut rng, mut want, mut queued_seen) = (XorShift64(7), Vec::new(), 0);
    for i in 0..3000u32 {
        // Mostly small chunks, some past WRITE_DIRECT.
        let len = match rng.next() % 10 {
            0 => WRITE_DIRECT + (rng.next() % 20_000) as usize,
            _ => 1 + (rng.next() % 600) as usize,
        };
        let chunk: Vec<u8> = (0..len).map(|j| (i as usize * 31 + j) as u8).collect();
        want.extend_from_slice(&chunk);
        assert!(pipe.send(Bytes::from(chunk)));
        if queued.load(Ordering::Acquire) > 0 {
            queued_seen += 1;
        }
        if i % 64 == 0 {
            tokio::task::yield_now().await;
        }
    }
    // Everything written, then close (dropping the write half sends FIN).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while queued.load(Ordering::Acquire) > 0 {
        assert!(tokio::time::Instant::now() < deadline, "writer task stuck");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    drop(pipe);
    let got = peer.await.unwrap();
    assert_eq!(got.len(), want.len());
    assert!(got == want, "bytes out of order");
    assert!(queued_seen > 0, "no write went through the writer task");
    assert!(queued_seen < 3000, "no write went straight to the socket");
}

/// Replies read by the caller come whole, in order, in bounded batches,
/// across reads that split them; the close is reported once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replies_in_order_then_one_loss() {
    let (mut pipe, mut server) = piped().await;
    let n = 5000;
    let peer = tokio::spawn(async move {
        let all: Vec<u8> = (0..n)
            .flat_map(|i| format!(":{i}\r\n").into_bytes())
            .collect();
        // Pieces that split replies.
        for piece in all.chunks(7 * 1024 + 3) {
            server.write_all(piece).await.unwrap();
            tokio::task::yield_now().await;
        }
    });
    let mut got = Vec::new();
    let lost = loop {
        let (tag, event) = poll_fn(|cx| pipe.poll_event(cx)).await;
        assert_eq!(tag, 7);
        match event {
            PipeEvent::Replies(replies) => {
                assert!(replies.len() <= REPLIES_MAX);
                got.extend(replies);
            }
            PipeEvent::Lost(e) => break e,
        }
    };
    peer.await.unwrap();
    assert!(matches!(lost, ConnError::Closed { .. }), "{lost:?}");
    assert_eq!(got.len(), n);
    for (i, reply) in got.iter().enumerate() {
        assert_eq!(*reply, Reply::Value(ferry_resp::Value::Integer(i as i64)));
    }
    let mut cx = Context::from_waker(std::task::Waker::noop());
    assert!(pipe.poll_event(&mut cx).is_pending(), "a second loss");
}

//! The connection task: connect, handshake, then read the socket into the
//! spool while acking; reconnect with backoff. Also the INFO poller.
//!
//! Which `PSYNC` a (re)connection sends:
//!
//! ```text
//! first connection of the process     saved position ─▶ PSYNC <replid> <applied+1>, else PSYNC ? -1
//! later, received offset known        PSYNC <replid> <received+1>   (spooled bytes are still delivered)
//! later, snapshot end not yet decoded PSYNC ? -1
//! after LinkHandle::resync            PSYNC ? -1 (and the saved position is deleted)
//! ```
//!
//! Every connection first asks the locator (if any) for the address; a
//! locator error is logged and retried like a lost connection.

use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use ferry_tls::{ConnectError, Stream};
use tokio::io::{AsyncReadExt, AsyncWriteExt, ReadHalf, WriteHalf};
use tokio_util::sync::CancellationToken;

use super::{LinkError, Mark, Session, Shared};
use crate::{Handshake, HandshakeConfig, Outcome, Position, ack_command};
use tokio::sync::watch;

/// Largest single socket read.
const READ_CHUNK: usize = 64 * 1024;

/// Reconnects until cancelled or a fatal error.
pub(super) async fn run(
    shared: &Arc<Shared>,
    token: &CancellationToken,
    saved: Option<Position>,
) -> Result<(), LinkError> {
    let cfg = &shared.cfg;
    let mut backoff = cfg.reconnect_min;
    let mut resume = saved;
    let mut epoch = 0u64;
    let mut interrupt = shared.interrupt.subscribe();
    loop {
        interrupt.borrow_and_update();
        let request = shared.lock().request.take();
        if let Some(r) = request.filter(|r| r.resync) {
            tracing::info!(reason = %r.reason, "replica link: full resync requested");
            resume = None;
            super::blocking(shared, Shared::remove_position_blocking).await?;
        }
        let mut handshook = false;
        let r = tokio::select! {
            r = connection(shared, token, resume.clone(), &mut epoch, &mut handshook) => r,
            _ = token.cancelled() => Ok(()),
            reason = interrupted(shared, &mut interrupt) => Err(LinkError::Interrupted {
                addr: shared.lock().addr.clone(),
                reason,
            }),
        };
        {
            let mut inner = shared.lock();
            inner.connected = false;
            inner.spool_full = false;
        }
        if token.is_cancelled() {
            return Ok(());
        }
        let e = match r {
            Ok(()) => return Ok(()),
            Err(e) if !e.retriable() => return Err(e),
            Err(e) => e,
        };
        if handshook {
            backoff = cfg.reconnect_min;
        }
        let asked = matches!(e, LinkError::Interrupted { .. });
        if let LinkError::Locate(_) = e {
            tracing::warn!("replica link: {e}; retrying in {backoff:?}");
        }
        // A push cut off with the connection may still be landing.
        shared.spool.settle().await;
        {
            let mut inner = shared.lock();
            inner.reconnects += 1;
            let at = shared.spool.pushed();
            inner.marks.push_back((
                at,
                Mark::Reconnecting {
                    reason: e.to_string(),
                },
            ));
            // Resume where the bytes stop, if that is known.
            resume = match (&inner.session, inner.received_offset(at)) {
                (Some(s), Some(offset)) => Some(Position {
                    replid: s.replid.clone(),
                    offset,
                    db: 0,
                }),
                (Some(_), None) => None,
                (None, _) => resume,
            };
        }
        shared.data.notify_one();
        if asked {
            // Asked for: reconnect now.
            continue;
        }
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = token.cancelled() => return Ok(()),
            // A reconnect or resync asked during the backoff: go now.
            _ = interrupt.changed() => {}
        }
        backoff = (backoff * 2).min(cfg.reconnect_max);
    }
}

/// How long a resume on another server waits for the decoder to finish
/// the bytes already received (to know whether their tail carries data).
const REWIND_WAIT: Duration = Duration::from_secs(1);

/// Resuming on another server than the last session's (a promoted
/// replica): when the bytes received after the last data-changing command
/// carry no data (`PING`s and Sentinel's `PUBLISH __sentinel__:hello` that
/// the old master sent after the promotion, which the new master's history
/// lacks), resume right after that command instead, so the new master can
/// answer `+CONTINUE`; the skipped commands changed nothing. Returns the
/// position to ask for and whether it moved back.
async fn rewind(shared: &Shared, resume: Option<Position>, addr: &str) -> (Option<Position>, bool) {
    let Some(p) = resume else {
        return (None, false);
    };
    let until = tokio::time::Instant::now() + REWIND_WAIT;
    loop {
        let tail = {
            let inner = shared.lock();
            let Some(s) = inner
                .session
                .as_ref()
                .filter(|s| s.addr != addr && s.replid == p.replid)
            else {
                return (Some(p), false);
            };
            inner
                .tail
                .filter(|t| t.epoch == s.epoch && t.at == shared.spool.pushed())
        };
        match tail {
            Some(t) if t.offset == p.offset && t.data_end < p.offset => {
                tracing::info!(
                    source = %addr,
                    skipped = p.offset - t.data_end,
                    "replica link: resuming on another server after the last data command \
                     (the bytes after it carried no data)"
                );
                let at = Position {
                    replid: p.replid,
                    offset: t.data_end,
                    db: t.db,
                };
                return (Some(at), true);
            }
            Some(_) => return (Some(p), false),
            None if tokio::time::Instant::now() >= until => return (Some(p), false),
            None => tokio::time::sleep(Duration::from_millis(10)).await,
        }
    }
}

/// Resolves when a [`super::Request`] is pending; its reason.
async fn interrupted(shared: &Shared, rx: &mut watch::Receiver<u64>) -> String {
    loop {
        if rx.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
        if let Some(r) = &shared.lock().request {
            return r.reason.clone();
        }
    }
}

/// The address to connect to now: the locator's answer (bounded by the
/// timeout), else the configured one. Recorded as the address in use.
async fn locate(shared: &Shared) -> Result<String, LinkError> {
    let cfg = &shared.cfg;
    let addr = match &cfg.locator {
        None => cfg.addr.clone(),
        Some(l) => tokio::time::timeout(cfg.timeout, l.locate())
            .await
            .map_err(|_| LinkError::Locate(format!("no answer within {:?}", cfg.timeout)))??,
    };
    let mut inner = shared.lock();
    if inner.addr != addr {
        if !inner.addr.is_empty() {
            tracing::info!(from = %inner.addr, to = %addr, "replica link: the source moved");
        }
        inner.addr = addr.clone();
        // The offset polled from the previous address is not this one's.
        inner.source_offset = None;
    }
    Ok(addr)
}

/// One connection: handshake, then read and ack until it fails.
async fn connection(
    shared: &Shared,
    token: &CancellationToken,
    resume: Option<Position>,
    epoch: &mut u64,
    handshook: &mut bool,
) -> Result<(), LinkError> {
    let cfg = &shared.cfg;
    let addr = locate(shared).await?;
    let addr = addr.as_str();
    let (resume, rewound) = rewind(shared, resume, addr).await;
    let mut sock = connect(cfg, addr).await?;
    let mut buf = BytesMut::with_capacity(READ_CHUNK);
    let mut hs = Handshake::new(HandshakeConfig {
        auth: cfg.auth.clone(),
        listening_port: cfg.listening_port,
        announce_version: cfg.announce_version.clone(),
        resume: resume.clone(),
    });
    let mut out = hs.take_request_bytes();
    let outcome = loop {
        if !out.is_empty() {
            sock.write_all(&out).await.map_err(io("write to", addr))?;
            // TLS may hold written bytes until flushed (no-op for TCP).
            sock.flush().await.map_err(io("write to", addr))?;
        }
        if let Some(o) = hs.feed(&mut buf)? {
            break o;
        }
        out = hs.take_request_bytes();
        if out.is_empty() {
            read_some(
                &mut sock,
                &mut buf,
                (cfg.timeout, addr),
                "waiting for the handshake replies",
            )
            .await?;
        }
    };
    *handshook = true;
    // Before AUTH, a source with a password refuses PING: expected.
    let (expected, warnings): (Vec<_>, Vec<_>) = hs
        .warnings()
        .iter()
        .cloned()
        .partition(|w| w.request == "PING" && cfg.auth.is_set());
    for w in &expected {
        tracing::debug!(source = %addr, "replica handshake: {w}");
    }
    for w in &warnings {
        tracing::warn!(source = %addr, "replica handshake: {w}");
    }
    {
        let mut inner = shared.lock();
        inner.warnings_total += warnings.len() as u64;
        inner.warnings = warnings;
    }
    let (replid, base, full, db) = match outcome {
        Outcome::FullResync { .. } if cfg.refuse_full_sync.is_some() => {
            return Err(LinkError::FullSyncRefused {
                addr: cfg.addr.clone(),
                asked: resume.as_ref().map_or_else(
                    || "no position".to_owned(),
                    |p| format!("replid {} offset {}", p.replid, p.offset),
                ),
                hint: cfg.refuse_full_sync.clone().unwrap_or_default(),
            });
        }
        Outcome::FullResync { replid, offset } => {
            *epoch += 1;
            (replid, offset, true, 0)
        }
        Outcome::Continue { replid } => {
            let asked = resume
                .ok_or_else(|| LinkError::Internal("+CONTINUE without a resume position".into()))?;
            if rewound {
                // Events already delivered past `asked.offset` belong to
                // the old server: a new epoch makes their `Applied`s moot.
                *epoch += 1;
                tracing::info!(source = %addr, offset = asked.offset,
                    "replica link: continued before a tail without data");
            }
            (
                replid.unwrap_or(asked.replid),
                asked.offset,
                false,
                asked.db,
            )
        }
    };
    shared.spool.settle().await;
    {
        let mut inner = shared.lock();
        let at = shared.spool.pushed();
        let mark = if full {
            Mark::FullSync {
                epoch: *epoch,
                replid: replid.clone(),
                offset: base,
            }
        } else {
            Mark::Continue {
                epoch: *epoch,
                replid: replid.clone(),
                offset: base,
                db,
            }
        };
        inner.marks.push_back((at, mark));
        inner.session = Some(Session {
            epoch: *epoch,
            replid,
            base,
            start_pos: at,
            full,
            addr: addr.to_string(),
        });
        inner.connected = true;
    }
    shared.data.notify_one();
    let (mut rd, mut wr) = tokio::io::split(sock);
    let epoch = *epoch;
    tokio::select! {
        r = read_loop(shared, token, &mut rd, buf.split().freeze(), addr) => r,
        r = ack_loop(shared, &mut wr, epoch, addr) => r,
        _ = shared.reconnect.notified() => Err(LinkError::Closed {
            what: "the snapshot was aborted",
            addr: addr.to_string(),
        }),
    }
}

/// TCP (and TLS when configured) to `addr`, bounded by the timeout.
async fn connect(cfg: &super::LinkConfig, addr: &str) -> Result<Stream, LinkError> {
    ferry_tls::connect(addr, cfg.tls.as_ref(), cfg.timeout)
        .await
        .map_err(|e| match e {
            ConnectError::Timeout(after) => LinkError::Timeout {
                what: "connecting",
                addr: addr.to_string(),
                after,
            },
            ConnectError::Io(source) => io("connect to", addr)(source),
            ConnectError::Tls(e) => LinkError::Tls(e),
        })
}

/// Reads more into `buf`, bounded by the timeout; EOF is an error.
async fn read_some<R: AsyncReadExt + Unpin>(
    sock: &mut R,
    buf: &mut BytesMut,
    (timeout, addr): (Duration, &str),
    what: &'static str,
) -> Result<usize, LinkError> {
    buf.reserve(READ_CHUNK);
    let n = tokio::time::timeout(timeout, sock.read_buf(buf))
        .await
        .map_err(|_| LinkError::Timeout {
            what,
            addr: addr.to_string(),
            after: timeout,
        })?
        .map_err(io("read from", addr))?;
    if n == 0 {
        return Err(LinkError::Closed {
            what,
            addr: addr.to_string(),
        });
    }
    Ok(n)
}

/// Moves socket bytes into the spool, at line rate unless the spool is at its cap.
async fn read_loop(
    shared: &Shared,
    token: &CancellationToken,
    rd: &mut ReadHalf<Stream>,
    leftover: Bytes,
    addr: &str,
) -> Result<(), LinkError> {
    let cfg = &shared.cfg;
    if !leftover.is_empty() {
        push(shared, token, leftover).await?;
    }
    let mut buf = BytesMut::with_capacity(READ_CHUNK);
    loop {
        let room = wait_room(shared, token).await;
        if room == 0 {
            return Ok(()); // cancelled
        }
        let mut limited = (&mut *rd).take(room.min(READ_CHUNK) as u64);
        read_some(&mut limited, &mut buf, (cfg.timeout, addr), "streaming").await?;
        // A big read goes whole, not as a split of the buffer: the chunk is
        // then its allocation's only owner, and the decoder takes it as its
        // buffer without copying it (`inbuf::InBuf`); the next read
        // allocates anew, as it did after a split of a still-shared buffer.
        // A small read is split off as before: the decoder copies it and
        // drops it, and the buffer's allocation is reused.
        let chunk = if buf.len() >= READ_CHUNK / 4 {
            std::mem::take(&mut buf).freeze()
        } else {
            buf.split().freeze()
        };
        push(shared, token, chunk).await?;
    }
}

/// Waits until the spool has room; returns it (0 when cancelled).
async fn wait_room(shared: &Shared, token: &CancellationToken) -> usize {
    loop {
        {
            let mut inner = shared.lock();
            let room = shared.spool.room();
            if room > 0 {
                inner.spool_full = false;
                return usize::try_from(room).unwrap_or(usize::MAX);
            }
            inner.spool_full = true;
        }
        tokio::select! {
            _ = shared.room.notified() => {}
            // Re-check now and then: a notification may race the check.
            _ = tokio::time::sleep(Duration::from_millis(100)) => {}
            _ = token.cancelled() => return 0,
        }
    }
}

async fn push(
    shared: &Shared,
    token: &CancellationToken,
    mut data: Bytes,
) -> Result<(), LinkError> {
    while !data.is_empty() {
        let room = wait_room(shared, token).await;
        if room == 0 {
            return Ok(());
        }
        let part = data.split_to(room.min(data.len()));
        shared.spool.push(part).await?;
        shared.data.notify_one();
    }
    Ok(())
}

/// ACK period while a full sync waits for its first stream byte.
const FAST_ACK: Duration = Duration::from_millis(20);

/// Whether this connection is a full sync whose stream has not started:
/// after a diskless transfer the master buffers the stream (within the
/// replica output-buffer limit) until an ACK arrives *after* it put the
/// replica online, a moment after the EOF mark. ACKing fast then keeps that
/// window (and the buffer) small.
fn awaiting_stream(shared: &Shared, epoch: u64) -> bool {
    let inner = shared.lock();
    if !inner
        .session
        .as_ref()
        .is_some_and(|s| s.full && s.epoch == epoch)
    {
        return false;
    }
    match inner.snapshot_end {
        Some((e, pos)) if e == epoch => shared.spool.pushed() == pos,
        _ => true,
    }
}

/// Sends `REPLCONF ACK` every `ack_interval` and when asked (GETACK,
/// snapshot end), with the applied offset of this connection's history;
/// after a GETACK also on every applied report until it covers the GETACK.
async fn ack_loop(
    shared: &Shared,
    wr: &mut WriteHalf<Stream>,
    epoch: u64,
    addr: &str,
) -> Result<(), LinkError> {
    let cfg = &shared.cfg;
    let mut applied = shared.applied.subscribe();
    loop {
        let period = if awaiting_stream(shared, epoch) {
            FAST_ACK.min(cfg.ack_interval)
        } else {
            cfg.ack_interval
        };
        // After a GETACK, also ACK as the consumer applies, until it has
        // applied the GETACK itself (the source's `WAIT` waits for that).
        let getack = shared
            .lock()
            .getack
            .filter(|(e, _)| *e == epoch)
            .map(|(_, offset)| offset);
        tokio::select! {
            _ = tokio::time::sleep(period) => {}
            _ = shared.ack_now.notified() => {}
            r = applied.changed(), if getack.is_some() => {
                if r.is_err() {
                    // The link is going away.
                    tokio::time::sleep(period).await;
                }
            }
        }
        let offset = match *applied.borrow_and_update() {
            Some(a) if a.epoch == epoch => a.offset,
            _ => 0,
        };
        if getack.is_some_and(|target| offset >= target) {
            let mut inner = shared.lock();
            if inner.getack == Some((epoch, getack.unwrap_or_default())) {
                inner.getack = None;
            }
        }
        wr.write_all(&ack_command(offset))
            .await
            .map_err(io("write an ACK to", addr))?;
        wr.flush().await.map_err(io("write an ACK to", addr))?;
    }
}

fn io(what: &'static str, addr: &str) -> impl FnOnce(std::io::Error) -> LinkError {
    let addr = addr.to_string();
    move |source| LinkError::Io { what, addr, source }
}

/// Polls `INFO replication` on an ordinary connection for the source's
/// `master_repl_offset`. Errors (including an ACL user without `+info`)
/// only leave the offset unknown; it retries every few seconds.
pub(super) async fn poll_info(shared: &Shared, token: &CancellationToken) -> Result<(), LinkError> {
    let Some(every) = shared.cfg.info_interval else {
        return Ok(());
    };
    loop {
        let r = tokio::select! {
            r = info_session(shared, every) => r,
            _ = token.cancelled() => return Ok(()),
        };
        let pause = match r {
            // The link moved to another address: follow it now.
            Ok(()) => Duration::ZERO,
            Err(_) => {
                shared.lock().source_offset = None;
                every.max(Duration::from_secs(5))
            }
        };
        tokio::select! {
            _ = tokio::time::sleep(pause) => {}
            _ = token.cancelled() => return Ok(()),
        }
    }
}

/// Polls the address the link uses until an error, or `Ok` once the link
/// moved to another address.
async fn info_session(shared: &Shared, every: Duration) -> Result<(), LinkError> {
    let cfg = &shared.cfg;
    let addr = shared.lock().addr.clone();
    if addr.is_empty() {
        return Err(LinkError::Locate("not located yet".into()));
    }
    let ctx = (cfg.timeout, addr.as_str());
    let mut sock = connect(cfg, &addr).await?;
    let mut buf = BytesMut::new();
    if let Some(args) = cfg.auth.command() {
        request(&mut sock, &mut buf, ctx, &args).await?;
    }
    loop {
        let reply = request(&mut sock, &mut buf, ctx, &[b"INFO", b"replication"]).await?;
        let offset = ferry_ops::info_text(&reply)
            .ok()
            .and_then(|text| ferry_ops::Info::parse(&text).get_u64("master_repl_offset"));
        {
            let mut inner = shared.lock();
            if inner.addr != addr {
                return Ok(());
            }
            inner.source_offset = offset;
        }
        tokio::time::sleep(every).await;
    }
}

/// Sends one command and reads its reply; an error reply is an error.
async fn request(
    sock: &mut Stream,
    buf: &mut BytesMut,
    ctx: (Duration, &str),
    args: &[&[u8]],
) -> Result<ferry_resp::Value, LinkError> {
    let mut out = Vec::new();
    ferry_resp::write_command(&mut out, args);
    sock.write_all(&out).await.map_err(io("write to", ctx.1))?;
    sock.flush().await.map_err(io("write to", ctx.1))?;
    loop {
        match ferry_resp::decode(buf) {
            Ok(Some((v, n))) => {
                let _ = buf.split_to(n);
                if let ferry_resp::Value::Error(e) = &v {
                    return Err(LinkError::Internal(format!(
                        "INFO poller: {}",
                        String::from_utf8_lossy(e)
                    )));
                }
                return Ok(v);
            }
            Ok(None) => {
                read_some(sock, buf, ctx, "polling INFO").await?;
            }
            Err(e) => return Err(LinkError::Internal(format!("INFO poller: {e}"))),
        }
    }
}

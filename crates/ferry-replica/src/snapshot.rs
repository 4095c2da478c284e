//! The snapshot transfer after `+FULLRESYNC`: framing around the RDB.
//!
//! ```text
//! "\n"*  then one of
//!   "$" <decimal len> CRLF   <len RDB bytes>                    disk: ends by count;
//!                                                               stream follows at once
//!   "$EOF:" <40-byte mark> CRLF   <RDB bytes> <the same mark>   diskless: ends at the mark;
//!                                                               stream waits for a REPLCONF ACK
//!   "-" <message> CRLF                                          the master aborted: restart
//! ```
//!
//! [`SnapshotFramer::next_event`] drives the whole transfer over the
//! connection's read buffer: it skips the keepalives, reads the preamble,
//! then hands the RDB bytes to a [`ferry_rdb::Decoder`] *as they arrive*
//! (nothing is buffered beyond what the decoder itself keeps of a value in
//! progress), and reports [`SnapshotEvent::Complete`] once the RDB is over:
//!
//! * disk: the decoder is done after exactly `len` bytes. The decoder is
//!   never shown bytes past `len` (they are already command stream), so a
//!   file longer than announced is detected at `len`, and a shorter one when
//!   its EOF record ends early.
//! * diskless: the decoder is done (EOF opcode and CRC read) and the next 40
//!   bytes equal the mark. Fewer than 40 buffered bytes means "read more":
//!   a mark split across reads is compared once whole.
//!
//! After `Complete` the buffer holds whatever followed the snapshot (the
//! start of the command stream, in disk mode). In diskless mode the master
//! sends nothing until it gets a `REPLCONF ACK` *after* it has marked the
//! replica online, which happens when its RDB child exits, a little after
//! the mark went out. An ACK sent right after the mark can arrive first and
//! then starts nothing (seen with Redis 7.0 and Valkey 9): send
//! [`ack_command`](crate::ack_command)`(fullresync_offset)` right away *and*
//! keep sending ACKs every second, as a real replica does (harmless in disk
//! mode too).
//!
//! The decoder must be fresh (offset 0) when the preamble is read; its
//! [`offset`](ferry_rdb::Decoder::offset) is the count of RDB bytes consumed.

use bytes::{Buf, BytesMut};
use ferry_rdb::{Decoder, Item, RdbError};

use crate::parse_decimal;

/// Length of the diskless end-of-file mark.
pub const MARK_LEN: usize = 40;

/// Longest preamble line accepted, CRLF included: `$EOF:` + mark + CRLF is
/// 47 bytes, `$` + 20 digits + CRLF is 23.
const MAX_PREAMBLE: usize = 64;

/// Longest error line quoted when the master aborts.
const MAX_ERROR_LINE: usize = 4096;

/// How the snapshot is framed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Preamble {
    /// `$<len>`: an RDB file of exactly `len` bytes (disk-based sync).
    Disk {
        /// Size of the RDB in bytes.
        len: u64,
    },
    /// `$EOF:<mark>`: an RDB of unknown size followed by `mark` (diskless sync).
    Diskless {
        /// The 40-byte end-of-file mark.
        mark: [u8; MARK_LEN],
    },
}

/// What [`SnapshotFramer::next_event`] found.
#[derive(Debug, Clone, PartialEq)]
pub enum SnapshotEvent {
    /// The preamble was read; RDB bytes follow.
    Preamble(Preamble),
    /// One decoded RDB record.
    Item(Item),
    /// The snapshot is over (end checked); the buffer now holds what followed it.
    Complete,
}

/// Why the snapshot transfer failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SnapshotError {
    /// The master sent an error instead of a snapshot (e.g. its BGSAVE
    /// failed). Reconnect and try again.
    #[error("the source aborted the snapshot: {message}")]
    Aborted {
        /// The master's error message.
        message: String,
    },
    /// The framing is not what a master sends.
    #[error("protocol error in the snapshot transfer: {what}")]
    Protocol {
        /// What was wrong.
        what: String,
    },
    /// Disk mode: the RDB ended (EOF record and checksum read) before the
    /// announced length.
    #[error("the RDB ended after {ended_at} bytes but the source announced {announced}")]
    EndedEarly {
        /// The length from the `$<len>` preamble.
        announced: u64,
        /// Where the RDB's EOF record and checksum ended.
        ended_at: u64,
    },
    /// Disk mode: the announced length was reached but the RDB is not over.
    #[error("the RDB is not over after the {announced} bytes the source announced")]
    Overrun {
        /// The length from the `$<len>` preamble.
        announced: u64,
    },
    /// Diskless mode: the bytes after the RDB are not the end-of-file mark.
    #[error("expected the end-of-file mark {expected:?} after the RDB, found {found:?}")]
    MarkMismatch {
        /// The mark from the preamble.
        expected: String,
        /// The 40 bytes found instead (lossy text).
        found: String,
    },
    /// The RDB itself is invalid.
    #[error(transparent)]
    Rdb(#[from] RdbError),
}

impl SnapshotError {
    /// Whether reconnecting may help without a configuration change: only
    /// [`SnapshotError::Aborted`]. The others mean a corrupt transfer or a
    /// decoder gap; a retry gets a new snapshot but likely the same bug.
    pub fn retriable(&self) -> bool {
        matches!(self, SnapshotError::Aborted { .. })
    }
}

/// Frames one snapshot transfer; see the [module docs](self).
#[derive(Debug, Clone, Default)]
pub struct SnapshotFramer {
    preamble: Option<Preamble>,
    complete: bool,
    keepalives: u64,
    failed: Option<SnapshotError>,
}

impl SnapshotFramer {
    /// A framer waiting for the preamble.
    pub fn new() -> SnapshotFramer {
        SnapshotFramer::default()
    }

    /// The preamble, once read.
    pub fn preamble(&self) -> Option<Preamble> {
        self.preamble
    }

    /// Whether the end of the snapshot was seen and checked.
    pub fn is_complete(&self) -> bool {
        self.complete
    }

    /// Bare `\n` keepalives skipped before the preamble.
    pub fn keepalives(&self) -> u64 {
        self.keepalives
    }

    /// Skips keepalives and reads the preamble from the front of `buf`.
    /// `Ok(None)`: read more. Once read, later calls return it again
    /// without consuming anything.
    pub fn feed_preamble(&mut self, buf: &mut BytesMut) -> Result<Option<Preamble>, SnapshotError> {
        if let Some(p) = self.preamble {
            return Ok(Some(p));
        }
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        let r = self.read_preamble(buf);
        match &r {
            Ok(p) => self.preamble = *p,
            Err(e) => self.failed = Some(e.clone()),
        }
        r
    }

    fn read_preamble(&mut self, buf: &mut BytesMut) -> Result<Option<Preamble>, SnapshotError> {
        let newlines = buf.iter().take_while(|&&b| b == b'\n').count();
        buf.advance(newlines);
        self.keepalives += newlines as u64;
        let Some(&first) = buf.first() else {
            return Ok(None);
        };
        match first {
            b'$' => {
                let Some(end) = find_crlf(buf, MAX_PREAMBLE) else {
                    if buf.len() >= MAX_PREAMBLE {
                        return Err(protocol(format!(
                            "no CRLF within {MAX_PREAMBLE} bytes of the preamble {:?}",
                            lossy(&buf[..MAX_PREAMBLE])
                        )));
                    }
                    return Ok(None);
                };
                let body = &buf[1..end];
                let preamble = if let Some(mark) = body.strip_prefix(b"EOF:") {
                    let mark: [u8; MARK_LEN] = mark.try_into().map_err(|_| {
                        protocol(format!(
                            "the end-of-file mark in {:?} is {} bytes, not {MARK_LEN}",
                            lossy(&buf[..end]),
                            mark.len()
                        ))
                    })?;
                    Preamble::Diskless { mark }
                } else {
                    let len = parse_decimal(body).ok_or_else(|| {
                        protocol(format!("invalid RDB length in {:?}", lossy(&buf[..end])))
                    })?;
                    Preamble::Disk { len }
                };
                buf.advance(end + 2);
                Ok(Some(preamble))
            }
            b'-' => {
                let end = match find_crlf(buf, MAX_ERROR_LINE) {
                    Some(end) => end,
                    None if buf.len() >= MAX_ERROR_LINE => MAX_ERROR_LINE,
                    None => return Ok(None),
                };
                Err(SnapshotError::Aborted {
                    message: lossy(&buf[1..end]),
                })
            }
            b => Err(protocol(format!(
                "expected '$' (the snapshot preamble), found byte 0x{b:02x} in {:?}",
                lossy(&buf[..buf.len().min(40)])
            ))),
        }
    }

    /// Advances the transfer: reads the preamble, then decodes the next RDB
    /// record from `buf` with `decoder`, then checks the end. `Ok(None)`:
    /// read more. After `Complete`, keeps returning `Complete` without
    /// consuming anything. Errors are final.
    pub fn next_event(
        &mut self,
        decoder: &mut Decoder,
        buf: &mut BytesMut,
    ) -> Result<Option<SnapshotEvent>, SnapshotError> {
        if self.complete {
            return Ok(Some(SnapshotEvent::Complete));
        }
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        let Some(preamble) = self.preamble else {
            return Ok(self.feed_preamble(buf)?.map(SnapshotEvent::Preamble));
        };
        let r = self.body_step(preamble, decoder, buf);
        if let Err(e) = &r {
            self.failed = Some(e.clone());
        }
        r
    }

    fn body_step(
        &mut self,
        preamble: Preamble,
        decoder: &mut Decoder,
        buf: &mut BytesMut,
    ) -> Result<Option<SnapshotEvent>, SnapshotError> {
        let item = match preamble {
            Preamble::Disk { len } => {
                let left = len
                    .checked_sub(decoder.offset())
                    .ok_or(SnapshotError::Overrun { announced: len })?;
                // Show the decoder only the bytes that belong to the RDB;
                // the rest is command stream. split_off + unsplit is O(1)
                // here: the two halves stay contiguous.
                let visible = usize::try_from(left).map_or(buf.len(), |l| l.min(buf.len()));
                let item = if visible == buf.len() {
                    decoder.decode(buf)?
                } else {
                    let tail = buf.split_off(visible);
                    let r = decoder.decode(buf);
                    buf.unsplit(tail);
                    r?
                };
                // Every byte up to `len` was shown and the decoder still
                // wants more: the RDB is longer than announced.
                let left = len.saturating_sub(decoder.offset());
                if item.is_none() && !decoder.is_done() && buf.len() as u64 >= left {
                    return Err(SnapshotError::Overrun { announced: len });
                }
                item
            }
            Preamble::Diskless { .. } => decoder.decode(buf)?,
        };
        if let Some(item) = item {
            return Ok(Some(SnapshotEvent::Item(item)));
        }
        Ok(self
            .try_complete(decoder, buf)?
            .then_some(SnapshotEvent::Complete))
    }

    /// Checks whether the snapshot is over, given the decoder that has been
    /// fed the RDB bytes from `buf`; call it when the decoder returns
    /// `Ok(None)`. Disk: the decoder is done at exactly `len` bytes.
    /// Diskless: the decoder is done and the next 40 bytes of `buf` are the
    /// mark, which is then consumed; `Ok(false)` while fewer are buffered.
    pub fn try_complete(
        &mut self,
        decoder: &Decoder,
        buf: &mut BytesMut,
    ) -> Result<bool, SnapshotError> {
        if self.complete {
            return Ok(true);
        }
        let Some(preamble) = self.preamble else {
            return Ok(false);
        };
        match preamble {
            Preamble::Disk { len } => {
                let consumed = decoder.offset();
                if consumed > len {
                    return Err(SnapshotError::Overrun { announced: len });
                }
                if !decoder.is_done() {
                    return Ok(false);
                }
                if consumed != len {
                    return Err(SnapshotError::EndedEarly {
                        announced: len,
                        ended_at: consumed,
                    });
                }
            }
            Preamble::Diskless { mark } => {
                if !decoder.is_done() || buf.len() < MARK_LEN {
                    return Ok(false);
                }
                if buf[..MARK_LEN] != mark {
                    return Err(SnapshotError::MarkMismatch {
                        expected: lossy(&mark),
                        found: lossy(&buf[..MARK_LEN]),
                    });
                }
                buf.advance(MARK_LEN);
            }
        }
        self.complete = true;
        Ok(true)
    }
}

/// Index of the first CRLF within the first `limit` bytes of `buf`.
fn find_crlf(buf: &[u8], limit: usize) -> Option<usize> {
    buf[..buf.len().min(limit)]
        .windows(2)
        .position(|w| w == b"\r\n")
}

fn protocol(what: String) -> SnapshotError {
    SnapshotError::Protocol { what }
}

fn lossy(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferry_rdb::build::RdbWriter;
    use ferry_rdb::{DecodeOptions, Flavor};

    const MARK: &[u8; 40] = b"0123456789abcdef0123456789abcdef01234567";

    fn rdb() -> Vec<u8> {
        let mut w = RdbWriter::new("REDIS", 11);
        w.aux(b"redis-ver", b"7.2.0").select_db(0);
        w.key(0, b"greeting").string(b"hello");
        w.select_db(3);
        w.key(0, b"n").string(b"42");
        w.finish()
    }

    /// Runs the framer over `input` fed in pieces of `chunk` bytes.
    fn run(input: &[u8], chunk: usize) -> (Result<Vec<SnapshotEvent>, SnapshotError>, BytesMut) {
        let mut framer = SnapshotFramer::new();
        let mut dec = Decoder::new(DecodeOptions::default());
        let mut buf = BytesMut::new();
        let mut events = Vec::new();
        let mut pieces = input.chunks(chunk.max(1));
        loop {
            match framer.next_event(&mut dec, &mut buf) {
                Ok(Some(SnapshotEvent::Complete)) => {
                    events.push(SnapshotEvent::Complete);
                    // Hand the rest of the input over too.
                    for p in pieces {
                        buf.extend_from_slice(p);
                    }
                    return (Ok(events), buf);
                }
                Ok(Some(e)) => events.push(e),
                Ok(None) => match pieces.next() {
                    Some(p) => buf.extend_from_slice(p),
                    None => return (Ok(events), buf),
                },
                Err(e) => return (Err(e), buf),
            }
        }
    }

    fn keys(events: &[SnapshotEvent]) -> Vec<(u64, Vec<u8>)> {
        events
            .iter()
            .filter_map(|e| match e {
                SnapshotEvent::Item(Item::Key(k)) => Some((k.header.db, k.header.key.to_vec())),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn disk_mode_hands_over_the_stream() {
        let body = rdb();
        let mut input = format!("\n\n\n${}\r\n", body.len()).into_bytes();
        input.extend_from_slice(&body);
        input.extend_from_slice(b"*1\r\n$4\r\nPING\r\n");
        for chunk in [1, 2, 7, 64, 10_000] {
            let (r, rest) = run(&input, chunk);
            let events = r.unwrap();
            assert_eq!(
                events[0],
                SnapshotEvent::Preamble(Preamble::Disk {
                    len: body.len() as u64
                })
            );
            assert_eq!(
                events[1],
                SnapshotEvent::Item(Item::Header {
                    flavor: Flavor::Redis,
                    version: 11
                })
            );
            assert_eq!(
                keys(&events),
                [(0, b"greeting".to_vec()), (3, b"n".to_vec())]
            );
            assert_eq!(events.last(), Some(&SnapshotEvent::Complete));
            assert_eq!(&rest[..], b"*1\r\n$4\r\nPING\r\n", "chunk {chunk}");
        }
    }

    #[test]
    fn diskless_mode_mark_split_across_reads() {
        let body = rdb();
        let mut input = b"\n$EOF:".to_vec();
        input.extend_from_slice(MARK);
        input.extend_from_slice(b"\r\n");
        input.extend_from_slice(&body);
        input.extend_from_slice(MARK);
        for chunk in [1, 3, 39, 41, 10_000] {
            let (r, rest) = run(&input, chunk);
            let events = r.unwrap();
            assert_eq!(
                events[0],
                SnapshotEvent::Preamble(Preamble::Diskless { mark: *MARK })
            );
            assert_eq!(keys(&events).len(), 2);
            assert_eq!(
                events.last(),
                Some(&SnapshotEvent::Complete),
                "chunk {chunk}"
            );
            assert!(rest.is_empty());
        }
        // Without the mark's last byte: not complete, no error.
        let (r, rest) = run(&input[..input.len() - 1], 5);
        assert_ne!(r.unwrap().last(), Some(&SnapshotEvent::Complete));
        assert_eq!(rest.len(), 39);
    }

    #[test]
    fn wrong_mark() {
        let mut input = b"$EOF:".to_vec();
        input.extend_from_slice(MARK);
        input.extend_from_slice(b"\r\n");
        input.extend_from_slice(&rdb());
        input.extend_from_slice(&[b'x'; 40]);
        let (r, _) = run(&input, 100);
        assert!(matches!(r, Err(SnapshotError::MarkMismatch { .. })));
    }

    #[test]
    fn disk_length_mismatch() {
        let body = rdb();
        // Announced longer than the file: the EOF record ends early.
        let mut input = format!("${}\r\n", body.len() + 3).into_bytes();
        input.extend_from_slice(&body);
        input.extend_from_slice(b"*1\r");
        let (r, _) = run(&input, 4);
        assert_eq!(
            r.unwrap_err(),
            SnapshotError::EndedEarly {
                announced: body.len() as u64 + 3,
                ended_at: body.len() as u64
            }
        );
        // Announced shorter: the decoder never sees past it.
        let mut input = format!("${}\r\n", body.len() - 3).into_bytes();
        input.extend_from_slice(&body);
        let (r, _) = run(&input, 4);
        assert_eq!(
            r.unwrap_err(),
            SnapshotError::Overrun {
                announced: body.len() as u64 - 3
            }
        );
    }

    #[test]
    fn master_abort_and_bad_preambles() {
        let (r, _) = run(b"\n\n-ERR BGSAVE failed\r\n", 3);
        let e = r.unwrap_err();
        assert_eq!(
            e,
            SnapshotError::Aborted {
                message: "ERR BGSAVE failed".into()
            }
        );
        assert!(e.retriable());
        for bad in [
            &b"$EOF:short\r\n"[..],
            b"$-1\r\n",
            b"$12a\r\n",
            b"+OK\r\n",
            b"$123456789012345678901234567890\r\n",
        ] {
            let (r, _) = run(bad, 2);
            assert!(
                matches!(r, Err(SnapshotError::Protocol { .. })),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
        let (r, _) = run(&[b'$'; 100], 100);
        assert!(matches!(r, Err(SnapshotError::Protocol { .. })));
        // An incomplete preamble is not an error.
        let (r, _) = run(b"$12", 1);
        assert_eq!(r.unwrap(), []);
    }

    #[test]
    fn errors_are_final() {
        let mut framer = SnapshotFramer::new();
        let mut dec = Decoder::new(DecodeOptions::default());
        let mut buf = BytesMut::from(&b"+x\r\n"[..]);
        let e = framer.next_event(&mut dec, &mut buf).unwrap_err();
        let mut buf = BytesMut::from(&b"$1\r\n"[..]);
        assert_eq!(framer.next_event(&mut dec, &mut buf), Err(e));
    }
}

//! Property tests: every decoder in this crate gives the same results when
//! its input arrives in pieces of any size, and no input makes it panic.

use bytes::{Bytes, BytesMut};
use ferry_rdb::build::RdbWriter;
use ferry_rdb::{DecodeOptions, Decoder};
use ferry_replica::{
    Auth, CommandStream, Handshake, HandshakeConfig, HandshakeError, Outcome, Position,
    SnapshotError, SnapshotEvent, SnapshotFramer, StreamError, StreamEvent, Warning,
};
use proptest::prelude::*;

const ID: &str = "8f5b2c6e1d0a9b7c3e4f5a6b7c8d9e0f1a2b3c4d";
const ID2: &str = "0123456789abcdef0123456789abcdef01234567";

/// Splits `input` at the cut sizes (cycled), never producing empty pieces.
fn pieces<'a>(input: &'a [u8], cuts: &[usize]) -> Vec<&'a [u8]> {
    let mut out = Vec::new();
    let mut rest = input;
    let mut i = 0;
    while !rest.is_empty() {
        let n = cuts
            .get(i % cuts.len().max(1))
            .copied()
            .unwrap_or(usize::MAX)
            .clamp(1, rest.len());
        out.push(&rest[..n]);
        rest = &rest[n..];
        i += 1;
    }
    out
}

type HsResult = (
    Result<Option<Outcome>, HandshakeError>,
    Vec<Warning>,
    u64,
    Vec<u8>,
);

/// Runs a handshake over `chunks` like a driver would: write what it asks
/// for, feed what arrives.
fn drive_handshake(cfg: &HandshakeConfig, chunks: &[&[u8]]) -> HsResult {
    let mut hs = Handshake::new(cfg.clone());
    let mut buf = BytesMut::new();
    let mut r = Ok(None);
    let mut chunks = chunks.iter();
    hs.take_requests();
    for chunk in chunks.by_ref() {
        buf.extend_from_slice(chunk);
        loop {
            r = hs.feed(&mut buf);
            if r != Ok(None) || hs.take_requests().is_empty() {
                break;
            }
        }
        if r != Ok(None) {
            break;
        }
    }
    for chunk in chunks {
        buf.extend_from_slice(chunk);
    }
    (r, hs.warnings().to_vec(), hs.keepalives(), buf.to_vec())
}

fn setup_reply() -> impl Strategy<Value = &'static str> {
    prop_oneof![
        4 => Just("+OK\r\n"),
        1 => Just("-ERR Unrecognized REPLCONF option: version\r\n"),
        1 => Just("-NOPERM nope\r\n"),
        1 => Just("-NOAUTH Authentication required.\r\n"),
    ]
}

fn psync_reply() -> impl Strategy<Value = String> {
    prop_oneof![
        (0u64..u64::MAX).prop_map(|o| format!("+FULLRESYNC {ID} {o}\r\n")),
        Just(format!("+CONTINUE {ID}\r\n")),
        Just(format!("+CONTINUE {ID2}\r\n")),
        Just("+CONTINUE\r\n".to_string()),
        Just("-LOADING Redis is loading the dataset in memory\r\n".to_string()),
        Just("-NOMASTERLINK Can't SYNC while not connected with my master\r\n".to_string()),
        Just("-ERR unknown command 'PSYNC'\r\n".to_string()),
        Just("+FULLRESYNC nope 1\r\n".to_string()),
    ]
}

prop_compose! {
    fn handshake_case()(
        auth in any::<bool>(),
        port in proptest::option::of(any::<u16>()),
        version in any::<bool>(),
        resume in any::<bool>(),
        ping in prop_oneof![Just("+PONG\r\n"), Just("-NOAUTH Authentication required.\r\n")],
        auth_reply in prop_oneof![3 => Just("+OK\r\n"), 1 => Just("-WRONGPASS invalid username-password pair\r\n")],
        setup in proptest::collection::vec(setup_reply(), 3),
        keepalives in 0usize..4,
        psync in psync_reply(),
        tail in proptest::collection::vec(any::<u8>(), 0..20),
    ) -> (HandshakeConfig, Vec<u8>) {
        let cfg = HandshakeConfig {
            auth: if auth { Auth::password("pw") } else { Auth::none() },
            listening_port: port,
            announce_version: version.then(|| "9.0.0".to_string()),
            resume: resume.then(|| Position { replid: ID.into(), offset: 99, db: 1 }),
        };
        let mut wire = ping.to_string();
        if auth {
            wire.push_str(auth_reply);
        }
        let n = 1 + usize::from(port.is_some()) + usize::from(version);
        for r in &setup[..n] {
            wire.push_str(r);
        }
        wire.push_str(&"\n".repeat(keepalives));
        wire.push_str(&psync);
        let mut wire = wire.into_bytes();
        wire.extend_from_slice(&tail);
        (cfg, wire)
    }
}

fn command(args: &[&[u8]]) -> Vec<u8> {
    let mut out = Vec::new();
    ferry_resp::write_command(&mut out, args);
    out
}

/// One unit of a generated stream: a few encoded commands.
fn stream_unit() -> impl Strategy<Value = Vec<u8>> {
    let arg = proptest::collection::vec(any::<u8>(), 0..12);
    prop_oneof![
        4 => (proptest::collection::vec(arg.clone(), 1..4)).prop_map(|args| {
            let mut all: Vec<&[u8]> = vec![b"SET"];
            all.extend(args.iter().map(Vec::as_slice));
            command(&all)
        }),
        1 => (0u64..20).prop_map(|db| command(&[b"SELECT", db.to_string().as_bytes()])),
        1 => Just(command(&[b"PING"])),
        1 => Just(command(&[b"REPLCONF", b"GETACK", b"*"])),
        1 => Just(command(&[b"REPLCONF", b"TIMESTAMP", b"1700000000000"])),
        1 => ((0u64..4), proptest::collection::vec(arg, 1..3)).prop_map(|(db, args)| {
            let mut out = command(&[b"MULTI"]);
            out.extend(command(&[b"SELECT", db.to_string().as_bytes()]));
            for a in &args {
                out.extend(command(&[b"INCR", a]));
            }
            out.extend(command(&[b"EXEC"]));
            out
        }),
    ]
}

type StreamResult = (Vec<StreamEvent>, Option<StreamError>, u64, Vec<u8>);

fn drive_stream(start: u64, chunks: &[&[u8]]) -> StreamResult {
    let mut s = CommandStream::new(start, 0);
    let mut buf = BytesMut::new();
    let mut events = Vec::new();
    for chunk in chunks {
        buf.extend_from_slice(chunk);
        loop {
            match s.next_event(&mut buf) {
                Ok(Some(e)) => events.push(e),
                Ok(None) => break,
                Err(e) => return (events, Some(e), s.offset(), buf.to_vec()),
            }
        }
    }
    (events, None, s.offset(), buf.to_vec())
}

type SnapResult = (Vec<SnapshotEvent>, Option<SnapshotError>, Vec<u8>);

fn drive_snapshot(chunks: &[&[u8]]) -> SnapResult {
    let mut framer = SnapshotFramer::new();
    let mut dec = Decoder::new(DecodeOptions::default());
    let mut buf = BytesMut::new();
    let mut events = Vec::new();
    let mut chunks = chunks.iter();
    loop {
        match framer.next_event(&mut dec, &mut buf) {
            Ok(Some(SnapshotEvent::Complete)) => {
                events.push(SnapshotEvent::Complete);
                break;
            }
            Ok(Some(e)) => events.push(e),
            Ok(None) => match chunks.next() {
                Some(c) => buf.extend_from_slice(c),
                None => break,
            },
            Err(e) => return (events, Some(e), Vec::new()),
        }
    }
    for c in chunks {
        buf.extend_from_slice(c);
    }
    (events, None, buf.to_vec())
}

fn rdb(keys: &[(u8, Vec<u8>, Vec<u8>)]) -> Vec<u8> {
    let mut w = RdbWriter::new("REDIS", 11);
    w.aux(b"repl-stream-db", b"0");
    for (db, k, v) in keys {
        w.select_db(u64::from(*db));
        w.key(0, k).string(v);
    }
    w.finish()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn handshake_chunking_is_invisible((cfg, wire) in handshake_case(), cuts in proptest::collection::vec(1usize..16, 1..8)) {
        let whole = drive_handshake(&cfg, &[&wire]);
        let chunked = drive_handshake(&cfg, &pieces(&wire, &cuts));
        prop_assert_eq!(&whole, &chunked);
        // The PSYNC reply is always decisive here, and the tail is untouched.
        prop_assert_ne!(&whole.0, &Ok(None));
    }

    #[test]
    fn stream_chunking_is_invisible(
        units in proptest::collection::vec(stream_unit(), 0..20),
        start in 0u64..1 << 40,
        cuts in proptest::collection::vec(1usize..40, 1..8),
    ) {
        let wire = units.concat();
        let whole = drive_stream(start, &[&wire]);
        let chunked = drive_stream(start, &pieces(&wire, &cuts));
        prop_assert_eq!(&whole, &chunked);
        // Every byte is counted, every command seen, nothing left over.
        prop_assert!(whole.1.is_none());
        prop_assert_eq!(whole.2, start + wire.len() as u64);
        prop_assert!(whole.3.is_empty());
        let mut prev = start;
        for e in &whole.0 {
            prop_assert!(e.end_offset() > prev);
            prev = e.end_offset();
        }
    }

    #[test]
    fn snapshot_chunking_is_invisible(
        keys in proptest::collection::vec((0u8..4, proptest::collection::vec(any::<u8>(), 1..10), proptest::collection::vec(any::<u8>(), 0..300)), 0..12),
        diskless in any::<bool>(),
        keepalives in 0usize..3,
        after in proptest::collection::vec(any::<u8>(), 0..30),
        cuts in proptest::collection::vec(1usize..64, 1..8),
    ) {
        let body = rdb(&keys);
        let mark = *b"aaaaaaaaaabbbbbbbbbbccccccccccdddddddddd";
        let mut wire = vec![b'\n'; keepalives];
        if diskless {
            wire.extend_from_slice(b"$EOF:");
            wire.extend_from_slice(&mark);
            wire.extend_from_slice(b"\r\n");
            wire.extend_from_slice(&body);
            wire.extend_from_slice(&mark);
        } else {
            wire.extend_from_slice(format!("${}\r\n", body.len()).as_bytes());
            wire.extend_from_slice(&body);
        }
        wire.extend_from_slice(&after);
        let whole = drive_snapshot(&[&wire]);
        let chunked = drive_snapshot(&pieces(&wire, &cuts));
        prop_assert_eq!(&whole, &chunked);
        prop_assert!(whole.1.is_none());
        prop_assert_eq!(whole.0.last(), Some(&SnapshotEvent::Complete));
        prop_assert_eq!(&whole.2, &after);
        let n_keys = whole.0.iter().filter(|e| matches!(e, SnapshotEvent::Item(ferry_rdb::Item::Key(_)))).count();
        prop_assert_eq!(n_keys, keys.len());
    }

    #[test]
    fn arbitrary_bytes_never_panic(
        bytes in proptest::collection::vec(any::<u8>(), 0..300),
        cuts in proptest::collection::vec(1usize..32, 1..4),
        prefix in prop_oneof![Just(&b""[..]), Just(&b"+PONG\r\n+OK\r\n"[..]), Just(&b"$EOF:"[..]), Just(&b"*"[..]), Just(&b"$10\r\nREDIS0011"[..])],
    ) {
        let mut input = prefix.to_vec();
        input.extend_from_slice(&bytes);
        let chunks = pieces(&input, &cuts);
        let cfg = HandshakeConfig {
            resume: Some(Position { replid: ID.into(), offset: u64::MAX, db: 0 }),
            ..HandshakeConfig::default()
        };
        let _ = drive_handshake(&cfg, &chunks);
        let _ = drive_handshake(&HandshakeConfig::default(), &chunks);
        let _ = drive_stream(u64::MAX - 10, &chunks);
        let _ = drive_stream(0, &chunks);
        let _ = drive_snapshot(&chunks);
    }

    #[test]
    fn arbitrary_commands_are_counted_exactly(
        cmds in proptest::collection::vec(proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..8), 0..5), 0..20),
    ) {
        // Any array of bulk strings decodes; only SELECT/MULTI/EXEC can be refused.
        let mut wire = Vec::new();
        for c in &cmds {
            let args: Vec<Bytes> = c.iter().map(|a| Bytes::copy_from_slice(a)).collect();
            ferry_resp::write_command(&mut wire, &args);
        }
        let (events, err, offset, _) = drive_stream(0, &[&wire]);
        let counted = events.last().map_or(0, StreamEvent::end_offset);
        prop_assert_eq!(offset, counted);
        if err.is_none() {
            prop_assert_eq!(offset, wire.len() as u64);
            prop_assert_eq!(events.len(), cmds.len());
        }
    }
}

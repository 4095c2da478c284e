//! The sans-IO link against real servers: handshake, snapshot (disk and
//! diskless), command stream with exact offsets, ACK, partial resync, and
//! authentication errors. A plain blocking `TcpStream` plays the driver.

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use ferry_rdb::{DecodeOptions, Decoder, Flavor as RdbFlavor, Item, Value};
use ferry_replica::{
    Auth, CommandStream, Handshake, HandshakeConfig, HandshakeError, Outcome, Position, Preamble,
    SnapshotEvent, SnapshotFramer, StreamEvent, ack_command,
};
use ferry_testkit::{Flavor, Server, info_field};

/// Upper bound for any single wait in these tests.
const DEADLINE: Duration = Duration::from_secs(20);
const LISTENING_PORT: u16 = 7777;

/// The driver: a socket, a read buffer and a deadline.
struct Link {
    sock: TcpStream,
    buf: BytesMut,
    deadline: Instant,
}

impl Link {
    fn connect(server: &Server) -> Link {
        let sock = TcpStream::connect(("127.0.0.1", server.port())).expect("connect");
        sock.set_read_timeout(Some(Duration::from_millis(50)))
            .unwrap();
        sock.set_write_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        sock.set_nodelay(true).unwrap();
        Link {
            sock,
            buf: BytesMut::with_capacity(64 * 1024),
            deadline: Instant::now() + DEADLINE,
        }
    }

    fn send(&mut self, bytes: &[u8]) {
        self.sock.write_all(bytes).expect("write to the source");
    }

    /// Reads what is available (waits up to the socket timeout).
    fn read_more(&mut self, what: &str) {
        assert!(
            Instant::now() < self.deadline,
            "timed out waiting for {what}; buffered: {:?}",
            String::from_utf8_lossy(&self.buf[..self.buf.len().min(200)])
        );
        let mut chunk = [0u8; 16 * 1024];
        match self.sock.read(&mut chunk) {
            Ok(0) => panic!("the source closed the connection while waiting for {what}"),
            Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(e) => panic!("read error while waiting for {what}: {e}"),
        }
    }

    fn handshake(&mut self, cfg: HandshakeConfig) -> (Result<Outcome, HandshakeError>, Handshake) {
        let mut hs = Handshake::new(cfg);
        let mut out = hs.take_request_bytes();
        loop {
            if !out.is_empty() {
                self.send(&out);
            }
            match hs.feed(&mut self.buf) {
                Ok(Some(o)) => return (Ok(o), hs),
                Err(e) => return (Err(e), hs),
                Ok(None) => {}
            }
            out = hs.take_request_bytes();
            if out.is_empty() {
                self.read_more("the handshake replies");
            }
        }
    }

    fn snapshot(&mut self) -> (Preamble, Vec<Item>) {
        let mut framer = SnapshotFramer::new();
        let mut dec = Decoder::new(DecodeOptions::default());
        let mut items = Vec::new();
        loop {
            match framer
                .next_event(&mut dec, &mut self.buf)
                .expect("snapshot")
            {
                Some(SnapshotEvent::Complete) => break,
                Some(SnapshotEvent::Item(i)) => items.push(i),
                Some(SnapshotEvent::Preamble(_)) => {}
                None => self.read_more("the snapshot"),
            }
        }
        (framer.preamble().expect("preamble"), items)
    }

    /// Reads the stream until `want` data commands arrived and the offset
    /// equals the source's `master_repl_offset`.
    fn stream_until(
        &mut self,
        stream: &mut CommandStream,
        server: &Server,
        want: usize,
    ) -> Vec<StreamEvent> {
        let mut events = Vec::new();
        let mut last_ack = Instant::now();
        loop {
            // ACK periodically, like a real replica's cron: a diskless master
            // starts the stream on the first ACK it gets *after* it marked
            // the replica online, which can be later than the ACK sent right
            // after the mark.
            if last_ack.elapsed() > Duration::from_millis(100) {
                self.send(&ack_command(stream.checkpoint().offset));
                last_ack = Instant::now();
            }
            while let Some(e) = stream.next_event(&mut self.buf).expect("stream") {
                if let StreamEvent::GetAck { end_offset } = e {
                    self.send(&ack_command(end_offset));
                }
                events.push(e);
            }
            let commands = events
                .iter()
                .filter(|e| matches!(e, StreamEvent::Command { .. }))
                .count();
            if commands >= want {
                let master = master_offset(server);
                assert!(
                    stream.offset() <= master,
                    "counted {} bytes but the source is at {master}",
                    stream.offset()
                );
                if stream.offset() == master {
                    return events;
                }
            }
            self.read_more("the command stream");
        }
    }
}

fn master_offset(server: &Server) -> u64 {
    info_field(&server.info("replication"), "master_repl_offset")
        .expect("master_repl_offset")
        .parse()
        .expect("offset")
}

fn query(conn: &mut redis::Connection, args: &[&str]) {
    let mut cmd = redis::cmd(args[0]);
    for a in &args[1..] {
        cmd.arg(*a);
    }
    cmd.query::<redis::Value>(conn).expect("query");
}

/// `(db, name args…)` of the data commands.
fn data_commands(events: &[StreamEvent]) -> Vec<(u64, String)> {
    events
        .iter()
        .filter_map(|e| match e {
            StreamEvent::Command { cmd, db, .. } => Some((
                *db,
                cmd.args
                    .iter()
                    .map(|a| String::from_utf8_lossy(a).into_owned())
                    .collect::<Vec<_>>()
                    .join(" "),
            )),
            _ => None,
        })
        .collect()
}

/// Full sync, snapshot check, stream check. Returns what a resume needs.
fn full_sync_and_stream(
    flavor: Flavor,
    diskless: bool,
    announce: Option<&str>,
) -> (Server, Position) {
    let server = Server::builder(flavor)
        .arg("repl-diskless-sync", if diskless { "yes" } else { "no" })
        .start()
        .expect("server");
    let mut conn = server.conn();
    query(&mut conn, &["SET", "s", "hello"]);
    query(&mut conn, &["SET", "n", "42"]);
    query(&mut conn, &["RPUSH", "l", "a", "b", "c"]);
    query(&mut conn, &["HSET", "h", "f", "v"]);
    let mut conn2 = server.conn();
    query(&mut conn2, &["SELECT", "2"]);
    query(&mut conn2, &["SET", "k2", "v2"]);

    let mut link = Link::connect(&server);
    let (outcome, hs) = link.handshake(HandshakeConfig {
        listening_port: Some(LISTENING_PORT),
        announce_version: announce.map(str::to_string),
        ..HandshakeConfig::default()
    });
    let Outcome::FullResync { replid, offset } = outcome.expect("handshake") else {
        panic!("expected a full resync");
    };
    let info = server.info("replication");
    assert_eq!(
        info_field(&info, "master_replid").as_deref(),
        Some(&*replid)
    );
    let version_warned = hs
        .warnings()
        .iter()
        .any(|w| w.request == "REPLCONF version");
    assert_eq!(
        version_warned,
        announce.is_some() && flavor != Flavor::Valkey9,
        "{:?}",
        hs.warnings()
    );

    let (preamble, items) = link.snapshot();
    match (diskless, preamble) {
        (false, Preamble::Disk { len }) => assert!(len > 9),
        (true, Preamble::Diskless { mark }) => assert!(mark.iter().all(u8::is_ascii_alphanumeric)),
        other => panic!("unexpected preamble for diskless={diskless}: {other:?}"),
    }
    let expected_header = if flavor == Flavor::Valkey9 && announce.is_some() {
        Item::Header {
            flavor: RdbFlavor::Valkey,
            version: 80,
        }
    } else {
        Item::Header {
            flavor: RdbFlavor::Redis,
            version: flavor.rdb_version(),
        }
    };
    assert_eq!(items.first(), Some(&expected_header));
    let mut keys: Vec<(u64, String)> = items
        .iter()
        .filter_map(|i| match i {
            Item::Key(k) => Some((
                k.header.db,
                String::from_utf8_lossy(&k.header.key).into_owned(),
            )),
            _ => None,
        })
        .collect();
    keys.sort();
    assert_eq!(
        keys,
        [(0, "h"), (0, "l"), (0, "n"), (0, "s"), (2, "k2")].map(|(d, k)| (d, k.to_string()))
    );
    let s = items.iter().find_map(|i| match i {
        Item::Key(k) if k.header.key == "s" => Some(k.value.clone()),
        _ => None,
    });
    assert_eq!(s, Some(Value::String("hello".into())));

    // The first ACK: a diskless master streams nothing before it.
    link.send(&ack_command(offset));

    query(&mut conn, &["SET", "a", "1"]);
    query(&mut conn, &["INCR", "counter"]);
    redis::pipe()
        .atomic()
        .cmd("SET")
        .arg("x")
        .arg("y")
        .cmd("INCR")
        .arg("counter")
        .query::<redis::Value>(&mut conn)
        .expect("MULTI/EXEC");
    query(&mut conn2, &["SELECT", "3"]);
    query(&mut conn2, &["SET", "k3", "v3"]);

    let mut stream = CommandStream::new(offset, 0);
    let events = link.stream_until(&mut stream, &server, 5);
    assert_eq!(
        data_commands(&events),
        [
            (0, "SET a 1"),
            (0, "INCR counter"),
            (0, "SET x y"),
            (0, "INCR counter"),
            (3, "SET k3 v3"),
        ]
        .map(|(d, c)| (d, c.to_string()))
    );
    // After a full sync the source re-selects before its first command.
    let first_select = events
        .iter()
        .position(|e| matches!(e, StreamEvent::Select { .. }));
    let first_command = events
        .iter()
        .position(|e| matches!(e, StreamEvent::Command { .. }));
    assert!(first_select < first_command, "{events:?}");
    assert!(matches!(
        events[first_select.unwrap_or(0)],
        StreamEvent::Select { db: 0, .. }
    ));
    let multi = events
        .iter()
        .position(|e| matches!(e, StreamEvent::Multi { .. }))
        .expect("MULTI");
    assert!(matches!(events[multi + 3], StreamEvent::Exec { .. }));
    assert!(
        events
            .iter()
            .any(|e| matches!(e, StreamEvent::Select { db: 3, .. }))
    );
    assert_eq!(stream.checkpoint_offset(), Some(stream.offset()));
    assert_eq!(stream.db(), 3);

    // ACK the offset; the source shows it for our listening port.
    link.send(&ack_command(stream.offset()));
    let want = format!(
        "port={LISTENING_PORT},state=online,offset={},",
        stream.offset()
    );
    let until = Instant::now() + DEADLINE;
    loop {
        let info = server.info("replication");
        if info.contains(&want) {
            break;
        }
        assert!(Instant::now() < until, "no {want} in {info}");
        std::thread::sleep(Duration::from_millis(20));
    }
    let checkpoint = stream.checkpoint();
    (
        server,
        Position {
            replid,
            offset: checkpoint.offset,
            db: checkpoint.db,
        },
    )
}

#[test]
fn redis70_disk_sync_and_stream() {
    full_sync_and_stream(Flavor::Redis70, false, None);
}

#[test]
fn redis70_diskless_sync_stream_and_resume() {
    let (server, position) = full_sync_and_stream(Flavor::Redis70, true, Some("9.0.0"));

    // A new link resumes where the first one stopped: no snapshot, no SELECT.
    let mut link = Link::connect(&server);
    let (outcome, _) = link.handshake(HandshakeConfig {
        resume: Some(position.clone()),
        ..HandshakeConfig::default()
    });
    assert_eq!(
        outcome.expect("handshake"),
        Outcome::Continue { replid: None }
    );
    let mut conn = server.conn();
    query(&mut conn, &["SELECT", "3"]);
    query(&mut conn, &["SET", "r", "1"]);
    let mut stream = CommandStream::new(position.offset, position.db);
    let events = link.stream_until(&mut stream, &server, 1);
    assert_eq!(data_commands(&events), [(3, "SET r 1".to_string())]);
}

#[test]
fn valkey9_diskless_announced_version_gets_valkey080() {
    full_sync_and_stream(Flavor::Valkey9, true, Some("9.0.0"));
}

#[test]
fn wrong_or_missing_password() {
    let server = Server::builder(Flavor::Redis70)
        .password("secret")
        .start()
        .expect("server");
    let mut link = Link::connect(&server);
    let (r, _) = link.handshake(HandshakeConfig {
        auth: Auth::password("nope"),
        ..HandshakeConfig::default()
    });
    let e = r.unwrap_err();
    assert!(matches!(e, HandshakeError::WrongPassword { .. }), "{e}");
    assert!(!e.retriable());

    let mut link = Link::connect(&server);
    let (r, hs) = link.handshake(HandshakeConfig::default());
    assert!(matches!(r, Err(HandshakeError::NoAuth { .. })), "{r:?}");
    // PING's -NOAUTH was tolerated; REPLCONF's was fatal.
    assert_eq!(hs.warnings().len(), 1);

    let mut link = Link::connect(&server);
    let (r, _) = link.handshake(HandshakeConfig {
        auth: Auth::user("default", "secret"),
        ..HandshakeConfig::default()
    });
    assert!(matches!(r, Ok(Outcome::FullResync { .. })), "{r:?}");
}

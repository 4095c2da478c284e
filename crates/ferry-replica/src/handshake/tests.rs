//! Unit tests of the handshake state machine: replies fed as bytes, the
//! commands it writes and the outcomes and errors it reports checked.

use super::*;

const ID: &str = "8f5b2c6e1d0a9b7c3e4f5a6b7c8d9e0f1a2b3c4d";
const ID2: &str = "0123456789abcdef0123456789abcdef01234567";

fn run(
    cfg: HandshakeConfig,
    replies: &[u8],
) -> (Handshake, Result<Option<Outcome>, HandshakeError>, BytesMut) {
    let mut hs = Handshake::new(cfg);
    let setup = hs.take_requests();
    assert!(!setup.is_empty());
    let mut buf = BytesMut::from(replies);
    let mut r = hs.feed(&mut buf);
    if let Ok(None) = r {
        let psync = hs.take_requests();
        if !psync.is_empty() {
            r = hs.feed(&mut buf);
        }
    }
    (hs, r, buf)
}

fn names(reqs: &[Vec<Bytes>]) -> Vec<String> {
    reqs.iter()
        .map(|r| {
            r.iter()
                .map(|a| String::from_utf8_lossy(a).into_owned())
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect()
}

#[test]
fn requests_in_order_psync_last() {
    let mut hs = Handshake::new(HandshakeConfig {
        auth: Auth::user("repl", "pw"),
        listening_port: Some(6380),
        announce_version: Some("9.0.0".into()),
        resume: Some(Position {
            replid: ID.into(),
            offset: 41,
            db: 2,
        }),
    });
    assert_eq!(
        names(&hs.take_requests()),
        [
            "PING",
            "AUTH repl pw",
            "REPLCONF listening-port 6380",
            "REPLCONF capa eof capa psync2",
            "REPLCONF version 9.0.0",
        ]
    );
    // PSYNC waits for the five replies.
    assert!(hs.take_requests().is_empty());
    let mut buf = BytesMut::from(&b"+PONG\r\n+OK\r\n+OK\r\n+OK\r\n"[..]);
    assert_eq!(hs.feed(&mut buf), Ok(None));
    assert!(hs.take_requests().is_empty());
    buf.extend_from_slice(b"+OK\r\n");
    assert_eq!(hs.feed(&mut buf), Ok(None));
    assert_eq!(names(&hs.take_requests()), [format!("PSYNC {ID} 42")]);
    assert!(hs.take_requests().is_empty());
}

#[test]
fn minimal_config_and_wire_bytes() {
    let mut hs = Handshake::new(HandshakeConfig::default());
    assert_eq!(
        hs.take_request_bytes(),
        b"*1\r\n$4\r\nPING\r\n*5\r\n$8\r\nREPLCONF\r\n$4\r\ncapa\r\n$3\r\neof\r\n$4\r\ncapa\r\n$6\r\npsync2\r\n"
    );
    let mut buf = BytesMut::from(&b"+PONG\r\n+OK\r\n"[..]);
    assert_eq!(hs.feed(&mut buf), Ok(None));
    assert_eq!(
        hs.take_request_bytes(),
        b"*3\r\n$5\r\nPSYNC\r\n$1\r\n?\r\n$2\r\n-1\r\n"
    );
}

#[test]
fn fullresync_leaves_the_preamble() {
    let replies = format!("+PONG\r\n+OK\r\n\n\n+FULLRESYNC {ID} 1234\r\n$EOF:");
    let (hs, r, buf) = run(HandshakeConfig::default(), replies.as_bytes());
    assert_eq!(
        r,
        Ok(Some(Outcome::FullResync {
            replid: ID.into(),
            offset: 1234
        }))
    );
    assert_eq!(&buf[..], b"$EOF:");
    assert_eq!(hs.keepalives(), 2);
    assert!(hs.warnings().is_empty());
}

fn resume() -> HandshakeConfig {
    HandshakeConfig {
        resume: Some(Position {
            replid: ID.into(),
            offset: 100,
            db: 0,
        }),
        ..HandshakeConfig::default()
    }
}

#[test]
fn continue_same_new_and_absent_id() {
    let r = run(
        resume(),
        format!("+PONG\r\n+OK\r\n\n\n+CONTINUE {ID}\r\n*1\r\n").as_bytes(),
    );
    assert_eq!(r.1, Ok(Some(Outcome::Continue { replid: None })));
    assert_eq!(&r.2[..], b"*1\r\n");
    let r = run(
        resume(),
        format!("+PONG\r\n+OK\r\n+CONTINUE {ID2}\r\n").as_bytes(),
    );
    assert_eq!(
        r.1,
        Ok(Some(Outcome::Continue {
            replid: Some(ID2.into())
        }))
    );
    let r = run(resume(), b"+PONG\r\n+OK\r\n+CONTINUE\r\n");
    assert_eq!(r.1, Ok(Some(Outcome::Continue { replid: None })));
    // Without a resume position, +CONTINUE makes no sense.
    let r = run(
        HandshakeConfig::default(),
        format!("+PONG\r\n+OK\r\n+CONTINUE {ID}\r\n").as_bytes(),
    );
    assert!(matches!(r.1, Err(HandshakeError::Protocol { .. })));
}

fn with_auth() -> HandshakeConfig {
    HandshakeConfig {
        auth: Auth::password("nope"),
        ..HandshakeConfig::default()
    }
}

#[test]
fn wrong_password_both_spellings() {
    for reply in [
        "-WRONGPASS invalid username-password pair or user is disabled.\r\n",
        "-ERR invalid password\r\n",
    ] {
        let replies = format!(
            "-NOAUTH Authentication required.\r\n{reply}-NOAUTH Authentication required.\r\n"
        );
        let (hs, r, _) = run(with_auth(), replies.as_bytes());
        let e = r.unwrap_err();
        assert!(matches!(e, HandshakeError::WrongPassword { .. }), "{e}");
        assert!(!e.retriable());
        // The PING error was ignored.
        assert_eq!(hs.warnings().len(), 1);
        assert_eq!(hs.warnings()[0].request, "PING");
    }
}

#[test]
fn noauth_without_password() {
    let (_, r, _) = run(
        HandshakeConfig::default(),
        b"-NOAUTH Authentication required.\r\n-NOAUTH Authentication required.\r\n",
    );
    assert!(matches!(r, Err(HandshakeError::NoAuth { .. })));
}

/// A reply, a check of the error it gives, and whether that is retriable.
type Case = (&'static str, fn(&HandshakeError) -> bool, bool);

#[test]
fn psync_errors_classified() {
    let cases: [Case; 6] = [
        (
            "-LOADING Redis is loading the dataset in memory",
            |e| matches!(e, HandshakeError::Loading { .. }),
            true,
        ),
        (
            "-NOMASTERLINK Can't SYNC while not connected with my master",
            |e| matches!(e, HandshakeError::NoMasterLink { .. }),
            true,
        ),
        (
            "-ERR unknown command 'PSYNC', with args beginning with: ",
            |e| matches!(e, HandshakeError::PsyncRefused { .. }),
            false,
        ),
        (
            "-NOPERM this user has no permissions to run the 'psync' command",
            |e| {
                matches!(
                    e,
                    HandshakeError::NoPermission {
                        command: "PSYNC",
                        ..
                    }
                )
            },
            false,
        ),
        (
            "-NOAUTH Authentication required.",
            |e| matches!(e, HandshakeError::NoAuth { .. }),
            false,
        ),
        (
            "+WHATEVER",
            |e| matches!(e, HandshakeError::Protocol { .. }),
            false,
        ),
    ];
    for (reply, is, retriable) in cases {
        let (_, r, _) = run(
            HandshakeConfig::default(),
            format!("+PONG\r\n+OK\r\n{reply}\r\n").as_bytes(),
        );
        let e = r.unwrap_err();
        assert!(is(&e), "{reply}: {e:?}");
        assert_eq!(e.retriable(), retriable, "{reply}");
        assert!(!e.to_string().is_empty());
    }
}

#[test]
fn replconf_errors_are_warnings_except_auth_and_acl() {
    let cfg = HandshakeConfig {
        listening_port: Some(1),
        announce_version: Some("9.0.0".into()),
        ..HandshakeConfig::default()
    };
    let replies = format!(
        "+PONG\r\n-ERR port?\r\n-ERR capa?\r\n-ERR Unrecognized REPLCONF option: version\r\n+FULLRESYNC {ID} 0\r\n"
    );
    let (hs, r, _) = run(cfg.clone(), replies.as_bytes());
    assert!(matches!(r, Ok(Some(Outcome::FullResync { offset: 0, .. }))));
    let reqs: Vec<_> = hs.warnings().iter().map(|w| w.request).collect();
    assert_eq!(
        reqs,
        [
            "REPLCONF listening-port",
            "REPLCONF capa",
            "REPLCONF version"
        ]
    );
    assert_eq!(
        hs.warnings()[2].to_string(),
        "REPLCONF version answered -ERR Unrecognized REPLCONF option: version (ignored)"
    );

    let (_, r, _) = run(cfg, b"+PONG\r\n-NOPERM no\r\n");
    assert!(matches!(
        r,
        Err(HandshakeError::NoPermission {
            command: "REPLCONF",
            ..
        })
    ));
}

#[test]
fn malformed_fullresync() {
    for line in [
        "+FULLRESYNC abc 0",
        &format!("+FULLRESYNC {ID}"),
        &format!("+FULLRESYNC {ID} -1"),
        &format!("+FULLRESYNC {ID} 1 2"),
        &format!("+FULLRESYNC {ID} 99999999999999999999999"),
        ":1",
    ] {
        let (_, r, _) = run(
            HandshakeConfig::default(),
            format!("+PONG\r\n+OK\r\n{line}\r\n").as_bytes(),
        );
        assert!(
            matches!(r, Err(HandshakeError::Protocol { .. })),
            "{line}: {r:?}"
        );
    }
}

#[test]
fn errors_and_outcomes_are_sticky() {
    let (mut hs, r, _) = run(
        HandshakeConfig::default(),
        b"+PONG\r\n+OK\r\n-LOADING x\r\n",
    );
    assert!(r.is_err());
    let mut more = BytesMut::from(&b"+OK\r\n"[..]);
    assert_eq!(hs.feed(&mut more), r);
    assert_eq!(more.len(), 5);
    assert!(hs.take_requests().is_empty());
}

#[test]
fn early_bytes_wait_for_their_request() {
    // The whole reply sequence at once, before PSYNC is even sent.
    let mut hs = Handshake::new(HandshakeConfig::default());
    let mut buf = BytesMut::from(format!("+PONG\r\n+OK\r\n+FULLRESYNC {ID} 7\r\n").as_bytes());
    assert_eq!(hs.feed(&mut buf), Ok(None));
    assert_eq!(hs.take_requests().len(), 2);
    assert_eq!(hs.feed(&mut buf), Ok(None));
    assert_eq!(hs.take_requests().len(), 1);
    assert!(matches!(
        hs.feed(&mut buf),
        Ok(Some(Outcome::FullResync { offset: 7, .. }))
    ));
    assert!(buf.is_empty());
}

#[test]
fn ping_errors() {
    // Acceptable before AUTH, as in Redis.
    for ok in [
        "-NOAUTH Authentication required.",
        "-NOPERM x",
        "-ERR operation not permitted",
    ] {
        let (hs, r, _) = run(
            HandshakeConfig::default(),
            format!("{ok}\r\n+OK\r\n+FULLRESYNC {ID} 0\r\n").as_bytes(),
        );
        assert!(r.is_ok(), "{ok}");
        assert_eq!(hs.warnings().len(), 1);
    }
    let (_, r, _) = run(
        HandshakeConfig::default(),
        b"-ERR max number of clients reached\r\n",
    );
    assert!(matches!(&r, Err(HandshakeError::PingFailed { .. })));
    assert!(r.unwrap_err().retriable(), "max clients is momentary");
    let (_, r, _) = run(HandshakeConfig::default(), b"-LOADING Redis is loading\r\n");
    assert!(r.unwrap_err().retriable());
}

#[test]
fn auth_debug_redacts_password() {
    let a = Auth::password("hunter2");
    assert!(!format!("{a:?}").contains("hunter2"));
}

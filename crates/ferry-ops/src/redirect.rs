//! Server error replies a cluster writer sees, classified in one place.
//!
//! ```text
//! MOVED 3999 127.0.0.1:6381     slot owned elsewhere: update the slot map, resend there
//! ASK 3999 127.0.0.1:6381       slot migrating: ASKING + the command on that node, once
//! MOVED 3999 ::1:6381           IPv6 as Redis prints it (also accepted: [::1]:6381)
//! MOVED 3999 :6381              empty host (cluster-preferred-endpoint-type
//!                               unknown-endpoint): the host of the node that answered
//! ```
//!
//! The input is an error reply's text without the leading `-` (as in
//! [`Value::Error`](ferry_resp::Value::Error)); a leading `-` is tolerated.
//! Error codes are the first word, matched exactly after ASCII upper-casing,
//! so `BUSYKEY` and `BUSYGROUP` are not `BUSY`.

use std::fmt;

use crate::endpoint::{HostPort, split_host_port};
use crate::slot::MAX_SLOT;

/// Which redirect.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RedirectKind {
    /// `-MOVED`: the slot lives on another node from now on.
    Moved,
    /// `-ASK`: for this command only, ask the importing node.
    Ask,
}

/// A parsed `-MOVED` or `-ASK` reply.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Redirect {
    /// MOVED or ASK.
    pub kind: RedirectKind,
    /// The slot (0..=16383).
    pub slot: u16,
    /// The node's host, IPv6 without brackets; empty means "the host of the
    /// connection that answered" (see [`Redirect::host_or`]).
    pub host: String,
    /// The node's port.
    pub port: u16,
}

impl Redirect {
    /// Parses `MOVED <slot> <host>:<port>` or `ASK <slot> <host>:<port>`;
    /// `None` for any other error text, a slot above 16383, a
    /// host that is not printable ASCII, or a bad port.
    ///
    /// ```
    /// use ferry_ops::{Redirect, RedirectKind};
    /// let r = Redirect::parse(b"MOVED 3999 127.0.0.1:6381").unwrap();
    /// assert_eq!((r.kind, r.slot, r.host.as_str(), r.port), (RedirectKind::Moved, 3999, "127.0.0.1", 6381));
    /// let r = Redirect::parse(b"ASK 1 [::1]:7000").unwrap();
    /// assert_eq!((r.kind, r.host.as_str(), r.port), (RedirectKind::Ask, "::1", 7000));
    /// assert_eq!(Redirect::parse(b"ERR unknown command"), None);
    /// ```
    pub fn parse(err: &[u8]) -> Option<Redirect> {
        let err = err.strip_prefix(b"-").unwrap_or(err);
        let text = std::str::from_utf8(err).ok()?;
        let mut words = text.split(' ');
        let kind = match words.next()? {
            w if w.eq_ignore_ascii_case("MOVED") => RedirectKind::Moved,
            w if w.eq_ignore_ascii_case("ASK") => RedirectKind::Ask,
            _ => return None,
        };
        let slot = parse_slot(words.next()?)?;
        let (host, port) = redirect_target(words.next()?)?;
        if words.next().is_some() {
            return None;
        }
        Some(Redirect {
            kind,
            slot,
            host: host.to_owned(),
            port,
        })
    }

    /// The host to connect to: [`Redirect::host`], or `answered_by` (the
    /// host of the connection that got this reply) when it is empty.
    pub fn host_or<'a>(&'a self, answered_by: &'a str) -> &'a str {
        if self.host.is_empty() {
            answered_by
        } else {
            &self.host
        }
    }
}

impl fmt::Display for Redirect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self.kind {
            RedirectKind::Moved => "MOVED",
            RedirectKind::Ask => "ASK",
        };
        write!(
            f,
            "{kind} {} {}",
            self.slot,
            HostPort(&self.host, self.port)
        )
    }
}

/// A redirect's `host:port` (see [`split_host_port`]); the host is
/// printable ASCII or empty.
fn redirect_target(s: &str) -> Option<(&str, u16)> {
    let (host, port) = split_host_port(s)?;
    host.bytes()
        .all(|b| b.is_ascii_graphic())
        .then_some((host, port))
}

/// A slot number: 1–5 decimal digits, at most 16383.
fn parse_slot(s: &str) -> Option<u16> {
    if s.is_empty() || s.len() > 5 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok().filter(|&s| s <= MAX_SLOT)
}

/// The class of a server error reply, by its first word.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// `MOVED`: see [`Redirect`].
    Moved,
    /// `ASK`: see [`Redirect`].
    Ask,
    /// `TRYAGAIN`: multi-key command during resharding; back off, retry.
    TryAgain,
    /// `CLUSTERDOWN`: failover in progress or slots uncovered; back off,
    /// refresh the topology, retry.
    ClusterDown,
    /// `LOADING`: the node is loading its dataset; retry.
    Loading,
    /// `BUSY`: a script or function is running; retry.
    Busy,
    /// `MASTERDOWN`: the link to its master is down (replica); retry.
    MasterDown,
    /// `READONLY`: written to a replica; refresh the topology.
    ReadOnly,
    /// `OOM`: the target is full; an operator must act.
    Oom,
    /// `MISCONF`: the target cannot persist; an operator must act.
    Misconf,
    /// `NOPERM`: the ACL user may not run this command or touch this key.
    NoPerm,
    /// `NOAUTH`: authentication required.
    NoAuth,
    /// `WRONGPASS`: bad credentials.
    WrongPass,
    /// `CROSSSLOT`: keys in different slots; a routing bug (split first).
    CrossSlot,
    /// `BUSYKEY`: `RESTORE` without `REPLACE` onto an existing key.
    BusyKey,
    /// `BUSYGROUP`: `XGROUP CREATE` of an existing group.
    BusyGroup,
    /// `NOSCRIPT`: `EVALSHA` of a script the target does not have.
    NoScript,
    /// `EXECABORT`: a transaction was discarded for an earlier error.
    ExecAbort,
    /// Anything else (`ERR`, `WRONGTYPE`, ...).
    Other,
}

impl ErrorKind {
    /// Classifies an error reply's text (with or without the leading `-`).
    ///
    /// ```
    /// use ferry_ops::ErrorKind;
    /// assert_eq!(ErrorKind::classify(b"TRYAGAIN Multiple keys request during rehashing of slot"), ErrorKind::TryAgain);
    /// assert_eq!(ErrorKind::classify(b"BUSYKEY Target key name already exists."), ErrorKind::BusyKey);
    /// assert_eq!(ErrorKind::classify(b"ERR syntax error"), ErrorKind::Other);
    /// ```
    pub fn classify(err: &[u8]) -> ErrorKind {
        let err = err.strip_prefix(b"-").unwrap_or(err);
        let end = err.iter().position(|&b| b == b' ').unwrap_or(err.len());
        let code = &err[..end];
        const CODES: [(&[u8], ErrorKind); 18] = [
            (b"MOVED", ErrorKind::Moved),
            (b"ASK", ErrorKind::Ask),
            (b"TRYAGAIN", ErrorKind::TryAgain),
            (b"CLUSTERDOWN", ErrorKind::ClusterDown),
            (b"LOADING", ErrorKind::Loading),
            (b"BUSY", ErrorKind::Busy),
            (b"MASTERDOWN", ErrorKind::MasterDown),
            (b"READONLY", ErrorKind::ReadOnly),
            (b"OOM", ErrorKind::Oom),
            (b"MISCONF", ErrorKind::Misconf),
            (b"NOPERM", ErrorKind::NoPerm),
            (b"NOAUTH", ErrorKind::NoAuth),
            (b"WRONGPASS", ErrorKind::WrongPass),
            (b"CROSSSLOT", ErrorKind::CrossSlot),
            (b"BUSYKEY", ErrorKind::BusyKey),
            (b"BUSYGROUP", ErrorKind::BusyGroup),
            (b"NOSCRIPT", ErrorKind::NoScript),
            (b"EXECABORT", ErrorKind::ExecAbort),
        ];
        CODES
            .iter()
            .find(|(c, _)| code.eq_ignore_ascii_case(c))
            .map_or(ErrorKind::Other, |&(_, k)| k)
    }

    /// `MOVED` or `ASK`.
    pub fn is_redirect(self) -> bool {
        matches!(self, ErrorKind::Moved | ErrorKind::Ask)
    }

    /// Whether backing off and resending the same command can succeed
    /// without an operator: `TRYAGAIN`, `CLUSTERDOWN`, `LOADING`, `BUSY`,
    /// `MASTERDOWN`, `READONLY` (after a topology refresh). `OOM` and
    /// `MISCONF` are retried too by a patient writer, but they need an
    /// operator and are not counted here.
    pub fn is_transient(self) -> bool {
        matches!(
            self,
            ErrorKind::TryAgain
                | ErrorKind::ClusterDown
                | ErrorKind::Loading
                | ErrorKind::Busy
                | ErrorKind::MasterDown
                | ErrorKind::ReadOnly
        )
    }

    /// Whether the topology should be refreshed before retrying:
    /// `CLUSTERDOWN`, `READONLY`, `MASTERDOWN` (and `MOVED` when many slots move).
    pub fn needs_refresh(self) -> bool {
        matches!(
            self,
            ErrorKind::ClusterDown | ErrorKind::ReadOnly | ErrorKind::MasterDown
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Option<(RedirectKind, u16, String, u16)> {
        Redirect::parse(s.as_bytes()).map(|r| (r.kind, r.slot, r.host, r.port))
    }

    #[test]
    fn redirects() {
        use RedirectKind::*;
        assert_eq!(
            parse("MOVED 3999 127.0.0.1:6381"),
            Some((Moved, 3999, "127.0.0.1".into(), 6381))
        );
        assert_eq!(
            parse("-ASK 0 10.0.0.1:7000"),
            Some((Ask, 0, "10.0.0.1".into(), 7000))
        );
        assert_eq!(
            parse("MOVED 16383 ::1:7000"),
            Some((Moved, 16383, "::1".into(), 7000))
        );
        assert_eq!(
            parse("MOVED 1 [::1]:7000"),
            Some((Moved, 1, "::1".into(), 7000))
        );
        assert_eq!(
            parse("MOVED 1 [fe80::1%eth0]:7000"),
            Some((Moved, 1, "fe80::1%eth0".into(), 7000))
        );
        assert_eq!(
            parse("MOVED 2 node-1.example:6379"),
            Some((Moved, 2, "node-1.example".into(), 6379))
        );
        assert_eq!(
            parse("MOVED 2 :6379"),
            Some((Moved, 2, String::new(), 6379))
        );
        assert_eq!(parse("moved 2 a:1"), Some((Moved, 2, "a".into(), 1)));
        for bad in [
            "",
            "-",
            "MOVED",
            "MOVED 1",
            "MOVED 16384 a:1",
            "MOVED -1 a:1",
            "MOVED 1 a",
            "MOVED 1 a:",
            "MOVED 1 a:0",
            "MOVED 1 a:65536",
            "MOVED 1 a:+1",
            "MOVED 1 [::1:7000",
            "MOVED 1 a:1 extra",
            "MOVED  1 a:1",
            "ASKING 1 a:1",
            "MOVED 1 \u{ff}:1",
        ] {
            assert_eq!(parse(bad), None, "{bad:?}");
        }
        assert_eq!(Redirect::parse(b"MOVED 1 \xff:1"), None);
    }

    #[test]
    fn display_and_host_or() {
        let r = Redirect::parse(b"MOVED 7 ::1:7000").unwrap();
        assert_eq!(r.to_string(), "MOVED 7 [::1]:7000");
        let r = Redirect::parse(b"ASK 7 :7000").unwrap();
        assert_eq!(r.host_or("10.1.1.1"), "10.1.1.1");
        assert_eq!(r.to_string(), "ASK 7 :7000");
        let r = Redirect::parse(b"ASK 7 h:7000").unwrap();
        assert_eq!(r.host_or("10.1.1.1"), "h");
    }

    #[test]
    fn classify() {
        use ErrorKind::*;
        for (text, kind) in [
            ("MOVED 1 a:1", Moved),
            ("ASK 1 a:1", Ask),
            (
                "TRYAGAIN Multiple keys request during rehashing of slot",
                TryAgain,
            ),
            ("CLUSTERDOWN The cluster is down", ClusterDown),
            ("CLUSTERDOWN Hash slot not served", ClusterDown),
            ("LOADING Redis is loading the dataset in memory", Loading),
            ("BUSY Redis is busy running a script.", Busy),
            ("MASTERDOWN Link with MASTER is down", MasterDown),
            (
                "READONLY You can't write against a read only replica.",
                ReadOnly,
            ),
            (
                "OOM command not allowed when used memory > 'maxmemory'.",
                Oom,
            ),
            ("MISCONF Redis is configured to save RDB snapshots", Misconf),
            ("NOPERM this user has no permissions", NoPerm),
            ("NOAUTH Authentication required.", NoAuth),
            ("WRONGPASS invalid username-password pair", WrongPass),
            (
                "CROSSSLOT Keys in request don't hash to the same slot",
                CrossSlot,
            ),
            ("BUSYKEY Target key name already exists.", BusyKey),
            ("BUSYGROUP Consumer Group name already exists", BusyGroup),
            ("NOSCRIPT No matching script.", NoScript),
            ("EXECABORT Transaction discarded", ExecAbort),
            ("-TRYAGAIN", TryAgain),
            ("tryagain x", TryAgain),
            ("ERR unknown command", Other),
            ("WRONGTYPE Operation against a key", Other),
            ("", Other),
            ("-", Other),
            ("BUSYX", Other),
        ] {
            assert_eq!(ErrorKind::classify(text.as_bytes()), kind, "{text}");
        }
        assert!(Moved.is_redirect() && Ask.is_redirect() && !TryAgain.is_redirect());
        assert!(TryAgain.is_transient() && !Oom.is_transient() && !CrossSlot.is_transient());
        assert!(ClusterDown.needs_refresh() && !Busy.needs_refresh());
        assert_eq!(ErrorKind::classify(b"\xff\x00 x"), Other);
    }
}

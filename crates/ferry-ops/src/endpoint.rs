//! Where a server is and how to log in: the one parser of `redis://` URLs
//! and `host:port` strings, and the one set of credentials ([`Auth`]) every
//! connection of ferry uses (replica link, cluster writer, control plane).
//!
//! ```text
//! redis://[[user]:password@]host:port[/db]     plain TCP
//! rediss://...                                 TLS
//! host:port                                    plain TCP, no credentials (seeds only)
//!
//! host:    name, IPv4, [IPv6] (brackets in URLs and printed addresses)
//! user:    up to the first ':' of the part before the last '@'
//! password: the rest, taken literally (no percent-decoding: `%` is a
//!          character like any other, and `@`/`:` need no escaping)
//! port:    required, 1..=65535
//! ```
//!
//! An [`Endpoint`] prints with its password replaced by `***`, and
//! [`redact`] does the same for a URL that may not parse, so neither a log
//! line nor an error message carries a password.

use std::fmt;

use crate::show;

/// Credentials for `AUTH`.
#[derive(Clone, Default, PartialEq, Eq, Hash)]
pub struct Auth {
    /// ACL user name; `None` authenticates as `default` (`AUTH <password>`).
    pub user: Option<String>,
    /// Password; `None` sends no `AUTH` at all.
    pub password: Option<String>,
}

impl Auth {
    /// No authentication.
    pub fn none() -> Auth {
        Auth::default()
    }

    /// `AUTH <password>`.
    pub fn password(password: impl Into<String>) -> Auth {
        Auth {
            user: None,
            password: Some(password.into()),
        }
    }

    /// `AUTH <user> <password>`.
    pub fn user(user: impl Into<String>, password: impl Into<String>) -> Auth {
        Auth {
            user: Some(user.into()),
            password: Some(password.into()),
        }
    }

    /// Whether `AUTH` is sent at all (a password is set).
    pub fn is_set(&self) -> bool {
        self.password.is_some()
    }

    /// The `AUTH [user] password` command, or `None` without a password.
    pub fn command(&self) -> Option<Vec<&[u8]>> {
        let password = self.password.as_ref()?;
        let mut args: Vec<&[u8]> = vec![b"AUTH"];
        if let Some(user) = &self.user {
            args.push(user.as_bytes());
        }
        args.push(password.as_bytes());
        Some(args)
    }
}

/// The password never shows in debug output.
impl fmt::Debug for Auth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Auth")
            .field("user", &self.user)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

/// A server: address, credentials and whether to use TLS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// Host name or IP; an IPv6 address without brackets.
    pub host: String,
    /// TCP port.
    pub port: u16,
    /// Credentials from the URL ([`Auth::none`] without).
    pub auth: Auth,
    /// `rediss://`: connect over TLS.
    pub tls: bool,
    /// The db of a `/<db>` path, if any.
    pub db: Option<u64>,
}

/// Why a URL or address was refused. Messages show the input with its
/// password replaced by `***`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EndpointError {
    /// Not `redis://` or `rediss://`.
    #[error(
        "{url}: unsupported scheme {scheme:?}: expected redis://[user:password@]host:port (rediss:// for TLS)"
    )]
    Scheme {
        /// The input, redacted.
        url: String,
        /// The scheme found (empty when there is none).
        scheme: String,
    },
    /// Nothing before the port.
    #[error("{url}: no host: expected host:port")]
    MissingHost {
        /// The input, redacted.
        url: String,
    },
    /// No `:port` after the host.
    #[error("{url}: no port: expected host:port (e.g. 127.0.0.1:6379, [::1]:6379)")]
    MissingPort {
        /// The input, redacted.
        url: String,
    },
    /// A port that is not a number in 1..=65535.
    #[error("{url}: bad port {port:?}: expected a number in 1..=65535")]
    BadPort {
        /// The input, redacted.
        url: String,
        /// What stood where the port goes.
        port: String,
    },
    /// A `[` without its `]`, or text between `]` and `:port`.
    #[error("{url}: bad IPv6 address: expected [address]:port")]
    BadBrackets {
        /// The input, redacted.
        url: String,
    },
    /// A path other than `/<db number>` (queries are not supported).
    #[error("{url}: bad path {path:?}: expected nothing or /<db number> after host:port")]
    BadPath {
        /// The input, redacted.
        url: String,
        /// The path found.
        path: String,
    },
}

impl Endpoint {
    /// Parses `redis://[[user]:password@]host:port[/db]` or `rediss://...`.
    ///
    /// ```
    /// use ferry_ops::Endpoint;
    /// let e = Endpoint::parse("rediss://app:s3cret@[::1]:6380/0").unwrap();
    /// assert_eq!((e.host.as_str(), e.port, e.tls, e.db), ("::1", 6380, true, Some(0)));
    /// assert_eq!(e.addr(), "[::1]:6380");
    /// assert_eq!(e.to_string(), "rediss://app:***@[::1]:6380/0");
    /// ```
    ///
    /// # Errors
    /// [`EndpointError`] naming what is wrong (scheme, host, port, path).
    pub fn parse(url: &str) -> Result<Endpoint, EndpointError> {
        let Some((scheme, rest)) = url.split_once("://") else {
            return Err(EndpointError::Scheme {
                url: redact(url),
                scheme: String::new(),
            });
        };
        let tls = match scheme {
            "redis" => false,
            "rediss" => true,
            other => {
                return Err(EndpointError::Scheme {
                    url: redact(url),
                    scheme: other.to_owned(),
                });
            }
        };
        let (creds, authority) = match rest.rfind('@') {
            Some(at) => (Some(&rest[..at]), &rest[at + 1..]),
            None => (None, rest),
        };
        let auth = match creds {
            None => Auth::none(),
            Some(c) => match c.split_once(':') {
                Some(("", pw)) => Auth::password(pw),
                Some((user, pw)) => Auth::user(user, pw),
                None => Auth::password(c),
            },
        };
        let (hostport, path) = match authority.find('/') {
            Some(i) => (&authority[..i], &authority[i + 1..]),
            None => (authority, ""),
        };
        let db = match path {
            "" => None,
            p => Some(p.parse::<u64>().map_err(|_| EndpointError::BadPath {
                url: redact(url),
                path: format!("/{p}"),
            })?),
        };
        let (host, port) = parse_host_port(hostport, url)?;
        Ok(Endpoint {
            host: host.to_owned(),
            port,
            auth,
            tls,
            db,
        })
    }

    /// Like [`Endpoint::parse`], but a plain `host:port` (no scheme) is
    /// accepted too, as plaintext without credentials (cluster seeds).
    ///
    /// # Errors
    /// As [`Endpoint::parse`].
    pub fn parse_seed(seed: &str) -> Result<Endpoint, EndpointError> {
        if seed.contains("://") {
            return Endpoint::parse(seed);
        }
        let (host, port) = parse_host_port(seed, seed)?;
        Ok(Endpoint {
            host: host.to_owned(),
            port,
            auth: Auth::none(),
            tls: false,
            db: None,
        })
    }

    /// `host:port`, with brackets around an IPv6 host: what to connect to.
    pub fn addr(&self) -> String {
        HostPort(&self.host, self.port).to_string()
    }
}

/// The URL with the password replaced by `***`.
impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.tls { "rediss://" } else { "redis://" })?;
        match (&self.auth.user, &self.auth.password) {
            (Some(u), Some(_)) => write!(f, "{u}:***@")?,
            (None, Some(_)) => f.write_str(":***@")?,
            _ => {}
        }
        HostPort(&self.host, self.port).fmt(f)?;
        if let Some(db) = self.db {
            write!(f, "/{db}")?;
        }
        Ok(())
    }
}

/// `host:port` from a URL's authority; errors name `url` (redacted).
fn parse_host_port<'a>(s: &'a str, url: &str) -> Result<(&'a str, u16), EndpointError> {
    let (host, port) = split_raw(s).map_err(|e| match e {
        Split::NoPort => EndpointError::MissingPort { url: redact(url) },
        Split::BadBrackets => EndpointError::BadBrackets { url: redact(url) },
    })?;
    if host.is_empty() {
        return Err(EndpointError::MissingHost { url: redact(url) });
    }
    let port = parse_port(port).ok_or_else(|| EndpointError::BadPort {
        url: redact(url),
        port: show(port.as_bytes()),
    })?;
    Ok((host, port))
}

/// Why [`split_raw`] found no port.
enum Split {
    NoPort,
    BadBrackets,
}

/// The one `host:port` split: `[v6]:port`, else at the last colon (so
/// `v6:port` as Redis prints it works too). The port is not checked.
fn split_raw(s: &str) -> Result<(&str, &str), Split> {
    match s.strip_prefix('[') {
        Some(rest) => {
            let (host, after) = rest.split_once(']').ok_or(Split::BadBrackets)?;
            match after.strip_prefix(':') {
                Some(port) => Ok((host, port)),
                None if after.is_empty() => Err(Split::NoPort),
                None => Err(Split::BadBrackets),
            }
        }
        None => s.rsplit_once(':').ok_or(Split::NoPort),
    }
}

/// `host:port`, `[v6]:port` or `v6:port` (split at the last colon, as
/// Redis prints IPv6 in redirects) into the host (without brackets) and a
/// port in 1..=65535. The host may be empty (a redirect's "same host").
///
/// ```
/// use ferry_ops::split_host_port;
/// assert_eq!(split_host_port("127.0.0.1:7000"), Some(("127.0.0.1", 7000)));
/// assert_eq!(split_host_port("[::1]:7000"), Some(("::1", 7000)));
/// assert_eq!(split_host_port("::1:7000"), Some(("::1", 7000)));
/// assert_eq!(split_host_port("h"), None);
/// ```
pub fn split_host_port(s: &str) -> Option<(&str, u16)> {
    let (host, port) = split_raw(s).ok()?;
    Some((host, parse_port(port)?))
}

/// The host of `host:port` / `[v6]:port` without brackets; the whole
/// string (brackets removed) when it has no port.
pub fn host_of(addr: &str) -> &str {
    let host = split_host_port(addr).map_or(addr, |(h, _)| h);
    host.trim_start_matches('[').trim_end_matches(']')
}

/// 1–5 decimal digits, 1..=65535.
pub(crate) fn parse_port(s: &str) -> Option<u16> {
    if s.is_empty() || s.len() > 5 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok().filter(|&p| p != 0)
}

/// `host:port`, with brackets around an IPv6 host.
pub struct HostPort<'a>(pub &'a str, pub u16);

impl fmt::Display for HostPort<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.contains(':') {
            write!(f, "[{}]:{}", self.0, self.1)
        } else {
            write!(f, "{}:{}", self.0, self.1)
        }
    }
}

/// A URL (parsed or not) with its password replaced by `***`.
///
/// ```
/// assert_eq!(ferry_ops::redact("redis://app:pw@h:1"), "redis://app:***@h:1");
/// assert_eq!(ferry_ops::redact("redis://pw@h:1"), "redis://***@h:1");
/// assert_eq!(ferry_ops::redact("h:1"), "h:1");
/// ```
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s + 3 => {
            let creds = &url[s + 3..at];
            match creds.find(':') {
                Some(c) => format!("{}{}:***{}", &url[..s + 3], &creds[..c], &url[at..]),
                None => format!("{}***{}", &url[..s + 3], &url[at..]),
            }
        }
        _ => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(url: &str) -> Endpoint {
        Endpoint::parse(url).unwrap_or_else(|e| panic!("{url}: {e}"))
    }

    #[test]
    fn urls() {
        let e = ok("redis://127.0.0.1:6379");
        assert_eq!(
            (e.host.as_str(), e.port, e.tls, e.db),
            ("127.0.0.1", 6379, false, None)
        );
        assert_eq!(e.auth, Auth::none());
        assert_eq!(e.to_string(), "redis://127.0.0.1:6379");

        let e = ok("redis://[::1]:6379");
        assert_eq!((e.host.as_str(), e.port), ("::1", 6379));
        assert_eq!(e.addr(), "[::1]:6379");
        assert_eq!(e.to_string(), "redis://[::1]:6379");

        let e = ok("rediss://app:s3cret@cache.internal:6380");
        assert!(e.tls);
        assert_eq!(e.auth, Auth::user("app", "s3cret"));
        assert_eq!(e.to_string(), "rediss://app:***@cache.internal:6380");
        assert!(!format!("{e:?}").contains("s3cret"));

        assert_eq!(ok("redis://:pw@h:1/0").auth, Auth::password("pw"));
        assert_eq!(ok("redis://:pw@h:1/0").db, Some(0));
        assert_eq!(ok("redis://pw@h:1").auth, Auth::password("pw"));
        assert_eq!(ok("redis://h:1/").db, None);
        // The password is everything after the first ':' up to the last '@'.
        assert_eq!(ok("redis://u:p:w@h:1").auth, Auth::user("u", "p:w"));
        assert_eq!(ok("redis://u:p@ss@h:1").auth, Auth::user("u", "p@ss"));
        assert_eq!(ok("redis://u:a/b@h:1").auth, Auth::user("u", "a/b"));
        // No percent-decoding: taken literally.
        assert_eq!(ok("redis://u:p%40ss@h:1").auth, Auth::user("u", "p%40ss"));
        // An empty password is a password.
        assert_eq!(ok("redis://u:@h:1").auth, Auth::user("u", ""));
        assert_eq!(ok("redis://u:@h:1").to_string(), "redis://u:***@h:1");
    }

    #[test]
    fn bad_urls_say_what_is_wrong() {
        let err = |url: &str| Endpoint::parse(url).expect_err(url);
        assert!(
            matches!(err("http://h:1"), EndpointError::Scheme { scheme, .. } if scheme == "http")
        );
        assert!(matches!(err("h:1"), EndpointError::Scheme { scheme, .. } if scheme.is_empty()));
        assert!(matches!(
            err("redis://h"),
            EndpointError::MissingPort { .. }
        ));
        assert!(matches!(
            err("redis://[::1]"),
            EndpointError::MissingPort { .. }
        ));
        assert!(matches!(
            err("redis://:1"),
            EndpointError::MissingHost { .. }
        ));
        assert!(matches!(err("redis://h:"), EndpointError::BadPort { .. }));
        assert!(matches!(err("redis://h:0"), EndpointError::BadPort { .. }));
        assert!(matches!(
            err("redis://h:65536"),
            EndpointError::BadPort { .. }
        ));
        assert!(matches!(err("redis://h:x1"), EndpointError::BadPort { .. }));
        assert!(matches!(
            err("redis://[::1:6379"),
            EndpointError::BadBrackets { .. }
        ));
        assert!(matches!(
            err("redis://[::1]x:6379"),
            EndpointError::BadBrackets { .. }
        ));
        assert!(matches!(
            err("redis://h:1/x"),
            EndpointError::BadPath { .. }
        ));
        assert!(matches!(
            err("redis://h:1?db=2"),
            EndpointError::BadPort { .. }
        ));
        // Messages name the problem and never the password.
        let e = err("http://u:s3cret@h:1").to_string();
        assert!(
            e.contains("http") && e.contains("u:***@") && !e.contains("s3cret"),
            "{e}"
        );
        let e = err("redis://u:s3cret@h").to_string();
        assert!(e.contains("no port") && !e.contains("s3cret"), "{e}");
    }

    #[test]
    fn seeds_and_addresses() {
        let e = Endpoint::parse_seed("127.0.0.1:7000").unwrap();
        assert_eq!(
            (e.addr(), e.tls, e.auth),
            ("127.0.0.1:7000".into(), false, Auth::none())
        );
        assert_eq!(Endpoint::parse_seed("[::1]:7000").unwrap().host, "::1");
        assert_eq!(
            Endpoint::parse_seed("rediss://:pw@h:1").unwrap().auth,
            Auth::password("pw")
        );
        assert!(matches!(
            Endpoint::parse_seed("h"),
            Err(EndpointError::MissingPort { .. })
        ));
        assert_eq!(split_host_port(":7000"), Some(("", 7000)));
        assert_eq!(split_host_port("h:0"), None);
        assert_eq!(split_host_port("[::1]"), None);
        assert_eq!(host_of("[::1]:7000"), "::1");
        assert_eq!(host_of("redis.example:6380"), "redis.example");
        assert_eq!(host_of("h"), "h");
        assert_eq!(host_of("[::1]"), "::1");
    }

    #[test]
    fn auth_command() {
        assert_eq!(Auth::none().command(), None);
        assert_eq!(
            Auth::password("pw").command(),
            Some(vec![&b"AUTH"[..], b"pw"])
        );
        assert_eq!(
            Auth::user("u", "pw").command(),
            Some(vec![&b"AUTH"[..], b"u", b"pw"])
        );
        assert!(!format!("{:?}", Auth::password("s3cret")).contains("s3cret"));
    }
}

//! The daemon's HTTP listener on hyper: `/` (the dashboard), `/status`
//! (JSON) and `/metrics` (Prometheus text), one port.
//!
//! Limits: a request head of at most [`MAX_HEAD`] bytes, read within
//! [`HEAD_TIMEOUT`]; a whole connection within [`CONNECTION_TIMEOUT`]; no
//! request body (the endpoints take none: a request announcing one gets
//! 413); GET and HEAD only; one request per connection (answers carry
//! `Connection: close`, as ferry's own clients expect).
//!
//! With `http.token`, every path needs `Authorization: Bearer <token>`
//! (compared in constant time), except `/metrics` unless
//! `http.protect_metrics`; the dashboard page `/` also takes `?token=` so a
//! browser can open it.

use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result};
use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{self, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::status::Status;

/// Largest request head (request line and headers) read.
pub const MAX_HEAD: usize = 16 * 1024;
/// Time to send the request head.
pub const HEAD_TIMEOUT: Duration = Duration::from_secs(5);
/// Time for a whole connection (request and answer).
pub const CONNECTION_TIMEOUT: Duration = Duration::from_secs(15);

/// What the HTTP listener serves, and who may see it.
#[derive(Debug, Clone)]
pub struct HttpConfig {
    /// `host:port`.
    pub listen: String,
    /// Bearer token for `/`, `/status` and control endpoints.
    pub token: Option<String>,
    /// `/metrics` needs the token too.
    pub protect_metrics: bool,
}

/// A bound listener, not yet serving.
pub struct Listener {
    listener: TcpListener,
    cfg: Arc<HttpConfig>,
}

/// Binds `http.listen` (an error names the setting).
pub async fn bind(cfg: HttpConfig) -> Result<Listener> {
    let listen = cfg.listen.clone();
    let listener = TcpListener::bind(&listen)
        .await
        .with_context(|| format!("cannot listen on {listen} (http.listen)"))?;
    let loopback = listener.local_addr().is_ok_and(|a| a.ip().is_loopback());
    if !loopback && cfg.token.is_none() {
        tracing::warn!(
            %listen,
            "the HTTP listener is reachable from other hosts without a token: set http.token"
        );
    }
    tracing::info!(%listen, "dashboard: http://{listen}/  status: http://{listen}/status  metrics: http://{listen}/metrics");
    Ok(Listener {
        listener,
        cfg: Arc::new(cfg),
    })
}

impl Listener {
    /// Serves until `stop`; each connection is a task of `tracker`, told to
    /// finish when `stop` fires.
    pub async fn serve(
        self,
        status: Arc<Mutex<Status>>,
        stop: CancellationToken,
        tracker: TaskTracker,
    ) {
        loop {
            let sock = tokio::select! {
                _ = stop.cancelled() => return,
                r = self.listener.accept() => match r {
                    Ok((sock, _)) => sock,
                    Err(e) => {
                        tracing::warn!("http: accept: {e}");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                },
            };
            let (cfg, status, stop) = (self.cfg.clone(), status.clone(), stop.clone());
            tracker.spawn(async move {
                let svc = service_fn(move |req: Request<hyper::body::Incoming>| {
                    let answer = respond(&req, &cfg, || {
                        let st = status.lock().map(|s| s.clone()).unwrap_or_default();
                        serde_json::to_string_pretty(&st).unwrap_or_default()
                    });
                    async move { Ok::<_, Infallible>(answer) }
                });
                let mut builder = http1::Builder::new();
                builder
                    .keep_alive(false)
                    .max_buf_size(MAX_HEAD)
                    .timer(TokioTimer::new())
                    .header_read_timeout(HEAD_TIMEOUT);
                let conn = builder.serve_connection(TokioIo::new(sock), svc);
                tokio::pin!(conn);
                tokio::select! {
                    r = tokio::time::timeout(CONNECTION_TIMEOUT, conn.as_mut()) => {
                        if let Ok(Err(e)) = r {
                            tracing::debug!("http: {e}");
                        }
                    }
                    _ = stop.cancelled() => {
                        conn.as_mut().graceful_shutdown();
                        let _ = tokio::time::timeout(Duration::from_secs(1), conn).await;
                    }
                }
            });
        }
    }
}

/// Whether `req` carries `Authorization: Bearer <token>`.
fn bearer_ok<B>(req: &Request<B>, token: &str) -> bool {
    req.headers()
        .get_all(header::AUTHORIZATION)
        .iter()
        .any(|v| {
            v.to_str()
                .ok()
                .and_then(|v| v.trim().strip_prefix("Bearer "))
                .is_some_and(|t| same_secret(t.trim(), token))
        })
}

/// Compares without stopping at the first different byte.
fn same_secret(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

/// The `token` query parameter (accepted for `/` only, so that a browser can
/// open the dashboard; the page then sends it as a bearer header).
fn query_token(query: &str) -> Option<String> {
    query.split('&').find_map(|kv| {
        let v = kv.strip_prefix("token=")?;
        // %XX decoding, enough for tokens.
        let (mut out, b) = (Vec::new(), v.as_bytes());
        let mut i = 0;
        while i < b.len() {
            if b[i] == b'%'
                && let Some(x) = v
                    .get(i + 1..i + 3)
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
            {
                out.push(x);
                i += 3;
                continue;
            }
            out.push(b[i]);
            i += 1;
        }
        String::from_utf8(out).ok()
    })
}

fn answer(code: StatusCode, ctype: &'static str, body: String) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = code;
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(ctype));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(header::CONNECTION, HeaderValue::from_static("close"));
    r
}

/// Answers one request; `status` renders the `/status` document.
fn respond<B>(
    req: &Request<B>,
    http: &HttpConfig,
    status: impl FnOnce() -> String,
) -> Response<Full<Bytes>> {
    let path = req.uri().path();
    let query = req.uri().query().unwrap_or("");
    let needs_token = match path {
        "/metrics" => http.protect_metrics,
        _ => true,
    };
    if let Some(token) = http.token.as_deref().filter(|_| needs_token) {
        let by_query = path == "/" && query_token(query).is_some_and(|t| same_secret(&t, token));
        if !bearer_ok(req, token) && !by_query {
            let mut r = answer(
                StatusCode::UNAUTHORIZED,
                "text/plain",
                "this ferry needs its http.token: send `Authorization: Bearer <token>` \
                 (ferry status --token), or open the dashboard as /?token=<token>\n"
                    .into(),
            );
            r.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"ferry\""),
            );
            return r;
        }
    }
    if req.method() != Method::GET && req.method() != Method::HEAD {
        let mut r = answer(
            StatusCode::METHOD_NOT_ALLOWED,
            "text/plain",
            "only GET (and HEAD)\n".into(),
        );
        r.headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
        return r;
    }
    let has_body = req.headers().contains_key(header::TRANSFER_ENCODING)
        || req
            .headers()
            .get(header::CONTENT_LENGTH)
            .is_some_and(|v| v.as_bytes() != b"0");
    if has_body {
        return answer(
            StatusCode::PAYLOAD_TOO_LARGE,
            "text/plain",
            "ferry's endpoints take no request body\n".into(),
        );
    }
    match path {
        "/status" => answer(StatusCode::OK, "application/json", status()),
        "/metrics" => answer(
            StatusCode::OK,
            "text/plain; version=0.0.4",
            crate::telemetry::render(),
        ),
        "/" => answer(
            StatusCode::OK,
            "text/html; charset=utf-8",
            crate::dashboard::PAGE.to_string(),
        ),
        _ => answer(
            StatusCode::NOT_FOUND,
            "text/plain",
            "try /, /status or /metrics\n".into(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn http(token: Option<&str>, protect_metrics: bool) -> HttpConfig {
        HttpConfig {
            listen: "127.0.0.1:0".into(),
            token: token.map(str::to_string),
            protect_metrics,
        }
    }

    fn code(method: &str, uri: &str, headers: &[(&str, &str)], h: &HttpConfig) -> u16 {
        let mut b = Request::builder().method(method).uri(uri);
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        let req = b.body(()).expect("request");
        respond(&req, h, || "{}".into()).status().as_u16()
    }

    fn get(uri: &str, headers: &[(&str, &str)], h: &HttpConfig) -> u16 {
        code("GET", uri, headers, h)
    }

    #[test]
    fn token_rules() {
        let open = http(None, false);
        assert_eq!(get("/status", &[], &open), 200);
        let t = http(Some("abc"), false);
        assert_eq!(get("/status", &[], &t), 401);
        assert_eq!(get("/status", &[("authorization", "Bearer abc")], &t), 200);
        assert_eq!(get("/status", &[("Authorization", "Bearer abd")], &t), 401);
        assert_eq!(get("/status", &[("Authorization", "Bearer ab")], &t), 401);
        assert_eq!(get("/metrics", &[], &t), 200);
        assert_eq!(get("/?token=a%62c", &[], &t), 200);
        assert_eq!(get("/status?token=abc", &[], &t), 401);
        assert_eq!(get("/nothing", &[], &t), 401);
        assert_eq!(get("/nothing", &[("Authorization", "Bearer abc")], &t), 404);
        let m = http(Some("abc"), true);
        assert_eq!(get("/metrics", &[], &m), 401);
        assert_eq!(get("/metrics", &[("Authorization", "Bearer abc")], &m), 200);
    }

    #[test]
    fn only_bodiless_gets() {
        let open = http(None, false);
        assert_eq!(code("POST", "/status", &[], &open), 405);
        assert_eq!(code("HEAD", "/status", &[], &open), 200);
        assert_eq!(get("/status", &[("content-length", "10")], &open), 413);
        assert_eq!(get("/status", &[("content-length", "0")], &open), 200);
        // The token is checked first: nothing is told without it.
        let t = http(Some("abc"), false);
        assert_eq!(code("POST", "/status", &[], &t), 401);
    }

    #[test]
    fn listens_on_loopback_by_default() {
        let cfg = crate::config::Config::parse(
            "source: { url: \"redis://a:1\" }\ntarget: { url: \"redis://b:2\" }\n",
        )
        .expect("config");
        let addr: std::net::SocketAddr = cfg.http.listen.parse().expect("an IP address");
        assert!(addr.ip().is_loopback(), "{addr}");
        assert_eq!(cfg.http.token, None);
    }
}

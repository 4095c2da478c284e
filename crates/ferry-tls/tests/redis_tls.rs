//! `connect` against a real Redis 7.0 with a TLS port and a generated PKI.

use std::time::Duration;

use ferry_testkit::{Flavor, Server, free_port};
use ferry_tls::test_pki::TestPki;
use ferry_tls::{ConnectError, Stream, TlsConfig, TlsError, connect, rustls};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const T: Duration = Duration::from_secs(5);

fn tls_server(pki: &TestPki, auth_clients: bool) -> (Server, String) {
    let port = free_port();
    let server = Server::builder(Flavor::Redis70)
        .raw_args(pki.redis_args(port, auth_clients))
        .start()
        .expect("start a TLS Redis");
    (server, format!("127.0.0.1:{port}"))
}

async fn ping(s: &mut Stream) -> Vec<u8> {
    s.write_all(b"*1\r\n$4\r\nPING\r\n").await.unwrap();
    let mut buf = vec![0; 16];
    let n = tokio::time::timeout(T, s.read(&mut buf))
        .await
        .unwrap()
        .unwrap();
    buf.truncate(n);
    buf
}

#[tokio::test]
async fn verify_by_ca_insecure_and_failure() {
    let dir = tempfile::tempdir().unwrap();
    let pki = TestPki::generate(dir.path());
    let (_server, addr) = tls_server(&pki, false);

    // With the CA: verified, round trip works.
    let mut s = connect(&addr, Some(&TlsConfig::with_ca_file(&pki.ca_cert)), T)
        .await
        .expect("TLS with the CA");
    assert!(s.is_tls());
    assert_eq!(ping(&mut s).await, b"+PONG\r\n");

    // The name in the certificate is also checked: `localhost` is in it.
    let cfg = TlsConfig {
        server_name: Some("localhost".into()),
        ..TlsConfig::with_ca_file(&pki.ca_cert)
    };
    let mut s = connect(&addr, Some(&cfg), T).await.expect("by name");
    assert_eq!(ping(&mut s).await, b"+PONG\r\n");
    let cfg = TlsConfig {
        server_name: Some("other.example".into()),
        ..TlsConfig::with_ca_file(&pki.ca_cert)
    };
    let e = connect(&addr, Some(&cfg), T).await.unwrap_err();
    assert!(!e.retriable());
    assert!(e.to_string().contains("not valid for name"), "{e}");

    // Without the CA: the system roots do not trust it; clear, fatal error.
    let e = connect(&addr, Some(&TlsConfig::default()), T)
        .await
        .unwrap_err();
    assert!(!e.retriable(), "{e}");
    let msg = e.to_string();
    assert!(
        matches!(
            e,
            ConnectError::Tls(TlsError::Handshake { .. } | TlsError::NoRoots)
        ),
        "{msg}"
    );
    if matches!(e, ConnectError::Tls(TlsError::Handshake { .. })) {
        assert!(
            matches!(
                e,
                ConnectError::Tls(TlsError::Handshake {
                    error: rustls::Error::InvalidCertificate(
                        rustls::CertificateError::UnknownIssuer
                    ),
                    ..
                })
            ),
            "{msg}"
        );
        eprintln!("without the CA: {msg}");
        assert!(msg.contains("CA file"), "{msg}");
    }

    // Insecure: connects, and says so.
    let insecure = TlsConfig::insecure();
    assert!(insecure.warning().unwrap().contains("insecure"));
    let mut s = connect(&addr, Some(&insecure), T).await.expect("insecure");
    assert_eq!(ping(&mut s).await, b"+PONG\r\n");
}

#[tokio::test]
async fn client_certificate_and_wrong_port() {
    let dir = tempfile::tempdir().unwrap();
    let pki = TestPki::generate(dir.path());
    let (server, addr) = tls_server(&pki, true);

    let with_cert = TlsConfig {
        cert_file: Some(pki.client_cert.clone()),
        key_file: Some(pki.client_key.clone()),
        ..TlsConfig::with_ca_file(&pki.ca_cert)
    };
    let mut s = connect(&addr, Some(&with_cert), T).await.expect("mTLS");
    assert_eq!(ping(&mut s).await, b"+PONG\r\n");

    // Without a client certificate the server drops us: with TLS 1.3 that
    // shows on the first read rather than in the handshake.
    let no_cert = TlsConfig::with_ca_file(&pki.ca_cert);
    if let Ok(mut s) = connect(&addr, Some(&no_cert), T).await {
        let _ = s.write_all(b"*1\r\n$4\r\nPING\r\n").await;
        let mut buf = [0u8; 16];
        let r = tokio::time::timeout(T, s.read(&mut buf)).await.unwrap();
        assert!(matches!(r, Ok(0) | Err(_)), "{r:?}");
    }

    // TLS to the plain port: a clear, fatal error (or a timeout-free EOF).
    let e = connect(&server.addr(), Some(&with_cert), Duration::from_secs(1))
        .await
        .unwrap_err();
    assert!(
        e.to_string().contains(&server.addr()) || e.retriable(),
        "{e}"
    );

    // Plain connect still works.
    let mut s = connect(&server.addr(), None, T).await.expect("plain");
    assert!(!s.is_tls());
    assert_eq!(ping(&mut s).await, b"+PONG\r\n");
}

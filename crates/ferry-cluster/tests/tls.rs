//! TLS (`rediss://`) to the nodes: `Conn` round trip to a TLS Redis. (The
//! writer's topology discovery does not pick the TLS port yet.)

use std::time::Duration;

use ferry_cluster::{Auth, Conn, ConnError};
use ferry_resp::Value;
use ferry_testkit::{Flavor, Server, free_port};
use ferry_tls::TlsConfig;
use ferry_tls::test_pki::TestPki;

const T: Duration = Duration::from_secs(5);

#[tokio::test]
async fn conn_round_trip_over_tls() {
    let dir = tempfile::tempdir().unwrap();
    let pki = TestPki::generate(dir.path());
    let port = free_port();
    let _server = Server::builder(Flavor::Redis70)
        .raw_args(pki.redis_args(port, false))
        .start()
        .unwrap();
    let addr = format!("127.0.0.1:{port}");
    let tls = TlsConfig::with_ca_file(&pki.ca_cert);
    let mut conn = Conn::connect_tls(&addr, &Auth::none(), T, Some(&tls))
        .await
        .expect("TLS connect");
    assert!(conn.is_tls());
    let v = conn.call(&["SET", "k", "v"], T).await.unwrap();
    assert_eq!(v, Value::Simple(bytes::Bytes::from_static(b"OK")));
    let v = conn.call(&["GET", "k"], T).await.unwrap();
    assert_eq!(v, Value::Bulk(bytes::Bytes::from_static(b"v")));

    // No CA: a clear TLS error naming the node.
    let err = Conn::connect_tls(&addr, &Auth::none(), T, Some(&TlsConfig::default()))
        .await
        .unwrap_err();
    match &err {
        ConnError::Tls { addr: a, message } => {
            assert_eq!(a, &addr);
            assert!(
                message.contains("UnknownIssuer") || message.contains("no system root"),
                "{message}"
            );
        }
        other => panic!("{other:?}"),
    }
}

//! AUTH on every connection: credentials from the seed URL or [`Auth`]; a
//! wrong password is a typed error naming the node.

mod common;

use common::{get_all, op};
use ferry_cluster::{Auth, ClusterWriter, ConnError, WriterError};
use ferry_testkit::{Cluster, Flavor};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn password_protected_cluster() {
    let cluster = Cluster::start_with(Flavor::Redis70, 3, |b| b.password("s3cret")).unwrap();
    // From the URL (redis://:s3cret@...).
    let mut w = ClusterWriter::connect(&cluster.seed_url(), Auth::none())
        .await
        .unwrap();
    for i in 0..1000u64 {
        let k = format!("a:{i}");
        w.submit(op(&[b"SET", k.as_bytes(), b"v"], i))
            .await
            .unwrap();
    }
    w.close().await.unwrap();
    let keys: Vec<String> = (0..1000).map(|i| format!("a:{i}")).collect();
    assert!(
        get_all(&cluster, &keys)
            .values()
            .all(|v| v.as_deref() == Some("v"))
    );
    // Explicit Auth, wrong password.
    let addr = cluster.nodes[0].addr();
    let err = ClusterWriter::connect(&addr, Auth::password("nope"))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, WriterError::Connect(ConnError::Auth { addr: a, .. }) if *a == addr),
        "{err:?}"
    );
    // Explicit Auth, right password, as user "default".
    let w = ClusterWriter::connect(&addr, Auth::user("default", "s3cret"))
        .await
        .unwrap();
    w.close().await.unwrap();
}

//! A throw-away PKI for tests (feature `test-util`): a CA, a server
//! certificate for `localhost` / `127.0.0.1`, and a client certificate,
//! written as PEM files into a directory.

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose,
};

/// The PEM files of a test PKI.
#[derive(Debug, Clone)]
pub struct TestPki {
    /// The CA certificate.
    pub ca_cert: PathBuf,
    /// The server certificate (SANs `localhost`, `127.0.0.1`), signed by the CA.
    pub server_cert: PathBuf,
    /// The server's key.
    pub server_key: PathBuf,
    /// A client certificate, signed by the CA.
    pub client_cert: PathBuf,
    /// The client's key.
    pub client_key: PathBuf,
}

impl TestPki {
    /// Generates the PKI into `dir` (`ca.crt`, `server.crt`, `server.key`,
    /// `client.crt`, `client.key`).
    ///
    /// # Panics
    /// If generating or writing fails (it is for tests).
    pub fn generate(dir: &Path) -> TestPki {
        let ca_key = KeyPair::generate().expect("CA key");
        let mut ca = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.distinguished_name
            .push(DnType::CommonName, "ferry test CA");
        ca.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let ca_cert = ca.self_signed(&ca_key).expect("CA cert");

        let leaf = |cn: &str, eku: ExtendedKeyUsagePurpose| {
            let key = KeyPair::generate().expect("key");
            let mut p =
                CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
                    .expect("params");
            p.distinguished_name.push(DnType::CommonName, cn);
            p.extended_key_usages = vec![eku];
            let cert = p.signed_by(&key, &ca_cert, &ca_key).expect("sign");
            (cert.pem(), key.serialize_pem())
        };
        let (server_cert, server_key) =
            leaf("ferry test server", ExtendedKeyUsagePurpose::ServerAuth);
        let (client_cert, client_key) =
            leaf("ferry test client", ExtendedKeyUsagePurpose::ClientAuth);

        let write = |name: &str, pem: &str| {
            let path = dir.join(name);
            std::fs::write(&path, pem).expect("write PEM");
            path
        };
        TestPki {
            ca_cert: write("ca.crt", &ca_cert.pem()),
            server_cert: write("server.crt", &server_cert),
            server_key: write("server.key", &server_key),
            client_cert: write("client.crt", &client_cert),
            client_key: write("client.key", &client_key),
        }
    }

    /// `redis-server` arguments for a TLS listener on `tls_port` with this
    /// PKI; `auth_clients` asks for (and checks) client certificates.
    pub fn redis_args(&self, tls_port: u16, auth_clients: bool) -> Vec<String> {
        let path = |p: &Path| p.display().to_string();
        vec![
            "--tls-port".into(),
            tls_port.to_string(),
            "--tls-cert-file".into(),
            path(&self.server_cert),
            "--tls-key-file".into(),
            path(&self.server_key),
            "--tls-ca-cert-file".into(),
            path(&self.ca_cert),
            "--tls-auth-clients".into(),
            if auth_clients { "yes" } else { "no" }.into(),
        ]
    }
}

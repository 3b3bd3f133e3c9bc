//! TLS on every link: dsms to PostgreSQL (sslmode, sslrootcert in the region URL, rustls) and
//! HTTPS for dsms itself (tls_cert, tls_key), with certificates made here by a test CA.

use std::path::Path;

use dsms::config::DatabaseUrl;
use dsms::store::{self, Limits, Store};
use dsms::testkit::pg::PgCluster;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};

use crate::helpers::{Backends, config_for, spawn_app_in};

/// A certificate authority made for one test.
struct TestCa {
    cert: rcgen::Certificate,
    key: KeyPair,
}

impl TestCa {
    fn new(name: &str) -> Self {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let key = KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        Self { cert, key }
    }

    fn pem(&self) -> String {
        self.cert.pem()
    }

    /// A server certificate for `localhost` (not for 127.0.0.1) and two site names, signed by this
    /// CA: (chain PEM, key PEM).
    fn server(&self) -> (String, String) {
        let params =
            CertificateParams::new(vec!["localhost".to_owned(), "ventes.dakar.example.sn".to_owned(), "*.thies.example.sn".to_owned()])
                .unwrap();
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.cert, &self.key).unwrap();
        (cert.pem(), key.serialize_pem())
    }
}

fn limits() -> Limits {
    Limits { connect_timeout: std::time::Duration::from_secs(5), statement_timeout: std::time::Duration::from_secs(10) }
}

async fn open(url: String) -> std::sync::Arc<dyn Store> {
    let config = dsms::config::Config::with_regions(vec![("Dakar", DatabaseUrl::Postgres(url))]);
    store::open(&config.regions[0], limits()).await.unwrap()
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path.display().to_string()
}

/// A private cluster with TLS on, a database `tls`, and the CA that signed its certificate.
async fn tls_cluster() -> Option<(PgCluster, TestCa)> {
    let cluster = crate::helpers::private_cluster().await?;
    let ca = TestCa::new("dsms test CA");
    let (cert, key) = ca.server();
    let cluster = tokio::task::spawn_blocking(move || {
        cluster.enable_tls(&cert, &key).unwrap();
        cluster.create_database("tls").unwrap();
        cluster
    })
    .await
    .unwrap();
    Some((cluster, ca))
}

#[tokio::test]
async fn verify_full_connects_encrypted_and_a_stranger_ca_is_refused_naming_the_region() {
    let Some((cluster, ca)) = tls_cluster().await else { return };
    let dir = tempfile::tempdir().unwrap();
    let root = write(dir.path(), "ca.pem", &ca.pem());
    let port = cluster.port();

    // verify-full: the chain and the host name are checked; the session is encrypted.
    let url = format!("postgres://postgres@localhost:{port}/tls?sslmode=verify-full&sslrootcert={root}");
    let dakar = open(url.clone()).await;
    dakar.migrate().await.unwrap();
    dakar.ping().await.unwrap();
    let mut conn: sqlx::PgConnection = sqlx::Connection::connect(&url).await.unwrap();
    let (ssl,): (bool,) = sqlx::query_as("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()").fetch_one(&mut conn).await.unwrap();
    assert!(ssl, "the session must be encrypted");

    // A CA the server's certificate does not come from: refused, the region named, TLS said.
    let stranger = write(dir.path(), "stranger.pem", &TestCa::new("someone else").pem());
    let url = format!("postgres://postgres@localhost:{port}/tls?sslmode=verify-full&sslrootcert={stranger}");
    let error = open(url).await.ping().await.unwrap_err().to_string();
    assert!(error.contains("Dakar") && error.contains("TLS"), "{error}");

    // verify-full checks the name (the certificate is for localhost, not 127.0.0.1); verify-ca only
    // the chain.
    let url = format!("postgres://postgres@127.0.0.1:{port}/tls?sslmode=verify-full&sslrootcert={root}");
    let error = open(url).await.ping().await.unwrap_err().to_string();
    assert!(error.contains("Dakar") && error.contains("TLS"), "{error}");
    open(format!("postgres://postgres@127.0.0.1:{port}/tls?sslmode=verify-ca&sslrootcert={root}")).await.ping().await.unwrap();
}

#[tokio::test]
async fn require_against_a_server_without_tls_is_refused_naming_the_region() {
    let Some(cluster) = crate::helpers::private_cluster().await else { return };
    let cluster = tokio::task::spawn_blocking(move || {
        cluster.create_database("plain").unwrap();
        cluster
    })
    .await
    .unwrap();
    let port = cluster.port();
    let error = open(format!("postgres://postgres@127.0.0.1:{port}/plain?sslmode=require")).await.ping().await.unwrap_err().to_string();
    assert!(error.contains("Dakar") && error.contains("TLS"), "{error}");
    // The default (`prefer`) still connects to it, in clear.
    open(format!("postgres://postgres@127.0.0.1:{port}/plain")).await.ping().await.unwrap();
}

#[tokio::test]
async fn dsms_serves_https_with_http2_and_secure_cookies() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new("dsms test CA");
    let (cert, key) = ca.server();
    let mut config = config_for(Backends::Sqlite, dir.path()).unwrap();
    config.edge.tls = Some(dsms::web::tls::TlsFiles {
        cert: write(dir.path(), "cert.pem", &cert).into(),
        key: write(dir.path(), "key.pem", &key).into(),
    });
    let app = spawn_app_in(config, dir).await;
    let https = app.base.replacen("http://127.0.0.1", "https://localhost", 1);
    let client = reqwest::Client::builder()
        .use_rustls_tls()
        .add_root_certificate(reqwest::Certificate::from_pem(ca.pem().as_bytes()).unwrap())
        .build()
        .unwrap();

    let response = client.get(format!("{https}/healthz")).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.version(), reqwest::Version::HTTP_2, "ALPN offers h2");
    let response = client.get(format!("{https}/api/ventes")).send().await.unwrap();
    assert_eq!(response.status(), 200);

    // HTTP/1.1 still works over TLS.
    let http1 = reqwest::Client::builder()
        .use_rustls_tls()
        .http1_only()
        .add_root_certificate(reqwest::Certificate::from_pem(ca.pem().as_bytes()).unwrap())
        .build()
        .unwrap();
    let response = http1.get(format!("{https}/healthz")).send().await.unwrap();
    assert_eq!((response.status().as_u16(), response.version()), (200, reqwest::Version::HTTP_11));

    // The login page's session cookie is Secure under HTTPS.
    let response = http1.get(format!("{https}/connexion")).send().await.unwrap();
    let cookies: Vec<String> = response.headers().get_all("set-cookie").iter().map(|v| v.to_str().unwrap().to_owned()).collect();
    assert!(!cookies.is_empty() && cookies.iter().all(|c| c.contains("; Secure")), "{cookies:?}");

    // The names the certificate is for are served without listing them in `allowed_hosts`;
    // other names are not.
    let port: u16 = app.base.rsplit(':').next().unwrap().parse().unwrap();
    let sites = reqwest::Client::builder()
        .use_rustls_tls()
        .add_root_certificate(reqwest::Certificate::from_pem(ca.pem().as_bytes()).unwrap())
        .resolve("ventes.dakar.example.sn", ([127, 0, 0, 1], port).into())
        .resolve("ventes.thies.example.sn", ([127, 0, 0, 1], port).into())
        .build()
        .unwrap();
    for site in ["ventes.dakar.example.sn", "ventes.thies.example.sn"] {
        let response = sites.get(format!("https://{site}:{port}/healthz")).send().await.unwrap();
        assert_eq!(response.status(), 200, "{site}");
    }
    let stranger = client.get(format!("{https}/healthz")).header("host", "ventes.saint-louis.example.sn").send().await.unwrap();
    assert_eq!(stranger.status(), 421);

    // A client that does not know the CA is refused; plain HTTP on the HTTPS port gets nothing.
    assert!(reqwest::Client::builder().use_rustls_tls().build().unwrap().get(format!("{https}/healthz")).send().await.is_err());
    assert!(reqwest::get(format!("{}/healthz", app.base)).await.is_err());
}

#[tokio::test]
async fn missing_or_unreadable_certificate_files_stop_the_start_with_the_key_named() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = config_for(Backends::Sqlite, dir.path()).unwrap();
    config.edge.tls = Some(dsms::web::tls::TlsFiles { cert: dir.path().join("absent.pem"), key: dir.path().join("absent.key") });
    let error = dsms::app::App::build(config.clone()).await.err().expect("no certificate, no start").to_string();
    assert!(error.contains("tls_cert") && error.contains("absent.pem"), "{error}");

    let cert = write(dir.path(), "empty.pem", "not a certificate\n");
    config.edge.tls = Some(dsms::web::tls::TlsFiles { cert: cert.into(), key: dir.path().join("absent.key") });
    let error = dsms::app::App::build(config).await.err().expect("no certificate, no start").to_string();
    assert!(error.contains("tls_cert"), "{error}");
}

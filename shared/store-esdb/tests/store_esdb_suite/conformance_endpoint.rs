//! The whole conformance suite through the esdb backend, connected to the
//! EventStoreDB-compatible endpoint serving a fresh embedded store per case,
//! secured as in production: TLS with a self-signed certificate the client
//! trusts through `tlsCaFile`, and a user with a password.

use std::net::SocketAddr;
use std::sync::Arc;

use tongban_esdb_endpoint::{Endpoint, EndpointConfig, EndpointHandle, TlsFiles, User};
use tongban_store::testkit::{run_conformance, Fixture};
use tongban_store::{EmbeddedStore, EventStore};
use tongban_store_esdb::{EsdbConfig, EsdbError, EsdbStore};

struct Guard {
    _endpoint: EndpointHandle,
    _dir: tempfile::TempDir,
}

/// Writes a self-signed certificate for 127.0.0.1 and its key into `dir`.
fn self_signed(dir: &std::path::Path) -> TlsFiles {
    let generated = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string()])
        .expect("a self-signed certificate");
    let tls = TlsFiles {
        certificate: dir.join("esdb.crt"),
        private_key: dir.join("esdb.key"),
    };
    std::fs::write(&tls.certificate, generated.cert.pem()).expect("the certificate is written");
    std::fs::write(&tls.private_key, generated.key_pair.serialize_pem())
        .expect("the key is written");
    tls
}

async fn fixture() -> Fixture {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let data = dir.path().join("events");
    let embedded: Arc<dyn EventStore> =
        Arc::new(EmbeddedStore::open(&data).expect("a fresh store opens"));
    let tls = self_signed(dir.path());
    let ca = tls.certificate.clone();
    let config = EndpointConfig::listening_on(SocketAddr::from(([127, 0, 0, 1], 0)))
        .with_user(User::new("gateway", "s3cret-Pw_1", true))
        .with_tls(tls);
    let endpoint = Endpoint::bind(embedded, config)
        .await
        .expect("the endpoint binds")
        .spawn();
    let url = format!(
        "esdb://gateway:s3cret-Pw_1@{}?tls=true&tlsCaFile={}",
        endpoint.local_addr(),
        ca.display()
    );
    let store = EsdbStore::connect(EsdbConfig::new(url)).expect("the client is created");
    Fixture::new(
        store,
        Guard {
            _endpoint: endpoint,
            _dir: dir,
        },
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_esdb_backend_passes_the_conformance_suite_against_the_endpoint() {
    run_conformance(fixture).await;
}

#[tokio::test]
async fn a_missing_or_malformed_tls_ca_file_is_an_error_not_a_panic() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let missing = dir.path().join("missing.pem");
    let garbage = dir.path().join("garbage.pem");
    std::fs::write(&garbage, "not a certificate").expect("written");
    for ca in [missing, garbage] {
        let url = format!("esdb://127.0.0.1:2113?tls=true&tlsCaFile={}", ca.display());
        match EsdbStore::connect(EsdbConfig::new(url)) {
            Err(EsdbError::TlsFile { param, .. }) => assert_eq!(param, "tlsCaFile"),
            Err(other) => panic!("{}: the wrong error {other}", ca.display()),
            Ok(_) => panic!("{}: accepted", ca.display()),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a real EventStoreDB/KurrentDB node: set TONGBAN_ESDB_URL and run with --ignored"]
async fn the_esdb_backend_passes_the_conformance_suite_against_a_real_node() {
    let url = std::env::var("TONGBAN_ESDB_URL")
        .expect("TONGBAN_ESDB_URL names the node, e.g. esdb://localhost:2113?tls=false");
    run_conformance(|| {
        let url = url.clone();
        async move {
            let store = EsdbStore::connect(EsdbConfig::new(url)).expect("the client is created");
            Fixture::new(store, ())
        }
    })
    .await;
}

//! The whole conformance suite through the esdb backend, connected to the
//! EventStoreDB-compatible endpoint serving a fresh embedded store per case.

use std::net::SocketAddr;
use std::sync::Arc;

use tongban_esdb_endpoint::{Endpoint, EndpointConfig, EndpointHandle};
use tongban_store::testkit::{run_conformance, Fixture};
use tongban_store::{EmbeddedStore, EventStore};
use tongban_store_esdb::{EsdbConfig, EsdbStore};

struct Guard {
    _endpoint: EndpointHandle,
    _dir: tempfile::TempDir,
}

async fn fixture() -> Fixture {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let embedded: Arc<dyn EventStore> =
        Arc::new(EmbeddedStore::open(dir.path()).expect("a fresh store opens"));
    let config = EndpointConfig::listening_on(SocketAddr::from(([127, 0, 0, 1], 0)));
    let endpoint = Endpoint::bind(embedded, config)
        .await
        .expect("the endpoint binds")
        .spawn();
    let store = EsdbStore::connect(EsdbConfig::new(endpoint.connection_string()))
        .expect("the client is created");
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

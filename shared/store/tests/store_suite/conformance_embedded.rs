//! The embedded backend runs the whole conformance suite.

use tongban_store::testkit::{run_conformance, Fixture};
use tongban_store::EmbeddedStore;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_embedded_store_passes_the_conformance_suite() {
    run_conformance(|| async {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let store = EmbeddedStore::open(dir.path()).expect("a fresh store opens");
        Fixture::new(store, dir)
    })
    .await;
}

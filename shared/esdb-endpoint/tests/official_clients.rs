//! Unmodified official EventStoreDB clients in other languages against the
//! endpoint. The README's test command (`infra/scripts/test.sh`) installs
//! them when missing; a missing client fails the test, saying how to
//! install it.

use std::net::SocketAddr;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use tongban_esdb_endpoint::{Endpoint, EndpointConfig};
use tongban_store::{EmbeddedStore, EventStore};

fn python_client_installed() -> bool {
    Command::new("python3")
        .args(["-c", "import esdbclient"])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_official_python_client_appends_reads_subscribes_and_gets_a_conflict() {
    assert!(
        python_client_installed(),
        "the official Python client is not installed: python3 -m pip install esdbclient==1.1.7 \
         (infra/scripts/test.sh does this when it is missing)"
    );
    let dir = tempfile::tempdir().expect("a temporary directory");
    let store: Arc<dyn EventStore> = Arc::new(EmbeddedStore::open(dir.path()).expect("a store"));
    let config = EndpointConfig::listening_on(SocketAddr::from(([127, 0, 0, 1], 0)));
    let endpoint = Endpoint::bind(store, config)
        .await
        .expect("the endpoint binds")
        .spawn();
    let uri = endpoint
        .connection_string()
        .replace("tls=false", "Tls=false");
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/clients/official_python_client.py"
    );
    let run = tokio::process::Command::new("python3")
        .args([script, &uri])
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(Duration::from_secs(60), run)
        .await
        .expect("the Python client finishes within 60 s")
        .expect("python3 runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    println!("{stdout}");
    assert!(
        output.status.success() && stdout.contains("OK"),
        "the Python client failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

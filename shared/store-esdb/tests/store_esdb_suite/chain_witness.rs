//! The chain witness on the esdb backend: signed checkpoints land in the
//! `$tongban-chain` system stream, stay out of users' reads, and
//! `verify_chain` checks the chain against them.

use std::net::SocketAddr;
use std::sync::Arc;

use ed25519_dalek::{Signature, SigningKey, Verifier};
use tongban_esdb_endpoint::{Endpoint, EndpointConfig};
use tongban_store::{
    Direction, EmbeddedStore, EventData, EventFilter, EventStore, ExpectedRevision, PositionRange,
    ReadFrom, StreamName,
};
use tongban_store_esdb::{EsdbConfig, EsdbStore, CHECKPOINT_EVENT_TYPE, CHECKPOINT_STREAM};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signed_chain_checkpoints_are_written_to_a_system_stream_and_verified() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let embedded = Arc::new(EmbeddedStore::open(dir.path()).expect("a fresh store opens"));
    let served: Arc<dyn EventStore> = embedded.clone();
    let config = EndpointConfig::listening_on(SocketAddr::from(([127, 0, 0, 1], 0)));
    let endpoint = Endpoint::bind(served, config).await.expect("binds").spawn();
    let key = SigningKey::from_bytes(&[7u8; 32]);
    let store = EsdbStore::connect(
        EsdbConfig::new(endpoint.connection_string())
            .with_checkpoint_every(5)
            .with_witness_interval(std::time::Duration::from_millis(50))
            .with_signing_key(key.clone()),
    )
    .expect("the client is created");

    let stream = StreamName::parse("person-1").expect("name");
    for n in 0..23 {
        let event =
            EventData::json("TemperatureMeasured", &serde_json::json!({"n": n})).expect("event");
        store
            .append(&stream, ExpectedRevision::Any, vec![event])
            .await
            .expect("append");
    }
    // The witness follows $all on its own: wait for its checkpoints.
    let system = StreamName::parse(CHECKPOINT_STREAM).expect("name");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let written = embedded
            .read_stream(&system, Direction::Forwards, ReadFrom::Start, usize::MAX)
            .await
            .map_or(0, |c| c.len());
        if written >= 4 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "only {written} checkpoints after 20 s"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let report = store
        .verify_chain(PositionRange::all())
        .await
        .expect("the chain verifies against its checkpoints");
    assert_eq!(report.events_checked, 23);

    // The checkpoints are in the system stream, signed with the key.
    let checkpoints = embedded
        .read_stream(&system, Direction::Forwards, ReadFrom::Start, usize::MAX)
        .await
        .expect("the checkpoint stream exists");
    assert!(
        checkpoints.len() >= 4,
        "{} checkpoints for 23 events",
        checkpoints.len()
    );
    for checkpoint in &checkpoints {
        assert_eq!(checkpoint.event_type, CHECKPOINT_EVENT_TYPE);
        let body: serde_json::Value = checkpoint.json().expect("JSON");
        let position = body["position"].as_u64().expect("position");
        let hash = hex::decode(body["hash"].as_str().expect("hash")).expect("hex");
        let signature = hex::decode(body["signature"].as_str().expect("signed")).expect("hex");
        let mut signed = b"tongban-chain-checkpoint-v1".to_vec();
        signed.extend_from_slice(&position.to_be_bytes());
        signed.extend_from_slice(&hash);
        let signature = Signature::from_slice(&signature).expect("a signature");
        key.verifying_key()
            .verify(&signed, &signature)
            .expect("the checkpoint signature verifies");
    }

    // Users reading $all through the backend never see the witness's events.
    let all = store
        .read_all(
            Direction::Forwards,
            ReadFrom::Start,
            usize::MAX,
            &EventFilter::all(),
        )
        .await
        .expect("read $all");
    assert_eq!(all.len(), 23);
    assert!(all.iter().all(|e| e.stream.as_str() != CHECKPOINT_STREAM));
}

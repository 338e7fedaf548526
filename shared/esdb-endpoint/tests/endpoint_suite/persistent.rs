//! Persistent subscriptions through the official Rust client: competing
//! consumers, retry, parking and replay, and resuming after a restart.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use eventstore::{
    Client, EventData, NakAction, PersistentSubscription, PersistentSubscriptionEvent,
    PersistentSubscriptionOptions, ReplayParkedMessagesOptions, StreamPosition,
    SubscribeToPersistentSubscriptionOptions, SystemConsumerStrategy,
};
use tongban_esdb_endpoint::{Endpoint, EndpointConfig, EndpointHandle};
use tongban_store::{EmbeddedStore, EventStore};

async fn start(store: Arc<dyn EventStore>) -> (EndpointHandle, Client) {
    let config = EndpointConfig::listening_on(SocketAddr::from(([127, 0, 0, 1], 0)));
    let endpoint = Endpoint::bind(store, config)
        .await
        .expect("the endpoint binds")
        .spawn();
    let settings = endpoint
        .connection_string()
        .parse()
        .expect("a valid connection string");
    let client = Client::new(settings).expect("a client");
    (endpoint, client)
}

async fn append(client: &Client, stream: &str, from: u64, count: u64) {
    let events: Vec<EventData> = (from..from + count)
        .map(|n| EventData::json("OrderPlaced", &serde_json::json!({ "n": n })).expect("json"))
        .collect();
    client
        .append_to_stream(stream, &Default::default(), events)
        .await
        .expect("append");
}

/// The next event of a consumer with its retry count and `n`.
async fn next(sub: &mut PersistentSubscription) -> (eventstore::ResolvedEvent, usize, u64) {
    loop {
        let event = tokio::time::timeout(Duration::from_secs(10), sub.next_subscription_event())
            .await
            .expect("an event within 10 s")
            .expect("the subscription works");
        if let PersistentSubscriptionEvent::EventAppeared { retry_count, event } = event {
            let n = event
                .get_original_event()
                .as_json::<serde_json::Value>()
                .ok()
                .and_then(|v| v["n"].as_u64())
                .expect("an n");
            return (event, retry_count, n);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn competing_consumers_share_a_group_and_nacked_messages_are_retried_parked_and_replayed() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let store: Arc<dyn EventStore> = Arc::new(EmbeddedStore::open(dir.path()).expect("a store"));
    let (_endpoint, client) = start(store).await;
    let stream = "orders-competing";
    let options = PersistentSubscriptionOptions::default()
        .consumer_strategy_name(SystemConsumerStrategy::RoundRobin)
        .max_retry_count(1)
        .start_from(StreamPosition::Start);
    client
        .create_persistent_subscription(stream, "billing", &options)
        .await
        .expect("create");
    let again = client
        .create_persistent_subscription(stream, "billing", &options)
        .await;
    assert!(matches!(
        again,
        Err(eventstore::Error::ResourceAlreadyExists)
    ));

    let sub_options = SubscribeToPersistentSubscriptionOptions::default().buffer_size(10);
    let mut a = client
        .subscribe_to_persistent_subscription(stream, "billing", &sub_options)
        .await
        .expect("consumer a");
    let mut b = client
        .subscribe_to_persistent_subscription(stream, "billing", &sub_options)
        .await
        .expect("consumer b");
    append(&client, stream, 0, 10).await;

    let (mut seen_a, mut seen_b) = (Vec::new(), Vec::new());
    let mut held = None;
    while seen_a.len() + seen_b.len() < 10 {
        tokio::select! {
            (event, _, n) = next(&mut a) => {
                seen_a.push(n);
                if held.is_none() { held = Some(event) } else { a.ack(event).await.expect("ack") }
            }
            (event, _, n) = next(&mut b) => {
                seen_b.push(n);
                b.ack(event).await.expect("ack");
            }
        }
    }
    assert!(
        !seen_a.is_empty() && !seen_b.is_empty(),
        "a {seen_a:?} b {seen_b:?}"
    );
    let mut all: Vec<u64> = seen_a.iter().chain(&seen_b).copied().collect();
    all.sort_unstable();
    assert_eq!(
        all,
        (0..10).collect::<Vec<_>>(),
        "each event went to one consumer"
    );

    // Retry once (allowed), then again: past the max retry count it is parked.
    let held = held.expect("consumer a held one event");
    let held_n = seen_a[0];
    a.nack(held, NakAction::Retry, "try again")
        .await
        .expect("nack");
    let (redelivered, retry_count, n) = tokio::select! {
        r = next(&mut a) => r,
        r = next(&mut b) => r,
    };
    assert_eq!(
        (n, retry_count),
        (held_n, 1),
        "a nacked message is redelivered"
    );
    // Whichever consumer got it nacks it again through consumer a's id.
    a.nack_ids(
        vec![redelivered.get_original_event().id],
        NakAction::Retry,
        "still failing",
    )
    .await
    .expect("nack");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let info = client
        .get_persistent_subscription_info(stream, "billing", &Default::default())
        .await
        .expect("info");
    assert_eq!(
        info.stats.parked_message_count, 1,
        "parked after max retries"
    );

    client
        .replay_parked_messages(stream, "billing", &ReplayParkedMessagesOptions::default())
        .await
        .expect("replay");
    let (replayed, retry_count, n) = tokio::select! {
        r = next(&mut a) => r,
        r = next(&mut b) => r,
    };
    assert_eq!(
        (n, retry_count),
        (held_n, 0),
        "the parked message is replayed"
    );
    a.ack_ids(vec![replayed.get_original_event().id])
        .await
        .expect("ack");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_restart_the_group_resumes_from_its_checkpoint() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let store: Arc<dyn EventStore> = Arc::new(EmbeddedStore::open(dir.path()).expect("a store"));
    let stream = "orders-restart";
    let (endpoint, client) = start(store.clone()).await;
    let options = PersistentSubscriptionOptions::default()
        .consumer_strategy_name(SystemConsumerStrategy::DispatchToSingle)
        .checkpoint_lower_bound(1)
        .checkpoint_after(Duration::from_millis(100))
        .start_from(StreamPosition::Start);
    client
        .create_persistent_subscription(stream, "audit", &options)
        .await
        .expect("create");
    append(&client, stream, 0, 20).await;
    let sub_options = SubscribeToPersistentSubscriptionOptions::default().buffer_size(1);
    let mut sub = client
        .subscribe_to_persistent_subscription(stream, "audit", &sub_options)
        .await
        .expect("subscribe");
    for expected in 0..10 {
        let (event, _, n) = next(&mut sub).await;
        assert_eq!(n, expected);
        sub.ack(event).await.expect("ack");
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    drop(sub);
    endpoint.stop().await.expect("a clean stop");

    let (_endpoint, client) = start(store).await;
    let mut sub = client
        .subscribe_to_persistent_subscription(stream, "audit", &sub_options)
        .await
        .expect("subscribe after restart");
    let (_, _, first) = next(&mut sub).await;
    assert_eq!(
        first, 10,
        "acknowledged events are not redelivered after a restart"
    );
}

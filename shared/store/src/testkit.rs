//! The conformance suite: every backend runs it with one call.
//!
//! ```text
//! tongban_store::testkit::run_conformance(|| async {
//!     let dir = tempfile::tempdir().unwrap();
//!     let store = EmbeddedStore::open(dir.path()).unwrap();
//!     Fixture::new(store, dir)
//! }).await;
//! ```
//!
//! Each case gets a fresh store from the factory and checks one promise of
//! the [`EventStore`] trait. Cases report failures instead of panicking, so
//! one run lists every broken promise; the run panics at the end if any
//! failed.

use std::any::Any;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use serde_json::json;
use uuid::Uuid;

use crate::event::{
    CurrentRevision, EventData, ExpectedRevision, Position, RecordedEvent, MAX_EVENT_SIZE,
};
use crate::filter::EventFilter;
use crate::metadata::StreamMetadata;
use crate::store::{
    Direction, EventStore, PositionRange, ReadFrom, SubscribeFrom, Subscription,
    SubscriptionMessage,
};
use crate::stream_name::StreamName;
use crate::StoreError;

/// A store for one case, with whatever must live as long as it (a
/// temporary directory, a server).
pub struct Fixture {
    pub store: Arc<dyn EventStore>,
    pub guard: Box<dyn Any + Send + Sync>,
}

impl Fixture {
    pub fn new(store: impl EventStore, guard: impl Any + Send + Sync) -> Self {
        Self {
            store: Arc::new(store),
            guard: Box::new(guard),
        }
    }
}

type CaseResult = Result<(), String>;
type CaseFn = fn(Arc<dyn EventStore>) -> Pin<Box<dyn Future<Output = CaseResult> + Send>>;

macro_rules! ensure {
    ($cond:expr, $($msg:tt)+) => {
        if !$cond {
            return Err(format!($($msg)+));
        }
    };
}

macro_rules! cases {
    ($($name:ident),+ $(,)?) => {
        /// Every case of the suite, by name.
        pub fn cases() -> Vec<(&'static str, CaseFn)> {
            vec![$((stringify!($name), (|s| Box::pin($name(s))) as CaseFn)),+]
        }
    };
}

/// Runs every case against fresh stores from `factory`; panics listing the
/// failed cases if any failed.
pub async fn run_conformance<F, Fut>(factory: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = Fixture>,
{
    let mut failed = Vec::new();
    let all = cases();
    for (name, case) in &all {
        let fixture = factory().await;
        let outcome =
            tokio::time::timeout(Duration::from_secs(60), case(fixture.store.clone())).await;
        let outcome = outcome.unwrap_or_else(|_| Err("timed out after 60 s".into()));
        match outcome {
            Ok(()) => println!("conformance {name} ... ok"),
            Err(why) => {
                println!("conformance {name} ... FAILED: {why}");
                failed.push(format!("{name}: {why}"));
            }
        }
        drop(fixture);
    }
    println!(
        "conformance: {} passed, {} failed",
        all.len() - failed.len(),
        failed.len()
    );
    assert!(
        failed.is_empty(),
        "conformance failures:\n{}",
        failed.join("\n")
    );
}

fn stream(name: &str) -> StreamName {
    StreamName::parse(format!("{name}-{}", Uuid::new_v4().simple())).unwrap_or_else(|_| {
        // Names built here are always valid; keep the suite panic-free anyway.
        StreamName::parse("fallback-stream").expect("valid literal")
    })
}

fn event(kind: &str, n: u64) -> EventData {
    EventData::raw(kind, format!(r#"{{"n":{n},"note":"conformance"}}"#))
}

fn events(kind: &str, count: u64) -> Vec<EventData> {
    (0..count).map(|n| event(kind, n)).collect()
}

fn ns(events: &[RecordedEvent]) -> Vec<u64> {
    events
        .iter()
        .filter_map(|e| e.json::<serde_json::Value>().ok()?["n"].as_u64())
        .collect()
}

fn err<T: std::fmt::Debug>(r: Result<T, StoreError>) -> Result<StoreError, String> {
    match r {
        Ok(v) => Err(format!("expected an error, got {v:?}")),
        Err(e) => Ok(e),
    }
}

fn ok<T>(r: Result<T, StoreError>, what: &str) -> Result<T, String> {
    r.map_err(|e| format!("{what}: {e}"))
}

async fn read_fwd(
    store: &Arc<dyn EventStore>,
    s: &StreamName,
) -> Result<Vec<RecordedEvent>, String> {
    ok(
        store
            .read_stream(s, Direction::Forwards, ReadFrom::Start, usize::MAX)
            .await,
        "read stream",
    )
}

async fn read_all_fwd(store: &Arc<dyn EventStore>) -> Result<Vec<RecordedEvent>, String> {
    ok(
        store
            .read_all(
                Direction::Forwards,
                ReadFrom::Start,
                usize::MAX,
                &EventFilter::all(),
            )
            .await,
        "read $all",
    )
}

/// Next event from a subscription, skipping checkpoints and caught-up markers.
async fn next_event(sub: &mut Subscription) -> Result<RecordedEvent, String> {
    loop {
        match tokio::time::timeout(Duration::from_secs(10), sub.next()).await {
            Err(_) => return Err("no event from the subscription within 10 s".into()),
            Ok(None) => return Err("the subscription ended".into()),
            Ok(Some(Err(e))) => return Err(format!("the subscription failed: {e}")),
            Ok(Some(Ok(SubscriptionMessage::Event(e)))) => return Ok(e),
            Ok(Some(Ok(_))) => continue,
        }
    }
}

/// Waits until the subscription says it has caught up; fails on any event.
async fn expect_caught_up(sub: &mut Subscription) -> CaseResult {
    loop {
        match tokio::time::timeout(Duration::from_secs(10), sub.next()).await {
            Err(_) => return Err("no caught-up message within 10 s".into()),
            Ok(None) => return Err("the subscription ended".into()),
            Ok(Some(Err(e))) => return Err(format!("the subscription failed: {e}")),
            Ok(Some(Ok(SubscriptionMessage::CaughtUp))) => return Ok(()),
            Ok(Some(Ok(SubscriptionMessage::Checkpoint(_)))) => continue,
            Ok(Some(Ok(SubscriptionMessage::Event(e)))) => {
                return Err(format!(
                    "unexpected event {} at {}",
                    e.event_type, e.position
                ))
            }
        }
    }
}

fn is_wrong_version(e: &StoreError, want_actual: CurrentRevision) -> bool {
    matches!(e, StoreError::WrongExpectedVersion { actual, .. } if *actual == want_actual)
}

// ---- the expected-revision matrix ------------------------------------------

async fn no_stream_creates_a_stream_at_revision_zero(store: Arc<dyn EventStore>) -> CaseResult {
    let s = stream("order");
    let r = ok(
        store
            .append(&s, ExpectedRevision::NoStream, vec![event("Placed", 0)])
            .await,
        "append",
    )?;
    ensure!(
        r.next_expected_revision == 0,
        "next expected revision {} != 0",
        r.next_expected_revision
    );
    Ok(())
}

async fn no_stream_on_an_existing_stream_is_a_conflict_naming_the_actual_revision(
    store: Arc<dyn EventStore>,
) -> CaseResult {
    let s = stream("order");
    ok(
        store
            .append(&s, ExpectedRevision::Any, events("A", 2))
            .await,
        "append",
    )?;
    let e = err(store
        .append(&s, ExpectedRevision::NoStream, vec![event("B", 9)])
        .await)?;
    ensure!(
        is_wrong_version(&e, CurrentRevision::Current(1)),
        "got {e:?}"
    );
    ensure!(
        read_fwd(&store, &s).await?.len() == 2,
        "the refused append wrote something"
    );
    Ok(())
}

async fn any_appends_to_new_and_existing_streams(store: Arc<dyn EventStore>) -> CaseResult {
    let s = stream("order");
    ok(
        store
            .append(&s, ExpectedRevision::Any, vec![event("A", 0)])
            .await,
        "first",
    )?;
    let r = ok(
        store
            .append(&s, ExpectedRevision::Any, vec![event("A", 1)])
            .await,
        "second",
    )?;
    ensure!(
        r.next_expected_revision == 1,
        "revision {}",
        r.next_expected_revision
    );
    Ok(())
}

async fn stream_exists_on_a_missing_stream_is_a_conflict(store: Arc<dyn EventStore>) -> CaseResult {
    let s = stream("order");
    let e = err(store
        .append(&s, ExpectedRevision::StreamExists, vec![event("A", 0)])
        .await)?;
    ensure!(is_wrong_version(&e, CurrentRevision::NoStream), "got {e:?}");
    Ok(())
}

async fn stream_exists_on_an_existing_stream_appends(store: Arc<dyn EventStore>) -> CaseResult {
    let s = stream("order");
    ok(
        store
            .append(&s, ExpectedRevision::NoStream, vec![event("A", 0)])
            .await,
        "create",
    )?;
    let r = ok(
        store
            .append(&s, ExpectedRevision::StreamExists, vec![event("A", 1)])
            .await,
        "append",
    )?;
    ensure!(
        r.next_expected_revision == 1,
        "revision {}",
        r.next_expected_revision
    );
    Ok(())
}

async fn the_exact_current_revision_appends(store: Arc<dyn EventStore>) -> CaseResult {
    let s = stream("order");
    ok(
        store
            .append(&s, ExpectedRevision::NoStream, events("A", 3))
            .await,
        "create",
    )?;
    let r = ok(
        store
            .append(&s, ExpectedRevision::Exact(2), vec![event("B", 3)])
            .await,
        "append",
    )?;
    ensure!(
        r.next_expected_revision == 3,
        "revision {}",
        r.next_expected_revision
    );
    Ok(())
}

async fn a_stale_exact_revision_is_a_conflict_with_expected_and_actual(
    store: Arc<dyn EventStore>,
) -> CaseResult {
    let s = stream("order");
    ok(
        store
            .append(&s, ExpectedRevision::NoStream, events("A", 3))
            .await,
        "create",
    )?;
    let e = err(store
        .append(&s, ExpectedRevision::Exact(1), vec![event("B", 3)])
        .await)?;
    match &e {
        StoreError::WrongExpectedVersion {
            expected, actual, ..
        } => {
            ensure!(
                *expected == ExpectedRevision::Exact(1),
                "expected {expected:?}"
            );
            ensure!(*actual == CurrentRevision::Current(2), "actual {actual:?}");
        }
        other => return Err(format!("got {other:?}")),
    }
    Ok(())
}

async fn an_exact_revision_on_a_missing_stream_is_a_conflict(
    store: Arc<dyn EventStore>,
) -> CaseResult {
    let s = stream("order");
    let e = err(store
        .append(&s, ExpectedRevision::Exact(0), vec![event("A", 0)])
        .await)?;
    ensure!(is_wrong_version(&e, CurrentRevision::NoStream), "got {e:?}");
    Ok(())
}

async fn an_exact_revision_ahead_of_the_stream_is_a_conflict(
    store: Arc<dyn EventStore>,
) -> CaseResult {
    let s = stream("order");
    ok(
        store
            .append(&s, ExpectedRevision::NoStream, events("A", 1))
            .await,
        "create",
    )?;
    let e = err(store
        .append(&s, ExpectedRevision::Exact(5), vec![event("A", 1)])
        .await)?;
    ensure!(
        is_wrong_version(&e, CurrentRevision::Current(0)),
        "got {e:?}"
    );
    Ok(())
}

// ---- idempotency ---------------------------------------------------------------

async fn repeating_an_append_with_no_stream_writes_no_duplicates(
    store: Arc<dyn EventStore>,
) -> CaseResult {
    let s = stream("order");
    let batch = events("A", 3);
    let first = ok(
        store
            .append(&s, ExpectedRevision::NoStream, batch.clone())
            .await,
        "first",
    )?;
    let again = ok(
        store.append(&s, ExpectedRevision::NoStream, batch).await,
        "retry",
    )?;
    ensure!(first == again, "retry answered {again:?}, first {first:?}");
    ensure!(read_fwd(&store, &s).await?.len() == 3, "duplicates written");
    Ok(())
}

async fn repeating_an_append_with_the_same_exact_revision_writes_no_duplicates(
    store: Arc<dyn EventStore>,
) -> CaseResult {
    let s = stream("order");
    ok(
        store
            .append(&s, ExpectedRevision::NoStream, events("A", 2))
            .await,
        "create",
    )?;
    let batch = vec![event("B", 2), event("B", 3)];
    let first = ok(
        store
            .append(&s, ExpectedRevision::Exact(1), batch.clone())
            .await,
        "first",
    )?;
    let again = ok(
        store.append(&s, ExpectedRevision::Exact(1), batch).await,
        "retry",
    )?;
    ensure!(
        first.next_expected_revision == again.next_expected_revision,
        "{first:?} vs {again:?}"
    );
    ensure!(
        ns(&read_fwd(&store, &s).await?) == vec![0, 1, 2, 3],
        "stream differs"
    );
    Ok(())
}

async fn repeating_an_append_with_any_writes_no_duplicates(
    store: Arc<dyn EventStore>,
) -> CaseResult {
    let s = stream("order");
    let batch = events("A", 2);
    ok(
        store.append(&s, ExpectedRevision::Any, batch.clone()).await,
        "first",
    )?;
    ok(
        store.append(&s, ExpectedRevision::Any, batch).await,
        "retry",
    )?;
    ensure!(read_fwd(&store, &s).await?.len() == 2, "duplicates written");
    let all = read_all_fwd(&store).await?;
    ensure!(
        all.iter().filter(|e| e.stream == s).count() == 2,
        "duplicates in $all"
    );
    Ok(())
}

async fn a_retry_after_other_writes_with_the_old_revision_is_still_recognised(
    store: Arc<dyn EventStore>,
) -> CaseResult {
    let s = stream("order");
    let batch = events("A", 1);
    ok(
        store
            .append(&s, ExpectedRevision::NoStream, batch.clone())
            .await,
        "first",
    )?;
    ok(
        store
            .append(&s, ExpectedRevision::Exact(0), vec![event("B", 1)])
            .await,
        "other writer",
    )?;
    let again = ok(
        store.append(&s, ExpectedRevision::NoStream, batch).await,
        "retry",
    )?;
    ensure!(
        again.next_expected_revision == 0,
        "retry answered {again:?}"
    );
    ensure!(read_fwd(&store, &s).await?.len() == 2, "duplicate written");
    Ok(())
}

async fn a_partial_repeat_is_a_conflict_not_a_duplicate(store: Arc<dyn EventStore>) -> CaseResult {
    let s = stream("order");
    let first = events("A", 2);
    ok(
        store
            .append(&s, ExpectedRevision::NoStream, first.clone())
            .await,
        "first",
    )?;
    let mixed = vec![first[0].clone(), event("C", 7)];
    let e = err(store.append(&s, ExpectedRevision::NoStream, mixed).await)?;
    ensure!(
        matches!(e, StoreError::WrongExpectedVersion { .. }),
        "got {e:?}"
    );
    ensure!(
        read_fwd(&store, &s).await?.len() == 2,
        "something was written"
    );
    Ok(())
}

async fn the_same_event_id_twice_in_one_append_is_refused(
    store: Arc<dyn EventStore>,
) -> CaseResult {
    let s = stream("order");
    let a = event("A", 0);
    let e = err(store
        .append(&s, ExpectedRevision::Any, vec![a.clone(), a])
        .await)?;
    ensure!(matches!(e, StoreError::InvalidInput { .. }), "got {e:?}");
    Ok(())
}

// ---- atomicity and ordering --------------------------------------------------

async fn a_multi_event_append_gets_consecutive_revisions_and_increasing_positions(
    store: Arc<dyn EventStore>,
) -> CaseResult {
    let s = stream("order");
    let r = ok(
        store
            .append(&s, ExpectedRevision::NoStream, events("A", 5))
            .await,
        "append",
    )?;
    let read = read_fwd(&store, &s).await?;
    ensure!(
        read.iter().map(|e| e.revision).eq(0..5),
        "revisions not 0..5"
    );
    ensure!(
        read.windows(2).all(|w| w[0].position < w[1].position),
        "positions not increasing"
    );
    ensure!(
        read.first().map(|e| e.position) == Some(r.first_position),
        "first position mismatch"
    );
    ensure!(
        read.last().map(|e| e.position) == Some(r.position),
        "last position mismatch"
    );
    Ok(())
}

async fn an_append_with_one_bad_event_writes_none_of_them(
    store: Arc<dyn EventStore>,
) -> CaseResult {
    let s = stream("order");
    let batch = vec![event("A", 0), event("A", 1), EventData::raw("A", "{broken")];
    let e = err(store.append(&s, ExpectedRevision::Any, batch).await)?;
    ensure!(
        matches!(e, StoreError::InvalidJson { index: 2, .. }),
        "got {e:?}"
    );
    let e = err(store
        .read_stream(&s, Direction::Forwards, ReadFrom::Start, 10)
        .await)?;
    ensure!(
        matches!(e, StoreError::StreamNotFound { .. }),
        "stream exists: {e:?}"
    );
    ensure!(read_all_fwd(&store).await?.is_empty(), "$all is not empty");
    Ok(())
}

async fn concurrent_appends_at_the_same_revision_let_exactly_one_win(
    store: Arc<dyn EventStore>,
) -> CaseResult {
    let s = stream("order");
    ok(
        store
            .append(&s, ExpectedRevision::NoStream, events("A", 1))
            .await,
        "create",
    )?;
    let mut tasks = Vec::new();
    for n in 0..16 {
        let (store, s) = (store.clone(), s.clone());
        tasks.push(tokio::spawn(async move {
            store
                .append(&s, ExpectedRevision::Exact(0), vec![event("B", 100 + n)])
                .await
        }));
    }
    let mut won = 0;
    for t in tasks {
        match t.await.map_err(|e| e.to_string())? {
            Ok(_) => won += 1,
            Err(StoreError::WrongExpectedVersion { .. }) => {}
            Err(e) => return Err(format!("unexpected error {e}")),
        }
    }
    ensure!(won == 1, "{won} appends won");
    ensure!(
        read_fwd(&store, &s).await?.len() == 2,
        "stream length wrong"
    );
    Ok(())
}

async fn readers_never_see_part_of_an_append(store: Arc<dyn EventStore>) -> CaseResult {
    let s = stream("order");
    let writer = {
        let (store, s) = (store.clone(), s.clone());
        tokio::spawn(async move {
            for _ in 0..40 {
                store
                    .append(&s, ExpectedRevision::Any, events("A", 5))
                    .await?;
            }
            Ok::<_, StoreError>(())
        })
    };
    let mut reads = 0;
    while !writer.is_finished() {
        match store
            .read_stream(&s, Direction::Forwards, ReadFrom::Start, usize::MAX)
            .await
        {
            Ok(read) => ensure!(read.len() % 5 == 0, "a reader saw {} events", read.len()),
            Err(StoreError::StreamNotFound { .. }) => {}
            Err(e) => return Err(e.to_string()),
        }
        let all = ok(
            store
                .read_all(
                    Direction::Forwards,
                    ReadFrom::Start,
                    usize::MAX,
                    &EventFilter::all(),
                )
                .await,
            "read $all",
        )?;
        ensure!(all.len() % 5 == 0, "$all showed {} events", all.len());
        reads += 1;
        tokio::task::yield_now().await;
    }
    ok(writer.await.map_err(|e| e.to_string())?, "writer")?;
    ensure!(reads > 0, "no read happened");
    Ok(())
}

async fn all_is_in_commit_order_across_streams(store: Arc<dyn EventStore>) -> CaseResult {
    let (a, b) = (stream("a"), stream("b"));
    let mut written = Vec::new();
    for n in 0..6 {
        let s = if n % 2 == 0 { &a } else { &b };
        let r = ok(
            store
                .append(s, ExpectedRevision::Any, vec![event("E", n)])
                .await,
            "append",
        )?;
        written.push(r.position);
    }
    let all = read_all_fwd(&store).await?;
    ensure!(ns(&all) == vec![0, 1, 2, 3, 4, 5], "order {:?}", ns(&all));
    ensure!(
        all.iter().map(|e| e.position).eq(written.iter().copied()),
        "positions differ"
    );
    ensure!(
        all.windows(2).all(|w| w[0].position < w[1].position),
        "positions not increasing"
    );
    Ok(())
}

async fn concurrent_writers_get_unique_increasing_positions(
    store: Arc<dyn EventStore>,
) -> CaseResult {
    let mut tasks = Vec::new();
    for w in 0..8u64 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let s = stream("w");
            for n in 0..20 {
                store
                    .append(&s, ExpectedRevision::Any, vec![event("E", w * 100 + n)])
                    .await?;
            }
            Ok::<_, StoreError>(())
        }));
    }
    for t in tasks {
        ok(t.await.map_err(|e| e.to_string())?, "writer")?;
    }
    let all = read_all_fwd(&store).await?;
    ensure!(all.len() == 160, "{} events in $all", all.len());
    ensure!(
        all.windows(2).all(|w| w[0].position < w[1].position),
        "positions not increasing"
    );
    Ok(())
}

// ---- reads -----------------------------------------------------------------------

async fn a_stream_reads_forwards_from_a_revision(store: Arc<dyn EventStore>) -> CaseResult {
    let s = stream("order");
    ok(
        store
            .append(&s, ExpectedRevision::NoStream, events("A", 10))
            .await,
        "append",
    )?;
    let read = ok(
        store
            .read_stream(&s, Direction::Forwards, ReadFrom::At(4), 3)
            .await,
        "read",
    )?;
    ensure!(ns(&read) == vec![4, 5, 6], "got {:?}", ns(&read));
    Ok(())
}

async fn a_stream_reads_backwards_from_the_end(store: Arc<dyn EventStore>) -> CaseResult {
    let s = stream("order");
    ok(
        store
            .append(&s, ExpectedRevision::NoStream, events("A", 10))
            .await,
        "append",
    )?;
    let read = ok(
        store
            .read_stream(&s, Direction::Backwards, ReadFrom::End, 3)
            .await,
        "read",
    )?;
    ensure!(ns(&read) == vec![9, 8, 7], "got {:?}", ns(&read));
    Ok(())
}

async fn a_stream_reads_backwards_from_a_revision(store: Arc<dyn EventStore>) -> CaseResult {
    let s = stream("order");
    ok(
        store
            .append(&s, ExpectedRevision::NoStream, events("A", 10))
            .await,
        "append",
    )?;
    let read = ok(
        store
            .read_stream(&s, Direction::Backwards, ReadFrom::At(2), 10)
            .await,
        "read",
    )?;
    ensure!(ns(&read) == vec![2, 1, 0], "got {:?}", ns(&read));
    Ok(())
}

async fn reading_past_the_end_of_a_stream_returns_nothing(
    store: Arc<dyn EventStore>,
) -> CaseResult {
    let s = stream("order");
    ok(
        store
            .append(&s, ExpectedRevision::NoStream, events("A", 2))
            .await,
        "append",
    )?;
    let read = ok(
        store
            .read_stream(&s, Direction::Forwards, ReadFrom::At(5), 10)
            .await,
        "read",
    )?;
    ensure!(read.is_empty(), "got {} events", read.len());
    Ok(())
}

async fn reading_a_missing_stream_is_not_found(store: Arc<dyn EventStore>) -> CaseResult {
    let e = err(store
        .read_stream(&stream("nobody"), Direction::Forwards, ReadFrom::Start, 10)
        .await)?;
    ensure!(matches!(e, StoreError::StreamNotFound { .. }), "got {e:?}");
    Ok(())
}

async fn all_reads_forwards_from_a_position_inclusively(store: Arc<dyn EventStore>) -> CaseResult {
    let s = stream("order");
    ok(
        store
            .append(&s, ExpectedRevision::NoStream, events("A", 6))
            .await,
        "append",
    )?;
    let all = read_all_fwd(&store).await?;
    let from = all[3].position;
    let read = ok(
        store
            .read_all(
                Direction::Forwards,
                ReadFrom::At(from),
                2,
                &EventFilter::all(),
            )
            .await,
        "read",
    )?;
    ensure!(ns(&read) == vec![3, 4], "got {:?}", ns(&read));
    Ok(())
}

async fn all_reads_backwards_from_the_end_and_from_a_position(
    store: Arc<dyn EventStore>,
) -> CaseResult {
    let s = stream("order");
    ok(
        store
            .append(&s, ExpectedRevision::NoStream, events("A", 6))
            .await,
        "append",
    )?;
    let read = ok(
        store
            .read_all(Direction::Backwards, ReadFrom::End, 2, &EventFilter::all())
            .await,
        "read",
    )?;
    ensure!(ns(&read) == vec![5, 4], "got {:?}", ns(&read));
    let from = read[1].position;
    let read = ok(
        store
            .read_all(
                Direction::Backwards,
                ReadFrom::At(from),
                10,
                &EventFilter::all(),
            )
            .await,
        "read",
    )?;
    ensure!(ns(&read) == vec![4, 3, 2, 1, 0], "got {:?}", ns(&read));
    Ok(())
}

async fn all_reads_filter_by_stream_prefix(store: Arc<dyn EventStore>) -> CaseResult {
    for n in 0..4 {
        let s = stream(if n % 2 == 0 { "person" } else { "venue" });
        ok(
            store
                .append(&s, ExpectedRevision::Any, vec![event("E", n)])
                .await,
            "append",
        )?;
    }
    let read = ok(
        store
            .read_all(
                Direction::Forwards,
                ReadFrom::Start,
                100,
                &EventFilter::streams(["person-"]),
            )
            .await,
        "read",
    )?;
    ensure!(ns(&read) == vec![0, 2], "got {:?}", ns(&read));
    Ok(())
}

async fn all_reads_filter_by_event_type_prefix(store: Arc<dyn EventStore>) -> CaseResult {
    let s = stream("person");
    let batch = vec![
        event("TestResultRecorded", 0),
        event("HealthDeclared", 1),
        event("TestOrdered", 2),
    ];
    ok(
        store.append(&s, ExpectedRevision::Any, batch).await,
        "append",
    )?;
    let read = ok(
        store
            .read_all(
                Direction::Forwards,
                ReadFrom::Start,
                100,
                &EventFilter::event_types(["Test"]),
            )
            .await,
        "read",
    )?;
    ensure!(ns(&read) == vec![0, 2], "got {:?}", ns(&read));
    Ok(())
}

async fn all_reads_can_leave_out_system_events(store: Arc<dyn EventStore>) -> CaseResult {
    let s = stream("order");
    ok(
        store
            .append(&s, ExpectedRevision::Any, events("A", 2))
            .await,
        "append",
    )?;
    ok(
        store
            .set_stream_metadata(
                &s,
                ExpectedRevision::Any,
                StreamMetadata::default().with_max_count(5),
            )
            .await,
        "metadata",
    )?;
    let everything = read_all_fwd(&store).await?;
    ensure!(
        everything.iter().any(|e| e.event_type.starts_with('$')),
        "no metadata event in $all"
    );
    let user = ok(
        store
            .read_all(
                Direction::Forwards,
                ReadFrom::Start,
                100,
                &EventFilter::all().excluding_system_events(),
            )
            .await,
        "read",
    )?;
    ensure!(
        user.len() == 2 && user.iter().all(|e| !e.event_type.starts_with('$')),
        "system events leaked"
    );
    Ok(())
}

async fn recorded_events_keep_ids_types_data_and_metadata(
    store: Arc<dyn EventStore>,
) -> CaseResult {
    let s = stream("person");
    let id = Uuid::new_v4();
    let data = json!({"temperature": 36.6, "名字": "张三"});
    let metadata = json!({"correlationId": "c-1", "actor": "lab-7"});
    let e = EventData::json("TemperatureMeasured", &data)
        .and_then(|e| e.with_metadata(&metadata))
        .map_err(|e| e.to_string())?
        .with_id(id);
    ok(
        store.append(&s, ExpectedRevision::NoStream, vec![e]).await,
        "append",
    )?;
    let read = read_fwd(&store, &s).await?;
    let got = read.first().ok_or("nothing read")?;
    ensure!(got.id == id, "id changed");
    ensure!(got.event_type == "TemperatureMeasured", "type changed");
    ensure!(
        got.json::<serde_json::Value>().ok() == Some(data),
        "data changed"
    );
    ensure!(
        got.metadata_json::<serde_json::Value>().ok() == Some(metadata),
        "metadata changed"
    );
    ensure!(got.stream == s, "stream changed");
    let age = time::OffsetDateTime::now_utc() - got.recorded_at;
    ensure!(
        age.whole_seconds().abs() < 60,
        "recorded-at is {}",
        got.recorded_at
    );
    Ok(())
}

// ---- metadata ----------------------------------------------------------------------

async fn max_count_shows_only_the_latest_events(store: Arc<dyn EventStore>) -> CaseResult {
    let s = stream("order");
    ok(
        store
            .append(&s, ExpectedRevision::NoStream, events("A", 10))
            .await,
        "append",
    )?;
    ok(
        store
            .set_stream_metadata(
                &s,
                ExpectedRevision::NoStream,
                StreamMetadata::default().with_max_count(3),
            )
            .await,
        "metadata",
    )?;
    ensure!(
        ns(&read_fwd(&store, &s).await?) == vec![7, 8, 9],
        "forwards wrong"
    );
    let back = ok(
        store
            .read_stream(&s, Direction::Backwards, ReadFrom::End, 10)
            .await,
        "read",
    )?;
    ensure!(ns(&back) == vec![9, 8, 7], "backwards wrong");
    Ok(())
}

async fn max_age_hides_events_older_than_it(store: Arc<dyn EventStore>) -> CaseResult {
    let s = stream("order");
    ok(
        store
            .append(&s, ExpectedRevision::NoStream, events("A", 2))
            .await,
        "append",
    )?;
    ok(
        store
            .set_stream_metadata(
                &s,
                ExpectedRevision::Any,
                StreamMetadata::default().with_max_age_seconds(1),
            )
            .await,
        "metadata",
    )?;
    tokio::time::sleep(Duration::from_millis(1300)).await;
    ok(
        store
            .append(&s, ExpectedRevision::Exact(1), vec![event("A", 2)])
            .await,
        "append",
    )?;
    ensure!(
        ns(&read_fwd(&store, &s).await?) == vec![2],
        "old events visible"
    );
    Ok(())
}

async fn metadata_round_trips_with_its_own_revision(store: Arc<dyn EventStore>) -> CaseResult {
    let s = stream("order");
    ok(
        store
            .append(&s, ExpectedRevision::NoStream, events("A", 1))
            .await,
        "append",
    )?;
    let before = ok(store.get_stream_metadata(&s).await, "get")?;
    ensure!(
        before.revision.is_none() && before.metadata == StreamMetadata::default(),
        "{before:?}"
    );
    let mut metadata = StreamMetadata::default().with_max_count(50);
    metadata.custom.insert("owner".into(), json!("health"));
    ok(
        store
            .set_stream_metadata(&s, ExpectedRevision::NoStream, metadata.clone())
            .await,
        "set",
    )?;
    let after = ok(store.get_stream_metadata(&s).await, "get")?;
    ensure!(after.metadata == metadata, "got {:?}", after.metadata);
    ensure!(after.revision == Some(0), "revision {:?}", after.revision);
    Ok(())
}

async fn metadata_changes_check_the_expected_revision(store: Arc<dyn EventStore>) -> CaseResult {
    let s = stream("order");
    let m = StreamMetadata::default().with_max_count(5);
    ok(
        store
            .set_stream_metadata(&s, ExpectedRevision::NoStream, m.clone())
            .await,
        "set",
    )?;
    let e = err(store
        .set_stream_metadata(&s, ExpectedRevision::NoStream, m.clone())
        .await)?;
    ensure!(
        is_wrong_version(&e, CurrentRevision::Current(0)),
        "got {e:?}"
    );
    ok(
        store
            .set_stream_metadata(&s, ExpectedRevision::Exact(0), m)
            .await,
        "set at 0",
    )?;
    Ok(())
}

// ---- soft delete and tombstone -------------------------------------------------

async fn a_soft_deleted_stream_reads_as_not_found(store: Arc<dyn EventStore>) -> CaseResult {
    let s = stream("order");
    ok(
        store
            .append(&s, ExpectedRevision::NoStream, events("A", 3))
            .await,
        "append",
    )?;
    ok(
        store.delete_stream(&s, ExpectedRevision::Exact(2)).await,
        "delete",
    )?;
    let e = err(store
        .read_stream(&s, Direction::Forwards, ReadFrom::Start, 10)
        .await)?;
    ensure!(matches!(e, StoreError::StreamNotFound { .. }), "got {e:?}");
    Ok(())
}

async fn a_soft_deleted_stream_is_recreated_with_continuing_revisions(
    store: Arc<dyn EventStore>,
) -> CaseResult {
    let s = stream("order");
    ok(
        store
            .append(&s, ExpectedRevision::NoStream, events("A", 3))
            .await,
        "append",
    )?;
    ok(
        store.delete_stream(&s, ExpectedRevision::Any).await,
        "delete",
    )?;
    let r = ok(
        store
            .append(&s, ExpectedRevision::NoStream, vec![event("B", 7)])
            .await,
        "recreate",
    )?;
    ensure!(
        r.next_expected_revision == 3,
        "revision {}",
        r.next_expected_revision
    );
    let read = read_fwd(&store, &s).await?;
    ensure!(ns(&read) == vec![7], "old events visible: {:?}", ns(&read));
    ensure!(read[0].revision == 3, "revision {}", read[0].revision);
    Ok(())
}

async fn a_metadata_change_keeps_an_earlier_soft_delete(store: Arc<dyn EventStore>) -> CaseResult {
    let s = stream("order");
    ok(
        store
            .append(&s, ExpectedRevision::NoStream, events("A", 3))
            .await,
        "append",
    )?;
    ok(
        store.delete_stream(&s, ExpectedRevision::Any).await,
        "delete",
    )?;
    ok(
        store
            .set_stream_metadata(
                &s,
                ExpectedRevision::Any,
                StreamMetadata::default().with_max_count(10),
            )
            .await,
        "metadata",
    )?;
    let e = err(store
        .read_stream(&s, Direction::Forwards, ReadFrom::Start, 10)
        .await)?;
    ensure!(
        matches!(e, StoreError::StreamNotFound { .. }),
        "deleted events came back: {e:?}"
    );
    Ok(())
}

async fn a_soft_delete_checks_the_expected_revision(store: Arc<dyn EventStore>) -> CaseResult {
    let s = stream("order");
    ok(
        store
            .append(&s, ExpectedRevision::NoStream, events("A", 3))
            .await,
        "append",
    )?;
    let e = err(store.delete_stream(&s, ExpectedRevision::Exact(0)).await)?;
    ensure!(
        is_wrong_version(&e, CurrentRevision::Current(2)),
        "got {e:?}"
    );
    ensure!(read_fwd(&store, &s).await?.len() == 3, "deleted anyway");
    Ok(())
}

async fn a_tombstoned_stream_refuses_reads_and_appends_forever(
    store: Arc<dyn EventStore>,
) -> CaseResult {
    let s = stream("order");
    ok(
        store
            .append(&s, ExpectedRevision::NoStream, events("A", 2))
            .await,
        "append",
    )?;
    ok(
        store.tombstone_stream(&s, ExpectedRevision::Any).await,
        "tombstone",
    )?;
    let e = err(store
        .read_stream(&s, Direction::Forwards, ReadFrom::Start, 10)
        .await)?;
    ensure!(matches!(e, StoreError::StreamDeleted { .. }), "read: {e:?}");
    for expected in [
        ExpectedRevision::Any,
        ExpectedRevision::NoStream,
        ExpectedRevision::Exact(1),
    ] {
        let e = err(store.append(&s, expected, vec![event("B", 0)]).await)?;
        ensure!(
            matches!(e, StoreError::StreamDeleted { .. }),
            "append {expected:?}: {e:?}"
        );
    }
    let e = err(store.delete_stream(&s, ExpectedRevision::Any).await)?;
    ensure!(
        matches!(e, StoreError::StreamDeleted { .. }),
        "delete: {e:?}"
    );
    let e = err(store.tombstone_stream(&s, ExpectedRevision::Any).await)?;
    ensure!(
        matches!(e, StoreError::StreamDeleted { .. }),
        "tombstone again: {e:?}"
    );
    Ok(())
}

async fn a_tombstone_checks_the_expected_revision(store: Arc<dyn EventStore>) -> CaseResult {
    let s = stream("order");
    ok(
        store
            .append(&s, ExpectedRevision::NoStream, events("A", 2))
            .await,
        "append",
    )?;
    let e = err(store.tombstone_stream(&s, ExpectedRevision::Exact(0)).await)?;
    ensure!(
        is_wrong_version(&e, CurrentRevision::Current(1)),
        "got {e:?}"
    );
    ensure!(read_fwd(&store, &s).await?.len() == 2, "tombstoned anyway");
    Ok(())
}

// ---- bad input ---------------------------------------------------------------------

async fn appends_to_system_streams_are_refused(store: Arc<dyn EventStore>) -> CaseResult {
    let s = StreamName::parse("$settings").map_err(|e| e.to_string())?;
    let e = err(store
        .append(&s, ExpectedRevision::Any, vec![event("A", 0)])
        .await)?;
    ensure!(
        matches!(e, StoreError::InvalidStreamName { .. }),
        "got {e:?}"
    );
    Ok(())
}

async fn the_hub_appends_to_its_own_system_streams_and_they_read_back(
    store: Arc<dyn EventStore>,
) -> CaseResult {
    let s = StreamName::parse(format!("$tongban-test-{}", Uuid::new_v4().simple()))
        .map_err(|e| e.to_string())?;
    let r = ok(
        store
            .append_to_system_stream(&s, ExpectedRevision::NoStream, events("Checkpoint", 2))
            .await,
        "system append",
    )?;
    ensure!(
        r.next_expected_revision == 1,
        "revision {}",
        r.next_expected_revision
    );
    ensure!(
        ns(&read_fwd(&store, &s).await?) == vec![0, 1],
        "system stream reads back wrong"
    );
    let user = stream("order");
    let e = err(store
        .append_to_system_stream(&user, ExpectedRevision::Any, events("A", 1))
        .await)?;
    ensure!(
        matches!(e, StoreError::InvalidStreamName { .. }),
        "a user stream was accepted: {e:?}"
    );
    let meta = user.metadata_stream();
    let e = err(store
        .append_to_system_stream(&meta, ExpectedRevision::Any, events("A", 1))
        .await)?;
    ensure!(
        matches!(e, StoreError::InvalidStreamName { .. }),
        "a metadata stream was accepted: {e:?}"
    );
    Ok(())
}

async fn an_oversize_event_is_refused_and_nothing_is_written(
    store: Arc<dyn EventStore>,
) -> CaseResult {
    let s = stream("order");
    let big = EventData::raw("Big", format!("\"{}\"", "x".repeat(MAX_EVENT_SIZE)));
    let e = err(store
        .append(&s, ExpectedRevision::Any, vec![event("A", 0), big])
        .await)?;
    ensure!(
        matches!(e, StoreError::EventTooLarge { index: 1, .. }),
        "got {e:?}"
    );
    ensure!(
        read_all_fwd(&store).await?.is_empty(),
        "something was written"
    );
    Ok(())
}

async fn an_event_just_under_the_limit_is_accepted(store: Arc<dyn EventStore>) -> CaseResult {
    let s = stream("order");
    let payload = format!("\"{}\"", "x".repeat(MAX_EVENT_SIZE - 1024));
    let e = EventData::raw("Big", payload);
    ok(
        store.append(&s, ExpectedRevision::Any, vec![e]).await,
        "append",
    )?;
    let read = read_fwd(&store, &s).await?;
    ensure!(
        read[0].data.len() == MAX_EVENT_SIZE - 1022,
        "size {}",
        read[0].data.len()
    );
    Ok(())
}

async fn malformed_json_is_refused_naming_the_field(store: Arc<dyn EventStore>) -> CaseResult {
    let s = stream("order");
    let e = err(store
        .append(
            &s,
            ExpectedRevision::Any,
            vec![EventData::raw("A", "{oops")],
        )
        .await)?;
    ensure!(
        matches!(e, StoreError::InvalidJson { field: "data", .. }),
        "got {e:?}"
    );
    let bad_meta = event("A", 0).with_raw_metadata("nope");
    let e = err(store
        .append(&s, ExpectedRevision::Any, vec![bad_meta])
        .await)?;
    ensure!(
        matches!(
            e,
            StoreError::InvalidJson {
                field: "metadata",
                ..
            }
        ),
        "got {e:?}"
    );
    Ok(())
}

async fn an_empty_event_type_is_refused(store: Arc<dyn EventStore>) -> CaseResult {
    let s = stream("order");
    let e = err(store
        .append(&s, ExpectedRevision::Any, vec![EventData::raw("", "{}")])
        .await)?;
    ensure!(matches!(e, StoreError::InvalidInput { .. }), "got {e:?}");
    Ok(())
}

async fn an_append_without_events_is_refused(store: Arc<dyn EventStore>) -> CaseResult {
    let s = stream("order");
    let e = err(store.append(&s, ExpectedRevision::Any, vec![]).await)?;
    ensure!(matches!(e, StoreError::InvalidInput { .. }), "got {e:?}");
    Ok(())
}

// ---- subscriptions -----------------------------------------------------------------

async fn an_all_subscription_from_the_start_delivers_history_then_live_events(
    store: Arc<dyn EventStore>,
) -> CaseResult {
    let s = stream("order");
    ok(
        store
            .append(&s, ExpectedRevision::NoStream, events("A", 3))
            .await,
        "append",
    )?;
    let mut sub = store.subscribe_to_all(SubscribeFrom::Start, EventFilter::all());
    for n in 0..3 {
        let e = next_event(&mut sub).await?;
        ensure!(
            ns(std::slice::from_ref(&e)) == vec![n],
            "history out of order"
        );
    }
    expect_caught_up(&mut sub).await?;
    ok(
        store
            .append(&s, ExpectedRevision::Exact(2), vec![event("B", 3)])
            .await,
        "live append",
    )?;
    let e = next_event(&mut sub).await?;
    ensure!(ns(std::slice::from_ref(&e)) == vec![3], "live event wrong");
    Ok(())
}

async fn an_all_subscription_from_the_end_delivers_only_new_events(
    store: Arc<dyn EventStore>,
) -> CaseResult {
    let s = stream("order");
    ok(
        store
            .append(&s, ExpectedRevision::NoStream, events("A", 3))
            .await,
        "append",
    )?;
    let mut sub = store.subscribe_to_all(SubscribeFrom::End, EventFilter::all());
    expect_caught_up(&mut sub).await?;
    ok(
        store
            .append(&s, ExpectedRevision::Any, vec![event("B", 9)])
            .await,
        "append",
    )?;
    let e = next_event(&mut sub).await?;
    ensure!(
        ns(std::slice::from_ref(&e)) == vec![9],
        "got {:?}",
        ns(std::slice::from_ref(&e))
    );
    Ok(())
}

async fn resuming_after_a_position_delivers_only_what_follows_it(
    store: Arc<dyn EventStore>,
) -> CaseResult {
    let s = stream("order");
    ok(
        store
            .append(&s, ExpectedRevision::NoStream, events("A", 5))
            .await,
        "append",
    )?;
    let all = read_all_fwd(&store).await?;
    let mut sub = store.subscribe_to_all(SubscribeFrom::After(all[2].position), EventFilter::all());
    let a = next_event(&mut sub).await?;
    let b = next_event(&mut sub).await?;
    ensure!(ns(&[a, b]) == vec![3, 4], "resumed wrongly");
    expect_caught_up(&mut sub).await?;
    Ok(())
}

async fn a_stream_subscription_delivers_its_stream_from_a_revision(
    store: Arc<dyn EventStore>,
) -> CaseResult {
    let (s, other) = (stream("order"), stream("other"));
    ok(
        store
            .append(&s, ExpectedRevision::NoStream, events("A", 4))
            .await,
        "append",
    )?;
    ok(
        store
            .append(&other, ExpectedRevision::NoStream, events("X", 4))
            .await,
        "append",
    )?;
    let mut sub = store.subscribe_to_stream(&s, SubscribeFrom::After(1));
    let a = next_event(&mut sub).await?;
    let b = next_event(&mut sub).await?;
    ensure!(
        ns(&[a.clone(), b]) == vec![2, 3] && a.stream == s,
        "wrong events"
    );
    expect_caught_up(&mut sub).await?;
    ok(
        store
            .append(&other, ExpectedRevision::Any, vec![event("X", 99)])
            .await,
        "other",
    )?;
    ok(
        store
            .append(&s, ExpectedRevision::Any, vec![event("A", 4)])
            .await,
        "append",
    )?;
    let c = next_event(&mut sub).await?;
    ensure!(ns(&[c]) == vec![4], "live event wrong");
    Ok(())
}

async fn a_stream_subscription_from_the_end_delivers_only_new_events(
    store: Arc<dyn EventStore>,
) -> CaseResult {
    let s = stream("order");
    ok(
        store
            .append(&s, ExpectedRevision::NoStream, events("A", 4))
            .await,
        "append",
    )?;
    let mut sub = store.subscribe_to_stream(&s, SubscribeFrom::End);
    expect_caught_up(&mut sub).await?;
    ok(
        store
            .append(&s, ExpectedRevision::Any, vec![event("A", 4)])
            .await,
        "append",
    )?;
    let e = next_event(&mut sub).await?;
    ensure!(e.revision == 4, "revision {}", e.revision);
    Ok(())
}

async fn a_subscription_to_a_stream_not_yet_written_waits_for_it(
    store: Arc<dyn EventStore>,
) -> CaseResult {
    let s = stream("later");
    let mut sub = store.subscribe_to_stream(&s, SubscribeFrom::Start);
    expect_caught_up(&mut sub).await?;
    ok(
        store
            .append(&s, ExpectedRevision::NoStream, events("A", 1))
            .await,
        "append",
    )?;
    let e = next_event(&mut sub).await?;
    ensure!(e.revision == 0, "revision {}", e.revision);
    Ok(())
}

async fn a_filtered_all_subscription_delivers_only_matching_events(
    store: Arc<dyn EventStore>,
) -> CaseResult {
    let mut sub = store.subscribe_to_all(SubscribeFrom::Start, EventFilter::event_types(["Code"]));
    let s = stream("person");
    let batch = vec![
        event("CodeColourChanged", 0),
        event("HealthDeclared", 1),
        event("CodeIssued", 2),
    ];
    ok(
        store.append(&s, ExpectedRevision::Any, batch).await,
        "append",
    )?;
    let a = next_event(&mut sub).await?;
    let b = next_event(&mut sub).await?;
    ensure!(ns(&[a, b]) == vec![0, 2], "filter failed");
    Ok(())
}

async fn a_subscription_catching_up_while_writers_append_misses_nothing_and_repeats_nothing(
    store: Arc<dyn EventStore>,
) -> CaseResult {
    const WRITERS: u64 = 4;
    const PER_WRITER: u64 = 150;
    // Some history first, so the subscription starts in catch-up mode.
    let seed = stream("seed");
    ok(
        store
            .append(&seed, ExpectedRevision::Any, events("Seed", 300))
            .await,
        "seed",
    )?;
    let mut writers = Vec::new();
    for w in 0..WRITERS {
        let store = store.clone();
        writers.push(tokio::spawn(async move {
            let s = stream("race");
            for n in 0..PER_WRITER {
                store
                    .append(&s, ExpectedRevision::Any, vec![event("Race", w * 1000 + n)])
                    .await?;
                if n % 16 == 0 {
                    tokio::task::yield_now().await;
                }
            }
            Ok::<_, StoreError>(())
        }));
    }
    let mut sub = store.subscribe_to_all(SubscribeFrom::Start, EventFilter::all());
    let total = 300 + WRITERS * PER_WRITER;
    let mut seen = Vec::with_capacity(total as usize);
    while (seen.len() as u64) < total {
        seen.push(next_event(&mut sub).await?);
    }
    for w in writers {
        ok(w.await.map_err(|e| e.to_string())?, "writer")?;
    }
    ensure!(
        seen.windows(2).all(|w| w[0].position < w[1].position),
        "out of order or repeated"
    );
    let all = read_all_fwd(&store).await?;
    ensure!(
        all.iter().map(|e| e.id).eq(seen.iter().map(|e| e.id)),
        "the subscription differs from $all"
    );
    Ok(())
}

async fn two_subscribers_each_receive_every_event(store: Arc<dyn EventStore>) -> CaseResult {
    let mut a = store.subscribe_to_all(SubscribeFrom::Start, EventFilter::all());
    let mut b = store.subscribe_to_all(SubscribeFrom::Start, EventFilter::all());
    let s = stream("order");
    for n in 0..20 {
        ok(
            store
                .append(&s, ExpectedRevision::Any, vec![event("A", n)])
                .await,
            "append",
        )?;
    }
    for sub in [&mut a, &mut b] {
        let mut got = Vec::new();
        for _ in 0..20 {
            got.push(next_event(sub).await?);
        }
        ensure!(
            ns(&got) == (0..20).collect::<Vec<_>>(),
            "got {:?}",
            ns(&got)
        );
    }
    Ok(())
}

// ---- hash chain --------------------------------------------------------------------

async fn the_head_is_the_last_event_and_its_hash(store: Arc<dyn EventStore>) -> CaseResult {
    ensure!(
        ok(store.head().await, "head")?.is_none(),
        "an empty store has a head"
    );
    let s = stream("order");
    let r = ok(
        store
            .append(&s, ExpectedRevision::Any, events("A", 3))
            .await,
        "append",
    )?;
    let head = ok(store.head().await, "head")?.ok_or("no head")?;
    let all = read_all_fwd(&store).await?;
    let last = all.last().ok_or("empty $all")?;
    ensure!(
        head.position == r.position && head.position == last.position,
        "head position"
    );
    ensure!(
        head.hash == last.hash,
        "head hash differs from the last event's"
    );
    Ok(())
}

async fn the_chain_verifies_over_the_whole_log_and_any_range(
    store: Arc<dyn EventStore>,
) -> CaseResult {
    for n in 0..5 {
        let s = stream("order");
        ok(
            store
                .append(&s, ExpectedRevision::Any, events("A", n + 1))
                .await,
            "append",
        )?;
    }
    let report = ok(store.verify_chain(PositionRange::all()).await, "verify")?;
    ensure!(
        report.events_checked == 15,
        "checked {}",
        report.events_checked
    );
    let all = read_all_fwd(&store).await?;
    let range = PositionRange::between(all[4].position, all[9].position);
    let report = ok(store.verify_chain(range).await, "verify range")?;
    ensure!(
        report.events_checked == 6,
        "checked {}",
        report.events_checked
    );
    ensure!(report.last_hash == Some(all[9].hash), "last hash");
    Ok(())
}

async fn every_event_hash_differs_and_links_to_the_previous(
    store: Arc<dyn EventStore>,
) -> CaseResult {
    let s = stream("order");
    ok(
        store
            .append(&s, ExpectedRevision::Any, events("A", 4))
            .await,
        "append",
    )?;
    let all = read_all_fwd(&store).await?;
    let mut hashes: Vec<_> = all.iter().map(|e| e.hash).collect();
    hashes.dedup();
    ensure!(hashes.len() == 4, "hashes repeat");
    Ok(())
}

async fn positions_survive_reads_by_position(store: Arc<dyn EventStore>) -> CaseResult {
    let s = stream("order");
    ok(
        store
            .append(&s, ExpectedRevision::Any, events("A", 3))
            .await,
        "append",
    )?;
    for e in read_fwd(&store, &s).await? {
        let at = ok(
            store
                .read_all(
                    Direction::Forwards,
                    ReadFrom::At(e.position),
                    1,
                    &EventFilter::all(),
                )
                .await,
            "read",
        )?;
        ensure!(
            at.first().map(|x| x.id) == Some(e.id),
            "position {} reads another event",
            e.position
        );
    }
    ensure!(
        Position::START <= read_fwd(&store, &s).await?[0].position,
        "position below start"
    );
    Ok(())
}

cases!(
    no_stream_creates_a_stream_at_revision_zero,
    no_stream_on_an_existing_stream_is_a_conflict_naming_the_actual_revision,
    any_appends_to_new_and_existing_streams,
    stream_exists_on_a_missing_stream_is_a_conflict,
    stream_exists_on_an_existing_stream_appends,
    the_exact_current_revision_appends,
    a_stale_exact_revision_is_a_conflict_with_expected_and_actual,
    an_exact_revision_on_a_missing_stream_is_a_conflict,
    an_exact_revision_ahead_of_the_stream_is_a_conflict,
    repeating_an_append_with_no_stream_writes_no_duplicates,
    repeating_an_append_with_the_same_exact_revision_writes_no_duplicates,
    repeating_an_append_with_any_writes_no_duplicates,
    a_retry_after_other_writes_with_the_old_revision_is_still_recognised,
    a_partial_repeat_is_a_conflict_not_a_duplicate,
    the_same_event_id_twice_in_one_append_is_refused,
    a_multi_event_append_gets_consecutive_revisions_and_increasing_positions,
    an_append_with_one_bad_event_writes_none_of_them,
    concurrent_appends_at_the_same_revision_let_exactly_one_win,
    readers_never_see_part_of_an_append,
    all_is_in_commit_order_across_streams,
    concurrent_writers_get_unique_increasing_positions,
    a_stream_reads_forwards_from_a_revision,
    a_stream_reads_backwards_from_the_end,
    a_stream_reads_backwards_from_a_revision,
    reading_past_the_end_of_a_stream_returns_nothing,
    reading_a_missing_stream_is_not_found,
    all_reads_forwards_from_a_position_inclusively,
    all_reads_backwards_from_the_end_and_from_a_position,
    all_reads_filter_by_stream_prefix,
    all_reads_filter_by_event_type_prefix,
    all_reads_can_leave_out_system_events,
    recorded_events_keep_ids_types_data_and_metadata,
    max_count_shows_only_the_latest_events,
    max_age_hides_events_older_than_it,
    metadata_round_trips_with_its_own_revision,
    metadata_changes_check_the_expected_revision,
    a_soft_deleted_stream_reads_as_not_found,
    a_soft_deleted_stream_is_recreated_with_continuing_revisions,
    a_soft_delete_checks_the_expected_revision,
    a_metadata_change_keeps_an_earlier_soft_delete,
    a_tombstoned_stream_refuses_reads_and_appends_forever,
    a_tombstone_checks_the_expected_revision,
    appends_to_system_streams_are_refused,
    the_hub_appends_to_its_own_system_streams_and_they_read_back,
    an_oversize_event_is_refused_and_nothing_is_written,
    an_event_just_under_the_limit_is_accepted,
    malformed_json_is_refused_naming_the_field,
    an_empty_event_type_is_refused,
    an_append_without_events_is_refused,
    an_all_subscription_from_the_start_delivers_history_then_live_events,
    an_all_subscription_from_the_end_delivers_only_new_events,
    resuming_after_a_position_delivers_only_what_follows_it,
    a_stream_subscription_delivers_its_stream_from_a_revision,
    a_stream_subscription_from_the_end_delivers_only_new_events,
    a_subscription_to_a_stream_not_yet_written_waits_for_it,
    a_filtered_all_subscription_delivers_only_matching_events,
    a_subscription_catching_up_while_writers_append_misses_nothing_and_repeats_nothing,
    two_subscribers_each_receive_every_event,
    the_head_is_the_last_event_and_its_hash,
    the_chain_verifies_over_the_whole_log_and_any_range,
    every_event_hash_differs_and_links_to_the_previous,
    positions_survive_reads_by_position,
);

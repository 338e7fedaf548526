//! The runner: catch-up, live, rebuilds, failures, status.

use crate::support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;
use async_trait::async_trait;
use tongban_projection::example::{CategoryCount, CategoryCounts};
use tongban_projection::{
    ApplyError, Changes, KeyRange, LeaseConfig, Leased, MemoryReadModels, Projection,
    ProjectionRunner, RunState, RunnerConfig,
};
use tongban_store::{EventFilter, RecordedEvent};

use support::{append, hub, WAIT};

/// Fails on any event of type `Poison`.
struct Fragile;

#[async_trait]
impl Projection for Fragile {
    fn name(&self) -> &str {
        "fragile"
    }
    fn version(&self) -> u32 {
        1
    }
    fn filter(&self) -> EventFilter {
        EventFilter::all().excluding_system_events()
    }
    async fn apply(&self, events: &[RecordedEvent], _: &mut Changes<'_>) -> Result<(), ApplyError> {
        match events.iter().find(|e| e.event_type == "Poison") {
            Some(e) => Err(ApplyError::at(e, "poison is not allowed here")),
            None => Ok(()),
        }
    }
}

#[tokio::test]
async fn a_projection_catches_up_on_history_then_follows_live_events() -> Result<()> {
    // given history in two categories
    let hub = hub()?;
    append(hub.events.as_ref(), "person-1", 5).await?;
    append(hub.events.as_ref(), "code-1", 3).await?;
    let runner = hub.runner(RunnerConfig {
        batch_size: 2,
        ..RunnerConfig::default()
    });
    let projection = Arc::new(CategoryCounts::default());
    runner.start(projection.clone())?;
    runner.wait_for_head(WAIT).await?;

    // when live events arrive
    append(hub.events.as_ref(), "person-2", 4).await?;
    runner.wait_for_head(WAIT).await?;

    // then the counts include both, and the status says live and caught up
    let models = runner.read_models("category-counts")?;
    assert_eq!(
        models
            .get(&projection.categories, &"person".to_string())
            .await?,
        Some(CategoryCount {
            events: 9,
            streams: 2
        })
    );
    let people = models
        .by_index_key(&projection.streams, "by_category", &"person".to_string())
        .await?;
    assert_eq!(people.len(), 2);
    let status = runner.status("category-counts").await?;
    assert_eq!(status.state, RunState::Live);
    assert_eq!(status.events_behind, 0);
    assert_eq!(status.events_applied, 12);
    runner.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn a_failing_projection_stops_alone_and_names_the_event() -> Result<()> {
    let hub = hub()?;
    append(hub.events.as_ref(), "person-1", 3).await?;
    let name = tongban_store::StreamName::parse("person-9")?;
    let poison = tongban_store::EventData::json("Poison", &serde_json::json!({}))?;
    let at = hub
        .events
        .append(&name, tongban_store::ExpectedRevision::Any, vec![poison])
        .await?
        .position;
    let runner = hub.runner(RunnerConfig::default());
    runner.start(Arc::new(Fragile))?;
    runner.start(Arc::new(CategoryCounts::default()))?;

    // when both run over the poison event
    runner.wait_for("category-counts", at, WAIT).await?;
    let mut status = runner.status("fragile").await?;
    for _ in 0..100 {
        if matches!(status.state, RunState::Failed { .. }) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        status = runner.status("fragile").await?;
    }

    // then the fragile one failed, naming the event, and the other goes on
    match &status.state {
        RunState::Failed {
            position,
            stream,
            event_type,
            error,
        } => {
            assert_eq!(*position, Some(at));
            assert_eq!(stream.as_deref(), Some("person-9"));
            assert_eq!(event_type.as_deref(), Some("Poison"));
            assert!(error.contains("poison is not allowed"), "{error}");
        }
        other => panic!("expected a failure, got {other:?}"),
    }
    assert!(status.events_behind > 0);
    let more = append(hub.events.as_ref(), "person-2", 2).await?;
    runner.wait_for("category-counts", more, WAIT).await?;
    runner.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn a_new_version_rebuilds_from_zero_and_equals_the_incremental_model() -> Result<()> {
    // given a model built incrementally across many small batches
    let hub = hub()?;
    let runner = hub.runner(RunnerConfig {
        batch_size: 3,
        ..RunnerConfig::default()
    });
    let v1 = Arc::new(CategoryCounts::named("counts", 1));
    runner.start(v1.clone())?;
    for n in 0..20 {
        append(hub.events.as_ref(), &format!("person-{}", n % 7), 1 + n % 3).await?;
        append(hub.events.as_ref(), &format!("code-{}", n % 5), 1).await?;
    }
    runner.wait_for_head(WAIT).await?;
    let models = runner.read_models("counts")?;
    let incremental_categories = models.scan_all(&v1.categories, &KeyRange::all()).await?;
    let incremental_streams = models.scan_all(&v1.streams, &KeyRange::all()).await?;
    let incremental_feed = runner.feed("counts")?.page(None, 10_000).await?;
    runner.shutdown().await;

    // when version 2 starts on the same read-model store
    let runner = hub.runner(RunnerConfig::default());
    let v2 = Arc::new(CategoryCounts::named("counts", 2));
    runner.start(v2.clone())?;
    runner.wait_for_head(WAIT).await?;

    // then it was rebuilt from zero and equals the incremental model
    let status = runner.status("counts").await?;
    assert_eq!(status.version, 2);
    assert_eq!(status.events_applied, 59);
    let models = runner.read_models("counts")?;
    assert_eq!(
        models.scan_all(&v2.categories, &KeyRange::all()).await?,
        incremental_categories
    );
    assert_eq!(
        models.scan_all(&v2.streams, &KeyRange::all()).await?,
        incremental_streams
    );
    assert_eq!(
        runner.feed("counts")?.page(None, 10_000).await?,
        incremental_feed
    );

    // and an operator's rebuild gives the same again
    runner.rebuild("counts").await?;
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    runner.wait_for_head(WAIT).await?;
    assert_eq!(
        models.scan_all(&v2.streams, &KeyRange::all()).await?,
        incremental_streams
    );
    runner.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn catching_up_in_tiny_batches_counts_every_event_once() -> Result<()> {
    // given 600 events in one category: every batch reads and rewrites the
    // same counter, while the batch before it is still being committed
    let hub = hub()?;
    for stream in 0..20 {
        append(hub.events.as_ref(), &format!("person-{stream}"), 30).await?;
    }

    for batch_size in [1, 3, 7] {
        // when a projection catches up from zero in batches of this size
        let runner = hub.runner(RunnerConfig {
            batch_size,
            ..RunnerConfig::default()
        });
        let name = format!("tiny-{batch_size}");
        let projection = Arc::new(CategoryCounts::named(&name, 1));
        runner.start(projection.clone())?;
        runner.wait_for_head(WAIT).await?;

        // then the counter has seen each event exactly once
        let models = runner.read_models(&name)?;
        assert_eq!(
            models
                .get(&projection.categories, &"person".to_string())
                .await?,
            Some(CategoryCount {
                events: 600,
                streams: 20
            }),
            "batch size {batch_size}"
        );
        runner.shutdown().await;
    }
    Ok(())
}

/// Counts the `order-` events it applies: a stand-in for a process manager.
struct Reaction {
    applied: Arc<AtomicUsize>,
}

#[async_trait]
impl Projection for Reaction {
    fn name(&self) -> &str {
        "reaction"
    }
    fn version(&self) -> u32 {
        1
    }
    fn filter(&self) -> EventFilter {
        EventFilter::streams(["order-"])
    }
    async fn apply(&self, events: &[RecordedEvent], _: &mut Changes<'_>) -> Result<(), ApplyError> {
        self.applied.fetch_add(events.len(), Ordering::SeqCst);
        Ok(())
    }
}

async fn until(what: &str, check: impl Fn() -> bool) {
    let started = std::time::Instant::now();
    while !check() {
        assert!(started.elapsed() < WAIT, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn of_two_replicas_only_the_lease_holder_applies_and_the_other_takes_over_when_it_stops(
) -> Result<()> {
    // Given two replicas (runners with their own read models) on one log,
    // each running the same leased reaction,
    let hub = hub()?;
    let lease = LeaseConfig {
        ttl: Duration::from_millis(600),
        renew_every: Duration::from_millis(150),
    };
    let config = RunnerConfig {
        retry_delay: Duration::from_millis(50),
        ..RunnerConfig::default()
    };
    let counts = [Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0))];
    let mut runners = Vec::new();
    for applied in &counts {
        let runner = ProjectionRunner::new(
            hub.events.clone(),
            Arc::new(MemoryReadModels::new()),
            config.clone(),
        );
        let reaction = Reaction {
            applied: applied.clone(),
        };
        runner.start(Arc::new(Leased::new(reaction, hub.events.clone(), lease)?))?;
        runners.push(Some(runner));
    }
    let total = || {
        counts
            .iter()
            .map(|c| c.load(Ordering::SeqCst))
            .sum::<usize>()
    };

    // when events arrive, in two bursts,
    append(hub.events.as_ref(), "order-1", 10).await?;
    until("the first burst is applied", || total() == 10).await;
    tokio::time::sleep(lease.ttl * 2).await;
    append(hub.events.as_ref(), "order-2", 5).await?;
    until("the second burst is applied", || total() == 15).await;
    tokio::time::sleep(lease.ttl * 2).await;

    // then one replica applied every event and the other none,
    let seen: Vec<usize> = counts.iter().map(|c| c.load(Ordering::SeqCst)).collect();
    assert!(seen == [15, 0] || seen == [0, 15], "applied: {seen:?}");
    let holder = usize::from(seen[0] == 0);
    let standby = 1 - holder;

    // and when the holder stops, the other takes the lease over once it
    // expired and catches up from its own checkpoint.
    if let Some(runner) = runners[holder].take() {
        runner.shutdown().await;
    }
    append(hub.events.as_ref(), "order-3", 5).await?;
    until("the standby took over", || {
        counts[standby].load(Ordering::SeqCst) == 20
    })
    .await;
    assert_eq!(counts[holder].load(Ordering::SeqCst), 15);
    for runner in runners.into_iter().flatten() {
        runner.shutdown().await;
    }
    Ok(())
}

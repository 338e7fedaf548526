//! Auditors' replay: history between positions and times; time travel.

use crate::support;

use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;
use futures::StreamExt;
use time::OffsetDateTime;
use tongban_projection::example::CategoryCounts;
use tongban_projection::{Auditor, KeyRange, LogPoint, MemoryReadModels, RunnerConfig};
use tongban_store::{Direction, EventFilter, ReadFrom, StreamName};

use support::{append, hub, WAIT};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn time_travel_equals_the_model_built_from_the_prefix() -> Result<()> {
    // given a model built live up to a moment, and a snapshot of it
    let hub = hub()?;
    let runner = hub.runner(RunnerConfig {
        batch_size: 5,
        ..RunnerConfig::default()
    });
    let projection = Arc::new(CategoryCounts::default());
    runner.start(projection.clone())?;
    for n in 0..12 {
        append(hub.events.as_ref(), &format!("person-{}", n % 4), 3).await?;
        append(hub.events.as_ref(), &format!("code-{}", n % 3), 2).await?;
    }
    runner.wait_for_head(WAIT).await?;
    let models = runner.read_models("category-counts")?;
    let snapshot_streams = models
        .scan_all(&projection.streams, &KeyRange::all())
        .await?;
    let snapshot_categories = models
        .scan_all(&projection.categories, &KeyRange::all())
        .await?;
    let cut = hub.events.head().await?.map(|h| h.position);
    tokio::time::sleep(Duration::from_millis(5)).await;
    let moment = OffsetDateTime::now_utc();
    tokio::time::sleep(Duration::from_millis(5)).await;

    // when more happens afterwards
    for n in 0..10 {
        append(hub.events.as_ref(), &format!("person-{}", n + 10), 2).await?;
    }
    runner.wait_for_head(WAIT).await?;

    // then rebuilding as of that position, or that time, gives the snapshot
    let auditor = Auditor::new(hub.events.clone());
    assert_eq!(auditor.position_at(moment).await?, cut);
    for point in [
        LogPoint::Time(moment),
        LogPoint::Position(cut.unwrap_or_default()),
    ] {
        let scratch = Arc::new(MemoryReadModels::new());
        let travel = auditor
            .rebuild_as_of(projection.as_ref(), point, scratch, 7)
            .await?;
        assert_eq!(travel.as_of, cut);
        assert_eq!(
            travel
                .models
                .scan_all(&projection.streams, &KeyRange::all())
                .await?,
            snapshot_streams
        );
        assert_eq!(
            travel
                .models
                .scan_all(&projection.categories, &KeyRange::all())
                .await?,
            snapshot_categories
        );
    }
    runner.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn an_auditor_pages_through_a_stream_and_streams_all_between_positions() -> Result<()> {
    let hub = hub()?;
    append(hub.events.as_ref(), "person-1", 10).await?;
    append(hub.events.as_ref(), "code-1", 10).await?;
    append(hub.events.as_ref(), "person-1", 5).await?;
    let auditor = Auditor::new(hub.events.clone());

    // a stream's history in pages of 4
    let stream = StreamName::parse("person-1")?;
    let mut revisions = Vec::new();
    let mut from = Some(0);
    while let Some(f) = from {
        let page = auditor.stream_page(&stream, f, 4).await?;
        revisions.extend(page.events.iter().map(|e| e.revision));
        from = page.next;
    }
    assert_eq!(revisions, (0..15).collect::<Vec<_>>());

    // `$all` between positions 5 and 17, streamed in pages of 3
    let streamed: Vec<u64> = auditor
        .all_between(
            LogPoint::Position(tongban_store::Position(5)),
            LogPoint::Position(tongban_store::Position(17)),
            EventFilter::all(),
            3,
        )
        .map(|e| e.map(|e| e.position.0))
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<Result<_, _>>()?;
    assert_eq!(streamed, (5..=17).collect::<Vec<_>>());

    // and with a filter, from the start to the end
    let codes: Vec<u64> = auditor
        .all_between(
            LogPoint::Start,
            LogPoint::End,
            EventFilter::streams(["code-"]),
            4,
        )
        .map(|e| e.map(|e| e.position.0))
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<Result<_, _>>()?;
    let expected: Vec<u64> = hub
        .events
        .read_all(
            Direction::Forwards,
            ReadFrom::Start,
            100,
            &EventFilter::streams(["code-"]),
        )
        .await?
        .iter()
        .map(|e| e.position.0)
        .collect();
    assert_eq!(codes, expected);
    assert_eq!(codes.len(), 10);
    Ok(())
}

//! Departments' change feeds: resume with no gap, scopes, slow consumers.

use crate::support;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use futures::StreamExt;
use tongban_projection::example::{CategoryCounts, CodeColourChange};
use tongban_projection::{FeedCursor, FeedScope, ProjectionError, RunnerConfig};

use support::{colour, hub, WAIT};

const NEXT: Duration = Duration::from_secs(10);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumer_resumes_from_its_cursor_with_no_gap_under_concurrent_writes() -> Result<()> {
    let hub = hub()?;
    let runner = hub.runner(RunnerConfig {
        batch_size: 16,
        ..RunnerConfig::default()
    });
    runner.start(Arc::new(CategoryCounts::default()))?;
    let feed = runner.feed("category-counts")?;

    // given a writer appending colour changes the whole time
    let events = hub.events.clone();
    let writer = tokio::spawn(async move {
        let mut positions = Vec::new();
        for n in 0..600 {
            positions.push(colour(events.as_ref(), n % 40, "110106").await?);
            if n.is_multiple_of(25) {
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        }
        anyhow::Ok(positions)
    });

    // when a consumer reads a while, disconnects, and resumes, three times
    let mut seen: Vec<FeedCursor> = Vec::new();
    let mut cursor = None;
    for _ in 0..3 {
        let mut sub = feed.subscribe(cursor, FeedScope::everything());
        for _ in 0..150 {
            let record = tokio::time::timeout(NEXT, sub.next())
                .await?
                .context("the feed ended")??;
            seen.push(record.cursor);
            cursor = Some(record.cursor);
        }
    }
    let positions = writer.await??;
    let mut sub = feed.subscribe(cursor, FeedScope::everything());
    while seen.len() < positions.len() {
        let record = tokio::time::timeout(NEXT, sub.next())
            .await?
            .context("the feed ended")??;
        let change: CodeColourChange = record.payload_as()?;
        assert_eq!(change.region, "110106");
        seen.push(record.cursor);
    }

    // then it saw every change once, in log order
    let seen_positions: Vec<_> = seen.iter().map(|c| c.position).collect();
    assert_eq!(seen_positions, positions);
    runner.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumer_sees_only_the_regions_its_scope_allows() -> Result<()> {
    let hub = hub()?;
    let runner = hub.runner(RunnerConfig::default());
    runner.start(Arc::new(CategoryCounts::default()))?;
    for n in 0..30 {
        let region = ["110106", "310101", "110105"][n % 3];
        colour(hub.events.as_ref(), n, region).await?;
    }
    runner.wait_for_head(WAIT).await?;
    let feed = runner.feed("category-counts")?;

    let beijing = FeedScope::everything()
        .regions(["11"])
        .data_classes(["code-status"]);
    let records: Vec<_> = feed
        .subscribe(None, beijing)
        .take(20)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<Result<_, _>>()?;
    assert!(records
        .iter()
        .all(|r| r.region.as_deref().is_some_and(|r| r.starts_with("11"))));

    // a scope without the data class sees nothing (checked on stored records)
    let other = FeedScope::everything().data_classes(["test-results"]);
    let stored = feed.page(None, 1000).await?;
    assert_eq!(stored.len(), 30);
    assert!(stored.iter().all(|r| !other.allows(r)));
    runner.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumer_that_stops_reading_does_not_stall_the_others_and_is_dropped() -> Result<()> {
    let hub = hub()?;
    let runner = hub.runner(RunnerConfig {
        batch_size: 8,
        feed_buffer: 16,
        ..RunnerConfig::default()
    });
    runner.start(Arc::new(CategoryCounts::default()))?;
    let feed = runner.feed("category-counts")?;

    // given a slow consumer that reads one live record, then stops
    // (it waits live before the record is written, so it holds a buffer)
    let mut slow = feed.subscribe(None, FeedScope::everything());
    let events = hub.events.clone();
    let (first, written) = tokio::join!(tokio::time::timeout(NEXT, slow.next()), async move {
        tokio::time::sleep(Duration::from_millis(200)).await;
        colour(events.as_ref(), 0, "110106").await
    });
    written?;
    let first = first?.context("the feed ended")??;
    // and a fast consumer
    let fast_feed = feed.clone();
    let fast = tokio::spawn(async move {
        let mut sub = fast_feed.subscribe(Some(first.cursor), FeedScope::everything());
        let mut got = 0;
        while got < 400 {
            tokio::time::timeout(NEXT, sub.next())
                .await?
                .context("the feed ended")??;
            got += 1;
        }
        anyhow::Ok(got)
    });

    // when 400 more changes are written
    let mut last = first.cursor.position;
    for n in 0..400 {
        last = colour(hub.events.as_ref(), n % 17, "110106").await?;
    }

    // then the projection and the fast consumer are not held up
    runner.wait_for("category-counts", last, WAIT).await?;
    assert_eq!(fast.await??, 400);

    // and the slow one is dropped with a cursor it can resume from
    let cursor = match tokio::time::timeout(NEXT, slow.next()).await? {
        Some(Err(ProjectionError::ConsumerTooSlow { resume_from, .. })) => resume_from,
        other => panic!("expected the slow consumer to be dropped, got {other:?}"),
    };
    assert_eq!(cursor, Some(first.cursor));
    let resumed: BTreeSet<_> = feed
        .subscribe(cursor, FeedScope::everything())
        .take(400)
        .map(|r| r.map(|r| r.cursor.position))
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<Result<_, _>>()?;
    assert_eq!(resumed.len(), 400);
    assert_eq!(resumed.last(), Some(&last));
    runner.shutdown().await;
    Ok(())
}

#[test]
fn a_cursor_reads_back_from_its_text() -> Result<()> {
    let cursor: FeedCursor = "1042.3".parse()?;
    assert_eq!(cursor.to_string(), "1042.3");
    assert!("1042".parse::<FeedCursor>().is_err());
    Ok(())
}

//! Exactly-once effect across SIGKILL and restart: a child process runs the
//! example projection (and appends events) and is killed at random moments;
//! at the end the read model must equal what the log says, exactly.

use crate::support;

use std::collections::BTreeMap;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{ensure, Context, Result};
use rand::Rng;
use tongban_projection::example::{CategoryCount, CategoryCounts};
use tongban_projection::{EmbeddedReadModels, Feed, KeyRange, ReadModels};
use tongban_store::{Direction, EmbeddedStore, EventFilter, EventStore, ReadFrom};

const CHILD: &str = env!("CARGO_BIN_EXE_projection-crash-child");

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_event_takes_effect_exactly_once_across_sigkill_and_restart() -> Result<()> {
    let dir = tempfile::tempdir()?;
    {
        // given some history before the projection ever ran
        let store = EmbeddedStore::open(dir.path().join("events"))?;
        for n in 0..20 {
            support::append(&store, &format!("code-{n}"), 25).await?;
            support::append(&store, &format!("person-{n}"), 25).await?;
        }
        store.close().await;
    }
    let mut rng = rand::thread_rng();
    // when the child is killed at random moments, four times
    for round in 0..4 {
        let mut child = Command::new(CHILD)
            .arg(dir.path())
            .arg("run")
            .spawn()
            .context("failed to start the crash child")?;
        let wait = rng.gen_range(150..900);
        tokio::time::sleep(Duration::from_millis(wait)).await;
        child.kill().context("failed to SIGKILL the child")?;
        let status = child.wait()?;
        eprintln!("round {round}: killed after {wait} ms ({status})");
    }
    // and finally allowed to catch up
    let output = Command::new(CHILD).arg(dir.path()).arg("finish").output()?;
    ensure!(
        output.status.success(),
        "the finishing child failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );

    // then the read model equals the log, counted once
    let store = EmbeddedStore::open(dir.path().join("events"))?;
    let mut categories: BTreeMap<String, CategoryCount> = BTreeMap::new();
    let mut streams: BTreeMap<String, u64> = BTreeMap::new();
    let mut colour_positions = Vec::new();
    let mut from = ReadFrom::Start;
    loop {
        let page = store
            .read_all(
                Direction::Forwards,
                from,
                4096,
                &EventFilter::all().excluding_system_events(),
            )
            .await?;
        let Some(last) = page.last() else { break };
        from = ReadFrom::At(last.position.next());
        for e in &page {
            let count = streams.entry(e.stream.to_string()).or_insert(0);
            let c = categories
                .entry(e.stream.category().to_string())
                .or_default();
            c.events += 1;
            if *count == 0 {
                c.streams += 1;
            }
            *count += 1;
            if e.event_type == "ColourChanged" {
                colour_positions.push(e.position);
            }
        }
    }
    let total: u64 = streams.values().sum();
    ensure!(total > 2000, "the children appended too little: {total}");

    let models_store = Arc::new(EmbeddedReadModels::beside(dir.path())?);
    let projection = CategoryCounts::default();
    let models = ReadModels::new(models_store.clone(), "category-counts");
    let built: BTreeMap<String, CategoryCount> = models
        .scan_all(&projection.categories, &KeyRange::all())
        .await?
        .into_iter()
        .collect();
    assert_eq!(built, categories);
    for (key, activity) in models
        .scan_all(&projection.streams, &KeyRange::all())
        .await?
    {
        assert_eq!(Some(&activity.events), streams.get(&key), "stream {key}");
    }
    // and the feed holds one record per colour change, in order, no gap
    let feed = Feed::open("category-counts", models.clone());
    let records = feed.page(None, usize::MAX).await?;
    let positions: Vec<_> = records.iter().map(|r| r.cursor.position).collect();
    assert_eq!(positions, colour_positions);
    let checkpoint = models.checkpoint().await?.context("no checkpoint")?;
    assert_eq!(checkpoint.events_applied, total);
    store.close().await;
    Ok(())
}

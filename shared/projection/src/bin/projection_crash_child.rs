//! `projection-crash-child`: the process the exactly-once test kills.
//!
//! `projection-crash-child <data dir> run` runs the example projection in
//! small batches while appending events, until it is killed.
//! `projection-crash-child <data dir> finish` lets the projection reach the
//! head, prints `caught-up`, and exits.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use tongban_projection::example::CategoryCounts;
use tongban_projection::{EmbeddedReadModels, ProjectionRunner, RunnerConfig};
use tongban_store::{EmbeddedStore, EventData, EventStore, ExpectedRevision, StreamName};

#[tokio::main]
async fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let (Some(dir), Some(mode)) = (args.get(1), args.get(2)) else {
        bail!("usage: projection-crash-child <data dir> run|finish");
    };
    let store = EmbeddedStore::open(std::path::Path::new(dir).join("events"))
        .with_context(|| format!("failed to open the event store in {dir}"))?;
    let events: Arc<dyn EventStore> = Arc::new(store.clone());
    let models = Arc::new(
        EmbeddedReadModels::beside(dir)
            .with_context(|| format!("failed to open the read models in {dir}"))?,
    );
    let runner = ProjectionRunner::new(
        events.clone(),
        models,
        RunnerConfig {
            batch_size: 37,
            ..RunnerConfig::default()
        },
    );
    runner.start(Arc::new(CategoryCounts::default()))?;
    match mode.as_str() {
        "run" => {
            let mut n = 0u64;
            loop {
                let stream = if n.is_multiple_of(2) {
                    format!("code-{}", n % 101)
                } else {
                    format!("person-{}", n % 53)
                };
                let event = if n.is_multiple_of(2) {
                    EventData::json(
                        "ColourChanged",
                        &serde_json::json!({"colour": "yellow", "region": "110106"}),
                    )?
                } else {
                    EventData::json("Something", &serde_json::json!({"n": n}))?
                };
                events
                    .append(
                        &StreamName::parse(stream)?,
                        ExpectedRevision::Any,
                        vec![event],
                    )
                    .await?;
                n += 1;
                if n.is_multiple_of(50) {
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
            }
        }
        "finish" => {
            runner.wait_for_head(Duration::from_secs(60)).await?;
            println!("caught-up");
            runner.shutdown().await;
            // Every clone of the store must be gone before it can close.
            drop(events);
            store.close().await;
            Ok(())
        }
        other => bail!("unknown mode '{other}': use run or finish"),
    }
}

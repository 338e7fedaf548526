//! Helpers shared by the integration tests: each test owns its data.
#![allow(dead_code)]

use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;
use tempfile::TempDir;
use tongban_projection::{EmbeddedReadModels, ProjectionRunner, RunnerConfig};
use tongban_store::{EmbeddedStore, EventData, EventStore, ExpectedRevision, Position, StreamName};

pub const WAIT: Duration = Duration::from_secs(30);

pub struct Hub {
    pub dir: TempDir,
    pub store: EmbeddedStore,
    pub events: Arc<dyn EventStore>,
    pub models: Arc<EmbeddedReadModels>,
}

pub fn hub() -> Result<Hub> {
    let dir = tempfile::tempdir()?;
    let store = EmbeddedStore::open(dir.path().join("events"))?;
    let models = Arc::new(EmbeddedReadModels::beside(dir.path())?);
    Ok(Hub {
        dir,
        events: Arc::new(store.clone()),
        store,
        models,
    })
}

impl Hub {
    pub fn runner(&self, config: RunnerConfig) -> ProjectionRunner {
        ProjectionRunner::new(self.events.clone(), self.models.clone(), config)
    }
}

/// `count` events in stream `stream`; `ColourChanged` ones in `code-` streams.
pub async fn append(events: &dyn EventStore, stream: &str, count: usize) -> Result<Position> {
    let name = StreamName::parse(stream)?;
    let batch = (0..count)
        .map(|n| {
            if stream.starts_with("code-") {
                let colour = ["green", "yellow", "red"][n % 3];
                EventData::json(
                    "ColourChanged",
                    &serde_json::json!({"colour": colour, "region": "110106"}),
                )
            } else {
                EventData::json("Something", &serde_json::json!({"n": n}))
            }
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(events
        .append(&name, ExpectedRevision::Any, batch)
        .await?
        .position)
}

/// A colour change in `region` for code `id`.
pub async fn colour(events: &dyn EventStore, id: usize, region: &str) -> Result<Position> {
    let name = StreamName::parse(format!("code-{id}"))?;
    let event = EventData::json(
        "ColourChanged",
        &serde_json::json!({"colour": "red", "region": region}),
    )?;
    Ok(events
        .append(&name, ExpectedRevision::Any, vec![event])
        .await?
        .position)
}

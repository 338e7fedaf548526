//! A small example projection, used by the tests, the crash child and the
//! benchmark: events and streams per stream category, each stream's
//! activity (indexed by category), and a change feed of code colours.
//!
//! Events of type `ColourChanged` with data `{"colour": .., "region": ..}`
//! in a stream `code-<id>` publish `{code id, colour, region}` records of
//! data class `code-status` to the feed.

use std::collections::BTreeMap;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use tongban_store::{EventFilter, Position, RecordedEvent};

use crate::feed::ChangeDraft;
use crate::projection::{ApplyError, Changes, Projection};
use crate::read_model::Table;

/// Events and streams seen in one category.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CategoryCount {
    pub events: u64,
    pub streams: u64,
}

/// One stream's activity.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamActivity {
    pub category: String,
    pub events: u64,
    pub last_type: String,
    pub last_position: Position,
}

/// What a `ColourChanged` event carries.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ColourChanged {
    pub colour: String,
    pub region: String,
}

/// A code-colour change record, as departments receive it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CodeColourChange {
    pub code_id: String,
    pub colour: String,
    pub region: String,
}

/// Counts per stream category.
pub struct CategoryCounts {
    name: String,
    version: u32,
    pub categories: Table<String, CategoryCount>,
    pub streams: Table<String, StreamActivity>,
}

impl Default for CategoryCounts {
    fn default() -> Self {
        Self::named("category-counts", 1)
    }
}

impl CategoryCounts {
    /// The same projection under another name or version (tests use this
    /// to run copies side by side or to force a rebuild).
    pub fn named(name: &str, version: u32) -> Self {
        Self {
            name: name.to_string(),
            version,
            // Binary, so that the tests run both encodings.
            categories: Table::new("categories").binary(),
            streams: Table::new("streams")
                .with_index("by_category", |s: &StreamActivity| vec![s.category.clone()]),
        }
    }
}

#[async_trait]
impl Projection for CategoryCounts {
    fn name(&self) -> &str {
        &self.name
    }

    fn version(&self) -> u32 {
        self.version
    }

    fn filter(&self) -> EventFilter {
        EventFilter::all().excluding_system_events()
    }

    async fn apply(
        &self,
        events: &[RecordedEvent],
        changes: &mut Changes<'_>,
    ) -> Result<(), ApplyError> {
        // Fold the batch in memory first: one read and one write per row.
        let mut per_stream: BTreeMap<&str, (u64, &RecordedEvent)> = BTreeMap::new();
        for event in events {
            let entry = per_stream
                .entry(event.stream.as_str())
                .or_insert((0, event));
            entry.0 += 1;
            entry.1 = event;
            if event.event_type == "ColourChanged" {
                let change: ColourChanged = event.json().map_err(|e| ApplyError::at(event, e))?;
                let code_id = event
                    .stream
                    .as_str()
                    .split_once('-')
                    .map_or(event.stream.as_str(), |(_, id)| id)
                    .to_string();
                let record = CodeColourChange {
                    code_id,
                    colour: change.colour,
                    region: change.region.clone(),
                };
                let draft =
                    ChangeDraft::new("code.colour", "code-status", Some(change.region), &record)?;
                changes.publish(event, draft)?;
            }
        }
        let mut per_category: BTreeMap<String, CategoryCount> = BTreeMap::new();
        for (stream, (count, last)) in per_stream {
            let key = stream.to_string();
            let category = last.stream.category().to_string();
            let previous = changes.get(&self.streams, &key).await?;
            let totals = per_category.entry(category.clone()).or_default();
            totals.events += count;
            if previous.is_none() {
                totals.streams += 1;
            }
            let activity = StreamActivity {
                category,
                events: previous.map_or(0, |p| p.events) + count,
                last_type: last.event_type.clone(),
                last_position: last.position,
            };
            changes.put(&self.streams, &key, &activity)?;
        }
        for (category, add) in per_category {
            changes
                .update(&self.categories, &category, CategoryCount::default, |c| {
                    c.events += add.events;
                    c.streams += add.streams;
                })
                .await?;
        }
        Ok(())
    }
}

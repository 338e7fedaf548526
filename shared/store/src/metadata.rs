//! Stream metadata, in EventStoreDB's JSON shape (`$maxCount`, `$maxAge`,
//! `$tb`), kept as `$metadata` events in the `$$stream` metadata stream.

use serde::{Deserialize, Serialize};

use crate::error::StoreError;

/// Event type of a metadata event in a `$$stream`.
pub const METADATA_EVENT_TYPE: &str = "$metadata";
/// Event type of the event that tombstones a stream.
pub const TOMBSTONE_EVENT_TYPE: &str = "$streamDeleted";

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct StreamMetadata {
    /// Reads show at most the last `max_count` events.
    #[serde(rename = "$maxCount", skip_serializing_if = "Option::is_none", default)]
    pub max_count: Option<u64>,
    /// Reads show only events recorded within the last `max_age` seconds.
    #[serde(rename = "$maxAge", skip_serializing_if = "Option::is_none", default)]
    pub max_age_seconds: Option<u64>,
    /// Reads show only revisions from this one on (set by soft delete).
    #[serde(rename = "$tb", skip_serializing_if = "Option::is_none", default)]
    pub truncate_before: Option<u64>,
    /// Application-defined metadata, kept as given.
    #[serde(flatten)]
    pub custom: serde_json::Map<String, serde_json::Value>,
}

impl StreamMetadata {
    pub fn with_max_count(mut self, n: u64) -> Self {
        self.max_count = Some(n);
        self
    }

    pub fn with_max_age_seconds(mut self, seconds: u64) -> Self {
        self.max_age_seconds = Some(seconds);
        self
    }

    /// Checks the rules a store enforces on metadata.
    pub fn validate(&self) -> Result<(), StoreError> {
        if self.max_count == Some(0) {
            return Err(StoreError::InvalidInput {
                field: "metadata.$maxCount".into(),
                rule: "max count must be at least 1".into(),
            });
        }
        if self.max_age_seconds == Some(0) {
            return Err(StoreError::InvalidInput {
                field: "metadata.$maxAge".into(),
                rule: "max age must be at least 1 second".into(),
            });
        }
        Ok(())
    }
}

/// Stream metadata together with the metadata stream's revision, for
/// optimistic concurrency on metadata changes.
#[derive(Clone, Debug, PartialEq)]
pub struct StreamMetadataResult {
    pub metadata: StreamMetadata,
    /// Revision of the `$$stream` metadata stream, `None` if never set.
    pub revision: Option<u64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metadata_uses_event_store_db_field_names_and_keeps_custom_fields() {
        let json = r#"{"$maxCount":5,"$maxAge":60,"$tb":3,"owner":"health"}"#;
        let metadata: StreamMetadata = serde_json::from_str(json).unwrap();
        assert_eq!(metadata.max_count, Some(5));
        assert_eq!(metadata.max_age_seconds, Some(60));
        assert_eq!(metadata.truncate_before, Some(3));
        assert_eq!(metadata.custom["owner"], "health");
        let back: serde_json::Value = serde_json::to_value(&metadata).unwrap();
        assert_eq!(back["$maxCount"], 5);
        assert_eq!(back["owner"], "health");
    }

    #[test]
    fn zero_max_count_is_refused() {
        let metadata = StreamMetadata::default().with_max_count(0);
        assert!(metadata.validate().is_err());
    }
}

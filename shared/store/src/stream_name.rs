//! Stream names: `category-id`, 1–255 bytes of UTF-8 without control characters.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::error::StoreError;

/// Longest stream name, in bytes.
pub const MAX_STREAM_NAME_BYTES: usize = 255;

/// A valid stream name. Names starting with `$` are system streams: they can
/// be read, but ordinary appends to them are refused.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct StreamName(String);

impl StreamName {
    pub fn parse(name: impl Into<String>) -> Result<Self, StoreError> {
        let name = name.into();
        let invalid = |reason: &str| StoreError::InvalidStreamName {
            name: name.chars().take(80).collect(),
            reason: reason.to_string(),
        };
        if name.is_empty() {
            return Err(invalid("a stream name must not be empty"));
        }
        if name.len() > MAX_STREAM_NAME_BYTES {
            return Err(invalid("a stream name must be at most 255 bytes of UTF-8"));
        }
        if name.chars().any(char::is_control) {
            return Err(invalid("a stream name must not contain control characters"));
        }
        Ok(Self(name))
    }

    /// The metadata stream of this stream (`$$name`), where EventStoreDB
    /// keeps stream metadata.
    pub fn metadata_stream(&self) -> StreamName {
        let mut name = String::with_capacity(self.0.len() + 2);
        name.push_str("$$");
        name.push_str(&self.0);
        // `$$` plus a valid name can exceed 255 bytes; metadata streams are
        // internal, so the length limit applies to user-facing names only.
        StreamName(name)
    }

    /// The stream a metadata stream (`$$name`) describes.
    pub fn metadata_target(&self) -> Option<StreamName> {
        self.0.strip_prefix("$$").map(|s| StreamName(s.to_string()))
    }

    pub fn is_system(&self) -> bool {
        self.0.starts_with('$')
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The category: the part before the first `-` (`person-123` → `person`).
    pub fn category(&self) -> &str {
        self.0.split_once('-').map_or(self.0.as_str(), |(c, _)| c)
    }

    /// Rejects system streams for ordinary appends.
    pub fn ensure_writable(&self) -> Result<(), StoreError> {
        if self.is_system() {
            return Err(StoreError::InvalidStreamName {
                name: self.0.clone(),
                reason: "names starting with '$' are reserved for system streams".into(),
            });
        }
        Ok(())
    }
}

impl StreamName {
    /// Accepts only the hub's own system streams (`$name`), not metadata
    /// streams (`$$name`, written through stream metadata).
    pub fn ensure_system(&self) -> Result<(), StoreError> {
        if !self.is_system() || self.0.starts_with("$$") {
            return Err(StoreError::InvalidStreamName {
                name: self.0.clone(),
                reason: "a system stream name starts with a single '$'".into(),
            });
        }
        Ok(())
    }
}

impl TryFrom<String> for StreamName {
    type Error = StoreError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::parse(value)
    }
}

impl TryFrom<&str> for StreamName {
    type Error = StoreError;
    fn try_from(value: &str) -> Result<Self, Self::Error> {
        Self::parse(value)
    }
}

impl From<StreamName> for String {
    fn from(value: StreamName) -> Self {
        value.0
    }
}

impl AsRef<str> for StreamName {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for StreamName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for StreamName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_category_dash_id_name_parses_and_knows_its_category() {
        let name = StreamName::parse("person-42").unwrap();
        assert_eq!(name.category(), "person");
        assert!(!name.is_system());
    }

    #[test]
    fn empty_overlong_and_control_character_names_are_rejected() {
        assert!(StreamName::parse("").is_err());
        assert!(StreamName::parse("a".repeat(256)).is_err());
        assert!(StreamName::parse("a".repeat(255)).is_ok());
        assert!(StreamName::parse("bad\nname").is_err());
        // 85 three-byte characters are 255 bytes; one more is too long.
        assert!(StreamName::parse("码".repeat(85)).is_ok());
        assert!(StreamName::parse("码".repeat(86)).is_err());
    }

    #[test]
    fn system_streams_parse_but_are_not_writable() {
        let name = StreamName::parse("$all-checkpoints").unwrap();
        assert!(name.is_system());
        assert!(matches!(
            name.ensure_writable(),
            Err(StoreError::InvalidStreamName { .. })
        ));
    }

    #[test]
    fn a_metadata_stream_names_its_target() {
        let name = StreamName::parse("order-1").unwrap();
        let meta = name.metadata_stream();
        assert_eq!(meta.as_str(), "$$order-1");
        assert_eq!(meta.metadata_target(), Some(name));
    }
}

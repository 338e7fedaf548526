//! Filters for reads of `$all` and subscriptions to it.

use serde::{Deserialize, Serialize};

/// Selects events by stream-name prefix and event-type prefix. An empty list
/// matches everything; when both lists are given an event must match both.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventFilter {
    pub stream_prefixes: Vec<String>,
    pub event_type_prefixes: Vec<String>,
    /// Leave out system events (types and streams starting with `$`).
    pub exclude_system: bool,
}

impl EventFilter {
    /// Every event, system events included.
    pub fn all() -> Self {
        Self::default()
    }

    /// Events whose stream name starts with one of `prefixes`.
    pub fn streams<I, S>(prefixes: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Self {
            stream_prefixes: prefixes.into_iter().map(Into::into).collect(),
            ..Self::default()
        }
    }

    /// Events whose type starts with one of `prefixes`.
    pub fn event_types<I, S>(prefixes: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Self {
            event_type_prefixes: prefixes.into_iter().map(Into::into).collect(),
            ..Self::default()
        }
    }

    pub fn excluding_system_events(mut self) -> Self {
        self.exclude_system = true;
        self
    }

    pub fn is_everything(&self) -> bool {
        self.stream_prefixes.is_empty()
            && self.event_type_prefixes.is_empty()
            && !self.exclude_system
    }

    pub fn matches(&self, stream: &str, event_type: &str) -> bool {
        if self.exclude_system && (stream.starts_with('$') || event_type.starts_with('$')) {
            return false;
        }
        let stream_ok = self.stream_prefixes.is_empty()
            || self
                .stream_prefixes
                .iter()
                .any(|p| stream.starts_with(p.as_str()));
        let type_ok = self.event_type_prefixes.is_empty()
            || self
                .event_type_prefixes
                .iter()
                .any(|p| event_type.starts_with(p.as_str()));
        stream_ok && type_ok
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_filter_matches_everything() {
        assert!(EventFilter::all().matches("$$x", "$metadata"));
    }

    #[test]
    fn stream_and_type_prefixes_must_both_match() {
        let filter = EventFilter {
            stream_prefixes: vec!["person-".into()],
            event_type_prefixes: vec!["Test".into()],
            exclude_system: false,
        };
        assert!(filter.matches("person-1", "TestResultRecorded"));
        assert!(!filter.matches("person-1", "HealthDeclared"));
        assert!(!filter.matches("venue-1", "TestResultRecorded"));
    }

    #[test]
    fn system_events_can_be_left_out() {
        let filter = EventFilter::all().excluding_system_events();
        assert!(!filter.matches("$$person-1", "$metadata"));
        assert!(!filter.matches("person-1", "$streamDeleted"));
        assert!(filter.matches("person-1", "Registered"));
    }
}

//! EventStoreDB server-side filters (stream name or event type, by prefixes
//! or a regular expression) and the checkpoint interval of filtered
//! subscriptions.

use tongban_store::{EventFilter, RecordedEvent};
use tonic::Status;

/// One expression of an EventStoreDB filter.
#[derive(Debug)]
enum Matcher {
    Prefixes(Vec<String>),
    /// `fancy_regex`: official clients send look-ahead patterns (for
    /// example to exclude system events).
    Regex(Box<fancy_regex::Regex>),
}

/// A filter as a client sent it.
#[derive(Debug)]
pub(crate) struct EsdbFilter {
    on_stream: bool,
    matcher: Matcher,
    /// Send a checkpoint after this many scanned events.
    pub checkpoint_every: u64,
}

/// The common shape of the filter messages of `Read` and persistent
/// `Create`, which are distinct generated types.
pub(crate) struct FilterParts<'a> {
    pub on_stream: bool,
    pub regex: &'a str,
    pub prefixes: &'a [String],
    pub max_window: Option<u32>,
    pub multiplier: u32,
}

impl EsdbFilter {
    pub fn parse(parts: FilterParts<'_>) -> Result<Self, Status> {
        let matcher = if !parts.prefixes.is_empty() {
            Matcher::Prefixes(parts.prefixes.to_vec())
        } else if !parts.regex.is_empty() {
            let regex = fancy_regex::Regex::new(parts.regex).map_err(|e| {
                Status::invalid_argument(format!("invalid filter regex '{}': {e}", parts.regex))
            })?;
            Matcher::Regex(Box::new(regex))
        } else {
            Matcher::Prefixes(Vec::new())
        };
        let window = u64::from(parts.max_window.unwrap_or(32).max(1));
        let multiplier = u64::from(parts.multiplier.max(1));
        Ok(Self {
            on_stream: parts.on_stream,
            matcher,
            checkpoint_every: window * multiplier,
        })
    }

    /// The part of this filter the store applies itself (prefixes).
    pub fn store_filter(&self) -> EventFilter {
        match &self.matcher {
            Matcher::Prefixes(p) if p.is_empty() => EventFilter::all(),
            Matcher::Prefixes(p) if self.on_stream => EventFilter::streams(p.clone()),
            Matcher::Prefixes(p) => EventFilter::event_types(p.clone()),
            Matcher::Regex(_) => EventFilter::all(),
        }
    }

    pub fn matches(&self, event: &RecordedEvent) -> bool {
        let subject = if self.on_stream {
            event.stream.as_str()
        } else {
            event.event_type.as_str()
        };
        match &self.matcher {
            Matcher::Prefixes(p) => p.is_empty() || p.iter().any(|p| subject.starts_with(p)),
            Matcher::Regex(r) => r.is_match(subject).unwrap_or(false),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts<'a>(on_stream: bool, regex: &'a str, prefixes: &'a [String]) -> FilterParts<'a> {
        FilterParts {
            on_stream,
            regex,
            prefixes,
            max_window: None,
            multiplier: 1,
        }
    }

    #[test]
    fn a_look_ahead_regex_excluding_system_events_is_understood() {
        let f = EsdbFilter::parse(parts(false, r"^(?!\$).*", &[])).expect("valid");
        let Matcher::Regex(r) = &f.matcher else {
            panic!("not a regex")
        };
        assert!(r.is_match("Registered").unwrap_or(false));
        assert!(!r.is_match("$metadata").unwrap_or(true));
    }

    #[test]
    fn prefixes_are_pushed_down_to_the_store() {
        let prefixes = vec!["person-".to_string()];
        let f = EsdbFilter::parse(parts(true, "", &prefixes)).expect("valid");
        assert_eq!(f.store_filter(), EventFilter::streams(["person-"]));
    }
}

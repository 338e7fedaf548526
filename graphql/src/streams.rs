//! `streamEvents`: an auditor pages through any stream that holds no
//! person's data — risk areas, policies, checkpoints' scan logs, the service
//! catalogue — event by event, as the log holds them.
//!
//! Streams about a person (`person-`, applications, inboxes, overrides
//! naming persons) are read through the person's own queries, which take a
//! purpose and record the read in the person's access log; here they are
//! refused, so that no read of a person's data escapes that record. The list
//! is an allow-list: a new kind of stream stays closed until it is named
//! here. A page is logged (target `audit`) like the other log reads.

use std::sync::Arc;

use async_graphql::{Context, Json, Object, Result, SimpleObject};
use time::format_description::well_known::Rfc3339;
use tongban_health_code::graphql::{
    api::{coded, forbidden},
    caller,
};
use tongban_kernel::Role;
use tongban_store::{Direction, EventStore, ReadFrom, RecordedEvent, StoreError, StreamName};

/// Stream categories open to auditors here (none holds personal data).
pub const OPEN_CATEGORIES: [&str; 4] = ["riskarea-", "policy-", "checkpoint-", "catalog-"];

/// The most events one page returns.
pub const MAX_PAGE: u32 = 200;

/// The stream queries.
#[derive(Default)]
pub struct StreamQuery;

/// One event as the log holds it.
#[derive(SimpleObject, Debug, Clone)]
pub struct LoggedEvent {
    /// Its revision in the stream (0-based).
    pub revision: u64,
    /// Its place in the global log.
    pub position: u64,
    /// The event id.
    pub id: String,
    /// The event type, e.g. `RiskAreaDeclared.v1`.
    pub event_type: String,
    /// When the log committed it (RFC 3339, UTC).
    pub recorded_at: String,
    /// Its hash-chain link (hex).
    pub hash: String,
    /// The event's data.
    pub data: Json<serde_json::Value>,
    /// The event's metadata (actor, correlation, business time).
    pub metadata: Json<serde_json::Value>,
}

/// A page of a stream.
#[derive(SimpleObject, Debug, Clone)]
pub struct StreamPage {
    /// The stream.
    pub stream: String,
    /// The events from `from` on, oldest first.
    pub events: Vec<LoggedEvent>,
    /// The revision to pass as `from` for the next page; `None` at the end.
    pub next_from: Option<u64>,
}

fn logged(e: &RecordedEvent) -> LoggedEvent {
    let json = |bytes: &[u8]| {
        if bytes.is_empty() {
            serde_json::Value::Null
        } else {
            serde_json::from_slice(bytes).unwrap_or_else(|_| {
                serde_json::Value::String(String::from_utf8_lossy(bytes).into_owned())
            })
        }
    };
    LoggedEvent {
        revision: e.revision,
        position: e.position.0,
        id: e.id.to_string(),
        event_type: e.event_type.clone(),
        recorded_at: e
            .recorded_at
            .format(&Rfc3339)
            .unwrap_or_else(|_| e.recorded_at.to_string()),
        hash: e.hash.to_hex(),
        data: Json(json(&e.data)),
        metadata: Json(json(&e.metadata)),
    }
}

/// Checks that `stream` names a stream open to auditors here.
pub fn open_stream(stream: &str) -> Result<StreamName> {
    let name = StreamName::parse(stream.trim())
        .map_err(|e| coded("INVALID_INPUT", format!("invalid `stream`: {e}")))?;
    if !OPEN_CATEGORIES
        .iter()
        .any(|c| name.as_str().starts_with(c) && name.as_str().len() > c.len())
    {
        return Err(coded(
            "FORBIDDEN",
            format!(
                "`stream` {name} is not open here: only streams without personal data can be read \
                 event by event ({}…); read a person's history through `person(id, purpose)`, \
                 which records the read in their access log",
                OPEN_CATEGORIES.join("…, ")
            ),
        ));
    }
    Ok(name)
}

#[Object]
impl StreamQuery {
    /// A page of a stream's events from revision `from` (default 0), at most
    /// `limit` (default 50, at most 200) (auditor, admin). Only streams
    /// without personal data: risk areas (`riskarea-<code>`), policies
    /// (`policy-<region>`), checkpoints (`checkpoint-<id>`) and the
    /// catalogue (`catalog-<code>`).
    async fn stream_events(
        &self,
        ctx: &Context<'_>,
        stream: String,
        from: Option<u64>,
        limit: Option<u32>,
    ) -> Result<StreamPage> {
        let actor = caller(ctx)?;
        if !matches!(actor.role, Role::Auditor | Role::Admin) {
            return Err(forbidden(actor, "streamEvents", "auditor, admin"));
        }
        let name = open_stream(&stream)?;
        let limit = limit.unwrap_or(50);
        if limit == 0 || limit > MAX_PAGE {
            return Err(coded(
                "INVALID_INPUT",
                format!("invalid `limit`: {limit} is not between 1 and {MAX_PAGE}"),
            ));
        }
        let from = from.unwrap_or(0);
        let store = ctx.data::<Arc<dyn EventStore>>()?;
        // One more than asked tells whether a next page exists.
        let page = match store
            .read_stream(
                &name,
                Direction::Forwards,
                ReadFrom::At(from),
                limit as usize + 1,
            )
            .await
        {
            Ok(page) => page,
            Err(StoreError::StreamNotFound { .. }) => {
                return Err(coded("NOT_FOUND", format!("stream {name} has no events")))
            }
            Err(e) => return Err(coded(e.code(), e.to_string())),
        };
        let next_from = page.get(limit as usize).map(|e| e.revision);
        let events: Vec<LoggedEvent> = page.iter().take(limit as usize).map(logged).collect();
        tracing::info!(
            target: "audit",
            actor = %actor.id,
            role = actor.role_name(),
            stream = %name,
            from,
            events = events.len(),
            "stream read"
        );
        Ok(StreamPage {
            stream: name.to_string(),
            events,
            next_from,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streams_without_personal_data_are_open() {
        // Given the names of a risk area's, a policy's, a checkpoint's and a
        // catalogue entry's stream, when checked, then each is open.
        for s in [
            "riskarea-110106018",
            "policy-11",
            "checkpoint-6f1c0c9e-8a57-4a55-9a43-1b2f4bb0e1f3",
            "catalog-elderly-care",
        ] {
            assert!(open_stream(s).is_ok(), "{s}");
        }
    }

    #[test]
    fn streams_about_persons_and_system_streams_are_refused() {
        // Given streams holding persons' data, system streams and a bare
        // category, when checked, then each is refused, naming the field.
        for s in [
            "person-6f1c0c9e-8a57-4a55-9a43-1b2f4bb0e1f3",
            "case-1",
            "inbox-1",
            "override-1",
            "$tongban-chain",
            "riskarea-",
            "riskareas",
        ] {
            let e = open_stream(s).err().map(|e| e.message).unwrap_or_default();
            assert!(e.contains("`stream`"), "{s}: {e}");
        }
    }
}

//! Between the store's types and the protocol's messages, and from
//! [`StoreError`] to the gRPC statuses (with EventStoreDB's `exception`
//! metadata) that official clients understand.

use bytes::Bytes;
use tongban_store::{CurrentRevision, ExpectedRevision, RecordedEvent, StoreError, StreamName};
use tonic::metadata::MetadataValue;
use tonic::Status;
use uuid::Uuid;

use crate::proto::shared::{self, uuid::Structured, Empty, StreamIdentifier};
use crate::proto::{persistent, streams};

pub(crate) fn uuid_to_proto(id: Uuid, structured: bool) -> shared::Uuid {
    let value = if structured {
        let n = id.as_u128();
        shared::uuid::Value::Structured(Structured {
            most_significant_bits: (n >> 64) as u64 as i64,
            least_significant_bits: n as u64 as i64,
        })
    } else {
        shared::uuid::Value::String(id.to_string())
    };
    shared::Uuid { value: Some(value) }
}

pub(crate) fn uuid_from_proto(id: Option<&shared::Uuid>) -> Result<Uuid, Status> {
    match id.and_then(|u| u.value.as_ref()) {
        None => Ok(Uuid::new_v4()),
        Some(shared::uuid::Value::Structured(s)) => {
            let hi = u128::from(s.most_significant_bits as u64);
            let lo = u128::from(s.least_significant_bits as u64);
            Ok(Uuid::from_u128((hi << 64) | lo))
        }
        Some(shared::uuid::Value::String(s)) => Uuid::parse_str(s)
            .map_err(|e| Status::invalid_argument(format!("invalid event id '{s}': {e}"))),
    }
}

pub(crate) fn stream_name(id: Option<&StreamIdentifier>) -> Result<StreamName, Status> {
    let id = id.ok_or_else(|| Status::invalid_argument("a stream identifier is required"))?;
    let name = String::from_utf8(id.stream_name.clone())
        .map_err(|_| Status::invalid_argument("a stream name must be UTF-8"))?;
    StreamName::parse(name).map_err(status_of)
}

pub(crate) fn stream_identifier(name: &str) -> StreamIdentifier {
    StreamIdentifier {
        stream_name: name.as_bytes().to_vec(),
    }
}

/// EventStoreDB's "ticks" are 100 ns units since the Unix epoch.
pub(crate) fn ticks_of(event: &RecordedEvent) -> i64 {
    event.recorded_at_micros().saturating_mul(10)
}

fn system_metadata(event: &RecordedEvent) -> std::collections::HashMap<String, String> {
    [
        ("type".to_string(), event.event_type.clone()),
        ("content-type".to_string(), "application/json".to_string()),
        ("created".to_string(), ticks_of(event).to_string()),
    ]
    .into_iter()
    .collect()
}

pub(crate) fn recorded_to_proto(
    event: &RecordedEvent,
    structured: bool,
) -> streams::read_resp::read_event::RecordedEvent {
    streams::read_resp::read_event::RecordedEvent {
        id: Some(uuid_to_proto(event.id, structured)),
        stream_identifier: Some(stream_identifier(event.stream.as_str())),
        stream_revision: event.revision,
        prepare_position: event.position.0,
        commit_position: event.position.0,
        metadata: system_metadata(event),
        custom_metadata: event.metadata.to_vec(),
        data: event.data.to_vec(),
    }
}

pub(crate) fn read_event(event: &RecordedEvent, structured: bool) -> streams::ReadResp {
    streams::ReadResp {
        content: Some(streams::read_resp::Content::Event(
            streams::read_resp::ReadEvent {
                event: Some(recorded_to_proto(event, structured)),
                link: None,
                position: Some(streams::read_resp::read_event::Position::CommitPosition(
                    event.position.0,
                )),
            },
        )),
    }
}

pub(crate) fn persistent_event(
    event: &RecordedEvent,
    retry_count: i32,
    structured: bool,
) -> persistent::ReadResp {
    use persistent::read_resp::{read_event, Content, ReadEvent};
    let e = event;
    persistent::ReadResp {
        content: Some(Content::Event(ReadEvent {
            event: Some(read_event::RecordedEvent {
                id: Some(uuid_to_proto(e.id, structured)),
                stream_identifier: Some(stream_identifier(e.stream.as_str())),
                stream_revision: e.revision,
                prepare_position: e.position.0,
                commit_position: e.position.0,
                metadata: system_metadata(e),
                custom_metadata: e.metadata.to_vec(),
                data: e.data.to_vec(),
            }),
            link: None,
            position: Some(read_event::Position::CommitPosition(e.position.0)),
            count: Some(read_event::Count::RetryCount(retry_count)),
        })),
    }
}

/// Proposed event metadata (`type`, `content-type`) and payloads become a
/// store event. Empty custom metadata becomes `{}`: the store keeps JSON.
pub(crate) fn event_data(
    id: Option<&shared::Uuid>,
    metadata: &std::collections::HashMap<String, String>,
    custom_metadata: Vec<u8>,
    data: Vec<u8>,
    index: usize,
) -> Result<tongban_store::EventData, Status> {
    let event_type = metadata.get("type").cloned().ok_or_else(|| {
        Status::invalid_argument(format!("event {index} has no 'type' in its metadata"))
    })?;
    let custom = if custom_metadata.is_empty() {
        Bytes::from_static(b"{}")
    } else {
        Bytes::from(custom_metadata)
    };
    Ok(tongban_store::EventData {
        id: uuid_from_proto(id)?,
        event_type,
        data: Bytes::from(data),
        metadata: custom,
    })
}

fn with_exception(mut status: Status, exception: &str, extra: &[(&'static str, String)]) -> Status {
    let metadata = status.metadata_mut();
    if let Ok(value) = MetadataValue::try_from(exception) {
        metadata.insert("exception", value);
    }
    for (key, value) in extra {
        if let Ok(value) = MetadataValue::try_from(value.as_str()) {
            metadata.insert(*key, value);
        }
    }
    status
}

fn version_number(revision: CurrentRevision) -> String {
    match revision {
        CurrentRevision::NoStream => "-1".into(),
        CurrentRevision::Current(n) => n.to_string(),
    }
}

fn expected_number(expected: ExpectedRevision) -> String {
    match expected {
        ExpectedRevision::Any => "-2".into(),
        ExpectedRevision::NoStream => "-1".into(),
        ExpectedRevision::StreamExists => "-4".into(),
        ExpectedRevision::Exact(n) => n.to_string(),
    }
}

/// The gRPC status an error becomes. Conflicts carry EventStoreDB's
/// `exception` metadata and its message shape ("… Actual version: n"),
/// which the esdb backend reads back.
pub(crate) fn status_of(error: StoreError) -> Status {
    let message = error.to_string();
    match error {
        StoreError::WrongExpectedVersion {
            stream,
            expected,
            actual,
        } => with_exception(
            Status::failed_precondition(format!(
                "Append failed due to WrongExpectedVersion. Stream: {stream}, Expected version: {}, Actual version: {}",
                expected_number(expected),
                version_number(actual)
            )),
            "wrong-expected-version",
            &[
                ("stream-name", stream.clone()),
                ("expected-version", expected_number(expected)),
                ("actual-version", version_number(actual)),
            ],
        ),
        StoreError::StreamDeleted { stream } => with_exception(
            Status::failed_precondition(message),
            "stream-deleted",
            &[("stream-name", stream)],
        ),
        StoreError::StreamNotFound { stream } => with_exception(
            Status::not_found(message),
            "stream-not-found",
            &[("stream-name", stream)],
        ),
        StoreError::EventTooLarge { max, .. } => with_exception(
            Status::invalid_argument(message),
            "maximum-append-size-exceeded",
            &[("maximum-append-size", max.to_string())],
        ),
        StoreError::InvalidStreamName { .. }
        | StoreError::InvalidJson { .. }
        | StoreError::InvalidInput { .. }
        | StoreError::NotAStore { .. }
        | StoreError::UnsupportedFormat { .. } => Status::invalid_argument(message),
        StoreError::Io { .. } | StoreError::Corruption { .. } => Status::internal(message),
        StoreError::AccessDenied { .. } => {
            with_exception(Status::permission_denied(message), "access-denied", &[])
        }
        StoreError::Unavailable { .. } | StoreError::SubscriptionDropped { .. } => {
            Status::unavailable(message)
        }
    }
}

pub(crate) fn expected_from_append(
    option: Option<streams::append_req::options::ExpectedStreamRevision>,
) -> ExpectedRevision {
    use streams::append_req::options::ExpectedStreamRevision as E;
    match option {
        Some(E::Revision(n)) => ExpectedRevision::Exact(n),
        Some(E::NoStream(_)) => ExpectedRevision::NoStream,
        Some(E::StreamExists(_)) => ExpectedRevision::StreamExists,
        Some(E::Any(_)) | None => ExpectedRevision::Any,
    }
}

pub(crate) fn wrong_expected_version_resp(
    expected: ExpectedRevision,
    actual: CurrentRevision,
) -> streams::append_resp::WrongExpectedVersion {
    use streams::append_resp::wrong_expected_version::{
        CurrentRevisionOption, CurrentRevisionOption2060, ExpectedRevisionOption,
        ExpectedRevisionOption2060,
    };
    let (current, current_old) = match actual {
        CurrentRevision::NoStream => (
            CurrentRevisionOption::CurrentNoStream(Empty {}),
            CurrentRevisionOption2060::NoStream2060(Empty {}),
        ),
        CurrentRevision::Current(n) => (
            CurrentRevisionOption::CurrentRevision(n),
            CurrentRevisionOption2060::CurrentRevision2060(n),
        ),
    };
    let (expected_new, expected_old) = match expected {
        ExpectedRevision::Any => (
            ExpectedRevisionOption::ExpectedAny(Empty {}),
            Some(ExpectedRevisionOption2060::Any2060(Empty {})),
        ),
        ExpectedRevision::NoStream => (ExpectedRevisionOption::ExpectedNoStream(Empty {}), None),
        ExpectedRevision::StreamExists => (
            ExpectedRevisionOption::ExpectedStreamExists(Empty {}),
            Some(ExpectedRevisionOption2060::StreamExists2060(Empty {})),
        ),
        ExpectedRevision::Exact(n) => (
            ExpectedRevisionOption::ExpectedRevision(n),
            Some(ExpectedRevisionOption2060::ExpectedRevision2060(n)),
        ),
    };
    streams::append_resp::WrongExpectedVersion {
        current_revision_option_20_6_0: Some(current_old),
        expected_revision_option_20_6_0: expected_old,
        current_revision_option: Some(current),
        expected_revision_option: Some(expected_new),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uuids_round_trip_in_both_wire_forms() {
        let id = Uuid::new_v4();
        for structured in [true, false] {
            let wire = uuid_to_proto(id, structured);
            assert_eq!(uuid_from_proto(Some(&wire)).expect("valid"), id);
        }
    }

    #[test]
    fn a_conflict_names_the_actual_version_in_the_message_and_metadata() {
        let status = status_of(StoreError::WrongExpectedVersion {
            stream: "order-1".into(),
            expected: ExpectedRevision::Exact(0),
            actual: CurrentRevision::Current(2),
        });
        assert!(status.message().ends_with("Actual version: 2"));
        assert_eq!(
            status
                .metadata()
                .get("exception")
                .and_then(|v| v.to_str().ok()),
            Some("wrong-expected-version")
        );
    }
}

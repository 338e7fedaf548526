//! Errors of connecting, and the mapping of the client's errors to the
//! store's typed [`StoreError`].

use tongban_store::{CurrentRevision, ExpectedRevision, StoreError};

/// Failing to set up the backend (the store's operations fail with
/// [`StoreError`]).
#[derive(Debug, thiserror::Error)]
pub enum EsdbError {
    /// `INVALID_INPUT`: the connection string does not parse.
    #[error("invalid EventStoreDB connection string: {0}")]
    ConnectionString(String),
    /// `INVALID_INPUT`: a file named by the connection string (`tlsCaFile`,
    /// `userCertFile`, `userKeyFile`) cannot be read or is not PEM (the
    /// official client would panic on it).
    #[error("the connection string's {param}={path} is unusable: {reason}")]
    TlsFile {
        param: &'static str,
        path: String,
        reason: String,
    },
    /// `UNAVAILABLE`: the client could not be created.
    #[error("failed to create the EventStoreDB client: {0}")]
    Client(String),
}

pub(crate) fn expected_to_client(expected: ExpectedRevision) -> eventstore::ExpectedRevision {
    match expected {
        ExpectedRevision::Any => eventstore::ExpectedRevision::Any,
        ExpectedRevision::NoStream => eventstore::ExpectedRevision::NoStream,
        ExpectedRevision::StreamExists => eventstore::ExpectedRevision::StreamExists,
        ExpectedRevision::Exact(n) => eventstore::ExpectedRevision::Exact(n),
    }
}

fn expected_from_client(expected: eventstore::ExpectedRevision) -> ExpectedRevision {
    match expected {
        eventstore::ExpectedRevision::Any => ExpectedRevision::Any,
        eventstore::ExpectedRevision::NoStream => ExpectedRevision::NoStream,
        eventstore::ExpectedRevision::StreamExists => ExpectedRevision::StreamExists,
        eventstore::ExpectedRevision::Exact(n) => ExpectedRevision::Exact(n),
    }
}

/// Whether retrying may help.
pub(crate) fn is_transient(error: &eventstore::Error) -> bool {
    use eventstore::Error as E;
    match error {
        E::ServerError(_)
        | E::ConnectionClosed
        | E::GrpcConnectionError(_)
        | E::NotLeaderException(_)
        | E::DeadlineExceeded => true,
        E::Grpc { code, .. } => matches!(
            code,
            tonic::Code::Unavailable | tonic::Code::Aborted | tonic::Code::ResourceExhausted
        ),
        _ => false,
    }
}

/// Reads "Actual version: n" out of EventStoreDB's conflict message (the
/// client does not map conflicts of Delete and Tombstone to a typed error).
pub(crate) fn actual_version_in(message: &str) -> Option<CurrentRevision> {
    let rest = message.split("Actual version:").nth(1)?;
    let number: String = rest
        .trim()
        .chars()
        .take_while(|c| *c == '-' || c.is_ascii_digit())
        .collect();
    let n: i64 = number.parse().ok()?;
    Some(match u64::try_from(n) {
        Ok(n) => CurrentRevision::Current(n),
        Err(_) => CurrentRevision::NoStream,
    })
}

/// The store error a client error becomes, for an operation on `stream`
/// that expected `expected`.
pub(crate) fn map_error(
    error: eventstore::Error,
    stream: &str,
    expected: Option<ExpectedRevision>,
) -> StoreError {
    use eventstore::Error as E;
    let stream = stream.to_string();
    match error {
        E::WrongExpectedVersion { expected, current } => StoreError::WrongExpectedVersion {
            stream,
            expected: expected_from_client(expected),
            actual: match current {
                eventstore::CurrentRevision::NoStream => CurrentRevision::NoStream,
                eventstore::CurrentRevision::Current(n) => CurrentRevision::Current(n),
            },
        },
        E::ResourceDeleted => StoreError::StreamDeleted { stream },
        E::ResourceNotFound => StoreError::StreamNotFound { stream },
        E::Grpc {
            code: tonic::Code::FailedPrecondition,
            message,
        } if message.contains("WrongExpectedVersion") => match actual_version_in(&message) {
            Some(actual) => StoreError::WrongExpectedVersion {
                stream,
                expected: expected.unwrap_or(ExpectedRevision::Any),
                actual,
            },
            None => StoreError::Unavailable {
                reason: format!("unreadable conflict from the node: {message}"),
            },
        },
        E::Grpc {
            code: tonic::Code::InvalidArgument,
            message,
        } => StoreError::InvalidInput {
            field: "request".into(),
            rule: message,
        },
        E::AccessDenied => StoreError::AccessDenied {
            reason: "access denied by the EventStoreDB node (check the credentials in the connection string)".into(),
        },
        other => StoreError::Unavailable {
            reason: format!("EventStoreDB: {other}"),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_actual_version_is_read_from_a_conflict_message() {
        let m = "Append failed due to WrongExpectedVersion. Stream: order-1, Expected version: 0, Actual version: 2";
        assert_eq!(actual_version_in(m), Some(CurrentRevision::Current(2)));
        let m = "… Expected version: 3, Actual version: -1";
        assert_eq!(actual_version_in(m), Some(CurrentRevision::NoStream));
        assert_eq!(actual_version_in("nothing"), None);
    }

    #[test]
    fn a_deleted_resource_is_a_deleted_stream() {
        let e = map_error(eventstore::Error::ResourceDeleted, "order-1", None);
        assert!(matches!(e, StoreError::StreamDeleted { .. }));
    }
}

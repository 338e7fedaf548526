//! The Streams service: Read (streams and `$all`, forwards and backwards,
//! subscriptions with filters and checkpoints), Append, BatchAppend, Delete
//! and Tombstone, over any [`EventStore`].

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::Arc;

use futures::{Stream, StreamExt};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tongban_store::metadata::METADATA_EVENT_TYPE;
use tongban_store::{
    CurrentRevision, Direction, EventData, EventStore, ExpectedRevision, Position, ReadFrom,
    StoreError, StreamMetadata, StreamName, SubscribeFrom, SubscriptionMessage,
};
use tonic::{Request, Response, Status, Streaming};
use tracing::Instrument;

use crate::auth::Auth;
use crate::convert::{self, status_of};
use crate::filter::{EsdbFilter, FilterParts};
use crate::proto::streams::{
    self, read_req::options as ro, streams_server::Streams, AppendReq, AppendResp, BatchAppendReq,
    BatchAppendResp, DeleteReq, DeleteResp, ReadReq, ReadResp, TombstoneReq, TombstoneResp,
};
use crate::shutdown::Shutdown;

/// Events read from the store per page when serving a read.
const PAGE: usize = 512;

type ResponseStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

pub(crate) struct StreamsService {
    store: Arc<dyn EventStore>,
    auth: Auth,
    shutdown: Shutdown,
}

impl StreamsService {
    pub fn new(store: Arc<dyn EventStore>, auth: Auth, shutdown: Shutdown) -> Self {
        Self {
            store,
            auth,
            shutdown,
        }
    }
}

type Tx = mpsc::Sender<Result<ReadResp, Status>>;

fn resp(content: streams::read_resp::Content) -> ReadResp {
    ReadResp {
        content: Some(content),
    }
}

/// Where a read or subscription goes.
enum Target {
    Stream(StreamName, Option<ro::stream_options::RevisionOption>),
    All(Option<ro::all_options::AllOption>),
}

#[tonic::async_trait]
impl Streams for StreamsService {
    type ReadStream = ResponseStream<ReadResp>;

    #[tracing::instrument(name = "esdb.read", skip_all)]
    async fn read(&self, request: Request<ReadReq>) -> Result<Response<Self::ReadStream>, Status> {
        let caller = self.auth.caller(request.metadata())?;
        let options = request
            .into_inner()
            .options
            .ok_or_else(|| Status::invalid_argument("read options are required"))?;
        let target = match options.stream_option {
            Some(ro::StreamOption::Stream(s)) => Target::Stream(
                convert::stream_name(s.stream_identifier.as_ref())?,
                s.revision_option,
            ),
            Some(ro::StreamOption::All(a)) => Target::All(a.all_option),
            None => return Err(Status::invalid_argument("read needs a stream or $all")),
        };
        let stream_label = match &target {
            Target::Stream(name, _) => name.as_str().to_string(),
            Target::All(_) => "$all".to_string(),
        };
        self.auth.ensure_can_read(&caller, &stream_label)?;
        let structured = !matches!(
            options.uuid_option.and_then(|u| u.content),
            Some(ro::uuid_option::Content::String(_))
        );
        let direction = if options.read_direction == ro::ReadDirection::Backwards as i32 {
            Direction::Backwards
        } else {
            Direction::Forwards
        };
        let filter = match options.filter_option {
            Some(ro::FilterOption::Filter(f)) => {
                let (on_stream, expr) = match f.filter {
                    Some(ro::filter_options::Filter::StreamIdentifier(e)) => (true, e),
                    Some(ro::filter_options::Filter::EventType(e)) => (false, e),
                    None => (false, ro::filter_options::Expression::default()),
                };
                let max_window = match f.window {
                    Some(ro::filter_options::Window::Max(m)) => Some(m),
                    _ => None,
                };
                Some(EsdbFilter::parse(FilterParts {
                    on_stream,
                    regex: &expr.regex,
                    prefixes: &expr.prefix,
                    max_window,
                    multiplier: f.checkpoint_interval_multiplier,
                })?)
            }
            _ => None,
        };
        let (tx, rx) = mpsc::channel(64);
        let store = self.store.clone();
        let shutdown = self.shutdown.clone();
        let span =
            tracing::info_span!("esdb.read.task", stream = %stream_label, user = %caller.name);
        match options.count_option {
            Some(ro::CountOption::Subscription(_)) => {
                tokio::spawn(
                    async move {
                        let sub = Subscriber {
                            store,
                            tx,
                            structured,
                            shutdown,
                        };
                        sub.run(target, filter).await;
                    }
                    .instrument(span),
                );
            }
            count => {
                let count = match count {
                    Some(ro::CountOption::Count(n)) => n,
                    _ => u64::MAX,
                };
                let reader = Reader {
                    store,
                    tx,
                    structured,
                };
                tokio::spawn(
                    async move {
                        let outcome = match target {
                            Target::Stream(name, from) => {
                                reader.read_stream(name, direction, from, count).await
                            }
                            Target::All(from) => {
                                reader
                                    .read_all(direction, from, count, filter.as_ref())
                                    .await
                            }
                        };
                        if let Err(status) = outcome {
                            let _ = reader.tx.send(Err(status)).await;
                        }
                    }
                    .instrument(span),
                );
            }
        }
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    #[tracing::instrument(name = "esdb.append", skip_all)]
    async fn append(
        &self,
        request: Request<Streaming<AppendReq>>,
    ) -> Result<Response<AppendResp>, Status> {
        let caller = self.auth.caller(request.metadata())?;
        let mut incoming = request.into_inner();
        let options = match incoming.message().await? {
            Some(AppendReq {
                content: Some(streams::append_req::Content::Options(o)),
            }) => o,
            _ => {
                return Err(Status::invalid_argument(
                    "an append starts with its options",
                ))
            }
        };
        let stream = convert::stream_name(options.stream_identifier.as_ref())?;
        let expected = convert::expected_from_append(options.expected_stream_revision);
        let mut events = Vec::new();
        while let Some(message) = incoming.message().await? {
            if let Some(streams::append_req::Content::ProposedMessage(m)) = message.content {
                events.push(convert::event_data(
                    m.id.as_ref(),
                    &m.metadata,
                    m.custom_metadata,
                    m.data,
                    events.len(),
                )?);
            }
        }
        tracing::debug!(stream = %stream, events = events.len(), %expected, "append");
        let outcome =
            append_or_set_metadata(self.store.as_ref(), &stream, expected, events, caller.admin)
                .await;
        use streams::append_resp::{success, Position as P, Result as R, Success};
        let result = match outcome {
            Ok(r) => R::Success(Success {
                current_revision_option: Some(success::CurrentRevisionOption::CurrentRevision(
                    r.next_expected_revision,
                )),
                position_option: Some(success::PositionOption::Position(P {
                    commit_position: r.position.0,
                    prepare_position: r.position.0,
                })),
            }),
            Err(StoreError::WrongExpectedVersion {
                expected, actual, ..
            }) => R::WrongExpectedVersion(convert::wrong_expected_version_resp(expected, actual)),
            Err(e) => return Err(status_of(e)),
        };
        Ok(Response::new(AppendResp {
            result: Some(result),
        }))
    }

    #[tracing::instrument(name = "esdb.delete", skip_all)]
    async fn delete(&self, request: Request<DeleteReq>) -> Result<Response<DeleteResp>, Status> {
        let _caller = self.auth.caller(request.metadata())?;
        let options = request
            .into_inner()
            .options
            .ok_or_else(|| Status::invalid_argument("delete options are required"))?;
        let stream = convert::stream_name(options.stream_identifier.as_ref())?;
        use streams::delete_req::options::ExpectedStreamRevision as E;
        let expected = match options.expected_stream_revision {
            Some(E::Revision(n)) => ExpectedRevision::Exact(n),
            Some(E::NoStream(_)) => ExpectedRevision::NoStream,
            Some(E::StreamExists(_)) => ExpectedRevision::StreamExists,
            Some(E::Any(_)) | None => ExpectedRevision::Any,
        };
        let position = self
            .store
            .delete_stream(&stream, expected)
            .await
            .map_err(status_of)?;
        use streams::delete_resp::{Position as P, PositionOption};
        Ok(Response::new(DeleteResp {
            position_option: Some(PositionOption::Position(P {
                commit_position: position.0,
                prepare_position: position.0,
            })),
        }))
    }

    #[tracing::instrument(name = "esdb.tombstone", skip_all)]
    async fn tombstone(
        &self,
        request: Request<TombstoneReq>,
    ) -> Result<Response<TombstoneResp>, Status> {
        let _caller = self.auth.caller(request.metadata())?;
        let options = request
            .into_inner()
            .options
            .ok_or_else(|| Status::invalid_argument("tombstone options are required"))?;
        let stream = convert::stream_name(options.stream_identifier.as_ref())?;
        use streams::tombstone_req::options::ExpectedStreamRevision as E;
        let expected = match options.expected_stream_revision {
            Some(E::Revision(n)) => ExpectedRevision::Exact(n),
            Some(E::NoStream(_)) => ExpectedRevision::NoStream,
            Some(E::StreamExists(_)) => ExpectedRevision::StreamExists,
            Some(E::Any(_)) | None => ExpectedRevision::Any,
        };
        let position = self
            .store
            .tombstone_stream(&stream, expected)
            .await
            .map_err(status_of)?;
        use streams::tombstone_resp::{Position as P, PositionOption};
        Ok(Response::new(TombstoneResp {
            position_option: Some(PositionOption::Position(P {
                commit_position: position.0,
                prepare_position: position.0,
            })),
        }))
    }

    type BatchAppendStream = ResponseStream<BatchAppendResp>;

    #[tracing::instrument(name = "esdb.batch_append", skip_all)]
    async fn batch_append(
        &self,
        request: Request<Streaming<BatchAppendReq>>,
    ) -> Result<Response<Self::BatchAppendStream>, Status> {
        let admin = self.auth.caller(request.metadata())?.admin;
        let mut incoming = request.into_inner();
        let (tx, rx) = mpsc::channel(16);
        let store = self.store.clone();
        tokio::spawn(
            async move {
                let mut pending: HashMap<Vec<u8>, Batch> = HashMap::new();
                while let Some(message) = incoming.next().await {
                    let message = match message {
                        Ok(m) => m,
                        Err(status) => {
                            let _ = tx.send(Err(status)).await;
                            return;
                        }
                    };
                    let key = message
                        .correlation_id
                        .as_ref()
                        .map(|u| format!("{u:?}").into_bytes())
                        .unwrap_or_default();
                    let batch = pending.entry(key.clone()).or_default();
                    if batch.correlation_id.is_none() {
                        batch.correlation_id = message.correlation_id.clone();
                    }
                    if let Some(options) = message.options {
                        batch.options = Some(options);
                    }
                    for m in message.proposed_messages {
                        let index = batch.events.len();
                        match convert::event_data(
                            m.id.as_ref(),
                            &m.metadata,
                            m.custom_metadata,
                            m.data,
                            index,
                        ) {
                            Ok(e) => batch.events.push(e),
                            Err(status) => batch.invalid = Some(status),
                        }
                    }
                    if message.is_final {
                        if let Some(batch) = pending.remove(&key) {
                            let resp = batch.commit(store.as_ref(), admin).await;
                            if tx.send(Ok(resp)).await.is_err() {
                                return;
                            }
                        }
                    }
                }
            }
            .instrument(tracing::info_span!("esdb.batch_append.task")),
        );
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }
}

/// An append, or a metadata change when the target is a `$$stream` and the
/// event a `$metadata` event (what `set_stream_metadata` sends). An
/// administrator may also write the hub's own `$` system streams, as on
/// EventStoreDB.
pub(crate) async fn append_or_set_metadata(
    store: &dyn EventStore,
    stream: &StreamName,
    expected: ExpectedRevision,
    mut events: Vec<EventData>,
    admin: bool,
) -> Result<tongban_store::AppendResult, StoreError> {
    if let Some(target) = stream.metadata_target() {
        if events.len() == 1 && events[0].event_type == METADATA_EVENT_TYPE {
            let event = events.remove(0);
            let metadata: StreamMetadata =
                serde_json::from_slice(&event.data).map_err(|e| StoreError::InvalidJson {
                    index: 0,
                    field: "data",
                    reason: format!("stream metadata: {e}"),
                })?;
            return store.set_stream_metadata(&target, expected, metadata).await;
        }
    }
    if admin && stream.ensure_system().is_ok() {
        return store
            .append_to_system_stream(stream, expected, events)
            .await;
    }
    store.append(stream, expected, events).await
}

#[derive(Default)]
struct Batch {
    correlation_id: Option<crate::proto::shared::Uuid>,
    options: Option<streams::batch_append_req::Options>,
    events: Vec<EventData>,
    invalid: Option<Status>,
}

impl Batch {
    async fn commit(self, store: &dyn EventStore, admin: bool) -> BatchAppendResp {
        use streams::batch_append_req::options::ExpectedStreamPosition as E;
        use streams::batch_append_resp::{self as r, success};
        let options = self.options.unwrap_or_default();
        let expected = match options.expected_stream_position {
            Some(E::StreamPosition(n)) => ExpectedRevision::Exact(n),
            Some(E::NoStream(())) => ExpectedRevision::NoStream,
            Some(E::StreamExists(())) => ExpectedRevision::StreamExists,
            Some(E::Any(())) | None => ExpectedRevision::Any,
        };
        let echo = match expected {
            ExpectedRevision::Exact(n) => r::ExpectedStreamPosition::StreamPosition(n),
            ExpectedRevision::NoStream => r::ExpectedStreamPosition::NoStream(()),
            ExpectedRevision::StreamExists => r::ExpectedStreamPosition::StreamExists(()),
            ExpectedRevision::Any => r::ExpectedStreamPosition::Any(()),
        };
        let outcome = match (
            self.invalid,
            convert::stream_name(options.stream_identifier.as_ref()),
        ) {
            (Some(status), _) | (None, Err(status)) => Err(crate::proto::google::rpc::Status {
                code: status.code() as i32,
                message: status.message().to_string(),
                details: None,
            }),
            (None, Ok(stream)) => {
                append_or_set_metadata(store, &stream, expected, self.events, admin)
                    .await
                    .map_err(batch_error)
            }
        };
        let result = match outcome {
            Ok(a) => r::Result::Success(r::Success {
                current_revision_option: Some(success::CurrentRevisionOption::CurrentRevision(
                    a.next_expected_revision,
                )),
                position_option: Some(success::PositionOption::Position(
                    crate::proto::shared::AllStreamPosition {
                        commit_position: a.position.0,
                        prepare_position: a.position.0,
                    },
                )),
            }),
            Err(status) => r::Result::Error(status),
        };
        BatchAppendResp {
            correlation_id: self.correlation_id,
            result: Some(result),
            stream_identifier: options.stream_identifier,
            expected_stream_position: Some(echo),
        }
    }
}

/// A failed batch as a `google.rpc.Status` with EventStoreDB's detail
/// messages where one exists.
fn batch_error(error: StoreError) -> crate::proto::google::rpc::Status {
    use crate::proto::google::rpc::{Code, Status as RpcStatus};
    use crate::proto::shared;
    use prost::Message;
    let any = |name: &str, bytes: Vec<u8>| prost_types::Any {
        type_url: format!("type.googleapis.com/event_store.client.{name}"),
        value: bytes,
    };
    let message = error.to_string();
    let (code, details) = match &error {
        StoreError::WrongExpectedVersion {
            expected, actual, ..
        } => {
            use shared::wrong_expected_version::{
                CurrentStreamRevisionOption as C, ExpectedStreamPositionOption as X,
            };
            let detail = shared::WrongExpectedVersion {
                current_stream_revision_option: Some(match actual {
                    CurrentRevision::NoStream => C::CurrentNoStream(()),
                    CurrentRevision::Current(n) => C::CurrentStreamRevision(*n),
                }),
                expected_stream_position_option: Some(match expected {
                    ExpectedRevision::Any => X::ExpectedAny(()),
                    ExpectedRevision::NoStream => X::ExpectedNoStream(()),
                    ExpectedRevision::StreamExists => X::ExpectedStreamExists(()),
                    ExpectedRevision::Exact(n) => X::ExpectedStreamPosition(*n),
                }),
            };
            (
                Code::FailedPrecondition,
                Some(any("WrongExpectedVersion", detail.encode_to_vec())),
            )
        }
        StoreError::StreamDeleted { stream } => (
            Code::FailedPrecondition,
            Some(any(
                "StreamDeleted",
                shared::StreamDeleted {
                    stream_identifier: Some(convert::stream_identifier(stream)),
                }
                .encode_to_vec(),
            )),
        ),
        _ => {
            let status = status_of(error.clone());
            (
                Code::try_from(status.code() as i32).unwrap_or(Code::Unknown),
                Some(any(
                    "BadRequest",
                    shared::BadRequest {
                        message: message.clone(),
                    }
                    .encode_to_vec(),
                )),
            )
        }
    };
    RpcStatus {
        code: code as i32,
        message,
        details,
    }
}

/// Serves a bounded read page by page.
struct Reader {
    store: Arc<dyn EventStore>,
    tx: Tx,
    structured: bool,
}

impl Reader {
    async fn send(&self, message: ReadResp) -> Result<(), Status> {
        self.tx
            .send(Ok(message))
            .await
            .map_err(|_| Status::cancelled("the client went away"))
    }

    async fn read_stream(
        &self,
        stream: StreamName,
        direction: Direction,
        from: Option<ro::stream_options::RevisionOption>,
        count: u64,
    ) -> Result<(), Status> {
        use ro::stream_options::RevisionOption as R;
        let mut from = match from {
            Some(R::Revision(n)) => ReadFrom::At(n),
            Some(R::End(_)) => ReadFrom::End,
            Some(R::Start(_)) | None => ReadFrom::Start,
        };
        let mut remaining = count;
        let mut first_page = true;
        while remaining > 0 {
            let page = usize::try_from(remaining).unwrap_or(usize::MAX).min(PAGE);
            let events = match self.store.read_stream(&stream, direction, from, page).await {
                Ok(events) => events,
                Err(StoreError::StreamNotFound { .. }) if first_page => {
                    let content = streams::read_resp::Content::StreamNotFound(
                        streams::read_resp::StreamNotFound {
                            stream_identifier: Some(convert::stream_identifier(stream.as_str())),
                        },
                    );
                    return self.send(resp(content)).await;
                }
                Err(StoreError::StreamNotFound { .. }) => return Ok(()),
                Err(e) => return Err(status_of(e)),
            };
            first_page = false;
            for event in &events {
                self.send(convert::read_event(event, self.structured))
                    .await?;
            }
            remaining -= events.len() as u64;
            let Some(last) = events.last() else { break };
            if events.len() < page {
                break;
            }
            from = match direction {
                Direction::Forwards => ReadFrom::At(last.revision + 1),
                Direction::Backwards if last.revision == 0 => break,
                Direction::Backwards => ReadFrom::At(last.revision - 1),
            };
        }
        Ok(())
    }

    /// `$all`: forwards from a position includes it; backwards from a
    /// position returns what precedes it (EventStoreDB's semantics).
    async fn read_all(
        &self,
        direction: Direction,
        from: Option<ro::all_options::AllOption>,
        count: u64,
        filter: Option<&EsdbFilter>,
    ) -> Result<(), Status> {
        use ro::all_options::AllOption as A;
        let mut from = match (direction, from) {
            (_, Some(A::Start(_)) | None) => ReadFrom::Start,
            (_, Some(A::End(_))) => ReadFrom::End,
            (Direction::Forwards, Some(A::Position(p))) => {
                ReadFrom::At(Position(p.commit_position))
            }
            (Direction::Backwards, Some(A::Position(p))) if p.commit_position == 0 => return Ok(()),
            (Direction::Backwards, Some(A::Position(p))) => {
                ReadFrom::At(Position(p.commit_position - 1))
            }
        };
        let store_filter = filter.map(EsdbFilter::store_filter).unwrap_or_default();
        let mut remaining = count;
        while remaining > 0 {
            let page = if filter.is_some() {
                PAGE
            } else {
                usize::try_from(remaining).unwrap_or(usize::MAX).min(PAGE)
            };
            let events = self
                .store
                .read_all(direction, from, page, &store_filter)
                .await
                .map_err(status_of)?;
            for event in &events {
                if remaining == 0 {
                    break;
                }
                if filter.is_some_and(|f| !f.matches(event)) {
                    continue;
                }
                self.send(convert::read_event(event, self.structured))
                    .await?;
                remaining -= 1;
            }
            let Some(last) = events.last() else { break };
            if events.len() < page {
                break;
            }
            from = match direction {
                Direction::Forwards => ReadFrom::At(last.position.next()),
                Direction::Backwards if last.position.0 == 0 => break,
                Direction::Backwards => ReadFrom::At(Position(last.position.0 - 1)),
            };
        }
        Ok(())
    }
}

/// Serves one catch-up subscription until the client leaves or the
/// endpoint shuts down.
struct Subscriber {
    store: Arc<dyn EventStore>,
    tx: Tx,
    structured: bool,
    shutdown: Shutdown,
}

impl Subscriber {
    async fn run(mut self, target: Target, filter: Option<EsdbFilter>) {
        let id = uuid::Uuid::new_v4().to_string();
        let confirmation = resp(streams::read_resp::Content::Confirmation(
            streams::read_resp::SubscriptionConfirmation {
                subscription_id: id,
            },
        ));
        if self.tx.send(Ok(confirmation)).await.is_err() {
            return;
        }
        let mut subscription = match &target {
            Target::Stream(name, from) => {
                use ro::stream_options::RevisionOption as R;
                let from = match from {
                    Some(R::Revision(n)) => SubscribeFrom::After(*n),
                    Some(R::End(_)) => SubscribeFrom::End,
                    Some(R::Start(_)) | None => SubscribeFrom::Start,
                };
                self.store.subscribe_to_stream(name, from)
            }
            Target::All(from) => {
                use ro::all_options::AllOption as A;
                let from = match from {
                    Some(A::Position(p)) => SubscribeFrom::After(Position(p.commit_position)),
                    Some(A::End(_)) => SubscribeFrom::End,
                    Some(A::Start(_)) | None => SubscribeFrom::Start,
                };
                let store_filter = filter
                    .as_ref()
                    .map(EsdbFilter::store_filter)
                    .unwrap_or_default();
                self.store.subscribe_to_all(from, store_filter)
            }
        };
        let mut scanned: u64 = 0;
        loop {
            let next = tokio::select! {
                _ = self.shutdown.wait() => {
                    let _ = self.tx.send(Err(Status::unavailable("the server is shutting down"))).await;
                    return;
                }
                _ = self.tx.closed() => return,
                next = subscription.next() => next,
            };
            let message = match next {
                Some(Ok(SubscriptionMessage::Event(event))) => {
                    scanned += 1;
                    if filter.as_ref().is_none_or(|f| f.matches(&event)) {
                        convert::read_event(&event, self.structured)
                    } else if filter
                        .as_ref()
                        .is_some_and(|f| scanned.is_multiple_of(f.checkpoint_every))
                    {
                        checkpoint(event.position)
                    } else {
                        continue;
                    }
                }
                Some(Ok(SubscriptionMessage::CaughtUp)) => resp(
                    streams::read_resp::Content::CaughtUp(streams::read_resp::CaughtUp {}),
                ),
                Some(Ok(SubscriptionMessage::Checkpoint(p))) => {
                    if filter.is_none() {
                        continue;
                    }
                    checkpoint(p)
                }
                Some(Err(e)) => {
                    let _ = self.tx.send(Err(status_of(e))).await;
                    return;
                }
                None => {
                    let _ = self
                        .tx
                        .send(Err(Status::unavailable("the subscription ended")))
                        .await;
                    return;
                }
            };
            if self.tx.send(Ok(message)).await.is_err() {
                return;
            }
        }
    }
}

fn checkpoint(position: Position) -> ReadResp {
    resp(streams::read_resp::Content::Checkpoint(
        streams::read_resp::Checkpoint {
            commit_position: position.0,
            prepare_position: position.0,
        },
    ))
}

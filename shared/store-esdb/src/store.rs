//! [`EsdbStore`]: the [`EventStore`] trait over an EventStoreDB node.

use std::future::Future;
use std::sync::Arc;

use async_trait::async_trait;
use eventstore::{
    AppendToStreamOptions, Client, ClientSettings, DeleteStreamOptions, ReadAllOptions,
    ReadStreamOptions, StreamPosition, TombstoneStreamOptions,
};
use tongban_store::metadata::{StreamMetadataResult, METADATA_EVENT_TYPE};
use tongban_store::{
    validate_events, AppendResult, ChainReport, Direction, EventData, EventFilter, EventStore,
    ExpectedRevision, Head, Position, PositionRange, ReadFrom, RecordedEvent, StoreError,
    StreamMetadata, StreamName, SubscribeFrom, Subscription,
};

use crate::chain::{is_witness_event, ChainWitness};
use crate::config::{EsdbConfig, RetryPolicy};
use crate::convert::{client_position, recorded};
use crate::error::{expected_to_client, is_transient, map_error, EsdbError};

/// Events fetched per request when paging through `$all`.
pub(crate) const PAGE: usize = 1024;

/// An event store on an EventStoreDB/KurrentDB node or cluster.
#[derive(Clone)]
pub struct EsdbStore {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub client: Client,
    pub retry: RetryPolicy,
    pub chain: ChainWitness,
}

impl EsdbStore {
    /// Appends events already checked by the caller.
    async fn append_checked(
        &self,
        stream: &StreamName,
        expected: ExpectedRevision,
        events: Vec<EventData>,
    ) -> Result<AppendResult, StoreError> {
        let count = events.len() as u64;
        let client_events = events
            .iter()
            .enumerate()
            .map(|(i, e)| client_event(e, i))
            .collect::<Result<Vec<_>, _>>()?;
        let written = self
            .inner
            .append_raw(stream.as_str(), expected, client_events)
            .await?;
        let position = Position(written.position.commit);
        let next = written.next_expected_version;
        // The protocol answers only the last position; look up the first.
        let first_position = if count <= 1 {
            position
        } else {
            let first = next.saturating_sub(count - 1);
            self.inner
                .read_stream_raw(stream.as_str(), Direction::Forwards, ReadFrom::At(first), 1)
                .await
                .ok()
                .and_then(|e| e.first().map(|e| e.position))
                .unwrap_or(position)
        };
        Ok(AppendResult {
            next_expected_revision: next,
            first_position,
            position,
        })
    }

    /// Connects lazily: the first operation reaches the node (with retries).
    pub fn connect(config: EsdbConfig) -> Result<Self, EsdbError> {
        let settings: ClientSettings = config.connection_string.parse().map_err(
            |e: eventstore::ClientSettingsParseError| EsdbError::ConnectionString(e.to_string()),
        )?;
        check_tls_files(&settings)?;
        let client = Client::new(settings).map_err(|e| EsdbError::Client(e.to_string()))?;
        let inner = Arc::new(Inner {
            client,
            retry: config.retry,
            chain: ChainWitness::new(config.checkpoint_every, config.signing_key),
        });
        // The chain witness follows `$all` in the background, so checkpoints
        // are written as the log grows, not only when someone reads.
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(witness(Arc::downgrade(&inner), config.witness_interval));
        }
        Ok(Self { inner })
    }
}

/// Reads the PEM files a secure connection string names, as the official
/// client will, so a missing or malformed file is an error here instead of
/// a panic inside the client.
fn check_tls_files(settings: &ClientSettings) -> Result<(), EsdbError> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    if !settings.is_secure_mode_enabled() {
        return Ok(());
    }
    let certificates = |param: &'static str, path: &str| {
        let unusable = |reason: String| EsdbError::TlsFile {
            param,
            path: path.to_string(),
            reason,
        };
        let pem = std::fs::read(path).map_err(|e| unusable(e.to_string()))?;
        let chain = CertificateDer::pem_slice_iter(&pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| unusable(format!("not a PEM certificate: {e}")))?;
        if chain.is_empty() {
            return Err(unusable("holds no PEM certificate".into()));
        }
        Ok(chain)
    };
    if let Some(ca) = settings.tls_ca_file() {
        let mut roots = rustls::RootCertStore::empty();
        for certificate in certificates("tlsCaFile", ca)? {
            roots.add(certificate).map_err(|e| EsdbError::TlsFile {
                param: "tlsCaFile",
                path: ca.clone(),
                reason: format!("not a usable root certificate: {e}"),
            })?;
        }
    }
    if let Some((certificate, key)) = settings.user_certificate() {
        certificates("userCertFile", certificate)?;
        PrivateKeyDer::from_pem_file(key).map_err(|e| EsdbError::TlsFile {
            param: "userKeyFile",
            path: key.clone(),
            reason: format!("not a readable PEM private key: {e}"),
        })?;
    }
    Ok(())
}

/// Hashes new events of `$all` every `interval` until the store is dropped.
async fn witness(inner: std::sync::Weak<Inner>, interval: std::time::Duration) {
    let mut ticks = tokio::time::interval(interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let Some(inner) = inner.upgrade() else {
            return;
        };
        let outcome = match inner.head_raw().await {
            Ok(Some(last)) => inner.chain.ensure_through(&inner, last.position).await,
            Ok(None) => Ok(()),
            Err(e) => Err(e),
        };
        if let Err(error) = outcome {
            tracing::debug!(%error, "the chain witness will try again");
        }
    }
}

fn client_event(event: &EventData, index: usize) -> Result<eventstore::EventData, StoreError> {
    let invalid = |field: &'static str, e: serde_json::Error| StoreError::InvalidJson {
        index,
        field,
        reason: e.to_string(),
    };
    let data = std::str::from_utf8(&event.data)
        .map_err(|e| StoreError::InvalidJson {
            index,
            field: "data",
            reason: e.to_string(),
        })?
        .to_owned();
    let raw = serde_json::value::RawValue::from_string(data).map_err(|e| invalid("data", e))?;
    Ok(eventstore::EventData::json(&event.event_type, &raw)
        .map_err(|e| invalid("data", e))?
        .id(event.id)
        .metadata(event.metadata.clone()))
}

impl Inner {
    /// Runs `op` with retries and backoff on transient failures. Appends
    /// are safe to repeat: they are idempotent by event id.
    pub async fn retrying<T, F, Fut>(&self, what: &str, mut op: F) -> Result<T, eventstore::Error>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, eventstore::Error>>,
    {
        let mut attempt = 0;
        loop {
            match op().await {
                Err(e) if is_transient(&e) && attempt + 1 < self.retry.max_attempts => {
                    attempt += 1;
                    let delay = self.retry.delay(attempt);
                    tracing::warn!(%e, attempt, ?delay, "{what} failed; retrying");
                    tokio::time::sleep(delay).await;
                }
                other => return other,
            }
        }
    }

    /// Appends raw client events (no checks beyond the node's).
    pub async fn append_raw(
        &self,
        stream: &str,
        expected: ExpectedRevision,
        events: Vec<eventstore::EventData>,
    ) -> Result<eventstore::WriteResult, StoreError> {
        let options =
            AppendToStreamOptions::default().expected_revision(expected_to_client(expected));
        self.retrying("append", || {
            self.client
                .append_to_stream(stream, &options, events.clone())
        })
        .await
        .map_err(|e| map_error(e, stream, Some(expected)))
    }

    /// Reads a stream without chain hashes.
    pub async fn read_stream_raw(
        &self,
        stream: &str,
        direction: Direction,
        from: ReadFrom<u64>,
        max_count: usize,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        if max_count == 0 {
            return Ok(Vec::new());
        }
        let mut options = ReadStreamOptions::default().max_count(max_count);
        options = match direction {
            Direction::Forwards => options.forwards(),
            Direction::Backwards => options.backwards(),
        };
        options = options.position(match from {
            ReadFrom::Start => StreamPosition::Start,
            ReadFrom::End => StreamPosition::End,
            ReadFrom::At(n) => StreamPosition::Position(n),
        });
        if direction == Direction::Forwards && from == ReadFrom::End {
            return Ok(Vec::new());
        }
        self.retrying("read stream", || async {
            let mut read = self.client.read_stream(stream, &options).await?;
            let mut out = Vec::new();
            while let Some(event) = read.next().await? {
                out.push(event);
            }
            Ok(out)
        })
        .await
        .map_err(|e| map_error(e, stream, None))?
        .iter()
        .map(|e| recorded(e.get_original_event()))
        .collect()
    }

    /// One request's worth of `$all`, without chain hashes, witness
    /// checkpoints included.
    pub async fn read_all_page(
        &self,
        direction: Direction,
        from: StreamPosition<Position>,
        count: usize,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        let mut options = ReadAllOptions::default().max_count(count);
        options = match direction {
            Direction::Forwards => options.forwards(),
            Direction::Backwards => options.backwards(),
        };
        options = options.position(from.map(client_position));
        self.retrying("read $all", || async {
            let mut read = self.client.read_all(&options).await?;
            let mut out = Vec::new();
            while let Some(event) = read.next().await? {
                out.push(event);
            }
            Ok(out)
        })
        .await
        .map_err(|e| map_error(e, "$all", None))?
        .iter()
        .map(|e| recorded(e.get_original_event()))
        .collect()
    }

    /// Up to `max_count` events of `$all` matching `filter`, witness
    /// checkpoints left out, without hashes. Forwards from a position
    /// includes it; so does backwards (the node's backwards read excludes
    /// it, so the event at the position is fetched first).
    pub async fn read_all_filtered(
        &self,
        direction: Direction,
        from: ReadFrom<Position>,
        max_count: usize,
        filter: &EventFilter,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        let mut out = Vec::new();
        if max_count == 0 {
            return Ok(out);
        }
        let keep = |e: &RecordedEvent| {
            !is_witness_event(e) && filter.matches(e.stream.as_str(), &e.event_type)
        };
        let mut cursor = match (direction, from) {
            (_, ReadFrom::Start) => StreamPosition::Start,
            (_, ReadFrom::End) => StreamPosition::End,
            (Direction::Forwards, ReadFrom::At(p)) => StreamPosition::Position(p),
            (Direction::Backwards, ReadFrom::At(p)) => {
                let at = self
                    .read_all_page(Direction::Forwards, StreamPosition::Position(p), 1)
                    .await?;
                if let Some(e) = at.into_iter().next().filter(|e| e.position == p) {
                    if keep(&e) {
                        out.push(e);
                    }
                }
                StreamPosition::Position(p)
            }
        };
        if direction == Direction::Forwards && from == ReadFrom::End {
            return Ok(out);
        }
        let mut skip_at: Option<Position> = None;
        while out.len() < max_count {
            let want = if filter.is_everything() {
                (max_count - out.len()).saturating_add(1).min(PAGE)
            } else {
                PAGE
            };
            let page = self.read_all_page(direction, cursor, want).await?;
            let fetched = page.len();
            let Some(last) = page.last().map(|e| e.position) else {
                break;
            };
            for e in page {
                if Some(e.position) == skip_at {
                    continue;
                }
                if out.len() < max_count && keep(&e) {
                    out.push(e);
                }
            }
            if fetched < want {
                break;
            }
            cursor = StreamPosition::Position(last);
            // Forwards reads include their start: skip it on the next page.
            skip_at = (direction == Direction::Forwards).then_some(last);
        }
        Ok(out)
    }

    /// Fills in chain hashes.
    pub async fn with_hashes(
        &self,
        mut events: Vec<RecordedEvent>,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        if let Some(max) = events.iter().map(|e| e.position).max() {
            self.chain.ensure_through(self, max).await?;
        }
        for e in &mut events {
            e.hash = self.chain.hash_of(self, e.position).await?;
        }
        Ok(events)
    }

    pub async fn head_raw(&self) -> Result<Option<RecordedEvent>, StoreError> {
        let last = self
            .read_all_filtered(Direction::Backwards, ReadFrom::End, 1, &EventFilter::all())
            .await?;
        Ok(last.into_iter().next())
    }
}

#[async_trait]
impl EventStore for EsdbStore {
    #[tracing::instrument(name = "esdb.append", skip(self, events), fields(stream = %stream, events = events.len()))]
    async fn append(
        &self,
        stream: &StreamName,
        expected: ExpectedRevision,
        events: Vec<EventData>,
    ) -> Result<AppendResult, StoreError> {
        stream.ensure_writable()?;
        validate_events(&events)?;
        self.append_checked(stream, expected, events).await
    }

    #[tracing::instrument(name = "esdb.append_system", skip(self, events), fields(stream = %stream, events = events.len()))]
    async fn append_to_system_stream(
        &self,
        stream: &StreamName,
        expected: ExpectedRevision,
        events: Vec<EventData>,
    ) -> Result<AppendResult, StoreError> {
        stream.ensure_system()?;
        validate_events(&events)?;
        self.append_checked(stream, expected, events).await
    }

    #[tracing::instrument(name = "esdb.read_stream", skip(self), fields(stream = %stream))]
    async fn read_stream(
        &self,
        stream: &StreamName,
        direction: Direction,
        from: ReadFrom<u64>,
        max_count: usize,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        let events = self
            .inner
            .read_stream_raw(stream.as_str(), direction, from, max_count)
            .await?;
        self.inner.with_hashes(events).await
    }

    #[tracing::instrument(name = "esdb.read_all", skip(self, filter))]
    async fn read_all(
        &self,
        direction: Direction,
        from: ReadFrom<Position>,
        max_count: usize,
        filter: &EventFilter,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        let events = self
            .inner
            .read_all_filtered(direction, from, max_count, filter)
            .await?;
        self.inner.with_hashes(events).await
    }

    fn subscribe_to_stream(&self, stream: &StreamName, from: SubscribeFrom<u64>) -> Subscription {
        crate::subscription::to_stream(self.inner.clone(), stream.clone(), from)
    }

    fn subscribe_to_all(&self, from: SubscribeFrom<Position>, filter: EventFilter) -> Subscription {
        crate::subscription::to_all(self.inner.clone(), from, filter)
    }

    async fn get_stream_metadata(
        &self,
        stream: &StreamName,
    ) -> Result<StreamMetadataResult, StoreError> {
        let meta = stream.metadata_stream();
        match self
            .inner
            .read_stream_raw(meta.as_str(), Direction::Backwards, ReadFrom::End, 1)
            .await
        {
            Err(StoreError::StreamNotFound { .. }) => Ok(StreamMetadataResult {
                metadata: StreamMetadata::default(),
                revision: None,
            }),
            Err(StoreError::StreamDeleted { .. }) => Err(StoreError::StreamDeleted {
                stream: stream.to_string(),
            }),
            Err(e) => Err(e),
            Ok(events) => match events.into_iter().next() {
                None => Ok(StreamMetadataResult {
                    metadata: StreamMetadata::default(),
                    revision: None,
                }),
                Some(e) => Ok(StreamMetadataResult {
                    metadata: serde_json::from_slice(&e.data).map_err(|err| {
                        StoreError::Corruption {
                            position: e.position,
                            reason: format!("stream metadata of '{stream}' is not valid: {err}"),
                        }
                    })?,
                    revision: Some(e.revision),
                }),
            },
        }
    }

    async fn set_stream_metadata(
        &self,
        stream: &StreamName,
        expected: ExpectedRevision,
        metadata: StreamMetadata,
    ) -> Result<AppendResult, StoreError> {
        metadata.validate()?;
        // As on the embedded store, a metadata change that does not mention
        // truncate-before keeps an earlier soft delete.
        let mut metadata = metadata;
        if metadata.truncate_before.is_none() {
            metadata.truncate_before = self
                .get_stream_metadata(stream)
                .await?
                .metadata
                .truncate_before;
        }
        let event = EventData::json(METADATA_EVENT_TYPE, &metadata)?;
        let meta = stream.metadata_stream();
        let written = self
            .inner
            .append_raw(meta.as_str(), expected, vec![client_event(&event, 0)?])
            .await
            .map_err(|e| match e {
                StoreError::WrongExpectedVersion {
                    expected, actual, ..
                } => StoreError::WrongExpectedVersion {
                    stream: meta.to_string(),
                    expected,
                    actual,
                },
                other => other,
            })?;
        let position = Position(written.position.commit);
        Ok(AppendResult {
            next_expected_revision: written.next_expected_version,
            first_position: position,
            position,
        })
    }

    async fn delete_stream(
        &self,
        stream: &StreamName,
        expected: ExpectedRevision,
    ) -> Result<Position, StoreError> {
        stream.ensure_writable()?;
        let options =
            DeleteStreamOptions::default().expected_revision(expected_to_client(expected));
        let position = self
            .inner
            .retrying("delete", || {
                self.inner.client.delete_stream(stream.as_str(), &options)
            })
            .await
            .map_err(|e| map_error(e, stream.as_str(), Some(expected)))?;
        self.position_or_head(position).await
    }

    async fn tombstone_stream(
        &self,
        stream: &StreamName,
        expected: ExpectedRevision,
    ) -> Result<Position, StoreError> {
        stream.ensure_writable()?;
        let options =
            TombstoneStreamOptions::default().expected_revision(expected_to_client(expected));
        let position = self
            .inner
            .retrying("tombstone", || {
                self.inner
                    .client
                    .tombstone_stream(stream.as_str(), &options)
            })
            .await
            .map_err(|e| map_error(e, stream.as_str(), Some(expected)))?;
        self.position_or_head(position).await
    }

    async fn head(&self) -> Result<Option<Head>, StoreError> {
        let Some(last) = self.inner.head_raw().await? else {
            return Ok(None);
        };
        self.inner
            .chain
            .ensure_through(&self.inner, last.position)
            .await?;
        Ok(Some(Head {
            position: last.position,
            hash: self.inner.chain.hash_of(&self.inner, last.position).await?,
        }))
    }

    async fn verify_chain(&self, range: PositionRange) -> Result<ChainReport, StoreError> {
        self.inner.chain.verify(&self.inner, range).await
    }
}

impl EsdbStore {
    async fn position_or_head(
        &self,
        position: Option<eventstore::Position>,
    ) -> Result<Position, StoreError> {
        match position {
            Some(p) => Ok(Position(p.commit)),
            None => Ok(self
                .inner
                .head_raw()
                .await?
                .map_or(Position::START, |e| e.position)),
        }
    }
}

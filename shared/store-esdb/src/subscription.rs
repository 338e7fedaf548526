//! Catch-up subscriptions through the client: server-side filters where the
//! protocol can express them, the full [`EventFilter`] applied here, chain
//! hashes filled in, and resubscription from the last delivered point
//! after a transient failure.

use std::sync::Arc;

use eventstore::{
    StreamPosition, SubscribeToAllOptions, SubscribeToStreamOptions, SubscriptionEvent,
    SubscriptionFilter,
};
use futures::StreamExt;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tongban_store::{
    Direction, EventFilter, Position, ReadFrom, RecordedEvent, StoreError, StreamName,
    SubscribeFrom, Subscription, SubscriptionMessage,
};

use crate::chain::is_witness_event;
use crate::convert::{client_position, recorded};
use crate::error::{is_transient, map_error};
use crate::store::Inner;

type Tx = mpsc::Sender<Result<SubscriptionMessage, StoreError>>;

/// What the node can filter: one dimension, by prefixes or a regex.
fn server_filter(filter: &EventFilter) -> Option<SubscriptionFilter> {
    if !filter.stream_prefixes.is_empty() {
        let mut f = SubscriptionFilter::on_stream_name();
        for p in &filter.stream_prefixes {
            f = f.add_prefix(p);
        }
        Some(f)
    } else if !filter.event_type_prefixes.is_empty() {
        let mut f = SubscriptionFilter::on_event_type();
        for p in &filter.event_type_prefixes {
            f = f.add_prefix(p);
        }
        Some(f)
    } else if filter.exclude_system {
        Some(SubscriptionFilter::on_event_type().exclude_system_events())
    } else {
        None
    }
}

pub(crate) fn to_all(
    inner: Arc<Inner>,
    from: SubscribeFrom<Position>,
    filter: EventFilter,
) -> Subscription {
    let (tx, rx) = mpsc::channel(256);
    tokio::spawn(async move {
        if let Err(e) = run_all(&inner, from, &filter, &tx).await {
            let _ = tx.send(Err(e)).await;
        }
    });
    ReceiverStream::new(rx).boxed()
}

pub(crate) fn to_stream(
    inner: Arc<Inner>,
    stream: StreamName,
    from: SubscribeFrom<u64>,
) -> Subscription {
    let (tx, rx) = mpsc::channel(256);
    tokio::spawn(async move {
        if let Err(e) = run_stream(&inner, &stream, from, &tx).await {
            let _ = tx.send(Err(e)).await;
        }
    });
    ReceiverStream::new(rx).boxed()
}

/// Sends an event with its chain hash; false once the subscriber is gone.
async fn deliver(inner: &Inner, tx: &Tx, mut event: RecordedEvent) -> Result<bool, StoreError> {
    event.hash = inner.chain.hash_of(inner, event.position).await?;
    Ok(tx.send(Ok(SubscriptionMessage::Event(event))).await.is_ok())
}

async fn run_all(
    inner: &Inner,
    from: SubscribeFrom<Position>,
    filter: &EventFilter,
    tx: &Tx,
) -> Result<(), StoreError> {
    // Resolve "end" to a position now, so a resubscription cannot skip.
    let mut cursor = match from {
        SubscribeFrom::End => match inner.head_raw().await? {
            Some(last) => SubscribeFrom::After(last.position),
            None => SubscribeFrom::Start,
        },
        other => other,
    };
    let mut caught_up = false;
    let mut attempt = 0;
    loop {
        let mut options = SubscribeToAllOptions::default().position(match cursor {
            SubscribeFrom::Start | SubscribeFrom::End => StreamPosition::Start,
            SubscribeFrom::After(p) => StreamPosition::Position(client_position(p)),
        });
        if let Some(f) = server_filter(filter) {
            options = options.filter(f);
        }
        let mut subscription = inner.client.subscribe_to_all(&options).await;
        loop {
            let next = tokio::select! {
                _ = tx.closed() => return Ok(()),
                next = subscription.next_subscription_event() => next,
            };
            match next {
                Ok(SubscriptionEvent::EventAppeared(resolved)) => {
                    attempt = 0;
                    let event = recorded(resolved.get_original_event())?;
                    cursor = SubscribeFrom::After(event.position);
                    if is_witness_event(&event)
                        || !filter.matches(event.stream.as_str(), &event.event_type)
                    {
                        continue;
                    }
                    if !deliver(inner, tx, event).await? {
                        return Ok(());
                    }
                }
                Ok(SubscriptionEvent::CaughtUp) if !caught_up => {
                    caught_up = true;
                    if tx.send(Ok(SubscriptionMessage::CaughtUp)).await.is_err() {
                        return Ok(());
                    }
                }
                Ok(SubscriptionEvent::Checkpoint(p)) => {
                    let message = SubscriptionMessage::Checkpoint(Position(p.commit));
                    if tx.send(Ok(message)).await.is_err() {
                        return Ok(());
                    }
                }
                Ok(_) => {}
                Err(e) if is_transient(&e) && attempt + 1 < inner.retry.max_attempts => {
                    attempt += 1;
                    let delay = inner.retry.delay(attempt);
                    tracing::warn!(%e, attempt, ?delay, "subscription to $all dropped; resubscribing");
                    tokio::time::sleep(delay).await;
                    break;
                }
                Err(e) => return Err(map_error(e, "$all", None)),
            }
        }
    }
}

async fn run_stream(
    inner: &Inner,
    stream: &StreamName,
    from: SubscribeFrom<u64>,
    tx: &Tx,
) -> Result<(), StoreError> {
    let mut cursor = match from {
        SubscribeFrom::End => match inner
            .read_stream_raw(stream.as_str(), Direction::Backwards, ReadFrom::End, 1)
            .await
        {
            Ok(events) => events
                .first()
                .map_or(SubscribeFrom::Start, |e| SubscribeFrom::After(e.revision)),
            Err(StoreError::StreamNotFound { .. }) => SubscribeFrom::End,
            Err(e) => return Err(e),
        },
        other => other,
    };
    let mut caught_up = false;
    let mut attempt = 0;
    loop {
        let options = SubscribeToStreamOptions::default().start_from(match cursor {
            SubscribeFrom::Start => StreamPosition::Start,
            SubscribeFrom::End => StreamPosition::End,
            SubscribeFrom::After(n) => StreamPosition::Position(n),
        });
        let mut subscription = inner
            .client
            .subscribe_to_stream(stream.as_str(), &options)
            .await;
        loop {
            let next = tokio::select! {
                _ = tx.closed() => return Ok(()),
                next = subscription.next_subscription_event() => next,
            };
            match next {
                Ok(SubscriptionEvent::EventAppeared(resolved)) => {
                    attempt = 0;
                    let event = recorded(resolved.get_original_event())?;
                    cursor = SubscribeFrom::After(event.revision);
                    if !deliver(inner, tx, event).await? {
                        return Ok(());
                    }
                }
                Ok(SubscriptionEvent::CaughtUp) if !caught_up => {
                    caught_up = true;
                    if tx.send(Ok(SubscriptionMessage::CaughtUp)).await.is_err() {
                        return Ok(());
                    }
                }
                Ok(_) => {}
                Err(e) if is_transient(&e) && attempt + 1 < inner.retry.max_attempts => {
                    attempt += 1;
                    let delay = inner.retry.delay(attempt);
                    tracing::warn!(%e, attempt, ?delay, "stream subscription dropped; resubscribing");
                    tokio::time::sleep(delay).await;
                    break;
                }
                Err(e) => return Err(map_error(e, stream.as_str(), None)),
            }
        }
    }
}

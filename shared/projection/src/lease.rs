//! One owner among replicas: a lease kept in the log.
//!
//! Why: a process manager turns events into commands. Several gateway
//! replicas on one log each run a [`ProjectionRunner`](crate::ProjectionRunner),
//! and a reaction must not be worked by all of them at once (its commands
//! are idempotent, so it would be waste rather than harm, but a 100,000-person
//! re-evaluation done three times is waste worth avoiding). The lease lives
//! where every replica already agrees, the event store, so it works alike on
//! the embedded and the EventStoreDB backends: the stream `lease-<name>`
//! holds `LeaseTaken` events (holder, until). Taking or renewing it is an
//! append with the expected revision of the last event read, so of two
//! replicas racing for it exactly one wins. The holder renews it well before
//! it expires; when a holder dies, another takes it over once it expired.
//!
//! [`Leased`] wraps a projection: its `apply` runs only while this replica
//! holds the lease. A standby's `apply` waits a lease period, then fails as
//! unavailable, so its runner pauses and tries again from its checkpoint.
//! When it takes over, it catches up from its own checkpoint; the commands
//! it then issues again are idempotent by id, so nothing is done twice.
//! Clocks of replicas are assumed to agree within a small part of the lease.

use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tongban_store::{
    Direction, EventData, EventFilter, EventStore, ExpectedRevision, ReadFrom, RecordedEvent,
    StoreError, StreamMetadata, StreamName,
};
use uuid::Uuid;

use crate::error::ProjectionError;
use crate::projection::{ApplyError, Changes, Projection};

/// The event type of a lease taken or renewed.
pub const LEASE_TAKEN: &str = "LeaseTaken.v1";

/// How long a lease lasts and how often its holder renews it.
#[derive(Clone, Copy, Debug)]
pub struct LeaseConfig {
    /// How long a lease lasts after it was taken or renewed.
    pub ttl: Duration,
    /// How often every replica looks at the lease (the holder renews it).
    pub renew_every: Duration,
}

impl Default for LeaseConfig {
    fn default() -> Self {
        Self {
            ttl: Duration::from_secs(15),
            renew_every: Duration::from_secs(5),
        }
    }
}

/// A lease as recorded in the log.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseTaken {
    /// The replica holding it (random per process and lease).
    pub holder: Uuid,
    /// Until when, in milliseconds since the Unix epoch.
    pub until_ms: i64,
}

/// Who holds a lease, as one look at the log found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Holding {
    /// This replica, until the given wall-clock time (ms since the epoch).
    Mine { until_ms: i64 },
    /// Another replica, until then.
    Theirs { holder: Uuid, until_ms: i64 },
}

/// The decision of one look at the lease. Pure.
///
/// Given the last `LeaseTaken` (if any), the caller and the time: take or
/// renew it (and until when), or leave it to its holder.
pub fn decide_lease(
    last: Option<&LeaseTaken>,
    me: Uuid,
    now_ms: i64,
    config: &LeaseConfig,
) -> Result<LeaseTaken, Holding> {
    let ttl = i64::try_from(config.ttl.as_millis()).unwrap_or(i64::MAX);
    let renew = i64::try_from(config.renew_every.as_millis()).unwrap_or(i64::MAX);
    match last {
        Some(l) if l.holder != me && l.until_ms > now_ms => Err(Holding::Theirs {
            holder: l.holder,
            until_ms: l.until_ms,
        }),
        // Mine and fresh: no need to write.
        Some(l) if l.holder == me && l.until_ms - now_ms > ttl.saturating_sub(renew) => {
            Err(Holding::Mine {
                until_ms: l.until_ms,
            })
        }
        _ => Ok(LeaseTaken {
            holder: me,
            until_ms: now_ms.saturating_add(ttl),
        }),
    }
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// One lease, looked at by this replica.
pub struct Lease {
    events: Arc<dyn EventStore>,
    stream: StreamName,
    me: Uuid,
    config: LeaseConfig,
}

impl Lease {
    /// The lease named `name` (stream `lease-<name>`), held as a fresh holder id.
    pub fn new(
        events: Arc<dyn EventStore>,
        name: &str,
        config: LeaseConfig,
    ) -> Result<Self, ProjectionError> {
        let stream = StreamName::parse(format!("lease-{name}"))?;
        Ok(Self {
            events,
            stream,
            me: Uuid::new_v4(),
            config,
        })
    }

    /// This replica's holder id.
    pub fn holder(&self) -> Uuid {
        self.me
    }

    /// Looks at the lease once: takes it if free or expired, renews it if
    /// this replica's and due, else says who holds it.
    pub async fn try_hold(&self) -> Result<Holding, ProjectionError> {
        let last = match self
            .events
            .read_stream(&self.stream, Direction::Backwards, ReadFrom::End, 1)
            .await
        {
            Ok(events) => events.into_iter().next(),
            Err(StoreError::StreamNotFound { .. }) => None,
            Err(e) => return Err(e.into()),
        };
        let taken = last.as_ref().and_then(|e| e.json::<LeaseTaken>().ok());
        let expected = last.as_ref().map_or(ExpectedRevision::NoStream, |e| {
            ExpectedRevision::Exact(e.revision)
        });
        let next = match decide_lease(taken.as_ref(), self.me, now_ms(), &self.config) {
            Ok(next) => next,
            Err(holding) => return Ok(holding),
        };
        let data = EventData::json(LEASE_TAKEN, &next)?;
        match self.events.append(&self.stream, expected, vec![data]).await {
            Ok(_) => {
                if last.is_none() {
                    // The lease's history is of no use: keep its stream short.
                    let metadata = StreamMetadata {
                        max_count: Some(16),
                        ..StreamMetadata::default()
                    };
                    if let Err(e) = self
                        .events
                        .set_stream_metadata(&self.stream, ExpectedRevision::Any, metadata)
                        .await
                    {
                        tracing::debug!(error = %e, "could not bound the lease stream");
                    }
                }
                Ok(Holding::Mine {
                    until_ms: next.until_ms,
                })
            }
            // Another replica took it between our read and our append.
            Err(StoreError::WrongExpectedVersion { .. }) => Ok(Holding::Theirs {
                holder: Uuid::nil(),
                until_ms: now_ms()
                    .saturating_add(i64::try_from(self.config.ttl.as_millis()).unwrap_or(i64::MAX)),
            }),
            Err(e) => Err(e.into()),
        }
    }
}

/// A projection worked only while this replica holds its lease (see the
/// module docs). The lease is looked at in a task of its own, started with
/// the first batch and ended when the projection is dropped.
pub struct Leased<P> {
    inner: P,
    lease: Arc<Lease>,
    /// Until when this replica holds the lease (local monotonic time).
    held: watch::Sender<Option<Instant>>,
    task: Mutex<Option<JoinHandle<()>>>,
}

impl<P: Projection> Leased<P> {
    /// `inner`, run under the lease `lease-<inner.name()>` of `events`.
    pub fn new(
        inner: P,
        events: Arc<dyn EventStore>,
        config: LeaseConfig,
    ) -> Result<Self, ProjectionError> {
        let lease = Arc::new(Lease::new(events, inner.name(), config)?);
        Ok(Self {
            inner,
            lease,
            held: watch::channel(None).0,
            task: Mutex::new(None),
        })
    }

    /// The wrapped projection.
    pub fn inner(&self) -> &P {
        &self.inner
    }

    /// Whether this replica holds the lease now.
    pub fn is_held(&self) -> bool {
        self.held
            .borrow()
            .is_some_and(|until| until > Instant::now())
    }

    fn start_task(&self) {
        let mut task = self
            .task
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if task.is_some() {
            return;
        }
        let lease = Arc::downgrade(&self.lease);
        let held = self.held.clone();
        *task = Some(tokio::spawn(keep_looking(lease, held)));
    }
}

/// Longest an apply waits for the lease before the batch is handed back as
/// unavailable (and retried after the runner's pause).
const STANDBY_WAIT: Duration = Duration::from_secs(1);

/// Looks at the lease every `renew_every` while the lease object lives.
async fn keep_looking(lease: Weak<Lease>, held: watch::Sender<Option<Instant>>) {
    loop {
        let Some(lease) = lease.upgrade() else { return };
        let every = lease.config.renew_every;
        let looked = Instant::now();
        match lease.try_hold().await {
            Ok(Holding::Mine { until_ms }) => {
                let left = u64::try_from(until_ms - now_ms()).unwrap_or(0);
                // Counted from before the look: never longer than the log says.
                held.send_replace(Some(looked + Duration::from_millis(left)));
            }
            Ok(Holding::Theirs { .. }) => {
                held.send_replace(None);
            }
            Err(e) => tracing::warn!(error = %e, "could not look at the lease"),
        }
        drop(lease);
        tokio::time::sleep(every).await;
    }
}

impl<P> Drop for Leased<P> {
    fn drop(&mut self) {
        if let Some(task) = self
            .task
            .get_mut()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take()
        {
            task.abort();
        }
    }
}

#[async_trait]
impl<P: Projection> Projection for Leased<P> {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn version(&self) -> u32 {
        self.inner.version()
    }

    fn filter(&self) -> EventFilter {
        self.inner.filter()
    }

    async fn apply(
        &self,
        events: &[RecordedEvent],
        changes: &mut Changes<'_>,
    ) -> Result<(), ApplyError> {
        if events.is_empty() {
            // Only the checkpoint moves (filtered-out events): no effects.
            return self.inner.apply(events, changes).await;
        }
        self.start_task();
        let mut held = self.held.subscribe();
        // Wait briefly, not a whole lease period: the runner's pause between
        // retries listens for shutdown, an apply does not, so a standby
        // that waited here for 15 s would hold up a SIGTERM as long.
        let wait = self.lease.config.ttl.min(STANDBY_WAIT);
        let mine = async {
            held.wait_for(|until| until.is_some_and(|u| u > Instant::now()))
                .await
                .map(|_| ())
        };
        let outcome = tokio::time::timeout(wait, mine).await;
        if !matches!(outcome, Ok(Ok(_))) {
            return Err(ApplyError::Storage(ProjectionError::Store(
                StoreError::Unavailable {
                    reason: format!(
                        "standing by: lease-{} is held by another replica",
                        self.inner.name()
                    ),
                },
            )));
        }
        self.inner.apply(events, changes).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ME: Uuid = Uuid::from_u128(1);
    const OTHER: Uuid = Uuid::from_u128(2);

    fn config() -> LeaseConfig {
        LeaseConfig {
            ttl: Duration::from_millis(1000),
            renew_every: Duration::from_millis(300),
        }
    }

    #[test]
    fn a_lease_nobody_took_is_taken_for_one_ttl() {
        // Given no lease, when a replica looks at 5000 ms,
        let decided = decide_lease(None, ME, 5000, &config());
        // then it takes it until 6000 ms.
        assert_eq!(
            decided,
            Ok(LeaseTaken {
                holder: ME,
                until_ms: 6000
            })
        );
    }

    #[test]
    fn a_lease_another_replica_holds_is_left_to_it_until_it_expires() {
        // Given a lease held by another replica until 6000 ms,
        let theirs = LeaseTaken {
            holder: OTHER,
            until_ms: 6000,
        };
        // when this replica looks before then, it is left alone,
        assert_eq!(
            decide_lease(Some(&theirs), ME, 5999, &config()),
            Err(Holding::Theirs {
                holder: OTHER,
                until_ms: 6000
            })
        );
        // and once it expired, it is taken over.
        assert_eq!(
            decide_lease(Some(&theirs), ME, 6000, &config()),
            Ok(LeaseTaken {
                holder: ME,
                until_ms: 7000
            })
        );
    }

    #[test]
    fn the_holder_renews_its_lease_only_when_a_renewal_is_due() {
        // Given this replica holds the lease until 6000 ms (ttl 1000, renew every 300),
        let mine = LeaseTaken {
            holder: ME,
            until_ms: 6000,
        };
        // when it looks at 5100 ms (900 ms left), nothing is written,
        assert_eq!(
            decide_lease(Some(&mine), ME, 5100, &config()),
            Err(Holding::Mine { until_ms: 6000 })
        );
        // and at 5400 ms (600 ms left) it renews.
        assert_eq!(
            decide_lease(Some(&mine), ME, 5400, &config()),
            Ok(LeaseTaken {
                holder: ME,
                until_ms: 6400
            })
        );
    }
}

//! Per-caller rate limiting (token buckets) and the cap on requests in
//! flight. Shape limits are in [`crate::query_guard`]; body size and request
//! time limits are enforced in [`crate::server`].

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tongban_kernel::Actor;

use crate::error::GatewayError;

/// Whose bucket a request takes: the verified caller (so the same token
/// spelt differently, or a fresh token of the same subject, shares one
/// bucket), or the client's address without a token.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum RateKey {
    /// A verified caller: role and actor id.
    Caller {
        /// Role name.
        role: &'static str,
        /// Actor id.
        id: u128,
    },
    /// An anonymous client.
    Address(IpAddr),
    /// An anonymous client whose address is unknown.
    Anonymous,
}

impl RateKey {
    /// The key of a verified actor.
    pub fn caller(actor: &Actor) -> Self {
        Self::Caller {
            role: actor.role_name(),
            id: actor.id.uuid().as_u128(),
        }
    }

    /// The key of an anonymous client.
    pub fn address(ip: Option<IpAddr>) -> Self {
        ip.map_or(Self::Anonymous, Self::Address)
    }
}

struct Bucket {
    tokens: f64,
    last: Instant,
}

/// Token buckets keyed by [`RateKey`].
pub struct RateLimiter {
    per_second: u32,
    burst: u32,
    buckets: Mutex<HashMap<RateKey, Bucket>>,
}

impl std::fmt::Debug for RateLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RateLimiter")
            .field("per_second", &self.per_second)
            .finish()
    }
}

/// Buckets kept before idle ones are dropped.
const MAX_BUCKETS: usize = 100_000;

impl RateLimiter {
    /// `per_second` sustained, `burst` at once.
    pub fn new(per_second: u32, burst: u32) -> Self {
        Self {
            per_second: per_second.max(1),
            burst: burst.max(1),
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Takes one request from `key`'s bucket.
    pub fn check(&self, key: &RateKey) -> Result<(), GatewayError> {
        let now = Instant::now();
        let rate = f64::from(self.per_second);
        let burst = f64::from(self.burst);
        let mut buckets = self
            .buckets
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if buckets.len() >= MAX_BUCKETS && !buckets.contains_key(key) {
            buckets.retain(|_, b| now.duration_since(b.last).as_secs_f64() * rate < burst);
        }
        let bucket = buckets.entry(key.clone()).or_insert(Bucket {
            tokens: burst,
            last: now,
        });
        let refill = now.duration_since(bucket.last).as_secs_f64() * rate;
        bucket.tokens = (bucket.tokens + refill).min(burst);
        bucket.last = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Ok(())
        } else {
            let wait = (1.0 - bucket.tokens) / rate;
            Err(GatewayError::RateLimited {
                per_second: self.per_second,
                retry_after_ms: (wait * 1000.0).ceil() as u64,
            })
        }
    }
}

/// The cap on requests in flight: past it a request waits at most
/// `queue_wait` for a slot, then gets 503 with `Retry-After`.
pub struct InFlight {
    slots: Arc<Semaphore>,
    max: usize,
    queue_wait: Duration,
}

impl std::fmt::Debug for InFlight {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InFlight").field("max", &self.max).finish()
    }
}

impl InFlight {
    /// At most `max` requests at once; a request waits at most `queue_wait`.
    pub fn new(max: usize, queue_wait: Duration) -> Self {
        let max = max.max(1);
        Self {
            slots: Arc::new(Semaphore::new(max)),
            max,
            queue_wait,
        }
    }

    /// A slot, held until the permit drops.
    pub async fn enter(&self) -> Result<OwnedSemaphorePermit, GatewayError> {
        if let Ok(permit) = self.slots.clone().try_acquire_owned() {
            return Ok(permit);
        }
        match tokio::time::timeout(self.queue_wait, self.slots.clone().acquire_owned()).await {
            Ok(Ok(permit)) => Ok(permit),
            _ => Err(GatewayError::Overloaded {
                in_flight: self.max,
            }),
        }
    }

    /// Requests running now.
    pub fn running(&self) -> usize {
        self.max - self.slots.available_permits()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(id: u128) -> RateKey {
        RateKey::Caller {
            role: "citizen",
            id,
        }
    }

    #[test]
    fn a_caller_past_its_burst_is_limited_and_others_are_not() {
        let limiter = RateLimiter::new(1, 3);
        for _ in 0..3 {
            limiter.check(&key(1)).unwrap();
        }
        assert!(matches!(
            limiter.check(&key(1)),
            Err(GatewayError::RateLimited { .. })
        ));
        limiter.check(&key(2)).unwrap();
    }

    #[tokio::test]
    async fn past_the_cap_a_request_waits_briefly_then_is_refused() {
        let in_flight = InFlight::new(2, Duration::from_millis(20));
        let a = in_flight.enter().await.unwrap();
        let _b = in_flight.enter().await.unwrap();
        assert_eq!(in_flight.running(), 2);
        assert!(matches!(
            in_flight.enter().await,
            Err(GatewayError::Overloaded { in_flight: 2 })
        ));
        drop(a);
        let _c = in_flight.enter().await.unwrap();
    }
}

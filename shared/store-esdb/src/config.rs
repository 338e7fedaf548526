//! How the esdb backend connects and behaves.

use std::fmt;
use std::time::Duration;

use ed25519_dalek::SigningKey;

/// Connection and behaviour of an [`crate::EsdbStore`].
#[derive(Clone)]
pub struct EsdbConfig {
    /// `esdb://[user:password@]host:port?tls=false` or
    /// `esdb+discover://host:port` for a cluster.
    pub connection_string: String,
    pub retry: RetryPolicy,
    /// The witness appends a chain checkpoint after this many new events.
    pub checkpoint_every: u64,
    /// Signs chain checkpoints when set.
    pub signing_key: Option<SigningKey>,
    /// How often the witness looks for new events in `$all`.
    pub witness_interval: Duration,
}

impl EsdbConfig {
    pub fn new(connection_string: impl Into<String>) -> Self {
        Self {
            connection_string: connection_string.into(),
            retry: RetryPolicy::default(),
            checkpoint_every: 1000,
            signing_key: None,
            witness_interval: Duration::from_secs(1),
        }
    }

    pub fn with_signing_key(mut self, key: SigningKey) -> Self {
        self.signing_key = Some(key);
        self
    }

    pub fn with_witness_interval(mut self, interval: Duration) -> Self {
        self.witness_interval = interval.max(Duration::from_millis(10));
        self
    }

    pub fn with_checkpoint_every(mut self, events: u64) -> Self {
        self.checkpoint_every = events.max(1);
        self
    }
}

impl fmt::Debug for EsdbConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The connection string may carry a password.
        let shown = match self.connection_string.split_once('@') {
            Some((scheme_and_user, host)) => {
                let scheme = scheme_and_user.split("//").next().unwrap_or("esdb:");
                format!("{scheme}//***@{host}")
            }
            None => self.connection_string.clone(),
        };
        f.debug_struct("EsdbConfig")
            .field("connection_string", &shown)
            .field("retry", &self.retry)
            .field("checkpoint_every", &self.checkpoint_every)
            .field("witness_interval", &self.witness_interval)
            .field("signing_key", &self.signing_key.as_ref().map(|_| "***"))
            .finish()
    }
}

/// Exponential backoff for transient failures (connection lost, node
/// unavailable, not the leader).
#[derive(Clone, Copy, Debug)]
pub struct RetryPolicy {
    pub max_attempts: u32,
    pub first_delay: Duration,
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 6,
            first_delay: Duration::from_millis(50),
            max_delay: Duration::from_secs(2),
        }
    }
}

impl RetryPolicy {
    /// The pause before attempt `attempt` (1-based retries).
    pub fn delay(&self, attempt: u32) -> Duration {
        let factor = 2u32.saturating_pow(attempt.saturating_sub(1).min(16));
        self.first_delay.saturating_mul(factor).min(self.max_delay)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let policy = RetryPolicy::default();
        assert_eq!(policy.delay(1), Duration::from_millis(50));
        assert_eq!(policy.delay(2), Duration::from_millis(100));
        assert_eq!(policy.delay(30), Duration::from_secs(2));
    }

    #[test]
    fn passwords_in_connection_strings_do_not_print() {
        let config = EsdbConfig::new("esdb://admin:changeit@localhost:2113?tls=false");
        assert!(!format!("{config:?}").contains("changeit"));
    }
}

//! Shared secrets in PostgreSQL, for a hub run as several replicas: the
//! personal-data key vault ([`PostgresKeyVault`]) and the region signing
//! keys ([`PostgresRegionKeys`]). Every replica pointed at the same
//! database (`--vault postgres://…`) seals and opens with the same data
//! keys, so an erasure through one replica is an erasure at all of them at
//! once, and signs and verifies with the same region keys.
//!
//! A tour:
//! - [`Database`]: one connection, driven by a thread of its own. The
//!   domain's [`KeyVault`](tongban_health_code::vault::KeyVault) and
//!   [`RegionKeyStore`](tongban_health_code::region_keys::RegionKeyStore)
//!   are synchronous and called from any runtime (actix's workers are
//!   single-threaded), so a call hands its query to that thread and waits
//!   for the answer. Transactions get a connection of their own.
//! - [`migrations`]: the schema, versioned in `tongban_vault_migrations`
//!   and brought up to date at start-up under an advisory lock, so
//!   replicas starting together wait for each other instead of failing.
//! - [`vault`]: data keys, stored only wrapped by the key-encryption key.
//! - [`region_keys`]: region signing keys (`region_keys`), private keys
//!   wrapped by the same key-encryption key.
//!
//! Connections are unencrypted (`NoTls`): the database is expected on the
//! same host or a private network.

pub mod migrations;
pub mod region_keys;
pub mod vault;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use thiserror::Error;
use tokio_postgres::{Client, NoTls};

pub use region_keys::PostgresRegionKeys;
pub use vault::PostgresKeyVault;

/// Longest a caller waits for the database to answer one call.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// Errors of the PostgreSQL connection.
#[derive(Debug, Error)]
pub enum PgError {
    /// The database could not be reached or refused the connection.
    #[error("failed to connect to the vault at {url}: {message}")]
    Connect {
        /// The URL, without its password.
        url: String,
        /// Why.
        message: String,
    },
    /// A statement failed.
    #[error("the vault at {url}: {message}")]
    Query {
        /// The URL, without its password.
        url: String,
        /// What failed.
        message: String,
    },
    /// The URL is not a PostgreSQL connection string.
    #[error("the vault URL {url} is not valid: {message}")]
    Url {
        /// The URL, without its password.
        url: String,
        /// Why.
        message: String,
    },
}

/// `url` with its password (in the authority or a `password=` parameter)
/// replaced by `***`, for messages.
pub fn redact_url(url: &str) -> String {
    let url = match url.find("password=") {
        Some(at) => {
            let value = at + "password=".len();
            let end = url[value..].find('&').map_or(url.len(), |i| value + i);
            format!("{}***{}", &url[..value], &url[end..])
        }
        None => url.to_owned(),
    };
    let url = url.as_str();
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let (authority, tail) = match rest.find(['/', '?']) {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    match authority.rsplit_once('@') {
        Some((user, host)) => {
            let user = user.split_once(':').map_or(user, |(name, _)| name);
            let masked = if user.len() < authority.len() - host.len() - 1 {
                format!("{user}:***")
            } else {
                user.to_owned()
            };
            format!("{scheme}://{masked}@{host}{tail}")
        }
        None => url.to_owned(),
    }
}

type Job = Box<dyn FnOnce(Result<Arc<Client>, String>) -> BoxFuture<'static, ()> + Send>;

/// A PostgreSQL database the hub keeps secrets in: one shared connection
/// (reconnected when lost) driven by a background thread, plus a fresh
/// connection per transaction.
pub struct Database {
    url: String,
    shown: String,
    jobs: tokio::sync::mpsc::UnboundedSender<Job>,
}

impl std::fmt::Debug for Database {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Database")
            .field("url", &self.shown)
            .finish_non_exhaustive()
    }
}

async fn connect(url: &str, shown: &str) -> Result<Client, PgError> {
    let (client, connection) =
        tokio_postgres::connect(url, NoTls)
            .await
            .map_err(|e| PgError::Connect {
                url: shown.to_owned(),
                message: error_text(&e),
            })?;
    tokio::spawn(async move {
        if let Err(error) = connection.await {
            tracing::warn!(%error, "the connection to the vault database ended");
        }
    });
    Ok(client)
}

/// A driver error with its cause (the server's message, an I/O error).
fn error_text(e: &tokio_postgres::Error) -> String {
    use std::error::Error as _;
    match e.source() {
        Some(source) => format!("{e}: {source}"),
        None => e.to_string(),
    }
}

impl Database {
    /// Connects to `url` (`postgres://user@host:port/database`), checking
    /// that the database answers.
    pub fn connect(url: &str) -> Result<Arc<Self>, PgError> {
        let shown = redact_url(url);
        url.parse::<tokio_postgres::Config>()
            .map_err(|e| PgError::Url {
                url: shown.clone(),
                message: e.to_string(),
            })?;
        let (jobs, mut inbox) = tokio::sync::mpsc::unbounded_channel::<Job>();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| PgError::Connect {
                url: shown.clone(),
                message: format!("failed to start the connection's runtime: {e}"),
            })?;
        let (thread_url, thread_shown) = (url.to_owned(), shown.clone());
        std::thread::Builder::new()
            .name("tongban-vault-pg".into())
            .spawn(move || {
                runtime.block_on(async move {
                    let mut client: Option<Arc<Client>> = None;
                    let mut why = String::new();
                    while let Some(job) = inbox.recv().await {
                        if client.as_ref().is_none_or(|c| c.is_closed()) {
                            client = match connect(&thread_url, &thread_shown).await {
                                Ok(c) => Some(Arc::new(c)),
                                Err(PgError::Connect { message, .. }) => {
                                    why = message;
                                    None
                                }
                                Err(other) => {
                                    why = other.to_string();
                                    None
                                }
                            };
                        }
                        let given = client.clone().ok_or_else(|| why.clone());
                        tokio::spawn(job(given));
                    }
                });
            })
            .map_err(|e| PgError::Connect {
                url: shown.clone(),
                message: format!("failed to start the connection's thread: {e}"),
            })?;
        let db = Arc::new(Self {
            url: url.to_owned(),
            shown,
            jobs,
        });
        db.run(|client| async move { client.simple_query("SELECT 1").await.map(drop) })
            .map_err(|e| match e {
                PgError::Query { url, message } => PgError::Connect { url, message },
                other => other,
            })?;
        Ok(db)
    }

    /// The URL without its password.
    pub fn shown_url(&self) -> &str {
        &self.shown
    }

    fn query_error(&self, message: impl Into<String>) -> PgError {
        PgError::Query {
            url: self.shown.clone(),
            message: message.into(),
        }
    }

    fn wait<T: Send + 'static>(
        &self,
        job: impl FnOnce(std::sync::mpsc::SyncSender<Result<T, PgError>>) -> Job,
    ) -> Result<T, PgError> {
        let (reply, answer) = std::sync::mpsc::sync_channel(1);
        self.jobs
            .send(job(reply))
            .map_err(|_| self.query_error("the connection's thread has stopped"))?;
        match answer.recv_timeout(CALL_TIMEOUT) {
            Ok(result) => result,
            Err(_) => {
                Err(self.query_error(format!("no answer within {} s", CALL_TIMEOUT.as_secs())))
            }
        }
    }

    /// Runs `f` on the shared connection (statements outside a
    /// transaction) and waits for its result.
    pub fn run<T, F, Fut>(&self, f: F) -> Result<T, PgError>
    where
        T: Send + 'static,
        F: FnOnce(Arc<Client>) -> Fut + Send + 'static,
        Fut: Future<Output = Result<T, tokio_postgres::Error>> + Send + 'static,
    {
        let shown = self.shown.clone();
        self.wait(move |reply| {
            Box::new(move |client: Result<Arc<Client>, String>| {
                Box::pin(async move {
                    let result = match client {
                        Ok(client) => f(client).await.map_err(|e| PgError::Query {
                            url: shown,
                            message: error_text(&e),
                        }),
                        Err(message) => Err(PgError::Connect {
                            url: shown,
                            message,
                        }),
                    };
                    let _ = reply.send(result);
                }) as BoxFuture<'static, ()>
            })
        })
    }

    /// Runs `f` on a connection of its own (for a transaction), and waits.
    pub fn run_alone<T, F>(&self, f: F) -> Result<T, PgError>
    where
        T: Send + 'static,
        F: for<'c> FnOnce(&'c mut Client) -> BoxFuture<'c, Result<T, tokio_postgres::Error>>
            + Send
            + 'static,
    {
        let (url, shown) = (self.url.clone(), self.shown.clone());
        self.wait(move |reply| {
            Box::new(move |_shared: Result<Arc<Client>, String>| {
                Box::pin(async move {
                    let result = match connect(&url, &shown).await {
                        Ok(mut client) => f(&mut client).await.map_err(|e| PgError::Query {
                            url: shown,
                            message: error_text(&e),
                        }),
                        Err(e) => Err(e),
                    };
                    let _ = reply.send(result);
                }) as BoxFuture<'static, ()>
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_url_shows_no_password() {
        assert_eq!(
            redact_url("postgres://tongban:s3cret@db:5432/hub?sslmode=disable"),
            "postgres://tongban:***@db:5432/hub?sslmode=disable"
        );
        assert_eq!(
            redact_url("postgres://postgres@127.0.0.1/test"),
            "postgres://postgres@127.0.0.1/test"
        );
        assert_eq!(
            redact_url("postgres://127.0.0.1/test"),
            "postgres://127.0.0.1/test"
        );
        assert_eq!(
            redact_url("postgres://127.0.0.1/test?password=hunter2&user=x"),
            "postgres://127.0.0.1/test?password=***&user=x"
        );
    }
}

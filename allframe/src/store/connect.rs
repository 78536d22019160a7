//! Opening an event store from a URL, so a service picks its backend with
//! one setting (`--database-url`, `DATABASE_URL`) instead of code.
//!
//! | URL | store |
//! |---|---|
//! | `memory` | [`MemoryStore`] |
//! | `sqlite://PATH`, `sqlite:PATH`, `sqlite::memory:` | [`SqliteStore`](super::SqliteStore) (feature `sqlite`), the file created if missing |
//! | `postgres://…`, `postgresql://…` | [`PostgresStore`](super::PostgresStore) (feature `postgres`) |

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use super::{EventStore, MemoryStore, StoreError};

/// The URL forms [`connect`] accepts, for error messages.
const ACCEPTED: &str =
    "`memory`, `sqlite://PATH`, `sqlite::memory:`, `postgres://…` or `postgresql://…`";

/// Opens the event store `url` names, with the backend's default pool.
///
/// `url` is `memory`, `sqlite://PATH` (`sqlite:PATH`, `sqlite::memory:`),
/// or `postgres://…` (`postgresql://…`). Use [`ConnectOptions`] to size
/// the pool.
///
/// ```
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// let store = allframe::store::connect("memory").await?;
/// assert_eq!(store.head_position().await?, 0);
///
/// let error = allframe::store::connect("mysql://localhost/app").await.err().unwrap();
/// assert!(error.to_string().contains("sqlite://PATH"));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// # }).unwrap();
/// ```
pub async fn connect(url: &str) -> Result<Arc<dyn EventStore>, ConnectError> {
    ConnectOptions::new(url).connect().await
}

/// How to open an event store from a URL: the URL (see [`connect`]) and
/// the settings of the backend's connection pool.
///
/// ```no_run
/// # async fn run() -> Result<(), allframe::store::ConnectError> {
/// use std::time::Duration;
/// use allframe::store::ConnectOptions;
///
/// let store = ConnectOptions::new("postgres://localhost/bank")
///     .max_connections(16)
///     .acquire_timeout(Duration::from_secs(5))
///     .connect()
///     .await?;
/// # Ok(()) }
/// ```
///
/// The pool settings apply to the SQL backends' pools of reading
/// connections (on PostgreSQL it also serves idempotency claims; appends
/// always go through one writing connection of their own). The memory
/// store has no pool and ignores them.
#[derive(Clone)]
pub struct ConnectOptions {
    url: String,
    max_connections: Option<u32>,
    acquire_timeout: Option<Duration>,
    notifications: bool,
}

impl ConnectOptions {
    /// Options for `url`, with the backend's default pool: 4 reading
    /// connections on SQLite, 8 connections on PostgreSQL, waiting up to
    /// 30 s for one.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            max_connections: None,
            acquire_timeout: None,
            notifications: true,
        }
    }

    /// On PostgreSQL, whether commits are notified between nodes (default
    /// `true`; see
    /// [`PostgresBuilder::notifications`](super::PostgresBuilder::notifications)).
    /// The other backends have one node and ignore it.
    pub fn notifications(mut self, notifications: bool) -> Self {
        self.notifications = notifications;
        self
    }

    /// The most connections the pool opens (at least 1).
    pub fn max_connections(mut self, connections: u32) -> Self {
        self.max_connections = Some(connections);
        self
    }

    /// How long an operation waits for a free pooled connection (or for a
    /// new one to connect) before it fails with a backend error.
    pub fn acquire_timeout(mut self, timeout: Duration) -> Self {
        self.acquire_timeout = Some(timeout);
        self
    }

    /// Opens the store: creates the SQLite file or the tables if missing,
    /// and starts the store's writer.
    pub async fn connect(&self) -> Result<Arc<dyn EventStore>, ConnectError> {
        if self.max_connections == Some(0) {
            return Err(ConnectError::InvalidOption(
                "max_connections must be at least 1",
            ));
        }
        match Backend::of(&self.url)? {
            Backend::Memory => Ok(Arc::new(MemoryStore::new())),
            Backend::Sqlite => self.sqlite().await,
            Backend::Postgres => self.postgres().await,
        }
    }

    #[cfg(feature = "sqlite")]
    async fn sqlite(&self) -> Result<Arc<dyn EventStore>, ConnectError> {
        use std::str::FromStr;

        use sqlx::sqlite::SqliteConnectOptions;

        use super::DEFAULT_MAX_BATCH;
        use super::SqliteStore;

        let options = SqliteConnectOptions::from_str(&self.url)
            .map_err(|error| self.invalid_url(error))?
            .create_if_missing(true);
        let store =
            SqliteStore::connect_with_pool(options, DEFAULT_MAX_BATCH, |pool| self.size(pool))
                .await
                .map_err(|error| self.failed(error))?;
        Ok(Arc::new(store))
    }

    #[cfg(not(feature = "sqlite"))]
    async fn sqlite(&self) -> Result<Arc<dyn EventStore>, ConnectError> {
        Err(self.not_built("sqlite"))
    }

    #[cfg(feature = "postgres")]
    async fn postgres(&self) -> Result<Arc<dyn EventStore>, ConnectError> {
        use std::str::FromStr;

        use sqlx::postgres::PgConnectOptions;

        use super::DEFAULT_MAX_BATCH;
        use super::PostgresStore;

        let options =
            PgConnectOptions::from_str(&self.url).map_err(|error| self.invalid_url(error))?;
        let settings = PostgresStore::builder(options)
            .max_batch(DEFAULT_MAX_BATCH)
            .notifications(self.notifications);
        let store = PostgresStore::connect_with_pool(settings, |pool| self.size(pool))
            .await
            .map_err(|error| self.failed(error))?;
        Ok(Arc::new(store))
    }

    #[cfg(not(feature = "postgres"))]
    async fn postgres(&self) -> Result<Arc<dyn EventStore>, ConnectError> {
        Err(self.not_built("postgres"))
    }

    /// The read pool's options with the size and timeout asked for.
    #[cfg(any(feature = "sqlite", feature = "postgres"))]
    fn size<DB: sqlx::Database>(
        &self,
        mut pool: sqlx::pool::PoolOptions<DB>,
    ) -> sqlx::pool::PoolOptions<DB> {
        if let Some(connections) = self.max_connections {
            pool = pool.max_connections(connections);
        }
        if let Some(timeout) = self.acquire_timeout {
            pool = pool.acquire_timeout(timeout);
        }
        pool
    }

    #[cfg(any(feature = "sqlite", feature = "postgres"))]
    fn invalid_url(&self, error: sqlx::Error) -> ConnectError {
        ConnectError::InvalidUrl {
            url: redact(&self.url),
            reason: error.to_string(),
        }
    }

    #[cfg(any(feature = "sqlite", feature = "postgres"))]
    fn failed(&self, source: StoreError) -> ConnectError {
        ConnectError::Store {
            url: redact(&self.url),
            source,
        }
    }

    #[cfg(not(all(feature = "sqlite", feature = "postgres")))]
    fn not_built(&self, feature: &'static str) -> ConnectError {
        ConnectError::BackendNotBuilt {
            url: redact(&self.url),
            feature,
        }
    }
}

/// Shows the URL with its password hidden.
impl fmt::Debug for ConnectOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConnectOptions")
            .field("url", &redact(&self.url))
            .field("max_connections", &self.max_connections)
            .field("acquire_timeout", &self.acquire_timeout)
            .field("notifications", &self.notifications)
            .finish()
    }
}

/// Why [`connect`] could not open a store. URLs in it have their password
/// replaced by `***`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConnectError {
    /// The URL names no backend AllFrame has.
    #[error("unsupported database URL {url:?}: expected {ACCEPTED}")]
    UnsupportedUrl {
        /// The URL given.
        url: String,
    },
    /// The URL names a backend this build of allframe leaves out.
    #[error(
        "database URL {url:?} needs allframe's `{feature}` feature, which this build leaves out"
    )]
    BackendNotBuilt {
        /// The URL given.
        url: String,
        /// The Cargo feature that builds the backend.
        feature: &'static str,
    },
    /// The URL names a backend but does not parse as one of its URLs.
    #[error("invalid database URL {url:?}: {reason}")]
    InvalidUrl {
        /// The URL given.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A [`ConnectOptions`] setting is out of range.
    #[error("invalid connect option: {0}")]
    InvalidOption(&'static str),
    /// The backend could not open the store (unreachable server, unreadable
    /// file, failed migration, …).
    #[error("could not open the event store at {url}: {source}")]
    Store {
        /// The URL given.
        url: String,
        /// The store's error.
        source: StoreError,
    },
}

/// The backend a URL names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Backend {
    Memory,
    Sqlite,
    Postgres,
}

impl Backend {
    fn of(url: &str) -> Result<Self, ConnectError> {
        if url == "memory" {
            Ok(Self::Memory)
        } else if url.starts_with("sqlite:") {
            Ok(Self::Sqlite)
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Ok(Self::Postgres)
        } else {
            Err(ConnectError::UnsupportedUrl { url: redact(url) })
        }
    }
}

/// `url` with the password of its user info (`user:secret@host`) and of a
/// `password=` query parameter replaced by `***`: safe to print or log.
pub fn redact(url: &str) -> String {
    let mut redacted = url.to_owned();
    if let Some(scheme_end) = redacted.find("://") {
        let authority_start = scheme_end + 3;
        let authority_end = redacted[authority_start..]
            .find(['/', '?', '#'])
            .map_or(redacted.len(), |end| authority_start + end);
        let authority = &redacted[authority_start..authority_end];
        if let Some(at) = authority.rfind('@')
            && let Some(colon) = authority[..at].find(':')
        {
            redacted.replace_range(authority_start + colon + 1..authority_start + at, "***");
        }
    }
    if let Some(query_start) = redacted.find('?') {
        let mut query = String::new();
        for (index, pair) in redacted[query_start + 1..].split('&').enumerate() {
            if index > 0 {
                query.push('&');
            }
            match pair.split_once('=') {
                Some((name, _)) if name.eq_ignore_ascii_case("password") => {
                    query.push_str(name);
                    query.push_str("=***");
                }
                _ => query.push_str(pair),
            }
        }
        redacted.replace_range(query_start + 1.., &query);
    }
    redacted
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_name_their_backend() {
        assert_eq!(Backend::of("memory").unwrap(), Backend::Memory);
        for url in ["sqlite://bank.db", "sqlite:bank.db", "sqlite::memory:"] {
            assert_eq!(Backend::of(url).unwrap(), Backend::Sqlite, "{url}");
        }
        for url in ["postgres://localhost/app", "postgresql://u@h:5432/db"] {
            assert_eq!(Backend::of(url).unwrap(), Backend::Postgres, "{url}");
        }
        for url in [
            "",
            "bank.db",
            "Memory",
            "mysql://localhost/app",
            "postgres:app",
        ] {
            let error = Backend::of(url).unwrap_err();
            assert!(
                matches!(&error, ConnectError::UnsupportedUrl { url: given } if given == url),
                "{url}: {error:?}"
            );
            assert!(error.to_string().contains(ACCEPTED), "{error}");
        }
    }

    #[test]
    fn passwords_are_hidden() {
        for (url, shown) in [
            ("memory", "memory"),
            ("sqlite://data/bank.db", "sqlite://data/bank.db"),
            ("postgres://ada@db/bank", "postgres://ada@db/bank"),
            (
                "postgres://ada:s3cret@db:5432/bank",
                "postgres://ada:***@db:5432/bank",
            ),
            ("postgres://ada:p@ss@db/bank", "postgres://ada:***@db/bank"),
            (
                "postgresql://db/bank?user=ada&password=s3cret&sslmode=require",
                "postgresql://db/bank?user=ada&password=***&sslmode=require",
            ),
        ] {
            assert_eq!(redact(url), shown);
        }
        let options = ConnectOptions::new("postgres://ada:s3cret@db/bank");
        assert!(!format!("{options:?}").contains("s3cret"));
    }

    #[tokio::test]
    async fn zero_connections_is_refused_before_connecting() {
        let error = ConnectOptions::new("postgres://nowhere.invalid/app")
            .max_connections(0)
            .connect()
            .await
            .err()
            .expect("refused");
        assert!(
            matches!(error, ConnectError::InvalidOption(message) if message.contains("max_connections")),
            "{error:?}"
        );
    }

    #[cfg(not(feature = "postgres"))]
    #[tokio::test]
    async fn a_backend_left_out_of_the_build_is_named() {
        let error = connect("postgres://ada:s3cret@db/bank")
            .await
            .err()
            .expect("refused");
        assert!(
            matches!(&error, ConnectError::BackendNotBuilt { feature: "postgres", url } if !url.contains("s3cret")),
            "{error:?}"
        );
        assert!(error.to_string().contains("`postgres` feature"), "{error}");
    }

    #[cfg(not(feature = "sqlite"))]
    #[tokio::test]
    async fn sqlite_left_out_of_the_build_is_named() {
        let error = connect("sqlite://bank.db").await.err().expect("refused");
        assert!(
            matches!(
                &error,
                ConnectError::BackendNotBuilt {
                    feature: "sqlite",
                    ..
                }
            ),
            "{error:?}"
        );
    }
}

//! The deposit service a careful author writes without a framework: axum and
//! sqlx, one state row per account, one event row per change. It is the
//! baseline `scripts/load-bench` measures the bank against.
//!
//! ```sh
//! cargo run --release -p allframe-tests --bin handwritten -- \
//!     --addr 127.0.0.1:3001 --database-url sqlite://handwritten.db   # or postgres://…
//! ```
//!
//! - `POST /accounts` `{"account_id": "a1", "initial_deposit": 0}`: 201, 409
//!   when the account exists.
//! - `POST /deposit` `{"account_id": "a1", "amount": 5}`: 201
//!   `{"version": …, "balance": …}`, 404 for an unknown account, 422 for an
//!   amount outside 1..=1 000 000 000, a balance that would overflow or a
//!   closed account, 400 for a malformed body.
//! - `GET /health`: 200 once the database answers.
//!
//! Each deposit is one transaction: read the account's row (`SELECT … FOR
//! UPDATE` on PostgreSQL; SQLite's `BEGIN IMMEDIATE` takes the write lock up
//! front), check, update the row, insert the event, commit. It prints
//! `handwritten is serving on http://ADDR` once it listens and stops on
//! Ctrl-C or SIGTERM after in-flight requests finish.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::str::FromStr;
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use clap::Parser;
use serde::Deserialize;
use serde_json::json;
use sqlx::postgres::{PgPool, PgPoolOptions};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};

/// The largest amount one deposit (or an opening deposit) may carry.
const MAX_AMOUNT: u64 = 1_000_000_000;

/// The hand-written deposit service.
#[derive(Debug, Parser)]
#[command(name = "handwritten")]
struct Args {
    /// Where to listen (port 0 picks a free one; the line printed on start
    /// says which).
    #[arg(
        long,
        env = "HANDWRITTEN_ADDR",
        value_name = "HOST:PORT",
        default_value = "127.0.0.1:3001"
    )]
    addr: SocketAddr,
    /// The database: `sqlite://PATH` or `postgres://…`.
    #[arg(
        long,
        env = "HANDWRITTEN_DATABASE_URL",
        value_name = "URL",
        default_value = "sqlite://handwritten.db"
    )]
    database_url: String,
    /// Connections in the pool (default: 1 for SQLite, whose writers take
    /// turns on one lock anyway and only wait longer in its busy handler
    /// with more; 8 for PostgreSQL, the size of the framework's pool).
    #[arg(long, value_name = "N")]
    pool_size: Option<u32>,
}

/// The database the service writes to.
#[derive(Debug, Clone)]
enum Db {
    /// A SQLite file.
    Sqlite(SqlitePool),
    /// A PostgreSQL database.
    Postgres(PgPool),
}

/// The tables, for SQLite.
const SQLITE_SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS accounts (
    id TEXT PRIMARY KEY,
    balance BIGINT NOT NULL,
    version BIGINT NOT NULL,
    open BOOLEAN NOT NULL
);
CREATE TABLE IF NOT EXISTS events (
    position INTEGER PRIMARY KEY AUTOINCREMENT,
    stream_id TEXT NOT NULL,
    version BIGINT NOT NULL,
    event_type TEXT NOT NULL,
    data TEXT NOT NULL,
    recorded_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    UNIQUE (stream_id, version)
);";

/// The tables, for PostgreSQL.
const POSTGRES_SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS accounts (
    id TEXT PRIMARY KEY,
    balance BIGINT NOT NULL,
    version BIGINT NOT NULL,
    open BOOLEAN NOT NULL
);
CREATE TABLE IF NOT EXISTS events (
    position BIGSERIAL PRIMARY KEY,
    stream_id TEXT NOT NULL,
    version BIGINT NOT NULL,
    event_type TEXT NOT NULL,
    data TEXT NOT NULL,
    recorded_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    UNIQUE (stream_id, version)
);";

impl Db {
    /// Connects to `url` and creates the tables if they are missing.
    async fn connect(url: &str, pool_size: Option<u32>) -> Result<Self, sqlx::Error> {
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            let pool = PgPoolOptions::new()
                .max_connections(pool_size.unwrap_or(8))
                .connect(url)
                .await?;
            sqlx::raw_sql(POSTGRES_SCHEMA).execute(&pool).await?;
            Ok(Self::Postgres(pool))
        } else {
            // `synchronous = FULL`: every acknowledged commit survives power
            // loss. The framework's SQLite store runs FULL too, so the two
            // are compared like with like (NORMAL would be much faster).
            let options = SqliteConnectOptions::from_str(url)?
                .create_if_missing(true)
                .journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Full)
                .busy_timeout(Duration::from_secs(10));
            let pool = SqlitePoolOptions::new()
                .max_connections(pool_size.unwrap_or(1))
                .connect_with(options)
                .await?;
            sqlx::raw_sql(SQLITE_SCHEMA).execute(&pool).await?;
            Ok(Self::Sqlite(pool))
        }
    }

    /// Closes every connection (SQLite folds its WAL into the file).
    async fn close(&self) {
        match self {
            Self::Sqlite(pool) => pool.close().await,
            Self::Postgres(pool) => pool.close().await,
        }
    }
}

/// A request body that is not the JSON expected.
fn malformed(error: serde_json::Error) -> Response {
    refused(StatusCode::BAD_REQUEST, &format!("malformed body: {error}"))
}

/// An error answer: `status` with `{"error": message}`.
fn refused(status: StatusCode, message: &str) -> Response {
    (status, axum::Json(json!({ "error": message }))).into_response()
}

/// A database failure: logged, answered with an opaque 500.
fn failed(error: sqlx::Error) -> Response {
    eprintln!("handwritten: database error: {error}");
    refused(StatusCode::INTERNAL_SERVER_ERROR, "internal error")
}

/// The body of `POST /accounts`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Open {
    /// The new account's id.
    account_id: String,
    /// Money paid in on opening.
    #[serde(default)]
    initial_deposit: u64,
}

/// `POST /accounts`: opens an account (event `AccountOpened`, then
/// `MoneyDeposited` when the opening deposit is not zero).
async fn open_account(State(db): State<Db>, body: Bytes) -> Response {
    let open: Open = match serde_json::from_slice(&body) {
        Ok(open) => open,
        Err(error) => return malformed(error),
    };
    if open.account_id.is_empty() || open.account_id.len() > 100 {
        return refused(
            StatusCode::UNPROCESSABLE_ENTITY,
            "account_id must be 1 to 100 bytes",
        );
    }
    if open.initial_deposit > MAX_AMOUNT {
        return refused(
            StatusCode::UNPROCESSABLE_ENTITY,
            "initial_deposit must be at most 1000000000",
        );
    }
    let mut events = vec![("AccountOpened", json!({}).to_string())];
    if open.initial_deposit > 0 {
        events.push((
            "MoneyDeposited",
            json!({ "amount": open.initial_deposit }).to_string(),
        ));
    }
    let (balance, version) = (open.initial_deposit as i64, events.len() as i64);
    let outcome = match &db {
        Db::Sqlite(pool) => open_sqlite(pool, &open.account_id, balance, &events).await,
        Db::Postgres(pool) => open_postgres(pool, &open.account_id, balance, &events).await,
    };
    match outcome {
        Ok(()) => (
            StatusCode::CREATED,
            axum::Json(json!({ "version": version, "balance": balance })),
        )
            .into_response(),
        Err(error)
            if error
                .as_database_error()
                .is_some_and(|error| error.is_unique_violation()) =>
        {
            refused(StatusCode::CONFLICT, "the account already exists")
        }
        Err(error) => failed(error),
    }
}

/// Inserts a new account's row and its first events, on SQLite.
async fn open_sqlite(
    pool: &SqlitePool,
    id: &str,
    balance: i64,
    events: &[(&str, String)],
) -> Result<(), sqlx::Error> {
    let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
    sqlx::query("INSERT INTO accounts (id, balance, version, open) VALUES (?, ?, ?, TRUE)")
        .bind(id)
        .bind(balance)
        .bind(events.len() as i64)
        .execute(&mut *tx)
        .await?;
    for (version, (event_type, data)) in (1_i64..).zip(events) {
        sqlx::query(
            "INSERT INTO events (stream_id, version, event_type, data) VALUES (?, ?, ?, ?)",
        )
        .bind(id)
        .bind(version)
        .bind(*event_type)
        .bind(data)
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await
}

/// Inserts a new account's row and its first events, on PostgreSQL.
async fn open_postgres(
    pool: &PgPool,
    id: &str,
    balance: i64,
    events: &[(&str, String)],
) -> Result<(), sqlx::Error> {
    let mut tx = pool.begin().await?;
    sqlx::query("INSERT INTO accounts (id, balance, version, open) VALUES ($1, $2, $3, TRUE)")
        .bind(id)
        .bind(balance)
        .bind(events.len() as i64)
        .execute(&mut *tx)
        .await?;
    for (version, (event_type, data)) in (1_i64..).zip(events) {
        sqlx::query(
            "INSERT INTO events (stream_id, version, event_type, data) VALUES ($1, $2, $3, $4)",
        )
        .bind(id)
        .bind(version)
        .bind(*event_type)
        .bind(data)
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await
}

/// The body of `POST /deposit`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Deposit {
    /// The account.
    account_id: String,
    /// How much.
    amount: u64,
}

/// What a deposit came to.
#[derive(Debug)]
enum Deposited {
    /// Recorded: the account's new version and balance.
    Done {
        /// The account's version after the deposit.
        version: i64,
        /// Its balance after the deposit.
        balance: i64,
    },
    /// No such account.
    Unknown,
    /// The account is closed.
    Closed,
    /// The balance would pass `i64::MAX`.
    Overflow,
}

/// Checks a deposit of `amount` against an account's row: its new balance,
/// or why it is refused.
fn decide(balance: i64, open: bool, amount: i64) -> Result<i64, Deposited> {
    if !open {
        return Err(Deposited::Closed);
    }
    balance.checked_add(amount).ok_or(Deposited::Overflow)
}

/// `POST /deposit`: pays money in, in one transaction.
async fn deposit(State(db): State<Db>, body: Bytes) -> Response {
    let deposit: Deposit = match serde_json::from_slice(&body) {
        Ok(deposit) => deposit,
        Err(error) => return malformed(error),
    };
    if !(1..=MAX_AMOUNT).contains(&deposit.amount) {
        return refused(
            StatusCode::UNPROCESSABLE_ENTITY,
            "amount must be between 1 and 1000000000",
        );
    }
    let amount = deposit.amount as i64;
    let data = json!({ "amount": amount }).to_string();
    let outcome = match &db {
        Db::Sqlite(pool) => deposit_sqlite(pool, &deposit.account_id, amount, &data).await,
        Db::Postgres(pool) => deposit_postgres(pool, &deposit.account_id, amount, &data).await,
    };
    match outcome {
        Ok(Deposited::Done { version, balance }) => (
            StatusCode::CREATED,
            axum::Json(json!({ "version": version, "balance": balance })),
        )
            .into_response(),
        Ok(Deposited::Unknown) => refused(StatusCode::NOT_FOUND, "no such account"),
        Ok(Deposited::Closed) => refused(StatusCode::UNPROCESSABLE_ENTITY, "the account is closed"),
        Ok(Deposited::Overflow) => refused(
            StatusCode::UNPROCESSABLE_ENTITY,
            "the balance would overflow",
        ),
        Err(error) => failed(error),
    }
}

/// One deposit on SQLite. `BEGIN IMMEDIATE` takes the write lock before the
/// row is read, so no other writer can change it between read and update.
async fn deposit_sqlite(
    pool: &SqlitePool,
    id: &str,
    amount: i64,
    data: &str,
) -> Result<Deposited, sqlx::Error> {
    let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
    let row: Option<(i64, i64, bool)> =
        sqlx::query_as("SELECT balance, version, open FROM accounts WHERE id = ?")
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?;
    // Returning early drops the transaction, which rolls it back.
    let Some((balance, version, open)) = row else {
        return Ok(Deposited::Unknown);
    };
    let balance = match decide(balance, open, amount) {
        Ok(balance) => balance,
        Err(refusal) => return Ok(refusal),
    };
    let version = version + 1;
    sqlx::query("UPDATE accounts SET balance = ?, version = ? WHERE id = ?")
        .bind(balance)
        .bind(version)
        .bind(id)
        .execute(&mut *tx)
        .await?;
    sqlx::query(
        "INSERT INTO events (stream_id, version, event_type, data) VALUES (?, ?, 'MoneyDeposited', ?)",
    )
    .bind(id)
    .bind(version)
    .bind(data)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(Deposited::Done { version, balance })
}

/// One deposit on PostgreSQL. `FOR UPDATE` locks the account's row until
/// the commit, so concurrent deposits on it queue instead of conflicting.
async fn deposit_postgres(
    pool: &PgPool,
    id: &str,
    amount: i64,
    data: &str,
) -> Result<Deposited, sqlx::Error> {
    let mut tx = pool.begin().await?;
    let row: Option<(i64, i64, bool)> =
        sqlx::query_as("SELECT balance, version, open FROM accounts WHERE id = $1 FOR UPDATE")
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?;
    // Returning early drops the transaction, which rolls it back.
    let Some((balance, version, open)) = row else {
        return Ok(Deposited::Unknown);
    };
    let balance = match decide(balance, open, amount) {
        Ok(balance) => balance,
        Err(refusal) => return Ok(refusal),
    };
    let version = version + 1;
    sqlx::query("UPDATE accounts SET balance = $1, version = $2 WHERE id = $3")
        .bind(balance)
        .bind(version)
        .bind(id)
        .execute(&mut *tx)
        .await?;
    sqlx::query(
        "INSERT INTO events (stream_id, version, event_type, data) VALUES ($1, $2, 'MoneyDeposited', $3)",
    )
    .bind(id)
    .bind(version)
    .bind(data)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(Deposited::Done { version, balance })
}

/// `GET /health`: 200 when the database answers a query.
async fn health(State(db): State<Db>) -> Response {
    let checked = match &db {
        Db::Sqlite(pool) => sqlx::query("SELECT 1").execute(pool).await.map(drop),
        Db::Postgres(pool) => sqlx::query("SELECT 1").execute(pool).await.map(drop),
    };
    match checked {
        Ok(()) => axum::Json(json!({ "status": "ok" })).into_response(),
        Err(error) => failed(error),
    }
}

/// Resolves on Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = terminate => {}
    }
}

/// Connects, listens and serves until a shutdown signal.
async fn serve(args: Args) -> Result<(), Box<dyn std::error::Error>> {
    let db = Db::connect(&args.database_url, args.pool_size).await?;
    let app = Router::new()
        .route("/accounts", post(open_account))
        .route("/deposit", post(deposit))
        .route("/health", get(health))
        .with_state(db.clone());
    let listener = tokio::net::TcpListener::bind(args.addr).await?;
    println!(
        "handwritten is serving on http://{}",
        listener.local_addr()?
    );
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown_signal())
        .await?;
    db.close().await;
    println!("handwritten stopped");
    Ok(())
}

/// Parses the flags and serves; a failure is printed and exits with 1.
#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    match serve(args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("handwritten: {error}");
            ExitCode::FAILURE
        }
    }
}

/// The checks that need no database.
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deposits_are_checked_against_the_row() {
        assert_eq!(decide(10, true, 5).ok(), Some(15));
        assert!(matches!(decide(10, false, 5), Err(Deposited::Closed)));
        assert!(matches!(
            decide(i64::MAX - 1, true, 2),
            Err(Deposited::Overflow)
        ));
    }
}

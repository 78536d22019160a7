//! Shared set-up for the workspace integration tests.
//!
//! PostgreSQL tests use the server at `ALLFRAME_TEST_POSTGRES_URL`
//! (default `postgres://postgres@127.0.0.1:5432/test`), each store in a
//! schema of its own so parallel tests and parallel runs never collide.
//! When the server cannot be reached the tests are skipped with a message on
//! stderr — unless `CI=true`, where that is a failure.

pub mod bench;
pub mod faulty;
pub mod server;
pub mod tokens;

use std::io::Write;
use std::str::FromStr;
use std::time::{SystemTime, UNIX_EPOCH};

use allframe::store::PostgresStore;
use sqlx::postgres::PgConnectOptions;

pub mod crash;

/// Where the PostgreSQL tests connect.
pub fn postgres_url() -> String {
    std::env::var("ALLFRAME_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned())
}

/// Connection options for [`postgres_url`], or `None` (after saying why)
/// when the server is unreachable outside CI.
pub async fn postgres_options() -> Option<PgConnectOptions> {
    let url = postgres_url();
    let options = PgConnectOptions::from_str(&url).expect("ALLFRAME_TEST_POSTGRES_URL parses");
    match sqlx::PgPool::connect_with(options.clone()).await {
        Ok(pool) => {
            drop_stale_schemas(&pool).await;
            pool.close().await;
            Some(options)
        }
        Err(error) if std::env::var("CI").as_deref() == Ok("true") => {
            panic!("PostgreSQL at {url} is unreachable and CI=true: {error}")
        }
        Err(error) => {
            // Written to stderr directly, past the test harness's capture,
            // so a skipped run is impossible to miss.
            let _ = writeln!(
                std::io::stderr(),
                "\n*** SKIPPED: PostgreSQL test — cannot reach {url}: {error}. \
                 Start PostgreSQL (see .ci/run) to run it. ***\n"
            );
            None
        }
    }
}

/// A schema name no other test or run uses; it starts with the current time
/// so leftovers of killed runs can be recognised and dropped.
pub fn fresh_schema() -> String {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs();
    format!("allframe_test_{secs}_{}", uuid::Uuid::now_v7().simple())
}

/// A fresh PostgreSQL store in its own schema, or `None` when skipped.
pub async fn postgres_store() -> Option<PostgresStore> {
    postgres_store_in(&fresh_schema(), allframe::store::DEFAULT_MAX_BATCH).await
}

/// A PostgreSQL store in `schema` (created if missing), or `None` when
/// skipped.
pub async fn postgres_store_in(schema: &str, max_batch: usize) -> Option<PostgresStore> {
    let options = postgres_options().await?;
    Some(
        PostgresStore::connect_with(options, Some(schema), max_batch)
            .await
            .expect("open the PostgreSQL store"),
    )
}

/// The store a crash test's child process works on, from its arguments:
/// `sqlite PATH` or `postgres SCHEMA` (16 appends per group commit, like
/// the parent's). Panics on anything else: the parent wrote them.
pub async fn child_store(backend: &str, place: &str) -> std::sync::Arc<dyn allframe::EventStore> {
    match backend {
        "sqlite" => std::sync::Arc::new(
            allframe::store::SqliteStore::open(place)
                .await
                .expect("open SQLite"),
        ),
        "postgres" => {
            let options = postgres_options().await.expect("PostgreSQL is reachable");
            std::sync::Arc::new(
                PostgresStore::connect_with(options, Some(place), 16)
                    .await
                    .expect("open PostgreSQL"),
            )
        }
        other => panic!("unknown backend {other}"),
    }
}

/// Drops test schemas more than an hour old, left by runs that were killed
/// before they could clean up.
async fn drop_stale_schemas(pool: &sqlx::PgPool) {
    let cutoff = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs()
        - 3600;
    let schemas: Vec<String> = sqlx::query_scalar(
        "SELECT nspname FROM pg_namespace WHERE nspname LIKE 'allframe\\_test\\_%'",
    )
    .fetch_all(pool)
    .await
    .unwrap_or_default();
    for schema in schemas {
        let created = schema
            .split('_')
            .nth(2)
            .and_then(|secs| secs.parse::<u64>().ok());
        if created.is_some_and(|secs| secs < cutoff) {
            let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
                "DROP SCHEMA IF EXISTS \"{schema}\" CASCADE"
            )))
            .execute(pool)
            .await;
        }
    }
}

/// A response read off a real socket.
#[derive(Debug)]
pub struct RawResponse {
    /// The status code.
    pub status: u16,
    /// Header names (lowercase) and values, in order.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Vec<u8>,
}

impl RawResponse {
    /// The first value of a header.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Sends one HTTP/1.1 request over a fresh TCP connection and reads the
/// whole response (`Connection: close`), so tests talk to a real socket.
pub async fn http_request(
    addr: std::net::SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> RawResponse {
    try_http_request(addr, method, path, headers, body)
        .await
        .expect("a complete exchange")
}

/// Follows the saga instance at `location` (`/sagas/{name}/{id}`), with
/// `authorization` as that header if given, until it has ended, and returns
/// its view; panics after 30 s.
pub async fn saga_ended(
    addr: std::net::SocketAddr,
    location: &str,
    authorization: Option<&str>,
) -> serde_json::Value {
    let headers: Vec<(&str, &str)> = authorization
        .map(|value| ("authorization", value))
        .into_iter()
        .collect();
    for _ in 0..1_500 {
        let response = http_request(addr, "GET", location, &headers, b"").await;
        assert_eq!(response.status, 200, "GET {location}");
        let view: serde_json::Value = serde_json::from_slice(&response.body).unwrap();
        if view["status"] != "running" {
            return view;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    panic!("{location} did not end within 30 s");
}

/// [`http_request`], failing instead of panicking when the connection
/// fails or breaks before a complete response (a server killed mid-way).
pub async fn try_http_request(
    addr: std::net::SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> std::io::Result<RawResponse> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await?;
    let mut request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes()).await?;
    stream.write_all(body).await?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await?;
    let incomplete =
        || std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "an incomplete response");
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(incomplete)?;
    let head = String::from_utf8(raw[..split].to_vec()).map_err(|_| incomplete())?;
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|line| line.split(' ').nth(1))
        .and_then(|code| code.parse().ok())
        .ok_or_else(incomplete)?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let mut body = raw[split + 4..].to_vec();
    if headers
        .iter()
        .any(|(n, v)| n == "transfer-encoding" && v.contains("chunked"))
    {
        body = dechunk(&body);
    }
    Ok(RawResponse {
        status,
        headers,
        body,
    })
}

fn dechunk(mut raw: &[u8]) -> Vec<u8> {
    let mut body = Vec::new();
    loop {
        let end = raw
            .windows(2)
            .position(|w| w == b"\r\n")
            .expect("chunk size line");
        let size = usize::from_str_radix(std::str::from_utf8(&raw[..end]).expect("hex").trim(), 16)
            .expect("chunk size");
        if size == 0 {
            return body;
        }
        body.extend_from_slice(&raw[end + 2..end + 2 + size]);
        raw = &raw[end + 2 + size + 2..];
    }
}

/// A server process started by [`spawn_listening`]; killed (and reaped)
/// when dropped.
pub struct Listening {
    /// The process.
    pub child: std::process::Child,
    /// Where it listens.
    pub addr: std::net::SocketAddr,
}

impl Drop for Listening {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `program` with `args`, a server that prints
/// `listening on http://ADDR` first (like `bank_node`). The rest of its
/// output is read and dropped.
pub fn spawn_listening(program: &str, args: &[&str]) -> Listening {
    use std::io::BufRead;

    let mut child = std::process::Command::new(program)
        .args(args)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("the server starts");
    let mut lines = std::io::BufReader::new(child.stdout.take().expect("its output")).lines();
    let first = lines.next().expect("a line").expect("text");
    let addr = first
        .strip_prefix("listening on http://")
        .unwrap_or_else(|| panic!("the address in {first:?}"))
        .parse()
        .expect("an address");
    std::thread::spawn(move || for _ in lines {});
    Listening { child, addr }
}

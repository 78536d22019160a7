//! The bank service: `cargo run -p bank [-- --addr HOST:PORT] [--database-url URL]`.
//!
//! `URL` is `sqlite://PATH` (default `sqlite://bank.db`), `postgres://…` or
//! `memory`. Ctrl-C or SIGTERM stops it after in-flight requests finish; live
//! event streams are closed first (WebSocket close code 1001).

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;

use allframe::EventStore;
use allframe::store::{MemoryStore, PostgresStore, SqliteStore};
use tower_http::trace::TraceLayer;

const USAGE: &str =
    "usage: bank [--addr HOST:PORT] [--database-url sqlite://PATH|postgres://...|memory]";

#[derive(Debug)]
struct Args {
    addr: SocketAddr,
    database_url: String,
}

fn parse_args(mut args: impl Iterator<Item = String>) -> Result<Args, String> {
    let mut parsed = Args {
        addr: SocketAddr::from(([127, 0, 0, 1], 3000)),
        database_url: "sqlite://bank.db".to_owned(),
    };
    while let Some(flag) = args.next() {
        let mut value = |name: &str| args.next().ok_or(format!("{name} needs a value"));
        match flag.as_str() {
            "--addr" => {
                let addr = value("--addr")?;
                parsed.addr = addr.parse().map_err(|_| {
                    format!("--addr must be HOST:PORT, like 127.0.0.1:3000 (got {addr})")
                })?;
            }
            "--database-url" => parsed.database_url = value("--database-url")?,
            "-h" | "--help" => return Err(String::new()),
            other => return Err(format!("unknown argument {other}")),
        }
    }
    Ok(parsed)
}

async fn open_store(url: &str) -> Result<Arc<dyn EventStore>, allframe::StoreError> {
    Ok(if url == "memory" {
        Arc::new(MemoryStore::new())
    } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        Arc::new(PostgresStore::connect(url).await?)
    } else {
        Arc::new(SqliteStore::connect(url).await?)
    })
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,tower_http=info".into()),
        )
        .init();
    let args = match parse_args(std::env::args().skip(1)) {
        Ok(args) => args,
        Err(message) => {
            if !message.is_empty() {
                eprintln!("{message}");
            }
            eprintln!("{USAGE}");
            return if message.is_empty() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(2)
            };
        }
    };
    match serve(args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("bank: {error}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(args: Args) -> Result<(), Box<dyn std::error::Error>> {
    let store = open_store(&args.database_url).await?;
    // Also starts every projection (the bank's `accounts`).
    let app = bank::app(&*store).build().await?;
    let router = app.router().layer(TraceLayer::new_for_http());
    let listener = tokio::net::TcpListener::bind(args.addr).await?;
    let addr = listener.local_addr()?;
    println!(
        "bank is serving on http://{addr}  (events in {})",
        args.database_url
    );
    println!(
        "  commands: POST http://{addr}/commands/{{open-account,deposit,withdraw,close-account}}"
    );
    println!("  docs:     http://{addr}/docs  (OpenAPI: http://{addr}/openapi.json)");
    println!("  events:   ws://{addr}/events/ws?after=0  ·  GET http://{addr}/events/sse?after=0");
    println!(
        "  reads:    GET  http://{addr}/projections/accounts[/{{account_id}}]  ·  GET http://{addr}/queries/accounts-over?min_balance=0"
    );
    println!("  admin:    GET  http://{addr}/admin/projections");
    println!("  health:   GET  http://{addr}/health");
    println!(
        "  projections running: {}",
        app.projections().names().join(", ")
    );
    // axum does not track upgraded WebSockets, and waits for SSE responses
    // to end: close the event streams before it finishes shutting down.
    let streams = app.clone();
    axum::serve(listener, router)
        .with_graceful_shutdown(async move {
            shutdown().await;
            streams.shutdown().await;
        })
        .await?;
    // Nothing is served any more: stop the projections and close the
    // database (SQLite folds its WAL back into the file).
    app.close().await;
    println!("bank stopped");
    Ok(())
}

/// Resolves on Ctrl-C or SIGTERM.
async fn shutdown() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = terminate => {}
    }
    println!("bank is shutting down");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Result<Args, String> {
        parse_args(list.iter().map(|s| s.to_string()))
    }

    #[test]
    fn flags_parse_and_bad_ones_are_explained() {
        let parsed = args(&[]).unwrap();
        assert_eq!(parsed.addr.to_string(), "127.0.0.1:3000");
        assert_eq!(parsed.database_url, "sqlite://bank.db");
        let parsed = args(&["--addr", "0.0.0.0:8080", "--database-url", "memory"]).unwrap();
        assert_eq!(
            (parsed.addr.port(), parsed.database_url.as_str()),
            (8080, "memory")
        );
        assert!(args(&["--addr", "nope"]).unwrap_err().contains("HOST:PORT"));
        assert!(args(&["--addr"]).unwrap_err().contains("needs a value"));
        assert!(
            args(&["--verbose"])
                .unwrap_err()
                .contains("unknown argument")
        );
    }
}

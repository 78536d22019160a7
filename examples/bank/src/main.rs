//! The bank service: `cargo run -p bank [-- --addr HOST:PORT] [--database-url URL] [--jwt-secret SECRET]`.
//! Built with `--features otlp`, it exports its spans to the OpenTelemetry
//! collector `OTEL_EXPORTER_OTLP_ENDPOINT` names.
//!
//! `URL` is `sqlite://PATH` (default `sqlite://bank.db`), `postgres://…` or
//! `memory`. Ctrl-C or SIGTERM stops it after in-flight requests finish; live
//! event streams are closed first (WebSocket close code 1001).

use std::net::SocketAddr;
use std::process::ExitCode;

use clap::Parser;
use tower_http::trace::TraceLayer;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

/// jemalloc rather than the system's allocator: a long-running service's
/// memory stays flat after peaks (a projection rebuild) instead of
/// creeping up with every one (see README, "Security", the soak).
#[cfg(not(target_env = "msvc"))]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// The AllFrame reference service: bank accounts, event-sourced.
#[derive(Debug, Parser)]
#[command(name = "bank", version)]
struct Args {
    /// Where to listen.
    #[arg(
        long,
        env = "BANK_ADDR",
        value_name = "HOST:PORT",
        default_value = "127.0.0.1:3000"
    )]
    addr: SocketAddr,
    /// The event store: `sqlite://PATH`, `postgres://…`, `memory`, or,
    /// built with the `allsource` feature, `allsource://DIR`.
    #[arg(
        long,
        env = "BANK_DATABASE_URL",
        value_name = "URL",
        default_value = "sqlite://bank.db"
    )]
    database_url: String,
    /// How long a transfer's step (its withdrawal, its deposit) may go
    /// unanswered before the transfer is rejected or paid back.
    #[arg(
        long,
        env = "BANK_TRANSFER_STEP_TIMEOUT",
        value_name = "SECONDS",
        default_value_t = 30
    )]
    transfer_step_timeout: u64,
    /// This node's id among the bank nodes sharing one PostgreSQL database
    /// (default: host name and process id).
    #[arg(long, env = "BANK_NODE_ID", value_name = "ID")]
    node_id: Option<String>,
    /// How long this node's leases on projections and sagas last unless
    /// renewed: how soon another node takes them over after this one dies.
    #[arg(
        long,
        env = "BANK_LEASE_TTL",
        value_name = "SECONDS",
        default_value_t = 10,
        value_parser = clap::value_parser!(u64).range(1..)
    )]
    lease_ttl: u64,
    /// On PostgreSQL, do not notify other nodes of commits nor listen for
    /// theirs (behind a connection pooler in transaction mode); they are
    /// then seen at the next poll.
    #[arg(long, env = "BANK_NO_NOTIFICATIONS")]
    no_notifications: bool,
    /// Callers sign in with HS256 bearer tokens (`sub`, `exp`, optional
    /// `roles`) made with this secret (at least 32 bytes), and the bank's
    /// rules apply (see `bank::rules`). Without it, the bank is open to
    /// anyone who can reach it.
    #[arg(long, env = "BANK_JWT_SECRET", value_name = "SECRET", hide_env_values = true, value_parser = secret)]
    jwt_secret: Option<String>,
}

/// A token secret long enough for HS256.
fn secret(value: &str) -> Result<String, String> {
    match value.len() >= bank::rules::MIN_SECRET_BYTES {
        true => Ok(value.to_owned()),
        false => Err(format!(
            "a secret of {} bytes is too short to sign tokens with: use at least {}",
            value.len(),
            bank::rules::MIN_SECRET_BYTES
        )),
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    // Logs go to stderr; stdout says where the bank serves.
    let logs = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| "info,tower_http=info".into());
    let subscriber = tracing_subscriber::registry().with(filter).with(logs);
    #[cfg(feature = "otlp")]
    // Exports only where a collector is named (OTEL_EXPORTER_OTLP_ENDPOINT).
    let otlp = match allframe::telemetry::Otlp::from_env_if_named("bank") {
        Ok(otlp) => otlp,
        Err(error) => {
            eprintln!("bank: {error}");
            return ExitCode::FAILURE;
        }
    };
    #[cfg(feature = "otlp")]
    let subscriber = subscriber.with(otlp.as_ref().map(|otlp| otlp.layer()));
    subscriber.init();
    let served = serve(args).await;
    #[cfg(feature = "otlp")]
    if let Some(otlp) = otlp {
        // The last spans, sent before the process ends.
        let flushed = tokio::task::spawn_blocking(move || otlp.shutdown()).await;
        if let Ok(Err(error)) = flushed {
            eprintln!("bank: {error}");
        }
    }
    match served {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("bank: {error}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(args: Args) -> Result<(), Box<dyn std::error::Error>> {
    let store = open_store(&args).await?;
    // Also starts every projection (the bank's `accounts`).
    let mut app = bank::app(&*store)
        .saga_step_timeout(std::time::Duration::from_secs(args.transfer_step_timeout))
        .lease_ttl(std::time::Duration::from_secs(args.lease_ttl));
    if let Some(id) = &args.node_id {
        app = app.node_id(id);
    }
    let signing_in = args.jwt_secret.is_some();
    if let Some(secret) = &args.jwt_secret {
        app = bank::rules::secured(app, &*store, secret.as_bytes());
    }
    let app = app.build().await?;
    let listener = tokio::net::TcpListener::bind(args.addr).await?;
    let addr = listener.local_addr()?;
    // Listens for Ctrl-C and SIGTERM from here on, before it says it is up.
    let server = app
        .serve(listener)
        .map_router(|router| router.layer(TraceLayer::new_for_http()));
    println!(
        "bank is serving on http://{addr}  (events in {})",
        allframe::store::redact(&args.database_url)
    );
    println!(
        "  commands: POST http://{addr}/commands/{{open-account,deposit,withdraw,close-account,transfer-money}}"
    );
    println!("  sagas:    GET  http://{addr}/sagas/transfer-money/{{saga_id}}");
    println!("  docs:     http://{addr}/docs  (OpenAPI: http://{addr}/openapi.json)");
    println!("  events:   ws://{addr}/events/ws?after=0  ·  GET http://{addr}/events/sse?after=0");
    println!(
        "  reads:    GET  http://{addr}/projections/accounts[/{{account_id}}]  ·  GET http://{addr}/queries/accounts-over?min_balance=0"
    );
    println!("  admin:    GET  http://{addr}/admin/projections");
    println!(
        "  health:   GET  http://{addr}/health  (node {})",
        app.node().id()
    );
    println!(
        "  projections running: {}",
        app.projections().names().join(", ")
    );
    match signing_in {
        true => println!("  access:   bearer tokens (HS256) and the bank's rules"),
        false => println!(
            "  access:   OPEN to anyone who can reach it (no --jwt-secret / BANK_JWT_SECRET)"
        ),
    }
    server.await?;
    println!("bank stopped");
    Ok(())
}

/// The store `--database-url` names.
async fn open_store(
    args: &Args,
) -> Result<std::sync::Arc<dyn allframe::EventStore>, Box<dyn std::error::Error>> {
    if let Some(dir) = args.database_url.strip_prefix(ALLSOURCE) {
        #[cfg(feature = "allsource")]
        return Ok(std::sync::Arc::new(
            allframe_allsource::AllSourceStore::open(dir).await?,
        ));
        #[cfg(not(feature = "allsource"))]
        return Err(format!(
            "{ALLSOURCE}{dir}: this bank was built without AllSource; build it with `--features allsource`"
        )
        .into());
    }
    Ok(allframe::store::ConnectOptions::new(&args.database_url)
        .notifications(!args.no_notifications)
        .connect()
        .await?)
}

/// The scheme of the AllSource backend's URLs.
const ALLSOURCE: &str = "allsource://";

#[cfg(test)]
mod tests {
    use clap::CommandFactory;
    use clap::error::ErrorKind;

    use super::*;

    fn args(list: &[&str]) -> Result<Args, clap::Error> {
        Args::try_parse_from(std::iter::once("bank").chain(list.iter().copied()))
    }

    #[test]
    fn flags_parse_and_bad_ones_are_explained() {
        Args::command().debug_assert();
        // No flags: the defaults (unless BANK_ADDR / BANK_DATABASE_URL are
        // set in the environment of the test run).
        if std::env::var_os("BANK_ADDR").is_none()
            && std::env::var_os("BANK_DATABASE_URL").is_none()
        {
            let parsed = args(&[]).unwrap();
            assert_eq!(parsed.addr.to_string(), "127.0.0.1:3000");
            assert_eq!(parsed.database_url, "sqlite://bank.db");
        }
        let parsed = args(&["--transfer-step-timeout", "5"]).unwrap();
        assert_eq!(parsed.transfer_step_timeout, 5);
        let parsed = args(&["--node-id", "web-2", "--lease-ttl", "3"]).unwrap();
        assert_eq!(
            (parsed.node_id.as_deref(), parsed.lease_ttl),
            (Some("web-2"), 3)
        );
        assert!(args(&["--no-notifications"]).unwrap().no_notifications);
        let long = "s".repeat(bank::rules::MIN_SECRET_BYTES);
        let parsed = args(&["--jwt-secret", &long]).unwrap();
        assert_eq!(parsed.jwt_secret.as_deref(), Some(long.as_str()));
        let error = args(&["--jwt-secret", "short"]).unwrap_err();
        assert_eq!(error.kind(), ErrorKind::ValueValidation, "{error}");
        assert!(error.to_string().contains("too short"), "{error}");
        let error = args(&["--lease-ttl", "0"]).unwrap_err();
        assert_eq!(error.kind(), ErrorKind::ValueValidation, "{error}");
        let parsed = args(&["--addr", "0.0.0.0:8080", "--database-url", "memory"]).unwrap();
        assert_eq!(
            (parsed.addr.port(), parsed.database_url.as_str()),
            (8080, "memory")
        );
        let error = args(&["--addr", "nope"]).unwrap_err();
        assert_eq!(error.kind(), ErrorKind::ValueValidation);
        assert!(error.to_string().contains("HOST:PORT"), "{error}");
        let error = args(&["--addr"]).unwrap_err();
        assert_eq!(error.kind(), ErrorKind::InvalidValue, "{error}");
        let error = args(&["--verbose"]).unwrap_err();
        assert_eq!(error.kind(), ErrorKind::UnknownArgument, "{error}");
        assert_eq!(
            args(&["--help"]).unwrap_err().kind(),
            ErrorKind::DisplayHelp
        );
    }
}

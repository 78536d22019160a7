//! The bank served on a real loopback socket, for tests that need real
//! clients (WebSockets, server-sent events).

use std::net::SocketAddr;
use std::time::Duration;

use allframe::{App, EventStore, EventStreamConfig};

/// How long anything that should happen may take on a busy machine.
pub const PATIENCE: Duration = Duration::from_secs(30);

/// A running bank; dropping it stops serving.
pub struct Server {
    /// Where it listens.
    pub addr: SocketAddr,
    /// The app it serves.
    pub app: App,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Serves the bank over `store` on a free port of 127.0.0.1.
pub async fn serve_bank(store: &dyn EventStore, config: EventStreamConfig) -> Server {
    serve(bank::app(store).events(config).build().await.unwrap()).await
}

/// Serves `app` on a free port of 127.0.0.1.
pub async fn serve(app: App) -> Server {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let router = app.router();
    let task = tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    Server { addr, app, task }
}

/// An app served over a SQLite file of its own, removed when this is
/// dropped.
pub struct OnSqlite {
    /// The running app.
    pub server: Server,
    /// Its store.
    pub store: allframe::store::SqliteStore,
    _dir: tempfile::TempDir,
}

/// Opens a SQLite file in a fresh directory and serves what `build` makes
/// of it (`bank::app(store)`, say, with hooks of the test's own).
pub async fn serve_on_sqlite(
    build: impl FnOnce(&allframe::store::SqliteStore) -> allframe::AppBuilder,
) -> OnSqlite {
    let dir = tempfile::tempdir().unwrap();
    let store = allframe::store::SqliteStore::open(dir.path().join("bank.db"))
        .await
        .unwrap();
    let app = build(&store).build().await.unwrap();
    OnSqlite {
        server: serve(app).await,
        store,
        _dir: dir,
    }
}

//! Serving an app: axum's server with the shutdown an event-sourced service
//! needs. When the signal fires the live event streams are closed first
//! (axum does not track upgraded WebSockets, and waits for SSE responses to
//! end), requests in flight finish, and once nothing is served the
//! projections stop and the store closes (SQLite folds its WAL back).

use std::fmt;
use std::future::{Future, IntoFuture};
use std::io;

use axum::Router;
use axum::serve::Listener;
use futures_util::future::BoxFuture;

use crate::app::App;

impl App {
    /// Serves the app's [router](App::router) on `listener` (a
    /// `tokio::net::TcpListener`, a `UnixListener`, any axum
    /// [`Listener`]) until Ctrl-C or SIGTERM, then shuts down gracefully:
    /// [`App::shutdown`], in-flight requests finish, then [`App::close`].
    /// Await the returned [`Serve`]; it resolves once the store is closed.
    ///
    /// Called inside a Tokio runtime, it listens for the signals at once,
    /// so one sent as soon as the caller says it is ready is not missed.
    ///
    /// ```no_run
    /// # async fn run(app: allframe::App) -> std::io::Result<()> {
    /// let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
    /// app.serve(listener).await?;
    /// # Ok(()) }
    /// ```
    pub fn serve<L>(&self, listener: L) -> Serve<L> {
        self.serve_until(listener, shutdown_signal())
    }

    /// [`App::serve`], shutting down when `signal` resolves instead of on
    /// Ctrl-C or SIGTERM (for tests, or a service with a signal of its
    /// own); it listens for no process signal.
    ///
    /// ```no_run
    /// # async fn run(app: allframe::App, listener: tokio::net::TcpListener) -> std::io::Result<()> {
    /// let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    /// let server = tokio::spawn(
    ///     app.serve_until(listener, async move {
    ///         let _ = stopped.await;
    ///     })
    ///     .into_future(),
    /// );
    /// // …
    /// let _ = stop.send(());
    /// server.await.expect("the server task")?;
    /// # Ok(()) }
    /// ```
    pub fn serve_until<L, F>(&self, listener: L, signal: F) -> Serve<L>
    where
        F: Future<Output = ()> + Send + 'static,
    {
        Serve {
            app: self.clone(),
            listener,
            router: self.router(),
            signal: Box::pin(signal),
        }
    }
}

/// An app being served: built by [`App::serve`] or [`App::serve_until`],
/// run by `.await`ing it (the output is axum's `io::Result<()>`).
#[must_use = "nothing is served until it is awaited"]
pub struct Serve<L> {
    app: App,
    listener: L,
    router: Router,
    signal: BoxFuture<'static, ()>,
}

impl<L> Serve<L> {
    /// Changes the router before it is served, typically to wrap it in a
    /// tower layer: `.map_router(|router| router.layer(TraceLayer::new_for_http()))`.
    pub fn map_router(mut self, change: impl FnOnce(Router) -> Router) -> Self {
        self.router = change(self.router);
        self
    }
}

impl<L> IntoFuture for Serve<L>
where
    L: Listener,
    L::Addr: fmt::Debug,
{
    type Output = io::Result<()>;
    type IntoFuture = BoxFuture<'static, io::Result<()>>;

    fn into_future(self) -> Self::IntoFuture {
        let Self {
            app,
            listener,
            router,
            signal,
        } = self;
        Box::pin(async move {
            let streams = app.clone();
            // Served as it is, the router would be copied for each
            // connection (every route through every layer, held while the
            // connection is open), so memory would grow with the
            // connections open at once. Routes `map_router` added are
            // made ready here, once.
            let router = router.with_state::<()>(()).into_make_service();
            let served = axum::serve(listener, router)
                .with_graceful_shutdown(async move {
                    signal.await;
                    tracing::info!("shutting down: closing event streams, finishing requests");
                    streams.shutdown().await;
                })
                .await;
            // Nothing is served any more, whatever the server's outcome.
            app.close().await;
            served
        })
    }
}

impl<L> fmt::Debug for Serve<L> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Serve")
            .field("app", &self.app)
            .finish_non_exhaustive()
    }
}

/// Resolves on Ctrl-C or (on Unix) SIGTERM. Inside a Tokio runtime it
/// listens from this call on, elsewhere from its first poll. A signal that
/// cannot be listened for never fires; the other still does.
fn shutdown_signal() -> impl Future<Output = ()> + Send + 'static {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{Signal, SignalKind, signal};

        fn listen() -> [Option<Signal>; 2] {
            [SignalKind::interrupt(), SignalKind::terminate()].map(|kind| signal(kind).ok())
        }
        async fn fired(signal: Option<Signal>) {
            match signal {
                Some(mut signal) => {
                    signal.recv().await;
                }
                None => std::future::pending().await,
            }
        }
        let early = tokio::runtime::Handle::try_current().is_ok().then(listen);
        async move {
            let [interrupt, terminate] = early.unwrap_or_else(listen);
            tokio::select! {
                () = fired(interrupt) => {}
                () = fired(terminate) => {}
            }
        }
    }
    #[cfg(not(unix))]
    async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

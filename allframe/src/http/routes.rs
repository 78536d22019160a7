//! Every route the framework serves, mounted here and nowhere else; the
//! handlers live in one module per route family.

use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};

use super::commands::{CommandRoutes, post_command};
use super::openapi::Document;
use super::reads::ReadRoutes;
use super::stream::EventStreams;
use super::{admin, health, queries, reads, sagas, stream};
use crate::projection::Projections;
use crate::saga::Sagas;

/// The state each route family needs.
pub(crate) struct Mounts {
    /// `POST /commands/{name}`.
    pub(crate) commands: CommandRoutes,
    /// `GET /health`.
    pub(crate) projections: Projections,
    /// Projections, queries and the admin routes.
    pub(crate) reads: ReadRoutes,
    /// `GET /openapi.json` (and the Swagger UI that reads it).
    pub(crate) document: Document,
    /// `GET /events/ws` and `GET /events/sse`.
    pub(crate) streams: Arc<EventStreams>,
    /// `GET /sagas/{name}/{id}`.
    pub(crate) sagas: Arc<Sagas>,
}

/// The framework's routes; the app adds the user's, the fallbacks and the
/// middleware.
pub(crate) fn router(mounts: Mounts) -> Router {
    let document = mounts.document;
    let router = Router::new()
        .route("/commands/{name}", post(post_command))
        // The handler enforces the limit itself, with a problem body.
        .layer(DefaultBodyLimit::disable())
        .with_state(mounts.commands)
        .route(
            "/health",
            get(health::health).with_state(mounts.projections),
        )
        .route("/openapi.json", get(move || async move { document }))
        .merge(
            Router::new()
                .route("/projections/{name}", get(reads::list))
                .route("/projections/{name}/{key}", get(reads::get_row))
                .route("/queries/{name}", get(queries::query))
                .route("/admin/projections", get(admin::list))
                .route("/admin/projections/{name}/rebuild", post(admin::rebuild))
                .route("/admin/projections/{name}/restart", post(admin::restart))
                .with_state(mounts.reads),
        )
        .merge(
            Router::new()
                .route("/sagas/{name}/{id}", get(sagas::get))
                .route("/admin/sagas", get(sagas::list))
                .with_state(mounts.sagas),
        )
        .merge(
            Router::new()
                .route("/events/ws", get(stream::ws::stream))
                .route("/events/sse", get(stream::sse::stream))
                .with_state(mounts.streams),
        );
    #[cfg(feature = "swagger-ui")]
    let router = router.merge(
        Router::new()
            .route("/docs", get(super::docs::redirect))
            .route("/docs/", get(super::docs::index))
            .route("/docs/{*file}", get(super::docs::file))
            .with_state(super::docs::config()),
    );
    router
}

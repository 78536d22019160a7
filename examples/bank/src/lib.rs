//! The AllFrame reference service: bank accounts, event-sourced.
//!
//! [`domain`] is everything the bank knows about accounts — events, the
//! account aggregate, commands, their handlers and the refusals — written
//! with AllFrame's macros and nothing else; [`accounts`] is the read model
//! of them and the query over it; [`transfer`] moves money between
//! accounts, a saga; [`rules`] says who may do what once callers sign in.
//! [`app`] starts the service's builder with
//! its one plain route, `GET /about`; building it starts the projections.
use allframe::Dep;
use allframe::router::{OpenApiRouter, routes};
use axum::Json;
use serde::Serialize;
use utoipa::{OpenApi, ToSchema};

pub mod accounts;
pub mod domain;
pub mod rules;
pub mod transfer;

/// The bank's own part of the OpenAPI document.
#[derive(OpenApi)]
#[openapi(info(
    title = "bank",
    description = "The AllFrame reference service: bank accounts, event-sourced."
))]
struct BankApi;

/// What the service says about itself.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct About {
    /// The service's name.
    pub name: &'static str,
    /// Its version.
    pub version: &'static str,
}

/// Names the service and its version.
///
/// A plain axum handler: it shares the app's container (`Dep<About>`) and
/// its router, and appears in the same OpenAPI document.
#[utoipa::path(get, path = "/about", tag = "service", operation_id = "about",
    responses((status = 200, description = "The service's name and version.", body = About)))]
async fn about(about: Dep<About>) -> Json<About> {
    Json((*about).clone())
}

/// The bank app over `store`. Naming this function also links the domain's
/// handlers (they register themselves) into whatever binary calls it.
///
/// It names its one projection rather than running every one linked in,
/// so a test binary that links other projections still serves (and
/// documents) exactly the bank's.
pub fn app(store: &dyn allframe::EventStore) -> allframe::AppBuilder {
    allframe::App::builder(store)
        .projections(allframe::Projections::builder(store).projection::<accounts::AccountRow>())
        .provide(About {
            name: env!("CARGO_PKG_NAME"),
            version: env!("CARGO_PKG_VERSION"),
        })
        .routes(OpenApiRouter::with_openapi(BankApi::openapi()).routes(routes!(about)))
}

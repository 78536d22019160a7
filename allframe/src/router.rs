//! The one router a service composes: the generated CQRS routes and your
//! own utoipa-annotated axum handlers, documented in one OpenAPI document.
//!
//! Build your routes with [`OpenApiRouter`] and [`routes!`], hand them to
//! [`AppBuilder::routes`](crate::AppBuilder::routes), and take the result
//! from [`App::router`](crate::App::router) — a plain axum `Router` you can
//! merge, nest under a prefix or wrap in tower layers.
//!
//! ```
//! use allframe::Dep;
//! use allframe::router::{OpenApiRouter, routes};
//!
//! struct Greeting(&'static str);
//!
//! /// Says hello.
//! #[utoipa::path(get, path = "/hello", responses((status = 200, body = String)))]
//! async fn hello(greeting: Dep<Greeting>) -> String {
//!     greeting.0.to_owned()
//! }
//!
//! # async fn run() -> Result<(), allframe::AppError> {
//! let store = allframe::store::MemoryStore::new();
//! let app = allframe::App::builder(&store)
//!     .provide(Greeting("hello"))
//!     .routes(OpenApiRouter::default().routes(routes!(hello)))
//!     .build()
//!     .await?;
//! assert!(app.openapi()["paths"]["/hello"]["get"].is_object());
//! let router: axum::Router = app.router();
//! # let _ = router;
//! # Ok(())
//! # }
//! ```

pub use utoipa_axum::router::OpenApiRouter;
pub use utoipa_axum::routes;

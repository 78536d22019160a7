//! `GET /docs`: Swagger UI for the service's own document, with its assets
//! built into the binary and the online validator off, so it works with no
//! network.
//!
//! The page finds the document at `../openapi.json` and `/docs` redirects
//! to `docs/`, both relative, so the UI still works when the router is
//! nested under a prefix.

use std::sync::Arc;

use axum::Router;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use utoipa_swagger_ui::Config;

use super::extract::PathParams;
use super::problem::Problem;

/// The Swagger UI routes.
pub(crate) fn routes() -> Router {
    let config = Arc::new(Config::new(["../openapi.json"]).validator_url("none"));
    let index = config.clone();
    Router::new()
        .route(
            "/docs",
            get(|| async { (StatusCode::SEE_OTHER, [(header::LOCATION, "docs/")]) }),
        )
        .route("/docs/", get(move || serve(String::new(), index)))
        .route(
            "/docs/{*file}",
            get(move |PathParams(file): PathParams<String>| serve(file, config)),
        )
}

async fn serve(file: String, config: Arc<Config<'static>>) -> Response {
    match utoipa_swagger_ui::serve(&file, config) {
        Ok(Some(file)) => {
            let content_type = HeaderValue::from_str(&file.content_type)
                .unwrap_or(HeaderValue::from_static("application/octet-stream"));
            let mut response = (
                [(header::CONTENT_TYPE, content_type)],
                file.bytes.into_owned(),
            )
                .into_response();
            if file.gzpipped {
                response
                    .headers_mut()
                    .insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
            }
            response
        }
        Ok(None) => Problem::not_found("no-route", format!("Swagger UI has no file `{file}`"))
            .into_response(),
        Err(error) => {
            tracing::error!(%error, "Swagger UI could not render its configuration");
            Problem::internal().into_response()
        }
    }
}

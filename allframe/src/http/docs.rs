//! `GET /docs`: Swagger UI for the service's own document, with its assets
//! built into the binary and the online validator off, so it works with no
//! network.
//!
//! The page finds the document at `../openapi.json` and `/docs` redirects
//! to `docs/`, both relative, so the UI still works when the router is
//! nested under a prefix.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use utoipa_swagger_ui::Config;

use super::errors::RequestError;
use super::extract::PathParams;
use super::problem::Problem;

/// What the Swagger UI routes share: the UI's configuration.
pub(super) type DocsConfig = Arc<Config<'static>>;

/// The UI's configuration: the document at `../openapi.json`, relative,
/// and no online validator.
pub(super) fn config() -> DocsConfig {
    Arc::new(Config::new(["../openapi.json"]).validator_url("none"))
}

/// `GET /docs`: to `docs/`, relative, so a nested router still works.
pub(super) async fn redirect() -> Response {
    (StatusCode::SEE_OTHER, [(header::LOCATION, "docs/")]).into_response()
}

/// `GET /docs/`: the page.
pub(super) async fn index(State(config): State<DocsConfig>) -> Response {
    serve(String::new(), config).await
}

/// `GET /docs/{file}`: the page's assets.
pub(super) async fn file(
    State(config): State<DocsConfig>,
    PathParams(file): PathParams<String>,
) -> Response {
    serve(file, config).await
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
        Ok(None) => Problem::from(RequestError::NoDocsFile(file)).into_response(),
        Err(error) => Problem::from(RequestError::Internal(format!(
            "Swagger UI could not render its configuration: {error}"
        )))
        .into_response(),
    }
}

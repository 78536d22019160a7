//! `GET /admin`: the admin console, a single page built into the binary
//! (no CDN, no build step) that shows the head position, the projections
//! and sagas with their lag, and a live tail of the event log.
//!
//! The page and its two assets hold no data, so they are served to anyone
//! (see [`is_page`]); everything the page shows comes from the admin
//! routes and the event streams, which keep their own rules. The page asks
//! for a bearer token and sends it on each of those calls.
//!
//! Every URL the page uses is relative (`admin/console.js`,
//! `admin/projections`, `events/ws`), so the console still works when the
//! router is nested under a prefix. The routes are not in the OpenAPI
//! document: they are a page, not an API.

use axum::Router;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

/// The page, at `GET /admin`.
const PAGE: &str = "/admin";
/// Its style sheet.
const STYLE: &str = "/admin/console.css";
/// Its script.
const SCRIPT: &str = "/admin/console.js";

/// Whether `path` is the console's page or one of its assets: exactly
/// `/admin`, `/admin/console.css` and `/admin/console.js`. They hold no
/// data, so they load without credentials; every other `/admin/…` path
/// stays admin-only.
pub(crate) fn is_page(path: &str) -> bool {
    [PAGE, STYLE, SCRIPT].contains(&path)
}

/// The console's routes.
pub(crate) fn router() -> Router {
    Router::new()
        .route(PAGE, get(page))
        .route(
            STYLE,
            get(|| asset("text/css; charset=utf-8", include_str!("console.css"))),
        )
        .route(
            SCRIPT,
            get(|| asset("text/javascript; charset=utf-8", include_str!("console.js"))),
        )
}

/// The page, which may load only its own assets and talk only to its own
/// origin: a tampered event shown in it cannot pull in anything else.
async fn page() -> Response {
    let mut response = asset("text/html; charset=utf-8", include_str!("index.html")).await;
    response.headers_mut().insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
             connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
        ),
    );
    response
}

/// One built-in file. `no-cache` because it changes with the binary and is
/// small: a browser revalidates instead of running an old script against
/// new routes.
async fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
            (
                header::X_CONTENT_TYPE_OPTIONS,
                HeaderValue::from_static("nosniff"),
            ),
        ],
        body,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::is_page;

    #[test]
    fn only_the_page_and_its_two_assets_are_the_console() {
        for path in ["/admin", "/admin/console.css", "/admin/console.js"] {
            assert!(is_page(path), "{path}");
        }
        for path in [
            "/admin/",
            "/admin/projections",
            "/admin/sagas",
            "/admin/console.js/",
            "/admin/console.css.map",
            "/admin/console",
            "/adminx",
            "/metrics",
        ] {
            assert!(!is_page(path), "{path}");
        }
    }
}

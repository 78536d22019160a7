//! Limits on a request's head, checked before any route (or the
//! authenticator) sees it: a path, a query string or headers larger than
//! [`RequestLimits`] allow are refused with a problem. Bodies have their
//! own limit ([`AppBuilder::body_limit`](crate::AppBuilder::body_limit)),
//! as do WebSocket messages from clients (64 KiB, closed with 1009).

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::kinds;
use super::problem::Problem;

/// How large a request's head may be. Larger parts are refused: a path or
/// a query string with `414` (`/problems/uri-too-long`), headers with
/// `431` (`/problems/headers-too-large`). Heads past the HTTP server's own
/// buffer (about 400 KiB) are refused by it, with a bare `431`, before
/// these are checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct RequestLimits {
    /// The longest path, in bytes as sent (percent-encoded), default
    /// 2 KiB.
    pub path_bytes: usize,
    /// The longest query string, in bytes as sent, default 8 KiB (room for
    /// an `access_token`).
    pub query_bytes: usize,
    /// The most header bytes, names and values of all headers together,
    /// default 16 KiB.
    pub header_bytes: usize,
}

impl Default for RequestLimits {
    fn default() -> Self {
        Self {
            path_bytes: 2 * 1024,
            query_bytes: 8 * 1024,
            header_bytes: 16 * 1024,
        }
    }
}

impl RequestLimits {
    /// Sets the longest path.
    pub fn path_bytes(mut self, bytes: usize) -> Self {
        self.path_bytes = bytes;
        self
    }

    /// Sets the longest query string.
    pub fn query_bytes(mut self, bytes: usize) -> Self {
        self.query_bytes = bytes;
        self
    }

    /// Sets the most header bytes.
    pub fn header_bytes(mut self, bytes: usize) -> Self {
        self.header_bytes = bytes;
        self
    }

    /// Why `request`'s head is over these limits, if it is.
    fn check(&self, request: &Request) -> Result<(), Problem> {
        let uri = request.uri();
        let path = uri.path().len();
        if path > self.path_bytes {
            return Err(Problem::of(
                kinds::URI_TOO_LONG,
                format!(
                    "the path is {path} bytes long; at most {} are accepted",
                    self.path_bytes
                ),
            ));
        }
        let query = uri.query().map_or(0, str::len);
        if query > self.query_bytes {
            return Err(Problem::of(
                kinds::URI_TOO_LONG,
                format!(
                    "the query string is {query} bytes long; at most {} are accepted",
                    self.query_bytes
                ),
            ));
        }
        let headers: usize = request
            .headers()
            .iter()
            .map(|(name, value)| name.as_str().len() + value.len())
            .sum();
        if headers > self.header_bytes {
            return Err(Problem::of(
                kinds::HEADERS_TOO_LARGE,
                format!(
                    "the headers hold {headers} bytes; at most {} are accepted",
                    self.header_bytes
                ),
            ));
        }
        Ok(())
    }
}

/// The middleware: refuses a request whose head is over the limits.
pub(crate) async fn limit(
    State(limits): State<RequestLimits>,
    request: Request,
    next: Next,
) -> Response {
    match limits.check(&request) {
        Ok(()) => next.run(request).await,
        Err(problem) => problem.into_response(),
    }
}

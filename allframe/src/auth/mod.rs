//! Who is calling: an [`Authenticator`] turns each request into a
//! [`Principal`] (subject and roles), set with
//! [`AppBuilder::authenticator`](crate::AppBuilder::authenticator).
//!
//! With an authenticator set, every route except `GET /health`,
//! `GET /openapi.json`, `/docs` and the admin console's page (`GET /admin`
//! and its `console.css` and `console.js`, which hold no data) needs a
//! principal: a request without
//! credentials, or with credentials the authenticator refuses, is answered
//! `401` (`/problems/unauthenticated`) with `WWW-Authenticate`, and the
//! admin routes (`/admin/…`, `/metrics`) answer `403` (`/problems/forbidden`) to a
//! principal without the [`ADMIN`] role. The principal is an extractor for
//! the app's own routes, and its subject goes into the metadata of the
//! events a command records (`principal`). Without an authenticator every
//! route is open, and the app says so at start-up.
//!
//! With the `jwt` feature, `JwtAuthenticator` checks bearer JWTs.

use std::sync::Arc;

use axum::extract::{FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderValue, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use futures_util::future::BoxFuture;

use crate::http::kinds;
use crate::http::problem::Problem;

pub(crate) mod guards;

pub use guards::Denied;

/// The role that may use the admin routes.
pub const ADMIN: &str = "admin";

/// Who a request comes from, as the authenticator established it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Principal {
    /// The caller's id (a JWT's `sub`).
    pub subject: String,
    /// What the caller may do beyond the ordinary (`admin`).
    pub roles: Vec<String>,
}

impl Principal {
    /// Principal `subject` with `roles`.
    pub fn new(subject: impl Into<String>, roles: Vec<String>) -> Self {
        Self {
            subject: subject.into(),
            roles,
        }
    }

    /// Whether it has role `role`.
    pub fn has_role(&self, role: &str) -> bool {
        self.roles.iter().any(|r| r == role)
    }

    /// Whether it has the [`ADMIN`] role.
    pub fn is_admin(&self) -> bool {
        self.has_role(ADMIN)
    }

    /// The principal the work in progress is done for: inside a command
    /// handler, a query handler or a saga's `decide`, the one who sent
    /// the command or query (a saga acts for the one who started it);
    /// `None` for work the service does on its own, or outside such work.
    pub fn current() -> Option<Principal> {
        CURRENT.try_with(Clone::clone).ok().flatten()
    }

    /// Runs `work` with `principal` as [`Principal::current`].
    pub(crate) async fn acting<F: Future>(principal: Option<Principal>, work: F) -> F::Output {
        CURRENT.scope(principal, work).await
    }

    /// Runs `work` with `principal` as [`Principal::current`].
    pub(crate) fn acting_sync<R>(principal: Option<Principal>, work: impl FnOnce() -> R) -> R {
        CURRENT.sync_scope(principal, work)
    }

    /// Writes the principal into event metadata: its subject as
    /// `principal`, its roles (if any) as `principal_roles`.
    pub(crate) fn record(&self, metadata: &mut serde_json::Map<String, serde_json::Value>) {
        metadata.insert(PRINCIPAL_KEY.into(), self.subject.clone().into());
        if !self.roles.is_empty() {
            metadata.insert(ROLES_KEY.into(), self.roles.clone().into());
        }
    }

    /// The principal event metadata names, if it names one.
    pub(crate) fn recorded(metadata: &serde_json::Map<String, serde_json::Value>) -> Option<Self> {
        let subject = metadata.get(PRINCIPAL_KEY)?.as_str()?;
        let roles = metadata
            .get(ROLES_KEY)
            .and_then(serde_json::Value::as_array)
            .map(|roles| {
                roles
                    .iter()
                    .filter_map(|role| role.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default();
        Some(Self::new(subject, roles))
    }

    /// Copies the principal fields of metadata `from` into `to`.
    pub(crate) fn carry(
        from: &serde_json::Map<String, serde_json::Value>,
        to: &mut serde_json::Map<String, serde_json::Value>,
    ) {
        for key in [PRINCIPAL_KEY, ROLES_KEY] {
            if let Some(value) = from.get(key) {
                to.insert(key.into(), value.clone());
            }
        }
    }
}

/// The metadata field naming who sent the command that recorded an event.
pub const PRINCIPAL_KEY: &str = "principal";
/// The metadata field listing that principal's roles, when it has any.
pub const ROLES_KEY: &str = "principal_roles";

tokio::task_local! {
    /// The principal of the work in progress.
    static CURRENT: Option<Principal>;
}

/// Why credentials were refused; the reason is sent in the 401 problem's
/// `detail`, so it must not reveal anything secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Refused(pub String);

/// Turns a request into a principal.
pub trait Authenticator: Send + Sync + 'static {
    /// The principal the request's credentials establish; `Ok(None)` when
    /// it carries none, `Err` when it carries credentials that do not
    /// hold (wrong signature, expired, malformed).
    fn authenticate<'a>(
        &'a self,
        request: &'a Parts,
    ) -> BoxFuture<'a, Result<Option<Principal>, Refused>>;

    /// The `WWW-Authenticate` challenge of a 401 (e.g. `Bearer`).
    fn challenge(&self) -> &str;

    /// The OpenAPI security scheme the document declares for it (default:
    /// HTTP bearer).
    fn scheme(&self) -> serde_json::Value {
        serde_json::json!({ "type": "http", "scheme": "bearer" })
    }
}

/// Paths anyone may read, with or without credentials. The admin
/// console's page and its two assets are among them (exactly those three
/// paths: they hold no data); the admin routes the page calls are not.
fn public(path: &str) -> bool {
    path == "/health"
        || path == "/openapi.json"
        || path == "/docs"
        || path.starts_with("/docs/")
        || crate::http::console::is_page(path)
}

/// Paths only admins may use once an authenticator is set.
pub(crate) fn admin_only(path: &str) -> bool {
    path == "/admin" || path.starts_with("/admin/") || path == "/metrics"
}

/// A 401 problem with the authenticator's challenge.
fn unauthenticated(challenge: &str, detail: &str) -> Response {
    let mut response = Problem::of(kinds::UNAUTHENTICATED, detail).into_response();
    if let Ok(value) = HeaderValue::from_str(challenge) {
        response
            .headers_mut()
            .insert(header::WWW_AUTHENTICATE, value);
    }
    response
}

/// The middleware: authenticates every request but the public ones, and
/// keeps the admin routes to admins.
pub(crate) async fn authenticate(
    State(authenticator): State<Arc<dyn Authenticator>>,
    request: Request,
    next: Next,
) -> Response {
    let path = request.uri().path().to_owned();
    if public(&path) {
        return next.run(request).await;
    }
    let (mut parts, body) = request.into_parts();
    let principal = match authenticator.authenticate(&parts).await {
        Ok(Some(principal)) => principal,
        Ok(None) => {
            return unauthenticated(
                authenticator.challenge(),
                "this route needs credentials, and the request carries none",
            );
        }
        Err(refused) => {
            return unauthenticated(
                authenticator.challenge(),
                &format!("the credentials were refused: {refused}"),
            );
        }
    };
    if admin_only(&path) && !principal.is_admin() {
        return Problem::of(
            kinds::FORBIDDEN,
            format!("`{}` is not an admin", principal.subject),
        )
        .into_response();
    }
    parts.extensions.insert(principal);
    next.run(Request::from_parts(parts, body)).await
}

/// The principal of a request that has one: a 401 problem otherwise (no
/// authenticator is set, or the route is public). Use
/// `Option<Principal>` where a principal is optional.
impl<S: Send + Sync> FromRequestParts<S> for Principal {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        parts.extensions.get::<Principal>().cloned().ok_or_else(|| {
            unauthenticated(
                "Bearer",
                "this route needs credentials, and the request carries none",
            )
        })
    }
}

impl<S: Send + Sync> axum::extract::OptionalFromRequestParts<S> for Principal {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Option<Self>, Self::Rejection> {
        Ok(parts.extensions.get::<Principal>().cloned())
    }
}

#[cfg(feature = "jwt")]
pub use jwt::{JwtAuthenticator, MAX_LEEWAY};

#[cfg(feature = "jwt")]
mod jwt {
    use std::time::Duration;

    use axum::http::header;
    use axum::http::request::Parts;
    use futures_util::future::{BoxFuture, FutureExt};
    use jsonwebtoken::{Algorithm, DecodingKey, Validation};
    use serde::Deserialize;

    use super::{Authenticator, Principal, Refused};

    /// The most clock skew a [`JwtAuthenticator`] allows.
    pub const MAX_LEEWAY: Duration = Duration::from_secs(60);

    /// Bearer JWTs signed with HS256 and a shared secret: the token in
    /// `Authorization: Bearer …` (or, on the event streams, whose browser
    /// clients cannot set headers, in the `access_token` query
    /// parameter). The algorithm is pinned (a token naming another, `none`
    /// included, is refused), `exp` is required and checked with at most
    /// [`MAX_LEEWAY`] of clock skew (default 30 s), as is `nbf` when the
    /// token has one, `sub` is the subject and the optional `roles` (a
    /// list of strings) the roles. A token with an `aud` is refused: no
    /// audience is configured.
    #[derive(Clone)]
    pub struct JwtAuthenticator {
        key: DecodingKey,
        validation: Validation,
    }

    impl std::fmt::Debug for JwtAuthenticator {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.debug_struct("JwtAuthenticator")
                .field("leeway_seconds", &self.validation.leeway)
                .finish_non_exhaustive()
        }
    }

    #[derive(Deserialize)]
    struct Claims {
        // Absent or empty, the token is refused as one without `sub`.
        #[serde(default)]
        sub: String,
        #[serde(default)]
        roles: Vec<String>,
    }

    impl JwtAuthenticator {
        /// Checks HS256 tokens signed with `secret`.
        pub fn hs256(secret: &[u8]) -> Self {
            let mut validation = Validation::new(Algorithm::HS256);
            validation.algorithms = vec![Algorithm::HS256];
            validation.leeway = 30;
            validation.validate_exp = true;
            validation.validate_nbf = true;
            validation.set_required_spec_claims(&["exp"]);
            Self {
                key: DecodingKey::from_secret(secret),
                validation,
            }
        }

        /// Allows `leeway` of clock skew on `exp` and `nbf` (at most
        /// [`MAX_LEEWAY`]).
        pub fn leeway(mut self, leeway: Duration) -> Self {
            self.validation.leeway = leeway.min(MAX_LEEWAY).as_secs();
            self
        }

        /// The principal `token` establishes.
        pub fn verify(&self, token: &str) -> Result<Principal, Refused> {
            let data = jsonwebtoken::decode::<Claims>(token, &self.key, &self.validation)
                .map_err(|error| Refused(refusal(&error)))?;
            if data.claims.sub.is_empty() {
                return Err(Refused("the token has no `sub`".into()));
            }
            Ok(Principal::new(data.claims.sub, data.claims.roles))
        }
    }

    /// What a client may be told about a refused token.
    fn refusal(error: &jsonwebtoken::errors::Error) -> String {
        use jsonwebtoken::errors::ErrorKind;
        match error.kind() {
            ErrorKind::ExpiredSignature => "the token has expired".into(),
            ErrorKind::ImmatureSignature => "the token is not valid yet".into(),
            ErrorKind::InvalidAlgorithm => "the token is not signed with HS256".into(),
            ErrorKind::InvalidSignature => "the token's signature does not verify".into(),
            ErrorKind::InvalidAudience => "the token is meant for another audience".into(),
            ErrorKind::MissingRequiredClaim(claim) => format!("the token has no `{claim}`"),
            _ => "the token is malformed".into(),
        }
    }

    /// The bearer token of `request`, if it carries one.
    fn token(request: &Parts) -> Result<Option<String>, Refused> {
        if let Some(value) = request.headers.get(header::AUTHORIZATION) {
            let text = value
                .to_str()
                .map_err(|_| Refused("`Authorization` is not text".into()))?;
            let Some((scheme, token)) = text.split_once(' ') else {
                return Err(Refused("`Authorization` is not `Bearer <token>`".into()));
            };
            if !scheme.eq_ignore_ascii_case("bearer") || token.trim().is_empty() {
                return Err(Refused("`Authorization` is not `Bearer <token>`".into()));
            }
            return Ok(Some(token.trim().to_owned()));
        }
        if request.uri.path().starts_with("/events/") {
            let query = request.uri.query().unwrap_or_default();
            for (name, value) in serde_urlencoded::from_str::<Vec<(String, String)>>(query)
                .map_err(|_| Refused("the query string does not decode".into()))?
            {
                if name == "access_token" {
                    return Ok(Some(value));
                }
            }
        }
        Ok(None)
    }

    impl Authenticator for JwtAuthenticator {
        fn authenticate<'a>(
            &'a self,
            request: &'a Parts,
        ) -> BoxFuture<'a, Result<Option<Principal>, Refused>> {
            let verified =
                token(request).and_then(|token| token.map(|token| self.verify(&token)).transpose());
            futures_util::future::ready(verified).boxed()
        }

        fn challenge(&self) -> &str {
            "Bearer"
        }

        fn scheme(&self) -> serde_json::Value {
            serde_json::json!({
                "type": "http",
                "scheme": "bearer",
                "bearerFormat": "JWT",
                "description": "An HS256 JWT with `sub`, `exp` and optional `roles`; on the event streams also as the `access_token` query parameter.",
            })
        }
    }
}

//! Bearer tokens for the authentication tests, signed with `jsonwebtoken`.

use std::time::{SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};

/// The secret the tests' apps check tokens with.
pub const SECRET: &[u8] = b"a secret of the bank, long enough for HS256";

/// Seconds since the Unix epoch.
pub fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("the clock is past 1970")
        .as_secs() as i64
}

/// A token of `claims` signed with `algorithm` and `secret`.
pub fn token_with(algorithm: Algorithm, secret: &[u8], claims: Value) -> String {
    jsonwebtoken::encode(
        &Header::new(algorithm),
        &claims,
        &EncodingKey::from_secret(secret),
    )
    .expect("HMAC tokens always encode")
}

/// A valid HS256 token of `sub` with `roles`, good for ten minutes.
pub fn token(sub: &str, roles: &[&str]) -> String {
    token_with(
        Algorithm::HS256,
        SECRET,
        json!({"sub": sub, "roles": roles, "exp": now() + 600}),
    )
}

/// `Authorization`'s value for `token`.
pub fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

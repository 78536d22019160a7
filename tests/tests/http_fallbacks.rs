//! Every error the router answers is a problem: unknown paths (404), wrong
//! methods (405, with `Allow`), path segments that do not decode (400) and
//! unknown Swagger UI files (404), over a real socket.

use allframe::EventStreamConfig;
use allframe::store::MemoryStore;
use allframe_tests::server::serve_bank;
use allframe_tests::{RawResponse, http_request};
use serde_json::Value;

fn problem(response: &RawResponse, status: u16, code: &str, what: &str) -> Value {
    assert_eq!(response.status, status, "{what}");
    assert_eq!(
        response.header("content-type"),
        Some("application/problem+json"),
        "{what}"
    );
    let body: Value = serde_json::from_slice(&response.body).expect("a JSON problem");
    assert_eq!(body["type"], format!("/problems/{code}"), "{what}: {body}");
    assert_eq!(body["status"], status, "{what}: {body}");
    assert!(
        body["title"].as_str().is_some_and(|t| !t.is_empty()),
        "{what}: {body}"
    );
    assert!(
        body["detail"].as_str().is_some_and(|d| !d.is_empty()),
        "{what}: {body}"
    );
    body
}

#[tokio::test]
async fn router_errors_are_problems() {
    let server = serve_bank(&MemoryStore::new(), EventStreamConfig::default()).await;
    let addr = server.addr;

    for path in [
        "/nope",
        "/commands",
        "/projections/accounts/a/b",
        "/docs/nope/deeper/x",
    ] {
        let response = http_request(addr, "GET", path, &[], b"").await;
        if path.starts_with("/docs/") {
            // Served by the Swagger UI route, which has no such file.
            problem(&response, 404, "no-route", path);
        } else {
            let body = problem(&response, 404, "no-route", path);
            assert!(body["detail"].as_str().unwrap().contains(path), "{body}");
        }
    }

    for (method, path, allow) in [
        ("DELETE", "/commands/deposit", "POST"),
        ("GET", "/commands/deposit", "POST"),
        ("POST", "/projections/accounts", "GET,HEAD"),
        ("PUT", "/health", "GET,HEAD"),
        ("GET", "/admin/projections/accounts/rebuild", "POST"),
        // The user's own route (the bank's `GET /about`) answers the same way.
        ("POST", "/about", "GET,HEAD"),
    ] {
        let what = format!("{method} {path}");
        let response = http_request(addr, method, path, &[], b"").await;
        let body = problem(&response, 405, "method-not-allowed", &what);
        assert_eq!(response.header("allow"), Some(allow), "{what}");
        assert!(body["detail"].as_str().unwrap().contains(method), "{body}");
    }

    // Percent-encoded bytes that are not UTF-8, in each route's parameters.
    for (method, path) in [
        ("GET", "/projections/%FF"),
        ("GET", "/projections/accounts/%C3%28"),
        ("GET", "/queries/%FE"),
        ("POST", "/commands/%FF"),
        ("POST", "/admin/projections/%FF/rebuild"),
    ] {
        let what = format!("{method} {path}");
        let response = http_request(addr, method, path, &[], b"").await;
        let body = problem(&response, 400, "invalid-path", &what);
        assert!(
            body["detail"].as_str().unwrap().contains("UTF-8")
                || body["detail"].as_str().unwrap().contains("utf-8"),
            "{body}"
        );
    }
    let response = http_request(addr, "GET", "/docs/%FF.js", &[], b"").await;
    problem(&response, 400, "invalid-path", "GET /docs/%FF.js");

    for file in ["nope.js", "swagger-ui.css.map", "..%2F..%2FCargo.toml"] {
        let path = format!("/docs/{file}");
        let response = http_request(addr, "GET", &path, &[], b"").await;
        problem(&response, 404, "no-route", &path);
    }
    // What is there is still served.
    let response = http_request(addr, "GET", "/docs/swagger-ui.css", &[], b"").await;
    assert_eq!(response.status, 200);
    assert_eq!(response.header("content-type"), Some("text/css"));
    let response = http_request(addr, "GET", "/about", &[], b"").await;
    assert_eq!(response.status, 200);
}

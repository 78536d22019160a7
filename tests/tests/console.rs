//! The admin console (`GET /admin`) over a real socket: its page and two
//! assets load without credentials even behind the bank's rules, while
//! the admin routes the page calls stay admin-only; without an
//! authenticator, each asset answers with its content type.

use std::net::SocketAddr;

use allframe_tests::server::serve_on_sqlite;
use allframe_tests::tokens::{SECRET, bearer, token};
use allframe_tests::{RawResponse, http_request};

const ASSETS: [(&str, &str); 3] = [
    ("/admin", "text/html; charset=utf-8"),
    ("/admin/console.css", "text/css; charset=utf-8"),
    ("/admin/console.js", "text/javascript; charset=utf-8"),
];

async fn get(addr: SocketAddr, path: &str, authorization: Option<&str>) -> RawResponse {
    let headers: Vec<(&str, &str)> = authorization
        .map(|value| ("authorization", value))
        .into_iter()
        .collect();
    http_request(addr, "GET", path, &headers, b"").await
}

fn assert_asset(response: &RawResponse, path: &str, content_type: &str) {
    assert_eq!(response.status, 200, "{path}");
    assert_eq!(
        response.header("content-type"),
        Some(content_type),
        "{path}"
    );
    assert_eq!(response.header("cache-control"), Some("no-cache"), "{path}");
    assert!(!response.body.is_empty(), "{path} is empty");
}

#[tokio::test]
async fn the_page_loads_anonymously_behind_the_bank_rules_and_its_data_stays_admin_only() {
    let bank = serve_on_sqlite(|store| bank::rules::secured(bank::app(store), store, SECRET)).await;
    let addr = bank.server.addr;

    for (path, content_type) in ASSETS {
        assert_asset(&get(addr, path, None).await, path, content_type);
    }
    let page = get(addr, "/admin", None).await;
    let html = String::from_utf8(page.body.clone()).unwrap();
    assert!(
        html.contains("admin/console.js"),
        "the page loads its script"
    );
    assert!(
        page.header("content-security-policy")
            .is_some_and(|policy| policy.contains("default-src 'none'")),
        "the page has a content security policy"
    );

    // Exactly the three paths: the data routes, and paths next to the
    // assets, still need an admin.
    let user = bearer(&token("ada", &[]));
    let admin = bearer(&token("root", &["admin"]));
    for path in [
        "/admin/projections",
        "/admin/sagas",
        "/admin/",
        "/admin/console.js/x",
        "/admin/console",
    ] {
        let anonymous = get(addr, path, None).await;
        assert_eq!(anonymous.status, 401, "{path} anonymously");
        assert!(anonymous.header("www-authenticate").is_some(), "{path}");
        let refused = get(addr, path, Some(&user)).await;
        assert_eq!(refused.status, 403, "{path} for a non-admin");
    }
    let projections = get(addr, "/admin/projections", Some(&admin)).await;
    assert_eq!(projections.status, 200);
    let sagas = get(addr, "/admin/sagas", Some(&admin)).await;
    assert_eq!(sagas.status, 200);

    // The page is a page: it does not take writes, and it answers the
    // same with or without credentials.
    let post = http_request(addr, "POST", "/admin", &[("authorization", &admin)], b"").await;
    assert_eq!(post.status, 405);
    let signed_in = get(addr, "/admin", Some(&user)).await;
    assert_eq!(signed_in.status, 200);
    assert_eq!(signed_in.body, page.body);
}

#[tokio::test]
async fn without_an_authenticator_the_assets_answer_with_their_content_types() {
    let bank = serve_on_sqlite(|store| bank::app(store)).await;
    for (path, content_type) in ASSETS {
        let response = get(bank.server.addr, path, None).await;
        assert_asset(&response, path, content_type);
    }
    // Not part of the API: the OpenAPI document does not list them.
    let document = get(bank.server.addr, "/openapi.json", None).await;
    let document: serde_json::Value = serde_json::from_slice(&document.body).unwrap();
    let paths = document["paths"].as_object().unwrap();
    assert!(paths.keys().all(|path| !path.starts_with("/admin/console")));
    assert!(!paths.contains_key("/admin"));
}

//! Spans exported over OTLP/HTTP (`allframe::telemetry::Otlp`, feature
//! `otlp`) to a collector on a real socket, decoded with the protocol's own
//! messages: each command's span names the command, the aggregate, its id,
//! stream, version and position and the outcome, inside the request's span
//! with the correlation id; a refusal is not an error; commands a saga
//! sends carry the saga's id as their correlation id.
//!
//! The subscriber is the process's, so this file holds one test.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use allframe::telemetry::Otlp;
use allframe_tests::server::serve_on_sqlite;
use allframe_tests::{http_request, saga_ended};
use axum::body::Bytes;
use axum::http::HeaderMap;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value as Any;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue};
use opentelemetry_proto::tonic::trace::v1::status::StatusCode;
use prost::Message;
use serde_json::{Value, json};
use tracing_subscriber::layer::SubscriberExt;

/// What a collector received: each request's content type and body.
type Received = Arc<Mutex<Vec<(String, Bytes)>>>;

/// A collector's `POST /v1/traces` on a free port.
async fn collector() -> (SocketAddr, Received) {
    let received = Received::default();
    let keep = received.clone();
    let app = axum::Router::new().route(
        "/v1/traces",
        axum::routing::post(move |headers: HeaderMap, body: Bytes| async move {
            let content_type = headers
                .get("content-type")
                .and_then(|value| value.to_str().ok())
                .unwrap_or_default()
                .to_owned();
            keep.lock().unwrap().push((content_type, body));
            // An empty ExportTraceServiceResponse: everything accepted.
            ([("content-type", "application/x-protobuf")], Vec::new())
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (addr, received)
}

/// One exported span, its attributes as text.
#[derive(Debug)]
struct Span {
    name: String,
    trace_id: Vec<u8>,
    span_id: Vec<u8>,
    parent_span_id: Vec<u8>,
    attributes: HashMap<String, String>,
    error: bool,
}

impl Span {
    fn attribute(&self, key: &str) -> Option<&str> {
        self.attributes.get(key).map(String::as_str)
    }
}

fn text(value: Option<&AnyValue>) -> String {
    match value.and_then(|value| value.value.as_ref()) {
        Some(Any::StringValue(text)) => text.clone(),
        Some(Any::IntValue(number)) => number.to_string(),
        Some(Any::BoolValue(flag)) => flag.to_string(),
        Some(Any::DoubleValue(number)) => number.to_string(),
        other => format!("{other:?}"),
    }
}

fn attributes(pairs: &[KeyValue]) -> HashMap<String, String> {
    pairs
        .iter()
        .map(|pair| (pair.key.clone(), text(pair.value.as_ref())))
        .collect()
}

/// Every span in the requests received, and the service names they came
/// from.
fn decode(received: &Received) -> (Vec<Span>, Vec<String>) {
    let mut spans = Vec::new();
    let mut services = Vec::new();
    for (content_type, body) in received.lock().unwrap().iter() {
        assert_eq!(content_type, "application/x-protobuf");
        let request = ExportTraceServiceRequest::decode(body.clone())
            .expect("an OTLP ExportTraceServiceRequest");
        for resource in request.resource_spans {
            let resource_attributes = resource
                .resource
                .map(|resource| attributes(&resource.attributes))
                .unwrap_or_default();
            services.extend(resource_attributes.get("service.name").cloned());
            for scope in resource.scope_spans {
                for span in scope.spans {
                    let error = span
                        .status
                        .as_ref()
                        .is_some_and(|status| status.code == StatusCode::Error as i32);
                    spans.push(Span {
                        name: span.name,
                        trace_id: span.trace_id,
                        span_id: span.span_id,
                        parent_span_id: span.parent_span_id,
                        attributes: attributes(&span.attributes),
                        error,
                    });
                }
            }
        }
    }
    (spans, services)
}

async fn post(addr: SocketAddr, command: &str, body: Value, correlation: &str) -> (u16, Value) {
    let headers = [
        ("content-type", "application/json"),
        ("x-correlation-id", correlation),
    ];
    let path = format!("/commands/{command}");
    let response = http_request(addr, "POST", &path, &headers, body.to_string().as_bytes()).await;
    (
        response.status,
        serde_json::from_slice(&response.body).unwrap(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn command_spans_reach_the_collector_with_command_aggregate_and_position() {
    let (collector, received) = collector().await;
    let otlp = Otlp::to(&format!("http://{collector}/v1/traces"), "bank-under-test").unwrap();
    tracing::subscriber::set_global_default(tracing_subscriber::registry().with(otlp.layer()))
        .expect("the first subscriber of this process");

    let bank = serve_on_sqlite(|store| bank::app(store)).await;
    let addr = bank.server.addr;
    let opened = json!({"owner": "Ada", "email": "ada@example.com", "initial_deposit": 100});
    let (status, ada) = post(addr, "open-account", opened, "trace-open").await;
    assert_eq!(status, 201, "{ada}");
    let ada = ada["aggregate_id"].as_str().unwrap().to_owned();
    let (status, deposited) = post(
        addr,
        "deposit",
        json!({"account_id": ada, "amount": 25}),
        "trace-deposit",
    )
    .await;
    assert_eq!(status, 200, "{deposited}");
    let (status, refused) = post(
        addr,
        "withdraw",
        json!({"account_id": ada, "amount": 1_000}),
        "trace-overdraft",
    )
    .await;
    assert_eq!(status, 422, "{refused}");
    let bob = json!({"owner": "Bob", "email": "bob@example.com"});
    let (status, bob) = post(addr, "open-account", bob, "trace-bob").await;
    assert_eq!(status, 201, "{bob}");
    let transfer = json!({
        "from_account_id": ada,
        "to_account_id": bob["aggregate_id"],
        "amount": 30,
    });
    let (status, started) = post(addr, "transfer-money", transfer, "trace-transfer").await;
    assert_eq!(status, 202, "{started}");
    let saga = started["saga_id"].as_str().unwrap().to_owned();
    let view = saga_ended(addr, &format!("/sagas/transfer-money/{saga}"), None).await;
    assert_eq!(view["status"], "completed", "{view}");

    // Sends what is buffered; the exporter blocks on the collector's answer.
    tokio::task::spawn_blocking(move || otlp.shutdown())
        .await
        .unwrap()
        .expect("the collector took every batch");
    let (spans, services) = decode(&received);
    assert!(!services.is_empty(), "no span reached the collector");
    assert!(
        services.iter().all(|service| service == "bank-under-test"),
        "{services:?}"
    );

    let commands: Vec<&Span> = spans.iter().filter(|span| span.name == "command").collect();
    let one = |command: &str, correlation: &str| -> &Span {
        let found: Vec<&&Span> = commands
            .iter()
            .filter(|span| {
                span.attribute("command") == Some(command)
                    && span.attribute("correlation_id") == Some(correlation)
            })
            .collect();
        assert_eq!(found.len(), 1, "{command} {correlation}: {commands:#?}");
        found[0]
    };

    // The deposit: everything about it, inside its request's span.
    let deposit = one("deposit", "trace-deposit");
    assert_eq!(deposit.attribute("aggregate"), Some("account"));
    assert_eq!(deposit.attribute("aggregate_id"), Some(ada.as_str()));
    assert_eq!(
        deposit.attribute("stream_id"),
        deposited["stream_id"].as_str()
    );
    assert_eq!(
        deposit.attribute("position"),
        Some(deposited["position"].to_string().as_str())
    );
    assert_eq!(
        deposit.attribute("version"),
        Some(deposited["version"].to_string().as_str())
    );
    assert_eq!(deposit.attribute("outcome"), Some("ok"));
    assert!(!deposit.error);
    let request = spans
        .iter()
        .find(|span| span.span_id == deposit.parent_span_id)
        .expect("the deposit's span has its request's span as parent");
    assert_eq!(request.name, "request");
    assert_eq!(request.trace_id, deposit.trace_id);
    assert_eq!(request.attribute("path"), Some("/commands/deposit"));
    assert_eq!(request.attribute("method"), Some("POST"));
    assert_eq!(request.attribute("correlation_id"), Some("trace-deposit"));

    // A refusal is the domain's answer, not a failure of the service.
    let overdraft = one("withdraw", "trace-overdraft");
    assert_eq!(overdraft.attribute("outcome"), Some("insufficient-funds"));
    assert_eq!(overdraft.attribute("position"), None);
    assert!(!overdraft.error);

    // The saga's commands: its id as their correlation id, each with the
    // position of what it recorded.
    let sent: Vec<&&Span> = commands
        .iter()
        .filter(|span| span.attribute("correlation_id") == Some(saga.as_str()))
        .collect();
    assert!(
        sent.len() >= 2,
        "the transfer's debit and credit: {sent:#?}"
    );
    for span in &sent {
        assert_eq!(span.attribute("aggregate"), Some("account"));
        assert_eq!(span.attribute("outcome"), Some("ok"), "{span:#?}");
        assert!(
            span.attribute("position")
                .is_some_and(|position| position.parse::<u64>().is_ok()),
            "{span:#?}"
        );
    }
}

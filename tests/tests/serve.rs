//! `App::serve_until` on a real socket: it serves requests and live event
//! streams, and when its signal fires it closes the streams (1001), lets the
//! server end, and closes the store (SQLite folds its WAL back).

// The bank's handlers register themselves; link them like the service does.
#[allow(unused_extern_crates)]
extern crate bank;

use allframe::store::ConnectOptions;
use allframe::{ExpectedVersion, NewEvent};
use allframe_tests::http_request;
use allframe_tests::server::PATIENCE;
use futures_util::StreamExt;
use serde_json::{Value, json};
use tokio::time::timeout;
use tokio_tungstenite::tungstenite::Message;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serving_until_a_signal_closes_streams_then_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("served.db");
    let store = ConnectOptions::new(format!("sqlite://{}", path.display()))
        .max_connections(2)
        .connect()
        .await
        .unwrap();
    let app = bank::app(&*store).build().await.unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(
        app.serve_until(listener, async move {
            let _ = stopped.await;
        })
        .into_future(),
    );

    let opened = http_request(
        addr,
        "POST",
        "/commands/open-account",
        &[("content-type", "application/json")],
        br#"{"owner": "Ada", "email": "ada@example.com", "initial_deposit": 5}"#,
    )
    .await;
    assert_eq!(
        opened.status,
        201,
        "{:?}",
        String::from_utf8_lossy(&opened.body)
    );
    let (mut client, _) =
        tokio_tungstenite::connect_async(format!("ws://{addr}/events/ws?after=0"))
            .await
            .expect("the upgrade succeeds");
    let first = timeout(PATIENCE, client.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let Message::Text(first) = first else {
        panic!("an event, got {first:?}")
    };
    let first: Value = serde_json::from_str(&first).unwrap();
    assert_eq!(first["type"], "AccountOpened");
    let wal = dir.path().join("served.db-wal");
    assert!(wal.exists(), "a store being served writes through the WAL");

    stop.send(()).unwrap();
    let close = loop {
        match timeout(PATIENCE, client.next())
            .await
            .expect("the stream closes")
        {
            Some(Ok(Message::Close(Some(frame)))) => break frame,
            Some(Ok(_)) => {}
            other => panic!("a close frame, got {other:?}"),
        }
    };
    assert_eq!(u16::from(close.code), 1001);
    timeout(PATIENCE, server)
        .await
        .expect("the server ends once its streams are closed")
        .unwrap()
        .unwrap();

    assert!(!wal.exists(), "closing the store folded the WAL back");
    let after = store
        .append(
            "account-x",
            ExpectedVersion::Any,
            vec![NewEvent::new("Ticked", &json!({}))],
        )
        .await;
    assert!(after.is_err(), "a closed store writes nothing: {after:?}");
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "nothing listens any more"
    );
}

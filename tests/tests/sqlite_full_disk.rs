//! SQLite on a full disk: a small tmpfs holds the database; once a filler
//! file takes the rest of it, commands answer a clean `503`
//! (`store-unavailable`), never a `500`; the file stays intact, and
//! writes resume when the space comes back. Mounting needs root: where
//! the mount is refused the test says so loudly and skips.

use std::io::Write;
use std::net::SocketAddr;
use std::process::Command;

use allframe::store::SqliteStore;
use allframe_tests::{RawResponse, http_request};
use serde_json::{Value, json};

/// A tmpfs mounted on a fresh directory; unmounted when dropped.
struct Mount(tempfile::TempDir);

impl Drop for Mount {
    fn drop(&mut self) {
        // Lazily: a failed test may still hold the database open.
        let _ = Command::new("umount").arg("-l").arg(self.0.path()).status();
    }
}

fn mount(size: &str) -> Option<Mount> {
    let dir = tempfile::tempdir().unwrap();
    let mounted = Command::new("mount")
        .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
        .arg(dir.path())
        .status()
        .is_ok_and(|status| status.success());
    if !mounted {
        let _ = writeln!(
            std::io::stderr(),
            "\n*** SKIPPED: sqlite_full_disk — cannot mount a tmpfs here (it needs root). ***\n"
        );
        return None;
    }
    Some(Mount(dir))
}

async fn post(addr: SocketAddr, name: &str, body: Value) -> RawResponse {
    http_request(
        addr,
        "POST",
        &format!("/commands/{name}"),
        &[("content-type", "application/json")],
        body.to_string().as_bytes(),
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_answers_503_and_writes_resume_when_space_returns() {
    let Some(mount) = mount("4m") else {
        return;
    };
    let path = mount.0.path().join("bank.db");
    let store = SqliteStore::open(&path).await.unwrap();
    let app = bank::app(&store).build().await.unwrap();
    let server = allframe_tests::server::serve(app).await;
    let addr = server.addr;

    let opened = post(
        addr,
        "open-account",
        json!({"owner": "Ada", "email": "ada@example.com", "initial_deposit": 0}),
    )
    .await;
    assert_eq!(opened.status, 201);
    let id = serde_json::from_slice::<Value>(&opened.body).unwrap()["aggregate_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let deposit = json!({"account_id": id, "amount": 1});

    // Take every byte left.
    let filler = mount.0.path().join("filler");
    let mut file = std::fs::File::create(&filler).unwrap();
    let chunk = vec![0u8; 4096];
    while file.write_all(&chunk).is_ok() {}
    drop(file);

    // Deposits go on until the log needs space it cannot get.
    let mut acknowledged = 0u64;
    let mut full = None;
    for _ in 0..20_000 {
        let answer = post(addr, "deposit", deposit.clone()).await;
        match answer.status {
            200 => acknowledged += 1,
            503 => {
                full = Some(answer);
                break;
            }
            status => panic!(
                "deposit answered {status}: {}",
                String::from_utf8_lossy(&answer.body)
            ),
        }
    }
    let full = full.expect("the disk filled up");
    let problem: Value = serde_json::from_slice(&full.body).unwrap();
    assert_eq!(problem["type"], "/problems/store-unavailable", "{problem}");
    assert_eq!(full.header("retry-after"), Some("1"));
    // Still full: still a clean 503.
    assert_eq!(post(addr, "deposit", deposit.clone()).await.status, 503);

    // Space comes back: writes resume, with nothing lost.
    std::fs::remove_file(&filler).unwrap();
    let resumed = post(addr, "deposit", deposit.clone()).await;
    assert_eq!(
        resumed.status,
        200,
        "{}",
        String::from_utf8_lossy(&resumed.body)
    );
    acknowledged += 1;
    let withdrawn = post(
        addr,
        "withdraw",
        json!({"account_id": id, "amount": acknowledged}),
    )
    .await;
    assert_eq!(
        withdrawn.status,
        200,
        "every acknowledged deposit counts: {}",
        String::from_utf8_lossy(&withdrawn.body)
    );
    drop(server);
    allframe::EventStore::close(&store).await;

    // The file is intact.
    use sqlx::Connection;
    let mut check = sqlx::SqliteConnection::connect(&format!("sqlite://{}", path.display()))
        .await
        .unwrap();
    let integrity: String = sqlx::query_scalar("PRAGMA integrity_check")
        .fetch_one(&mut check)
        .await
        .unwrap();
    assert_eq!(integrity, "ok");
    check.close().await.unwrap();
}

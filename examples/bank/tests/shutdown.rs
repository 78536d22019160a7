//! The bank binary as users run it: SIGTERM stops it cleanly, and the
//! SQLite database it leaves behind holds no write-ahead log.

mod common;

use common::{post, start};

#[test]
fn sigterm_closes_the_database_and_leaves_no_wal() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bank.db");
    let (bank, addr) = start(&format!("sqlite://{}", path.display()));
    let opened = post(
        addr,
        "/commands/open-account",
        r#"{"owner": "Ada", "email": "ada@example.com", "initial_deposit": 5}"#,
    );
    assert!(opened.starts_with("HTTP/1.1 201"), "{opened}");
    let wal = dir.path().join("bank.db-wal");
    assert!(wal.exists(), "a running bank writes through the WAL");

    bank.terminate();
    let left: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|entry| entry.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(left, ["bank.db"], "no -wal or -shm file is left");

    // And the data is all in the database file.
    let (_bank, addr) = start(&format!("sqlite://{}", path.display()));
    let again = post(
        addr,
        "/commands/open-account",
        r#"{"owner": "Bob", "email": "bob@example.com"}"#,
    );
    assert!(again.contains("\"position\":3"), "{again}");
}

//! The bank binary as users run it: SIGTERM stops it cleanly, and the
//! SQLite database it leaves behind holds no write-ahead log.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Kills the child if the test fails before it stops.
struct Bank(Child);

impl Drop for Bank {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start(database: &str) -> (Bank, SocketAddr) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_bank"))
        .args(["--addr", "127.0.0.1:0", "--database-url", database])
        .stdout(Stdio::piped())
        .spawn()
        .expect("the bank starts");
    let stdout = child.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    let first = lines.next().expect("a line").expect("text");
    let addr = first
        .split("http://")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("the address in {first:?}"))
        .parse()
        .unwrap();
    // Keep reading so the child never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    (Bank(child), addr)
}

fn post(addr: SocketAddr, path: &str, body: &str) -> String {
    let mut socket = TcpStream::connect(addr).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    write!(
        socket,
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut answer = String::new();
    socket.read_to_string(&mut answer).unwrap();
    answer
}

#[test]
fn sigterm_closes_the_database_and_leaves_no_wal() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bank.db");
    let (mut bank, addr) = start(&format!("sqlite://{}", path.display()));
    let opened = post(
        addr,
        "/commands/open-account",
        r#"{"owner": "Ada", "email": "ada@example.com", "initial_deposit": 5}"#,
    );
    assert!(opened.starts_with("HTTP/1.1 201"), "{opened}");
    let wal = dir.path().join("bank.db-wal");
    assert!(wal.exists(), "a running bank writes through the WAL");

    let status = Command::new("kill")
        .args(["-TERM", &bank.0.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(60);
    let exit = loop {
        if let Some(exit) = bank.0.try_wait().unwrap() {
            break exit;
        }
        assert!(Instant::now() < deadline, "the bank stops in time");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(exit.success(), "{exit:?}");
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

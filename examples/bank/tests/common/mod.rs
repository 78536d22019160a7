//! The bank binary as users run it, and plain HTTP/1.1 over a real socket.

#![allow(dead_code, unreachable_pub)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Kills the child if the test fails before it stops.
pub struct Bank(pub Child);

impl Drop for Bank {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Bank {
    /// Stops the bank with SIGTERM and checks it exits cleanly in time.
    pub fn terminate(mut self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.0.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        let deadline = Instant::now() + Duration::from_secs(60);
        let exit = loop {
            if let Some(exit) = self.0.try_wait().unwrap() {
                break exit;
            }
            assert!(Instant::now() < deadline, "the bank stops in time");
            std::thread::sleep(Duration::from_millis(20));
        };
        assert!(exit.success(), "{exit:?}");
    }
}

/// Starts the bank on `database` and a free port; returns it and where it
/// listens.
pub fn start(database: &str) -> (Bank, SocketAddr) {
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

/// Sends one request (`head` holds extra header lines, each ending in
/// `\r\n`) and returns the whole answer, head and body.
pub fn request(addr: SocketAddr, method: &str, path: &str, head: &str, body: &str) -> String {
    let mut socket = TcpStream::connect(addr).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    write!(
        socket,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n\
         {head}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut answer = String::new();
    socket.read_to_string(&mut answer).unwrap();
    answer
}

/// `POST path` with a JSON body.
pub fn post(addr: SocketAddr, path: &str, body: &str) -> String {
    request(addr, "POST", path, "", body)
}

/// `GET path`.
pub fn get(addr: SocketAddr, path: &str) -> String {
    request(addr, "GET", path, "", "")
}

/// The JSON body of an answer.
pub fn body(answer: &str) -> serde_json::Value {
    let (_, body) = answer.split_once("\r\n\r\n").expect("a head and a body");
    serde_json::from_str(body).unwrap_or_else(|error| panic!("{error}: {answer}"))
}

//! The bank binary's settings: each flag falls back to an environment
//! variable, a flag beats its variable, and a database URL it cannot open
//! is a clear error and exit code 1.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn bank() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_bank"));
    command
        .env_remove("BANK_ADDR")
        .env_remove("BANK_DATABASE_URL")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    command
}

/// Starts the bank, returns its banner line, then stops it with SIGTERM and
/// checks it exits cleanly.
fn banner(mut command: Command) -> String {
    let mut child = command
        .stderr(Stdio::null())
        .spawn()
        .expect("the bank starts");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    // Logs (a database's notices during migrations) may come first; the
    // banner says the bank is up and listening for signals.
    let line = lines
        .by_ref()
        .map(|line| line.expect("text"))
        .find(|line| line.starts_with("bank is serving"))
        .expect("the banner");
    // Keep reading so the child never writes to a closed or full pipe.
    std::thread::spawn(move || for _ in lines {});
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(60);
    let exit = loop {
        if let Some(exit) = child.try_wait().unwrap() {
            break exit;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("the bank did not stop in time");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(exit.success(), "{exit:?}");
    line
}

#[test]
fn settings_fall_back_to_the_environment() {
    let mut command = bank();
    command
        .env("BANK_ADDR", "127.0.0.1:0")
        .env("BANK_DATABASE_URL", "memory");
    let line = banner(command);
    assert!(
        line.starts_with("bank is serving on http://127.0.0.1:"),
        "{line}"
    );
    assert!(!line.contains(":3000 "), "{line}");
    assert!(line.ends_with("(events in memory)"), "{line}");
}

#[test]
fn a_flag_beats_its_environment_variable() {
    let mut command = bank();
    command
        .env("BANK_ADDR", "127.0.0.1:1")
        .env("BANK_DATABASE_URL", "mysql://localhost/bank")
        .args(["--addr", "127.0.0.1:0", "--database-url", "memory"]);
    let line = banner(command);
    assert!(line.ends_with("(events in memory)"), "{line}");
}

#[test]
fn an_unusable_database_url_is_explained() {
    let output = bank()
        .args(["--addr", "127.0.0.1:0"])
        .args(["--database-url", "mysql://ada:s3cret@localhost/bank"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(stderr.contains("unsupported database URL"), "{stderr}");
    assert!(stderr.contains("sqlite://PATH"), "{stderr}");
    assert!(!stderr.contains("s3cret"), "{stderr}");

    let output = bank().args(["--addr", "nowhere"]).output().unwrap();
    assert_eq!(output.status.code(), Some(2), "{output:?}");
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(stderr.contains("--addr <HOST:PORT>"), "{stderr}");
}

#[test]
fn the_banner_hides_the_database_password() {
    // PostgreSQL here trusts local connections, so any password connects.
    let url = std::env::var("ALLFRAME_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned());
    let Some(rest) = url.strip_prefix("postgres://postgres@") else {
        eprintln!(
            "*** SKIPPED: ALLFRAME_TEST_POSTGRES_URL has no `postgres@` user to add a password to ***"
        );
        return;
    };
    let with_password = format!("postgres://postgres:s3cret@{rest}");
    if std::net::TcpStream::connect(rest.split('/').next().unwrap()).is_err() {
        assert_ne!(
            std::env::var("CI").as_deref(),
            Ok("true"),
            "PostgreSQL is unreachable and CI=true"
        );
        eprintln!("*** SKIPPED: PostgreSQL at {rest} is unreachable ***");
        return;
    }
    let mut command = bank();
    command.args(["--addr", "127.0.0.1:0", "--database-url", &with_password]);
    let line = banner(command);
    assert!(line.contains("postgres://postgres:***@"), "{line}");
    assert!(!line.contains("s3cret"), "{line}");
}

#[cfg(not(feature = "allsource"))]
#[test]
fn an_allsource_url_names_the_feature_it_needs() {
    let output = bank()
        .args(["--addr", "127.0.0.1:0"])
        .args(["--database-url", "allsource://bank-data"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(stderr.contains("--features allsource"), "{stderr}");
    assert!(
        !std::path::Path::new("bank-data").exists(),
        "nothing is created"
    );
}

//! The soak test's driver (`scripts/soak` builds and runs it): mixed load on
//! a running bank (examples/bank) for a long time, watching the bank's
//! memory and open file descriptors for leaks.
//!
//! ```sh
//! cargo run --release -p allframe-tests --bin soak -- \
//!     --addr 127.0.0.1:3000 --pid "$(pgrep -n bank)" --duration-secs 1800
//! ```
//!
//! It opens `--accounts` accounts (owners `soak-0`, `soak-1`, …), connects
//! `--clients` WebSocket clients to `/events/ws` (from the head; each counts
//! the text frames it receives and reconnects whenever its connection
//! closes), then until `--duration-secs` have passed keeps up, all at once:
//!
//! - commands: `--command-rate` a second, deposits of 1 with every tenth a
//!   withdrawal of 1, on random accounts; and every 10 s a transfer of 1
//!   between two of them, whose saga must complete within a minute;
//! - reads: `--read-rate` a second, taking turns between
//!   `GET /projections/accounts/{id}`, `GET /projections/accounts?owner=…`
//!   and `GET /queries/accounts-over?min_balance=0&limit=10`;
//! - a rebuild of the `accounts` projection halfway through the warm-up (so
//!   what a first rebuild keeps is in the warm-up's figures), one right
//!   after it, then every `--rebuild-secs`, each followed until the
//!   projection runs again.
//!
//! Every `--sample-secs` (and at the end of the warm-up and at the end) it
//! reads the bank's `/proc/PID/status` (VmRSS, VmHWM, Threads) and counts
//! `/proc/PID/fd`, printing a line. The summary compares the end with the
//! end of the warm-up and prints `PASS` or `FAIL` (exit status 1): FAIL when
//! RSS grew by more than 10 %, open fds by more than 10 % + 20, more than
//! 1 % of commands or of reads failed, a rebuild failed, or the bank died.
//! A failure is an I/O error, a timeout or an unexpected status; the first
//! few are printed with their body.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use allframe_tests::{RawResponse, try_http_request};
use clap::Parser;
use futures_util::StreamExt;
use serde_json::{Value, json};
use tokio::sync::Semaphore;
use tokio::time::{Instant, MissedTickBehavior};
use tokio_tungstenite::tungstenite::Message;

/// How long one HTTP exchange may take before it counts as failed.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// How many failures (and WebSocket closes) are printed in full.
const PRINTED: u64 = 10;
/// Most requests of one kind (commands, reads) in flight at once.
const IN_FLIGHT: usize = 32;
/// How often a transfer is started.
const TRANSFER_EVERY: Duration = Duration::from_secs(10);
/// How long a transfer's saga may run before it counts as failed.
const SAGA_PATIENCE: Duration = Duration::from_secs(60);
/// The page caches of the SQLite store's connections, kB: the one writing
/// connection's (`cache_size = -16384` in allframe/src/store/sqlite.rs)
/// and those of its 4 reading connections (SQLite's default, 2000 kB
/// each). Each holds the pages its connection touched, so it grows with
/// the file until it is full: memory that grows with the data up to a
/// bound, not a leak.
const SQLITE_CACHE_KB: u64 = 16384 + 4 * 2000;

/// The soak driver's settings.
#[derive(Debug, Parser)]
#[command(name = "soak")]
struct Args {
    /// Where the bank listens.
    #[arg(long, value_name = "HOST:PORT")]
    addr: SocketAddr,
    /// The bank's process id, whose memory and fds are sampled.
    #[arg(long)]
    pid: u32,
    /// How long the load runs, in seconds.
    #[arg(long, default_value_t = 1800)]
    duration_secs: u64,
    /// How many WebSocket clients follow `/events/ws`.
    #[arg(long, default_value_t = 200)]
    clients: usize,
    /// How long the warm-up lasts, in seconds: the end is compared with its
    /// end.
    #[arg(long, default_value_t = 300)]
    warmup_secs: u64,
    /// How often the bank's memory and fds are sampled, in seconds.
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..))]
    sample_secs: u64,
    /// How many accounts the commands and reads spread over.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u64).range(2..))]
    accounts: u64,
    /// Commands (deposits and withdrawals) a second.
    #[arg(long, default_value_t = 200, value_parser = clap::value_parser!(u64).range(1..))]
    command_rate: u64,
    /// Reads a second.
    #[arg(long, default_value_t = 200, value_parser = clap::value_parser!(u64).range(1..))]
    read_rate: u64,
    /// How often the `accounts` projection is rebuilt after the rebuild
    /// that follows the warm-up (another runs halfway through it), in
    /// seconds.
    #[arg(long, default_value_t = 300, value_parser = clap::value_parser!(u64).range(1..))]
    rebuild_secs: u64,
    /// The bank's SQLite file, when it runs on SQLite: its growth after the
    /// warm-up is allowed for in the memory check, up to the writing
    /// connection's page cache (see [`SQLITE_CACHE_KB`]).
    #[arg(long, value_name = "PATH")]
    sqlite_file: Option<PathBuf>,
}

/// Counters shared by every load task.
#[derive(Default)]
struct Stats {
    /// Commands answered as expected (including transfers whose saga
    /// completed).
    commands_ok: AtomicU64,
    /// Commands that failed (including transfers whose saga did not
    /// complete).
    commands_failed: AtomicU64,
    /// Transfers started (answered 202).
    transfers: AtomicU64,
    /// Reads answered 200.
    reads_ok: AtomicU64,
    /// Reads that failed.
    reads_failed: AtomicU64,
    /// Rebuilds that were accepted and ran to the end.
    rebuilds_ok: AtomicU64,
    /// Rebuilds refused, or not running again in time.
    rebuilds_failed: AtomicU64,
    /// Text frames received by all WebSocket clients.
    ws_frames: AtomicU64,
    /// WebSocket connections that closed (each is followed by a reconnect).
    ws_reconnects: AtomicU64,
    /// WebSocket connection attempts that failed.
    ws_connect_failures: AtomicU64,
    /// WebSocket connections open now.
    ws_open: AtomicUsize,
    /// Failures printed so far.
    printed: AtomicU64,
    /// WebSocket closes printed so far.
    printed_closes: AtomicU64,
}

impl Stats {
    /// Prints a failure, unless [`PRINTED`] have been printed already.
    fn report(&self, what: &str, why: &str) {
        if self.printed.fetch_add(1, Ordering::Relaxed) < PRINTED {
            println!("  failure: {what}: {why}");
        }
    }
}

/// What kind of request an answer is counted as.
#[derive(Clone, Copy)]
enum Kind {
    /// A command.
    Command,
    /// A read.
    Read,
}

/// One sample of the bank process.
#[derive(Clone, Copy, Debug)]
struct Sample {
    /// Seconds since the load started.
    elapsed: u64,
    /// Resident memory, kB.
    rss_kb: u64,
    /// Peak resident memory, kB.
    hwm_kb: u64,
    /// Anonymous resident memory (the heap, stacks), kB; the rest of the
    /// resident memory is files and shared memory mapped in.
    anon_kb: u64,
    /// CPU time used so far (user and system), in clock ticks.
    cpu_ticks: u64,
    /// Open file descriptors.
    fds: usize,
    /// Threads.
    threads: u64,
    /// The size of the SQLite file with its write-ahead log, kB, when
    /// `--sqlite-file` is given.
    db_kb: Option<u64>,
}

/// A small random number generator (xorshift64*): random enough to spread
/// requests over accounts.
struct Rng(u64);

impl Rng {
    /// A generator seeded from `seed` (any value).
    fn new(seed: u64) -> Self {
        Self(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    /// A number below `n` (n > 0).
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) % n
    }
}

/// The HTTP side of the driver: the bank's address, the accounts and the
/// counters.
struct Bank {
    /// Where the bank listens.
    addr: SocketAddr,
    /// The accounts' ids.
    accounts: Vec<String>,
    /// The counters.
    stats: Stats,
}

impl Bank {
    /// One exchange with a JSON body (or none), bounded by
    /// [`REQUEST_TIMEOUT`].
    async fn call(
        &self,
        method: &str,
        path: &str,
        body: Option<&Value>,
    ) -> Result<RawResponse, String> {
        let body = body.map(Value::to_string).unwrap_or_default();
        let headers: &[(&str, &str)] = if body.is_empty() {
            &[]
        } else {
            &[("content-type", "application/json")]
        };
        let exchange = try_http_request(self.addr, method, path, headers, body.as_bytes());
        match tokio::time::timeout(REQUEST_TIMEOUT, exchange).await {
            Ok(Ok(response)) => Ok(response),
            Ok(Err(error)) => Err(format!("I/O error: {error}")),
            Err(_) => Err(format!("no answer within {REQUEST_TIMEOUT:?}")),
        }
    }

    /// [`call`](Self::call), counted as `kind`: a success when the status
    /// is `expected` (any 2xx for `None`); the response on success.
    async fn counted(
        &self,
        kind: Kind,
        method: &str,
        path: &str,
        body: Option<&Value>,
        expected: Option<u16>,
    ) -> Option<RawResponse> {
        let (ok, failed) = match kind {
            Kind::Command => (&self.stats.commands_ok, &self.stats.commands_failed),
            Kind::Read => (&self.stats.reads_ok, &self.stats.reads_failed),
        };
        let what = match body {
            Some(body) => format!("{method} {path} {body}"),
            None => format!("{method} {path}"),
        };
        match self.call(method, path, body).await {
            Ok(response)
                if expected.map_or((200..300).contains(&response.status), |status| {
                    response.status == status
                }) =>
            {
                ok.fetch_add(1, Ordering::Relaxed);
                Some(response)
            }
            Ok(response) => {
                failed.fetch_add(1, Ordering::Relaxed);
                let text = String::from_utf8_lossy(&response.body);
                let text: String = text.chars().take(400).collect();
                self.stats
                    .report(&what, &format!("answered {}: {text}", response.status));
                None
            }
            Err(why) => {
                failed.fetch_add(1, Ordering::Relaxed);
                self.stats.report(&what, &why);
                None
            }
        }
    }

    /// The id of a random account.
    fn account(&self, rng: &mut Rng) -> &str {
        &self.accounts[rng.below(self.accounts.len() as u64) as usize]
    }
}

/// Opens `count` accounts (owners `soak-0`, `soak-1`, …) and waits until
/// the `accounts` projection shows the last one.
async fn open_accounts(addr: SocketAddr, count: u64) -> Result<Vec<String>, String> {
    let probe = Bank {
        addr,
        accounts: Vec::new(),
        stats: Stats::default(),
    };
    let mut accounts = Vec::new();
    for i in 0..count {
        let body = json!({"owner": format!("soak-{i}"), "email": "soak@example.com", "initial_deposit": 1000});
        let response = probe
            .call("POST", "/commands/open-account", Some(&body))
            .await?;
        let answer: Value = serde_json::from_slice(&response.body).unwrap_or(Value::Null);
        match (response.status, answer["aggregate_id"].as_str()) {
            (201, Some(id)) => accounts.push(id.to_owned()),
            (status, _) => return Err(format!("opening an account answered {status}: {answer}")),
        }
    }
    let last = format!("/projections/accounts/{}", accounts[accounts.len() - 1]);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        match probe.call("GET", &last, None).await {
            Ok(response) if response.status == 200 => return Ok(accounts),
            _ if Instant::now() > deadline => {
                return Err(format!("GET {last} did not answer 200 within 60 s"));
            }
            _ => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

/// Commands at `rate` a second: deposits of 1, every tenth a withdrawal.
async fn commands(bank: Arc<Bank>, rate: u64) {
    let permits = Arc::new(Semaphore::new(IN_FLIGHT));
    let mut ticks = tokio::time::interval(Duration::from_secs(1) / rate as u32);
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut rng = Rng::new(1);
    for n in 0u64.. {
        ticks.tick().await;
        let permit = permits.clone().acquire_owned().await.expect("never closed");
        let account = bank.account(&mut rng).to_owned();
        let bank = bank.clone();
        tokio::spawn(async move {
            let path = if n % 10 == 9 {
                "/commands/withdraw"
            } else {
                "/commands/deposit"
            };
            let body = json!({"account_id": account, "amount": 1});
            bank.counted(Kind::Command, "POST", path, Some(&body), None)
                .await;
            drop(permit);
        });
    }
}

/// A transfer of 1 between two random accounts every [`TRANSFER_EVERY`],
/// each followed until its saga ends: it must complete within
/// [`SAGA_PATIENCE`].
async fn transfers(bank: Arc<Bank>) {
    let mut ticks = tokio::time::interval(TRANSFER_EVERY);
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut rng = Rng::new(2);
    loop {
        ticks.tick().await;
        let from = bank.account(&mut rng).to_owned();
        let mut to = bank.account(&mut rng).to_owned();
        while to == from {
            to = bank.account(&mut rng).to_owned();
        }
        let body = json!({"from_account_id": from, "to_account_id": to, "amount": 1});
        let bank = bank.clone();
        tokio::spawn(async move {
            let what = format!("POST /commands/transfer-money {body}");
            let response = match bank
                .call("POST", "/commands/transfer-money", Some(&body))
                .await
            {
                Ok(response) if response.status == 202 => response,
                Ok(response) => {
                    let why = format!(
                        "answered {}: {}",
                        response.status,
                        String::from_utf8_lossy(&response.body)
                    );
                    return fail_command(&bank, &what, &why);
                }
                Err(why) => return fail_command(&bank, &what, &why),
            };
            bank.stats.transfers.fetch_add(1, Ordering::Relaxed);
            let Some(location) = response.header("location").map(str::to_owned) else {
                return fail_command(&bank, &what, "202 without a Location");
            };
            let deadline = Instant::now() + SAGA_PATIENCE;
            let mut last = String::new();
            while Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(500)).await;
                let Ok(response) = bank.call("GET", &location, None).await else {
                    continue;
                };
                let view: Value = serde_json::from_slice(&response.body).unwrap_or(Value::Null);
                last = format!("{} {view}", response.status);
                match view["status"].as_str() {
                    Some("running") => {}
                    Some("completed") => {
                        bank.stats.commands_ok.fetch_add(1, Ordering::Relaxed);
                        return;
                    }
                    _ => break,
                }
            }
            fail_command(&bank, &format!("the saga {location}"), &last);
        });
    }
}

/// Counts and reports a failed command.
fn fail_command(bank: &Bank, what: &str, why: &str) {
    bank.stats.commands_failed.fetch_add(1, Ordering::Relaxed);
    bank.stats.report(what, why);
}

/// Reads at `rate` a second, taking turns between an account, the accounts
/// of an owner and the accounts-over query.
async fn reads(bank: Arc<Bank>, rate: u64) {
    let permits = Arc::new(Semaphore::new(IN_FLIGHT));
    let mut ticks = tokio::time::interval(Duration::from_secs(1) / rate as u32);
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut rng = Rng::new(3);
    let owners = bank.accounts.len() as u64;
    for n in 0u64.. {
        ticks.tick().await;
        let permit = permits.clone().acquire_owned().await.expect("never closed");
        let path = match n % 3 {
            0 => format!("/projections/accounts/{}", bank.account(&mut rng)),
            1 => format!("/projections/accounts?owner=soak-{}", rng.below(owners)),
            _ => "/queries/accounts-over?min_balance=0&limit=10".to_owned(),
        };
        let bank = bank.clone();
        tokio::spawn(async move {
            bank.counted(Kind::Read, "GET", &path, None, Some(200))
                .await;
            drop(permit);
        });
    }
}

/// Rebuilds the `accounts` projection at `first` (halfway through the
/// warm-up, so the memory a first rebuild keeps — caches filled, buffers
/// grown — is in the warm-up's figures), again once `warmed_up` is
/// notified, then every `every`.
async fn rebuilds(
    bank: Arc<Bank>,
    first: Instant,
    warmed_up: Arc<tokio::sync::Notify>,
    every: Duration,
) {
    tokio::time::sleep_until(first).await;
    rebuild(&bank, 1, every).await;
    warmed_up.notified().await;
    let mut ticks = tokio::time::interval(every);
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    for n in 2u64.. {
        ticks.tick().await;
        rebuild(&bank, n, every).await;
    }
}

/// Rebuild `n`: starts it and follows it until the projection runs again,
/// which must happen within `patience`.
async fn rebuild(bank: &Bank, n: u64, patience: Duration) {
    let started = Instant::now();
    let path = "/admin/projections/accounts/rebuild";
    let failed = |why: String| {
        bank.stats.rebuilds_failed.fetch_add(1, Ordering::Relaxed);
        bank.stats.report(&format!("rebuild {n}"), &why);
    };
    match bank.call("POST", path, None).await {
        Ok(response) if response.status == 202 => {}
        Ok(response) => {
            return failed(format!(
                "POST {path} answered {}: {}",
                response.status,
                String::from_utf8_lossy(&response.body)
            ));
        }
        Err(why) => return failed(format!("POST {path}: {why}")),
    }
    let mut state = String::from("unknown");
    while started.elapsed() < patience {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let Ok(response) = bank.call("GET", "/admin/projections", None).await else {
            continue;
        };
        let list: Value = serde_json::from_slice(&response.body).unwrap_or(Value::Null);
        let accounts = list
            .as_array()
            .and_then(|list| list.iter().find(|p| p["name"] == "accounts"));
        state = accounts.map_or_else(|| list.to_string(), |p| p["state"].to_string());
        if accounts.is_some_and(|p| p["state"] == "running") {
            bank.stats.rebuilds_ok.fetch_add(1, Ordering::Relaxed);
            println!(
                "  rebuild {n} of `accounts` done in {:.1} s",
                started.elapsed().as_secs_f64()
            );
            return;
        }
    }
    failed(format!("still {state} after {patience:?}"));
}

/// One WebSocket client of `url`: counts text frames; reconnects (after a
/// second) whenever its connection closes or cannot be opened.
async fn ws_client(url: String, bank: Arc<Bank>) {
    let stats = &bank.stats;
    loop {
        let (mut socket, _) = match tokio_tungstenite::connect_async(&url).await {
            Ok(connected) => connected,
            Err(error) => {
                stats.ws_connect_failures.fetch_add(1, Ordering::Relaxed);
                stats.report(&format!("connecting to {url}"), &error.to_string());
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        stats.ws_open.fetch_add(1, Ordering::Relaxed);
        let why = loop {
            match socket.next().await {
                Some(Ok(Message::Text(_))) => {
                    stats.ws_frames.fetch_add(1, Ordering::Relaxed);
                }
                Some(Ok(Message::Close(frame))) => break format!("closed by the bank: {frame:?}"),
                Some(Ok(_)) => {}
                Some(Err(error)) => break format!("error: {error}"),
                None => break "ended".to_owned(),
            }
        };
        stats.ws_open.fetch_sub(1, Ordering::Relaxed);
        stats.ws_reconnects.fetch_add(1, Ordering::Relaxed);
        if stats.printed_closes.fetch_add(1, Ordering::Relaxed) < PRINTED {
            println!("  a WebSocket connection {why}; reconnecting");
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// Reads the bank's memory, threads and open fds from `/proc`, and the
/// size of its SQLite file `db` (with its `-wal`) if given.
fn sample(pid: u32, elapsed: u64, db: Option<&Path>) -> Result<Sample, String> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .map_err(|error| format!("cannot read /proc/{pid}/status (has the bank died?): {error}"))?;
    let field = |name: &str| {
        status
            .lines()
            .find_map(|line| line.strip_prefix(name))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|value| value.parse::<u64>().ok())
            .ok_or_else(|| format!("no {name} in /proc/{pid}/status"))
    };
    // The fields after the command's closing parenthesis, from the state
    // (field 3) on: utime and stime are fields 14 and 15.
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map_err(|error| format!("cannot read /proc/{pid}/stat: {error}"))?;
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    let ticks = |n: usize| {
        fields
            .get(n - 3)
            .and_then(|value| value.parse::<u64>().ok())
    };
    let cpu_ticks = ticks(14)
        .zip(ticks(15))
        .map(|(user, system)| user + system)
        .ok_or_else(|| format!("no utime and stime in /proc/{pid}/stat"))?;
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map_err(|error| format!("cannot list /proc/{pid}/fd: {error}"))?
        .count();
    Ok(Sample {
        elapsed,
        rss_kb: field("VmRSS:")?,
        hwm_kb: field("VmHWM:")?,
        anon_kb: field("RssAnon:")?,
        cpu_ticks,
        fds,
        threads: field("Threads:")?,
        db_kb: db.map(|db| {
            let mut wal = db.as_os_str().to_owned();
            wal.push("-wal");
            [db, Path::new(&wal)]
                .iter()
                .filter_map(|file| std::fs::metadata(file).ok())
                .map(|metadata| metadata.len() / 1024)
                .sum()
        }),
    })
}

/// Kilobytes as MiB.
fn mib(kb: u64) -> f64 {
    kb as f64 / 1024.0
}

/// `part` of `total` in percent (0 when there is nothing).
fn percent(part: u64, total: u64) -> f64 {
    if total == 0 {
        0.0
    } else {
        part as f64 * 100.0 / total as f64
    }
}

/// Clock ticks a second in `/proc/PID/stat` (`USER_HZ`, 100 on Linux).
const TICKS_PER_SECOND: f64 = 100.0;

/// Prints one sample with the counters so far and the bank's CPU use
/// since `previous` (a share of one core).
fn print_sample(sample: &Sample, previous: Option<&Sample>, stats: &Stats, note: &str) {
    let load = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
    let cpu = match previous {
        Some(previous) if sample.elapsed > previous.elapsed => format!(
            "{:3.0} %",
            (sample.cpu_ticks - previous.cpu_ticks) as f64 * 100.0
                / TICKS_PER_SECOND
                / (sample.elapsed - previous.elapsed) as f64
        ),
        _ => "    -".to_owned(),
    };
    let db = sample
        .db_kb
        .map(|kb| format!("  db {:.1} MiB", mib(kb)))
        .unwrap_or_default();
    println!(
        "[{:>5} s] rss {:6.1} MiB (anon {:6.1}, peak {:6.1})  fds {:4}  threads {:3}  cpu {cpu}{db}  \
         commands {} ok {} failed  reads {} ok {} failed  ws {} frames, {} open, {} reconnects{note}",
        sample.elapsed,
        mib(sample.rss_kb),
        mib(sample.anon_kb),
        mib(sample.hwm_kb),
        sample.fds,
        sample.threads,
        load(&stats.commands_ok),
        load(&stats.commands_failed),
        load(&stats.reads_ok),
        load(&stats.reads_failed),
        load(&stats.ws_frames),
        stats.ws_open.load(Ordering::Relaxed),
        load(&stats.ws_reconnects),
    );
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    if args.warmup_secs >= args.duration_secs {
        eprintln!(
            "soak: the warm-up ({} s) must end before the run does ({} s)",
            args.warmup_secs, args.duration_secs
        );
        return ExitCode::from(2);
    }
    match run(args).await {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(error) => {
            println!("FAIL: {error}");
            ExitCode::FAILURE
        }
    }
}

/// The whole run: set-up, load and samples, summary. `Ok(true)` for PASS.
async fn run(args: Args) -> Result<bool, String> {
    println!(
        "==> opening {} accounts at http://{}",
        args.accounts, args.addr
    );
    let accounts = open_accounts(args.addr, args.accounts).await?;
    let bank = Arc::new(Bank {
        addr: args.addr,
        accounts,
        stats: Stats::default(),
    });
    let stats = &bank.stats;

    println!(
        "==> connecting {} WebSocket clients to ws://{}/events/ws",
        args.clients, args.addr
    );
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..args.clients {
        tasks.spawn(ws_client(
            format!("ws://{}/events/ws", args.addr),
            bank.clone(),
        ));
        // Gently: the load is not about connection storms.
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while stats.ws_open.load(Ordering::Relaxed) < args.clients && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let open = stats.ws_open.load(Ordering::Relaxed);
    if open < args.clients {
        return Err(format!(
            "only {open} of {} WebSocket clients connected within 30 s",
            args.clients
        ));
    }

    println!(
        "==> load for {} s (warm-up {} s): {} commands/s, a transfer every {} s, {} reads/s, \
         {} WebSocket clients, rebuilds halfway through and after the warm-up, then every {} s; \
         a sample every {} s",
        args.duration_secs,
        args.warmup_secs,
        args.command_rate,
        TRANSFER_EVERY.as_secs(),
        args.read_rate,
        args.clients,
        args.rebuild_secs,
        args.sample_secs
    );
    let warmed_up = Arc::new(tokio::sync::Notify::new());
    let start = Instant::now();
    tasks.spawn(commands(bank.clone(), args.command_rate));
    tasks.spawn(transfers(bank.clone()));
    tasks.spawn(reads(bank.clone(), args.read_rate));
    tasks.spawn(rebuilds(
        bank.clone(),
        start + Duration::from_secs(args.warmup_secs) / 2,
        warmed_up.clone(),
        Duration::from_secs(args.rebuild_secs),
    ));

    // Samples every `sample_secs`, at the end of the warm-up and at the end.
    let mut times: Vec<u64> = (0..args.duration_secs)
        .step_by(args.sample_secs as usize)
        .chain([args.warmup_secs, args.duration_secs])
        .collect();
    times.sort_unstable();
    times.dedup();
    let mut samples = Vec::new();
    let mut warm = None;
    for elapsed in times {
        tokio::time::sleep_until(start + Duration::from_secs(elapsed)).await;
        let sample = sample(args.pid, elapsed, args.sqlite_file.as_deref())?;
        let note = if elapsed == args.warmup_secs {
            "  <- end of warm-up"
        } else {
            ""
        };
        print_sample(&sample, samples.last(), stats, note);
        if elapsed == args.warmup_secs {
            warm = Some(sample);
            warmed_up.notify_one();
        }
        samples.push(sample);
    }
    tasks.abort_all();

    let first = samples[0];
    let warm = warm.expect("a sample at the end of the warm-up");
    let end = *samples.last().expect("samples");
    let max_rss = samples
        .iter()
        .filter(|s| s.elapsed >= args.warmup_secs)
        .map(|s| s.rss_kb)
        .max()
        .unwrap_or(end.rss_kb);
    let load = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
    let (commands_ok, commands_failed) = (load(&stats.commands_ok), load(&stats.commands_failed));
    let (reads_ok, reads_failed) = (load(&stats.reads_ok), load(&stats.reads_failed));
    let command_failure_rate = percent(commands_failed, commands_ok + commands_failed);
    let read_failure_rate = percent(reads_failed, reads_ok + reads_failed);
    let rss_change = (end.rss_kb as f64 / warm.rss_kb as f64 - 1.0) * 100.0;
    let fd_limit = warm.fds + warm.fds / 10 + 20;
    // On SQLite the page caches may grow by what the file grew, until
    // they are full.
    let cache_growth = match (warm.db_kb, end.db_kb) {
        (Some(warm), Some(end)) => end
            .min(SQLITE_CACHE_KB)
            .saturating_sub(warm.min(SQLITE_CACHE_KB)),
        _ => 0,
    };
    let rss_limit = warm.rss_kb + warm.rss_kb / 10 + cache_growth;

    println!();
    println!(
        "== soak summary: {} s ({} s warm-up), {} WebSocket clients, {} accounts",
        args.duration_secs, args.warmup_secs, args.clients, args.accounts
    );
    println!("                     RSS MiB  VmHWM MiB   fds  threads");
    for (label, s) in [("start", first), ("end of warm-up", warm), ("end", end)] {
        println!(
            "  {label:<16} {:9.1}  {:9.1}  {:4}  {:7}   (at {} s)",
            mib(s.rss_kb),
            mib(s.hwm_kb),
            s.fds,
            s.threads,
            s.elapsed
        );
    }
    let allowance = if end.db_kb.is_some() {
        format!(
            " + {:.1} MiB for the SQLite connections' page caches (the file grew by {:.1} MiB; \
             the caches hold up to {} MiB)",
            mib(cache_growth),
            mib(end
                .db_kb
                .unwrap_or(0)
                .saturating_sub(warm.db_kb.unwrap_or(0))),
            SQLITE_CACHE_KB / 1024
        )
    } else {
        String::new()
    };
    println!(
        "  RSS after warm-up: {:.1} -> {:.1} MiB ({rss_change:+.1} %), max {:.1} MiB; \
         limit {:.1} MiB: +10 %{allowance}",
        mib(warm.rss_kb),
        mib(end.rss_kb),
        mib(max_rss),
        mib(rss_limit)
    );
    println!(
        "  fds after warm-up: {} -> {} (limit {fd_limit})",
        warm.fds, end.fds
    );
    println!(
        "  commands: {commands_ok} ok, {commands_failed} failed ({command_failure_rate:.2} %), \
         of which {} transfers started",
        load(&stats.transfers)
    );
    println!("  reads: {reads_ok} ok, {reads_failed} failed ({read_failure_rate:.2} %)");
    println!(
        "  rebuilds: {} done, {} failed",
        load(&stats.rebuilds_ok),
        load(&stats.rebuilds_failed)
    );
    let frames = load(&stats.ws_frames);
    println!(
        "  WebSocket: {frames} frames ({} per client), {} reconnects, {} failed connection attempts, {} open at the end",
        frames / args.clients.max(1) as u64,
        load(&stats.ws_reconnects),
        load(&stats.ws_connect_failures),
        stats.ws_open.load(Ordering::Relaxed)
    );

    let mut reasons = String::new();
    if end.rss_kb > rss_limit {
        let _ = write!(
            reasons,
            "; RSS grew {rss_change:+.1} % after the warm-up, to {:.1} MiB, over {:.1} MiB",
            mib(end.rss_kb),
            mib(rss_limit)
        );
    }
    if end.fds > fd_limit {
        let _ = write!(reasons, "; {} fds at the end, over {fd_limit}", end.fds);
    }
    if command_failure_rate > 1.0 {
        let _ = write!(reasons, "; {command_failure_rate:.2} % of commands failed");
    }
    if read_failure_rate > 1.0 {
        let _ = write!(reasons, "; {read_failure_rate:.2} % of reads failed");
    }
    if load(&stats.rebuilds_failed) > 0 {
        let _ = write!(reasons, "; a rebuild failed");
    }
    if reasons.is_empty() {
        println!("PASS");
        Ok(true)
    } else {
        println!("FAIL: {}", &reasons[2..]);
        Ok(false)
    }
}

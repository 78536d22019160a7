//! Three bank processes on one PostgreSQL schema, as DESIGN.md's "Several
//! nodes" describes: reads with `min_position` on any node, one owner per
//! runner, WebSocket clients of one node fed by another's writes, failover
//! after `kill -9`, and a paused owner fenced off.

use std::net::SocketAddr;
use std::process::Command;
use std::time::{Duration, Instant};

use allframe_tests::{
    Listening, RawResponse, fresh_schema, http_request, postgres_options, spawn_listening,
};
use futures_util::StreamExt;
use serde_json::{Value, json};

/// Lease TTL of the nodes: short, so failover is quick to wait for.
const TTL: Duration = Duration::from_millis(2_000);

/// A bank node; resumed (if paused) and killed when dropped.
struct Node {
    process: Listening,
    addr: SocketAddr,
    id: String,
}

impl Drop for Node {
    fn drop(&mut self) {
        // A stopped process is killed all the same; continued first, it
        // also leaves its connections cleanly.
        self.signal("CONT");
    }
}

impl Node {
    fn start(schema: &str, id: &str) -> Node {
        let ttl = TTL.as_millis().to_string();
        let process = spawn_listening(
            env!("CARGO_BIN_EXE_bank_node"),
            &["postgres", schema, id, &ttl],
        );
        Node {
            addr: process.addr,
            process,
            id: id.to_owned(),
        }
    }

    fn signal(&self, signal: &str) {
        let _ = Command::new("kill")
            .args([&format!("-{signal}"), &self.process.child.id().to_string()])
            .status();
    }

    async fn get(&self, path: &str) -> RawResponse {
        http_request(self.addr, "GET", path, &[], b"").await
    }

    async fn command(&self, name: &str, body: Value) -> RawResponse {
        http_request(
            self.addr,
            "POST",
            &format!("/commands/{name}"),
            &[("content-type", "application/json")],
            body.to_string().as_bytes(),
        )
        .await
    }

    /// Opens an account with `initial` cents; its id.
    async fn open(&self, initial: u64) -> String {
        let opened = self
            .command(
                "open-account",
                json!({"owner": "Ada", "email": "ada@example.com", "initial_deposit": initial}),
            )
            .await;
        assert_eq!(opened.status, 201, "{}", text(&opened));
        json_of(&opened)["aggregate_id"]
            .as_str()
            .unwrap()
            .to_owned()
    }

    /// Deposits `amount` into `account`; the position of its event.
    async fn deposit(&self, account: &str, amount: u64) -> u64 {
        let answer = self
            .command("deposit", json!({"account_id": account, "amount": amount}))
            .await;
        assert_eq!(answer.status, 200, "{}", text(&answer));
        json_of(&answer)["position"].as_u64().unwrap()
    }

    /// The `accounts` row of `account` once it reflects `position`.
    async fn row(&self, account: &str, position: u64) -> Value {
        let read = self
            .get(&format!(
                "/projections/accounts/{account}?min_position={position}"
            ))
            .await;
        assert_eq!(read.status, 200, "{}", text(&read));
        json_of(&read)
    }

    /// Each runner's owner as this node's admin routes list them:
    /// `projection:NAME` and `saga:NAME` → owner.
    async fn owners(&self) -> Vec<(String, Option<String>, String)> {
        let mut owners = Vec::new();
        let projections = json_of(&self.get("/admin/projections").await);
        for p in projections.as_array().unwrap() {
            owners.push((
                format!("projection:{}", p["name"].as_str().unwrap()),
                p["owner"].as_str().map(str::to_owned),
                p["state"].as_str().unwrap().to_owned(),
            ));
        }
        let sagas = json_of(&self.get("/admin/sagas").await);
        for s in sagas.as_array().unwrap() {
            owners.push((
                format!("saga:{}", s["name"].as_str().unwrap()),
                s["owner"].as_str().map(str::to_owned),
                s["state"].as_str().unwrap().to_owned(),
            ));
        }
        owners
    }

    /// The owner of `runner`, as this node sees it.
    async fn owner_of(&self, runner: &str) -> Option<String> {
        self.owners()
            .await
            .into_iter()
            .find(|(name, _, _)| name == runner)
            .and_then(|(_, owner, _)| owner)
    }
}

fn json_of(response: &RawResponse) -> Value {
    serde_json::from_slice(&response.body)
        .unwrap_or_else(|_| panic!("JSON, got {} {}", response.status, text(response)))
}

fn text(response: &RawResponse) -> String {
    String::from_utf8_lossy(&response.body).into_owned()
}

/// Three nodes on a fresh schema, or `None` when PostgreSQL is skipped.
async fn cluster(prefix: &str) -> Option<(String, [Node; 3])> {
    postgres_options().await?;
    let schema = fresh_schema();
    // One at a time, so each migrates and registers before the next.
    let a = Node::start(&schema, &format!("{prefix}-a"));
    let b = Node::start(&schema, &format!("{prefix}-b"));
    let c = Node::start(&schema, &format!("{prefix}-c"));
    Some((schema, [a, b, c]))
}

/// Waits (up to `limit`) until `check` holds, polling.
async fn eventually<F: std::future::Future<Output = bool>>(
    limit: Duration,
    what: &str,
    mut check: impl FnMut() -> F,
) -> Duration {
    let start = Instant::now();
    loop {
        if check().await {
            return start.elapsed();
        }
        assert!(start.elapsed() < limit, "not within {limit:?}: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_runners_and_live_events_across_three_nodes() {
    let Some((schema, nodes)) = cluster("rw").await else {
        return;
    };
    let account = nodes[0].open(0).await;

    // Read-your-writes across nodes, 100 times in a row: written on one
    // node, read with `min_position` on the next.
    for round in 0..100u64 {
        let writer = &nodes[round as usize % 3];
        let reader = &nodes[(round as usize + 1) % 3];
        let position = writer.deposit(&account, 1).await;
        let row = reader.row(&account, position).await;
        assert_eq!(row["balance"], round + 1, "round {round}");
    }

    // Each runner has one owner, every node names the same one, and the
    // two runners end up on two different nodes.
    let ids: Vec<String> = nodes.iter().map(|n| n.id.clone()).collect();
    let spread = eventually(TTL * 8, "the runners spread over the nodes", || async {
        let seen = nodes[0].owners().await;
        let owners: Vec<Option<String>> = seen.iter().map(|(_, o, _)| o.clone()).collect();
        owners
            .iter()
            .all(|o| o.as_ref().is_some_and(|o| ids.contains(o)))
            && owners[0] != owners[1]
    })
    .await;
    eprintln!("runners spread over two nodes after {spread:?}");
    let reference = nodes[0].owners().await;
    for node in &nodes {
        let seen = node.owners().await;
        for ((runner, owner, state), (_, expected, _)) in seen.iter().zip(&reference) {
            assert_eq!(owner, expected, "{runner} on {}", node.id);
            let runs_it = owner.as_deref() == Some(node.id.as_str());
            assert_eq!(
                state == "standby",
                !runs_it,
                "{runner} on {}: {state}, owner {owner:?}",
                node.id
            );
        }
    }
    let health = json_of(&nodes[2].get("/health").await);
    assert_eq!(health["node"], nodes[2].id);

    // A WebSocket client of node C gets node A's writes.
    let head = json_of(&nodes[2].get("/health").await)["head_position"]
        .as_u64()
        .unwrap();
    let (mut client, _) =
        tokio_tungstenite::connect_async(format!("ws://{}/events/ws?after={head}", nodes[2].addr))
            .await
            .expect("the upgrade succeeds");
    for n in 0..5u64 {
        let position = nodes[0].deposit(&account, 1).await;
        let event = loop {
            let message = tokio::time::timeout(Duration::from_secs(10), client.next())
                .await
                .expect("an event within 10 s")
                .expect("the stream stays open")
                .expect("a message");
            if let tokio_tungstenite::tungstenite::Message::Text(text) = message {
                break serde_json::from_str::<Value>(&text).unwrap();
            }
        };
        assert_eq!(event["position"], position, "write {n}");
        assert_eq!(event["stream_id"], format!("account-{account}"));
    }

    // A rebuild asked for on a node that does not run the projection is
    // carried out by the one that does; the rows come out the same.
    let owner = nodes[0].owner_of("projection:accounts").await.unwrap();
    let elsewhere = nodes.iter().find(|n| n.id != owner).unwrap();
    let last = nodes[1].deposit(&account, 1).await;
    let before = elsewhere.row(&account, last).await;
    let generation = || async {
        let pool = sqlx::PgPool::connect_with(postgres_options().await.unwrap())
            .await
            .unwrap();
        let generation: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "SELECT generation FROM \"{schema}\".allframe_projections WHERE name = 'accounts'"
        )))
        .fetch_one(&pool)
        .await
        .unwrap();
        pool.close().await;
        generation
    };
    let first = generation().await;
    let asked = http_request(
        elsewhere.addr,
        "POST",
        "/admin/projections/accounts/rebuild",
        &[],
        b"",
    )
    .await;
    assert_eq!(asked.status, 202, "{}", text(&asked));
    eventually(TTL * 5, "the owner swaps the rebuilt rows in", || async {
        generation().await > first
    })
    .await;
    for node in &nodes {
        assert_eq!(node.row(&account, last).await, before, "on {}", node.id);
    }
}

/// Deposits 1 into each account through the nodes at `through`, in
/// turn; adds them to `balances` and returns the last position.
async fn write_round(
    nodes: &[Node; 3],
    through: &[usize],
    accounts: &[String; 2],
    balances: &mut [u64; 2],
) -> u64 {
    let mut last = 0;
    for (k, account) in accounts.iter().enumerate() {
        last = nodes[through[k % through.len()]].deposit(account, 1).await;
        balances[k] += 1;
    }
    last
}

/// Writes rounds through `through` until the owner of `accounts`, as
/// `nodes[through[0]]` sees it, is a node other than `old`; returns how
/// long that took and the last position written.
async fn write_until_taken_over(
    nodes: &[Node; 3],
    through: &[usize],
    accounts: &[String; 2],
    balances: &mut [u64; 2],
    old: &str,
) -> (Duration, u64) {
    let start = Instant::now();
    loop {
        let last = write_round(nodes, through, accounts, balances).await;
        let owner = nodes[through[0]].owner_of("projection:accounts").await;
        if owner.is_some_and(|owner| owner != old) {
            return (start.elapsed(), last);
        }
        assert!(
            start.elapsed() < TTL * 6,
            "no node took accounts over from {old}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_owner_is_replaced_and_a_paused_one_is_fenced() {
    let Some((schema, mut nodes)) = cluster("fo").await else {
        return;
    };
    let accounts = [nodes[0].open(0).await, nodes[1].open(0).await];
    let mut balances = [0u64, 0];

    // kill -9 of the owner of `accounts`, under writes from the others.
    eventually(TTL * 4, "accounts has an owner", || async {
        nodes[0].owner_of("projection:accounts").await.is_some()
    })
    .await;
    let victim = nodes[0].owner_of("projection:accounts").await.unwrap();
    let index = nodes.iter().position(|n| n.id == victim).unwrap();
    nodes[index].signal("KILL");
    let survivors: Vec<usize> = (0..3).filter(|&i| i != index).collect();
    let (takeover, last) =
        write_until_taken_over(&nodes, &survivors, &accounts, &mut balances, &victim).await;
    eprintln!("accounts taken over {takeover:?} after the kill (lease {TTL:?})");
    assert!(
        takeover <= TTL + TTL / 3 + Duration::from_secs(3),
        "the takeover took {takeover:?}, more than the lease and one renewal"
    );
    // Nothing lost, nothing applied twice: the rows are what the
    // acknowledged deposits add up to.
    for (k, account) in accounts.iter().enumerate() {
        let row = nodes[survivors[k % 2]].row(account, last).await;
        assert_eq!(row["balance"], balances[k], "{account}");
    }

    // A new node takes the dead one's place; then the owner is paused
    // past its lease (SIGSTOP), replaced, and resumed.
    nodes[index] = Node::start(&schema, &format!("{victim}-again"));
    let owner = nodes[survivors[0]]
        .owner_of("projection:accounts")
        .await
        .unwrap();
    let paused = nodes.iter().position(|n| n.id == owner).unwrap();
    let others: Vec<usize> = (0..3).filter(|&i| i != paused).collect();
    nodes[paused].signal("STOP");
    write_until_taken_over(&nodes, &others, &accounts, &mut balances, &owner).await;
    nodes[paused].signal("CONT");
    // The resumed node finds its lease gone and stands by; the rows stay
    // exact while it and the new owner both see the writes.
    let mut last = 0;
    for _ in 0..10 {
        last = write_round(&nodes, &others, &accounts, &mut balances).await;
    }
    eventually(TTL * 3, "the resumed node stands by", || async {
        nodes[paused]
            .owners()
            .await
            .iter()
            .find(|(name, _, _)| name == "projection:accounts")
            .is_some_and(|(_, owner, state)| {
                state == "standby" && owner.as_deref() != Some(nodes[paused].id.as_str())
            })
    })
    .await;
    for node in &nodes {
        for (k, account) in accounts.iter().enumerate() {
            let row = node.row(account, last).await;
            assert_eq!(row["balance"], balances[k], "{account} on {}", node.id);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_that_joins_gets_a_share_of_the_runners() {
    if postgres_options().await.is_none() {
        return;
    }
    let schema = fresh_schema();
    let first = Node::start(&schema, "join-a");
    eventually(TTL * 4, "the first node runs everything", || async {
        let owners = first.owners().await;
        owners.len() == 2
            && owners
                .iter()
                .all(|(_, owner, _)| owner.as_deref() == Some("join-a"))
    })
    .await;
    let second = Node::start(&schema, "join-b");
    let moved = eventually(TTL * 6, "one runner moves to the new node", || async {
        let owners = second.owners().await;
        owners
            .iter()
            .any(|(_, owner, _)| owner.as_deref() == Some("join-b"))
            && owners
                .iter()
                .any(|(_, owner, _)| owner.as_deref() == Some("join-a"))
    })
    .await;
    eprintln!("a runner moved to the joining node after {moved:?}");
    // And it stays put: no runner goes back and forth.
    let settled = second.owners().await;
    tokio::time::sleep(TTL * 2).await;
    assert_eq!(second.owners().await, settled);
}

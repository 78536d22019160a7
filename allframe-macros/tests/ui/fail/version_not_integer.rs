use allframe::Event;

#[derive(Event)]
enum Account {
    #[event(version = "2")]
    Opened { owner: String },
    #[event(version = 1.5)]
    Deposited { amount: u64 },
    #[event(version = 99999999999)]
    Closed,
    #[event(version)]
    Frozen,
}

fn main() {}

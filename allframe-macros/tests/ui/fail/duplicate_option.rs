use allframe::Event;

#[derive(Event)]
enum Account {
    #[event(version = 2, version = 3)]
    Opened { owner: String },
    #[event(rename = "Paid")]
    #[event(rename = "Deposited")]
    Deposited { amount: u64 },
}

fn main() {}

use allframe::Event;

#[derive(Event)]
enum Account {
    #[event(version = )]
    Opened { owner: String },
    #[event = "Deposited"]
    Deposited { amount: u64 },
}

fn main() {}

use allframe::Event;

#[derive(Event)]
#[event(name = "Opened")]
struct Opened {
    owner: String,
}

#[derive(Event)]
enum Account {
    #[event(versoin = 2)]
    Deposited { amount: u64 },
}

fn main() {}

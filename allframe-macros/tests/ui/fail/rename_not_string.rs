use allframe::Event;

#[derive(Event)]
enum Account {
    #[event(rename = Opened)]
    Opened { owner: String },
    #[event(rename = 7)]
    Deposited { amount: u64 },
}

fn main() {}

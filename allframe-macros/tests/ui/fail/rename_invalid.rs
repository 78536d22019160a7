use allframe::Event;

#[derive(Event)]
enum Account {
    #[event(rename = "account opened")]
    Opened { owner: String },
    #[event(rename = "")]
    Deposited { amount: u64 },
    Überwiesen { amount: u64 },
}

fn main() {}

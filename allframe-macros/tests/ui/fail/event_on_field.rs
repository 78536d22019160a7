use allframe::Event;

#[derive(Event)]
struct MoneyDeposited {
    #[event(rename = "amt")]
    amount: u64,
}

fn main() {}

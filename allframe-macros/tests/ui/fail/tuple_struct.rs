use allframe::Event;

#[derive(Event)]
struct MoneyDeposited(u64);

fn main() {}

use allframe::Event;

#[derive(Event)]
enum Account {
    Transferred(u64, String),
}

fn main() {}

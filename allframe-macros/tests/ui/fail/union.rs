use allframe::Event;

#[derive(Event)]
union Amount {
    cents: u64,
    whole: u32,
}

fn main() {}

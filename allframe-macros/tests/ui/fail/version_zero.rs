use allframe::Event;

#[derive(Event)]
#[event(version = 0)]
struct Opened {
    owner: String,
}

fn main() {}

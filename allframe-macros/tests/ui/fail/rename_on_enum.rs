use allframe::Event;

#[derive(Event)]
#[event(rename = "Account")]
enum Account {
    Opened { owner: String },
}

fn main() {}

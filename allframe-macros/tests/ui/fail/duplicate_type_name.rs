use allframe::Event;

#[derive(Event)]
enum Account {
    Opened { owner: String },
    #[event(rename = "Opened")]
    Reopened { owner: String },
    Closed,
    #[event(rename = "Closed")]
    ClosedAgain,
}

fn main() {}

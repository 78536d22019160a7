use allframe::Event;

/// Not `From<OldShape>` for the event.
#[derive(allframe::__private::serde::Deserialize)]
#[serde(crate = "allframe::__private::serde")]
struct OldShape {
    owner: String,
}

/// Takes and returns the wrong things.
fn wrong(data: String) -> String {
    data
}

#[derive(Event)]
enum Account {
    #[event(version = 2, upcast(1 = from(OldShape)))]
    Opened { owner: String },
    #[event(version = 2, upcast(1 = wrong))]
    Deposited { amount: u64 },
}

fn main() {}

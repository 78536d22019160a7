use allframe::Event;

fn step(
    data: allframe::__private::serde_json::Value,
) -> Result<allframe::__private::serde_json::Value, allframe::UpcastError> {
    Ok(data)
}

#[derive(Event)]
#[event(upcast(1 = step))]
enum Account {
    // Version 1 has no step.
    #[event(version = 3, upcast(2 = step))]
    Opened { owner: String },
    // No step at all.
    #[event(version = 2)]
    Deposited { amount: u64 },
    // Steps from today's version and later, and twice from version 1.
    #[event(version = 2, upcast(1 = step, 1 = step, 2 = step, 5 = step))]
    Withdrawn { amount: u64 },
    // An old name another variant has today.
    #[event(alias = "Opened")]
    Closed,
    #[event(upcast(0 = step), alias = 7)]
    Frozen,
    #[event(version = 2, upcast(1 = from()))]
    Thawed,
    #[event(version = 2, upcast = step)]
    Renamed,
}

fn main() {}

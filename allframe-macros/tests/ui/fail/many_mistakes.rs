//! Every mistake is reported at once, and using the type as an event adds
//! no "trait not implemented" error on top.
use allframe::Event;

#[derive(Event)]
#[event(version = 0, colour = "red")]
enum Account<T> {
    #[event(rename = "bad name", version = "1")]
    Opened { owner: T },
    #[event(version = 2, version = 3)]
    Transferred(u64, String),
    Closed,
    #[event(rename = "Closed")]
    Deleted,
}

fn decode<E: Event>(data: &allframe::__private::RawValue) -> E {
    E::from_data("Closed", 1, data).unwrap()
}

fn main() {
    let data = allframe::__private::RawValue::from_string("{}".into()).unwrap();
    let _: Account<u8> = decode(&data);
}

use allframe::Event;

#[derive(Event)]
enum Account<T> {
    Opened { owner: T },
}

#[derive(Event)]
struct Note<'a> {
    text: &'a str,
}

fn main() {}

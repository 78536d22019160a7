use allframe::DomainError;

#[derive(DomainError)]
union Bits {
    word: u64,
}

fn main() {}

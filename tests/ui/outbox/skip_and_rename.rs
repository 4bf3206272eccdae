use procon::Outbox;

#[derive(Outbox)]
#[procon(topic = "accounts")]
struct Account {
    id: i64,
    #[procon(skip, rename = "hash")]
    password_hash: String,
}

fn main() {}

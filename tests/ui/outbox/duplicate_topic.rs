use procon::Outbox;

#[derive(Outbox)]
#[procon(topic = "accounts")]
#[procon(topic = "users")]
struct Account {
    id: i64,
}

fn main() {}

use procon::Outbox;

#[derive(Outbox)]
#[procon(topik = "accounts")]
struct Account {
    id: i64,
}

fn main() {}

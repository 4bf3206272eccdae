use procon::Outbox;

#[derive(Outbox)]
#[procon(topic = "accounts")]
struct Account {
    account_id: i64,
    email: String,
}

fn main() {}

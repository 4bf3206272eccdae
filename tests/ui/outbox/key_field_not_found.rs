use procon::Outbox;

#[derive(Outbox)]
#[procon(topic = "accounts", key = account_id)]
struct Account {
    id: i64,
    email: String,
}

fn main() {}

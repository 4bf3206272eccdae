use procon::Outbox;

#[derive(Outbox)]
#[procon(topic = "accounts")]
struct Account {
    id: i64,
    #[procon(rename = 42)]
    email: String,
}

fn main() {}

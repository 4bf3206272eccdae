use procon::Outbox;

#[derive(Outbox)]
#[procon(topic = "accounts")]
struct Account {
    id: i64,
    #[procon(renam = "emailAddress")]
    email: String,
}

fn main() {}

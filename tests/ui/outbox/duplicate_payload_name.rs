use procon::Outbox;

#[derive(Outbox)]
#[procon(topic = "accounts")]
struct Account {
    id: i64,
    #[procon(rename = "email")]
    primary_email: String,
    email: String,
    #[procon(rename = "")]
    phone: String,
}

fn main() {}

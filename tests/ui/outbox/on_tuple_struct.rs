use procon::Outbox;

#[derive(Outbox)]
#[procon(topic = "accounts")]
struct Account(i64, String);

fn main() {}

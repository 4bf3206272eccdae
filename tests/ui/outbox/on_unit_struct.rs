use procon::Outbox;

#[derive(Outbox)]
#[procon(topic = "accounts")]
struct Account;

fn main() {}

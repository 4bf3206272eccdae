use procon::Outbox;
use serde::Serialize;

#[derive(Serialize, Outbox)]
#[procon(topic = "accounts", realtime = "account_channels", rt_threshold = "1s")]
struct Account {
    id: i64,
}

#[derive(Serialize, Outbox)]
#[procon(topic = "accounts", realtime = account_channels(), rt_threshold = -5)]
struct Invoice {
    id: i64,
}

#[derive(Serialize, Outbox)]
#[procon(topic = "accounts", realtime)]
struct Payment {
    id: i64,
}

fn main() {}

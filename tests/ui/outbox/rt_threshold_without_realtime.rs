use procon::Outbox;
use serde::Serialize;

#[derive(Serialize, Outbox)]
#[procon(topic = "accounts", rt_threshold = 500)]
struct Account {
    id: i64,
}

fn main() {}

use procon::Outbox;

#[derive(Outbox)]
#[procon(topic = "accounts")]
enum Account {
    Active { id: i64 },
    Closed { id: i64 },
}

fn main() {}

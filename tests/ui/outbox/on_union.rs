use procon::Outbox;

#[derive(Outbox)]
#[procon(topic = "accounts")]
union Account {
    id: i64,
    raw: u64,
}

fn main() {}

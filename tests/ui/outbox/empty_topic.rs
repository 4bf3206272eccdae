use procon::Outbox;

#[derive(Outbox)]
#[procon(topic = "")]
struct Account {
    id: i64,
}

fn main() {}

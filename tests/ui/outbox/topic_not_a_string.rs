use procon::Outbox;

#[derive(Outbox)]
#[procon(topic = accounts)]
struct Account {
    id: i64,
}

fn main() {}

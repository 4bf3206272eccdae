use procon::Outbox;

#[derive(Outbox)]
#[procon(entity = "account")]
struct Account {
    id: i64,
}

fn main() {}

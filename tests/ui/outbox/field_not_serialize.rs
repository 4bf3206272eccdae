use procon::Outbox;

struct Secret;

struct NotDisplay;

#[derive(Outbox)]
#[procon(topic = "accounts")]
struct Account {
    id: NotDisplay,
    secret: Secret,
}

fn main() {}

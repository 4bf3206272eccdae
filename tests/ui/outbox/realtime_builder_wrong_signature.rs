use procon::{Change, Outbox};
use serde::Serialize;

#[derive(Serialize, Outbox)]
#[procon(topic = "accounts", realtime = channel_name)]
struct Account {
    id: i64,
}

// Returns a channel name instead of realtime messages.
fn channel_name(change: &Change<'_, Account>) -> String {
    format!("accounts/{}", change.current().id)
}

fn main() {}

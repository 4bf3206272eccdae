use procon::{Change, EventKind, Outbox, Realtime};
use serde::Serialize;

#[derive(Serialize, Outbox)]
#[procon(
    topic = "accounts",
    realtime = account_channel,
    realtime = helpers::owner_sessions,
    rt_threshold = 250
)]
struct Account {
    id: i64,
    owner_sessions: Vec<String>,
}

/// One notification, not for deletes... or for them: `current()` is `before` on a delete.
fn account_channel(change: &Change<'_, Account>) -> Option<Realtime> {
    let kind = match change.kind {
        EventKind::Created => "created",
        EventKind::Updated => "updated",
        EventKind::Deleted => "deleted",
    };
    Some(Realtime::new(format!("accounts/{}", change.current().id)).metadata("kind", kind))
}

mod helpers {
    use super::*;

    /// Many notifications: one per open session of the owner.
    pub fn owner_sessions(change: &Change<'_, Account>) -> Vec<Realtime> {
        change
            .current()
            .owner_sessions
            .iter()
            .map(|session| Realtime::new("my-accounts").session_id(session.clone()))
            .collect()
    }
}

fn main() {
    let account = Account {
        id: 1,
        owner_sessions: vec![],
    };
    assert_eq!(account.key(), "1");
}

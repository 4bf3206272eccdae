//! The model the tests publish: an account, with a per-account sequence number that the
//! emitting transaction increments, so per-key order can be checked on the broker.

use diesel::prelude::*;
use procon::prelude::*;
use serde::{Deserialize, Serialize};

/// SQL creating the model's table in a test schema.
pub const CREATE_ACCOUNTS: &str = "CREATE TABLE accounts (
    id BIGINT PRIMARY KEY,
    owner TEXT NOT NULL,
    seq BIGINT NOT NULL DEFAULT 0,
    secret TEXT NOT NULL DEFAULT ''
)";

diesel::table! {
    accounts (id) {
        id -> BigInt,
        owner -> Text,
        seq -> BigInt,
        secret -> Text,
    }
}

/// The published model.
#[derive(
    Debug, Clone, PartialEq, Queryable, Selectable, Insertable, Serialize, Deserialize, Outbox,
)]
#[diesel(table_name = accounts)]
#[procon(topic = "accounts", entity = "account", key = id)]
pub struct Account {
    pub id: i64,
    #[procon(rename = "owner_name")]
    pub owner: String,
    pub seq: i64,
    #[procon(skip)]
    pub secret: String,
}

/// An `Account` published to a topic chosen at run time: the tests give every test its own
/// topic. Implemented by hand, as a user routing topics dynamically would.
#[derive(Debug, Clone)]
pub struct Routed {
    pub topic: String,
    pub account: Account,
}

impl procon::Outbox for Routed {
    const ENTITY: &'static str = <Account as procon::Outbox>::ENTITY;
    fn topic(&self) -> std::borrow::Cow<'_, str> {
        std::borrow::Cow::Borrowed(&self.topic)
    }
    fn key(&self) -> String {
        self.account.key()
    }
    fn serialize_payload<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.account.serialize_payload(serializer)
    }
}

/// Inserts account `id` (or bumps its sequence) and emits the matching event on `topic`, in
/// one transaction. Returns the account as emitted. Concurrent callers are serialized by the
/// row lock the upsert takes, so per account, sequence order is commit order.
pub fn upsert_and_emit(conn: &mut PgConnection, topic: &str, id: i64) -> Account {
    conn.transaction(|conn| {
        let fresh = Account {
            id,
            owner: format!("owner-{id}"),
            seq: 1,
            secret: "s3cret".into(),
        };
        let after: Account = diesel::insert_into(accounts::table)
            .values(&fresh)
            .on_conflict(accounts::id)
            .do_update()
            .set(accounts::seq.eq(accounts::seq + 1))
            .returning(Account::as_returning())
            .get_result(conn)?;
        let routed_after = Routed {
            topic: topic.to_owned(),
            account: after.clone(),
        };
        if after.seq == 1 {
            routed_after.emit_created(conn)?;
        } else {
            let before = Account {
                seq: after.seq - 1,
                ..after.clone()
            };
            routed_after.emit_updated(
                &Routed {
                    topic: topic.to_owned(),
                    account: before,
                },
                conn,
            )?;
        }
        Ok::<_, procon::EmitError>(after)
    })
    .expect("upsert and emit")
}

/// Emits, in one transaction, `seqs` events of account `id` on `topic` (owner `owner`), as
/// [`Routed`] models.
pub fn emit_seqs(
    conn: &mut PgConnection,
    topic: &str,
    id: i64,
    seqs: std::ops::Range<i64>,
    owner: &str,
) {
    conn.transaction(|conn| {
        for seq in seqs {
            Routed {
                topic: topic.to_owned(),
                account: Account {
                    id,
                    owner: owner.to_owned(),
                    seq,
                    secret: String::new(),
                },
            }
            .emit_created(conn)?;
        }
        Ok::<_, procon::EmitError>(())
    })
    .unwrap();
}

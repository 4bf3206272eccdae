//! A small consumer-side test domain, shared by the consumer tests and the test consumer
//! process: `credit` events applied to an `effects` table, and `flaky` events whose handler
//! fails twice before it succeeds. Handlers are written by hand (the `EventHandler` trait plus
//! `register_handler!`), exactly what `#[event_handler]` generates.
#![allow(dead_code)]

use std::sync::atomic::{AtomicU32, Ordering};

use diesel::connection::SimpleConnection;
use diesel::sql_types::{BigInt, Integer, Uuid as SqlUuid};
use diesel::{PgConnection, QueryableByName, RunQueryDsl};
use procon::{Event, EventHandler, HandlerContext, HandlerError};
use serde::{Deserialize, Serialize};

/// The topic name the handlers use; tests map it to a topic of their own.
pub const TOPIC: &str = "ledger";

/// SQL creating the effects table.
pub const CREATE_EFFECTS: &str = "CREATE TABLE IF NOT EXISTS effects (
    id BIGSERIAL PRIMARY KEY,
    event_id UUID NOT NULL,
    account BIGINT NOT NULL,
    seq BIGINT NOT NULL,
    partition INT NOT NULL,
    position NUMERIC NOT NULL
)";

/// The payload of ledger events.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    pub account: i64,
    pub seq: i64,
}

/// Records `event`'s effect (a row of `effects`, with where it was read): what every ledger
/// handler, of this file or of a test, writes.
pub fn record(ctx: &mut HandlerContext<'_>, event: &Event<Entry>) -> Result<(), HandlerError> {
    let entry = event
        .after
        .as_ref()
        .ok_or_else(|| HandlerError::msg("no `after`"))?;
    let at = ctx.coordinates().clone();
    diesel::sql_query(
        "INSERT INTO effects (event_id, account, seq, partition, position) \
         VALUES ($1, $2, $3, $4, $5::numeric)",
    )
    .bind::<SqlUuid, _>(event.event_id)
    .bind::<BigInt, _>(entry.account)
    .bind::<BigInt, _>(entry.seq)
    .bind::<Integer, _>(at.partition)
    .bind::<diesel::sql_types::Text, _>(at.position.to_string())
    .execute(ctx.conn())?;
    Ok(())
}

/// Applies `credit.created`.
pub struct OnCredit;

impl EventHandler for OnCredit {
    const TOPIC: &'static str = TOPIC;
    const EVENT: &'static str = "credit.created";
    type Payload = Entry;
    fn handle(ctx: &mut HandlerContext<'_>, event: Event<Entry>) -> Result<(), HandlerError> {
        record(ctx, &event)
    }
}
procon::register_handler!(OnCredit);

/// How many times the flaky handler was called for the event with `seq == 1`.
pub static FLAKY_ATTEMPTS: AtomicU32 = AtomicU32::new(0);

/// Applies `flaky.created`, failing the first two attempts at the event with `seq == 1`.
pub struct OnFlaky;

impl EventHandler for OnFlaky {
    const TOPIC: &'static str = TOPIC;
    const EVENT: &'static str = "flaky.created";
    type Payload = Entry;
    fn handle(ctx: &mut HandlerContext<'_>, event: Event<Entry>) -> Result<(), HandlerError> {
        record(ctx, &event)?; // written, then rolled back when the attempt fails
        let first = event.after.as_ref().is_some_and(|e| e.seq == 1);
        if first && FLAKY_ATTEMPTS.fetch_add(1, Ordering::SeqCst) < 2 {
            return Err(HandlerError::msg(
                "flaky handler fails its first two attempts",
            ));
        }
        Ok(())
    }
}
procon::register_handler!(OnFlaky);

/// Outbox side: an event of entity `E` on a run-time topic.
pub struct Out {
    pub entity_topic: String,
    pub entry: Entry,
}

macro_rules! outbox_kind {
    ($name:ident, $entity:literal) => {
        /// A ledger event with a fixed entity name.
        pub struct $name(pub Out);
        impl procon::Outbox for $name {
            const ENTITY: &'static str = $entity;
            fn topic(&self) -> std::borrow::Cow<'_, str> {
                std::borrow::Cow::Borrowed(&self.0.entity_topic)
            }
            fn key(&self) -> String {
                self.0.entry.account.to_string()
            }
            fn serialize_payload<S: serde::Serializer>(
                &self,
                serializer: S,
            ) -> Result<S::Ok, S::Error> {
                self.0.entry.serialize(serializer)
            }
        }
    };
}
outbox_kind!(CreditOut, "credit");
outbox_kind!(FlakyOut, "flaky");
outbox_kind!(OtherOut, "other");
// Events whose handlers live in the tests that need them (retries, poison, dead letters,
// replay).
outbox_kind!(RetriedOut, "retried");
outbox_kind!(PoisonOut, "poison");
outbox_kind!(FragileOut, "fragile");
outbox_kind!(ShoutOut, "shout");

#[derive(QueryableByName, Debug, Clone, PartialEq)]
pub struct Effect {
    #[diesel(sql_type = diesel::sql_types::Text)]
    pub event_id: String,
    #[diesel(sql_type = BigInt)]
    pub account: i64,
    #[diesel(sql_type = BigInt)]
    pub seq: i64,
}

/// Every effect, in the order it was applied.
pub fn effects(conn: &mut PgConnection) -> Vec<Effect> {
    diesel::sql_query("SELECT event_id::text AS event_id, account, seq FROM effects ORDER BY id")
        .load(conn)
        .expect("read effects")
}

/// Creates the effects table.
pub fn create_effects(conn: &mut PgConnection) {
    conn.batch_execute(CREATE_EFFECTS).expect("create effects");
}

/// Emits credit events `seqs` through the outbox, spread over `keys` accounts (account =
/// seq % keys), a thousand per transaction.
pub fn emit_credits(
    conn: &mut PgConnection,
    topic: &str,
    seqs: std::ops::RangeInclusive<i64>,
    keys: i64,
) {
    use diesel::Connection;
    use procon::OutboxExt;
    let seqs: Vec<i64> = seqs.collect();
    for chunk in seqs.chunks(1000) {
        conn.transaction(|conn| {
            for &seq in chunk {
                CreditOut(Out {
                    entity_topic: topic.to_owned(),
                    entry: Entry {
                        account: seq % keys,
                        seq,
                    },
                })
                .emit_created(conn)?;
            }
            Ok::<_, procon::EmitError>(())
        })
        .expect("emit credits");
    }
}

/// Asserts that every event id has one effect, that the effects are exactly seq 1..=count,
/// and that each account's effects were applied in seq order.
pub fn assert_exactly_once_in_key_order(conn: &mut PgConnection, count: i64) {
    let effects = effects(conn);
    let mut per_event: std::collections::HashMap<&str, usize> = Default::default();
    for effect in &effects {
        *per_event.entry(&effect.event_id).or_default() += 1;
    }
    let doubled: Vec<_> = per_event.iter().filter(|(_, n)| **n > 1).collect();
    assert!(
        doubled.is_empty(),
        "events applied more than once: {doubled:?}"
    );
    let mut seqs: Vec<i64> = effects.iter().map(|e| e.seq).collect();
    seqs.sort_unstable();
    assert_eq!(seqs, (1..=count).collect::<Vec<_>>(), "every event applied");
    let mut last: std::collections::HashMap<i64, i64> = Default::default();
    for effect in &effects {
        let previous = last.insert(effect.account, effect.seq).unwrap_or(0);
        assert!(
            previous < effect.seq,
            "account {} applied seq {} after {previous}",
            effect.account,
            effect.seq
        );
    }
}

/// How many effects are recorded.
pub fn effect_count(conn: &mut PgConnection) -> usize {
    effects(conn).len()
}

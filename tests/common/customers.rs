//! A service that materializes another service's accounts into `customers` (and memberships,
//! with a composite master key), with hooks that log, and a reply: every applied account is
//! announced as a ledger `credit.created` event through this service's outbox, in the
//! consumption's transaction. Shared by the materialize tests and the test materializer
//! process.
#![allow(dead_code)]

use std::sync::Mutex;

use chrono::{DateTime, Utc};
use diesel::sql_types::Text;
use diesel::{PgConnection, Queryable, RunQueryDsl, Selectable};
use procon::prelude::*;
use procon::{Materialize, MaterializeHooks, Outcome};
use serde::{Deserialize, Serialize};

use super::ledger::{CreditOut, Entry, Out};

/// The remote topic's name in code (tests map it to a topic of their own).
pub const ACCOUNTS_TOPIC: &str = "m-accounts";
/// The topic the replies go to, in code.
pub const REPLIES_TOPIC: &str = "m-replies";

/// The local tables.
pub const CREATE_TABLES: &str = "
CREATE TABLE customers (
    account_id BIGINT PRIMARY KEY,
    email TEXT NOT NULL,
    name TEXT NOT NULL,
    source_topic TEXT NOT NULL,
    synced_at TIMESTAMPTZ NOT NULL,
    plan TEXT NOT NULL DEFAULT 'none',
    note TEXT
);
CREATE TABLE memberships (
    tenant_id BIGINT NOT NULL,
    account_id BIGINT NOT NULL,
    role TEXT NOT NULL,
    PRIMARY KEY (tenant_id, account_id)
);
CREATE TABLE hook_log (id BIGSERIAL PRIMARY KEY, entry TEXT NOT NULL);
";

diesel::table! {
    customers (account_id) {
        account_id -> BigInt,
        email -> Text,
        name -> Text,
        source_topic -> Text,
        synced_at -> Timestamptz,
        plan -> Text,
        note -> Nullable<Text>,
    }
}

diesel::table! {
    memberships (tenant_id, account_id) {
        tenant_id -> BigInt,
        account_id -> BigInt,
        role -> Text,
    }
}

/// The local copy of a remote account.
#[derive(Debug, Clone, PartialEq, Queryable, Selectable, Materialize)]
#[diesel(table_name = customers)]
#[procon(topic = "m-accounts", entity = "remote_account", master_key = account_id, hooks)]
pub struct Customer {
    #[procon(from = "id")]
    pub account_id: i64,
    #[procon(from = "profile.email")]
    pub email: String,
    pub name: String,
    #[procon(from_topic)]
    pub source_topic: String,
    #[procon(from_event_time)]
    pub synced_at: DateTime<Utc>,
    /// Taken when the record is created, kept by updates.
    #[procon(skip_on_update)]
    pub plan: String,
    /// Local only: never written from events.
    #[procon(skip)]
    pub note: Option<String>,
}

/// A membership, identified by (tenant, account).
#[derive(Debug, Clone, PartialEq, Queryable, Selectable, Materialize)]
#[diesel(table_name = memberships)]
#[procon(topic = "m-accounts", entity = "remote_membership", master_key = (tenant_id, account_id))]
pub struct Membership {
    #[procon(from = "tenant")]
    pub tenant_id: i64,
    #[procon(from = "account")]
    pub account_id: i64,
    pub role: String,
}

/// Outcomes seen by `after_commit`, in order.
pub static COMMITTED: Mutex<Vec<(i64, Outcome)>> = Mutex::new(Vec::new());

/// Where replies go, at run time (a test's own topic); none: no reply.
pub static REPLY_TOPIC: Mutex<Option<String>> = Mutex::new(None);

fn log(conn: &mut PgConnection, entry: String) -> Result<(), HandlerError> {
    diesel::sql_query("INSERT INTO hook_log (entry) VALUES ($1)")
        .bind::<Text, _>(entry)
        .execute(conn)?;
    Ok(())
}

impl MaterializeHooks for Customer {
    fn before_change(
        ctx: &mut HandlerContext<'_>,
        kind: EventKind,
        record: &Self,
        _event: &Event<serde_json::Value>,
    ) -> Result<(), HandlerError> {
        log(ctx.conn(), format!("before {kind} {}", record.account_id))
    }

    fn after_change(
        ctx: &mut HandlerContext<'_>,
        outcome: Outcome,
        record: &Self,
        _event: &Event<serde_json::Value>,
    ) -> Result<(), HandlerError> {
        log(
            ctx.conn(),
            format!("after {outcome:?} {}", record.account_id),
        )?;
        let topic = REPLY_TOPIC.lock().unwrap().clone();
        if let (Some(topic), Outcome::Upserted) = (topic, outcome) {
            // The reply: written to this service's outbox in the consumption's transaction.
            let entry = Entry {
                account: record.account_id % 50,
                seq: record.account_id,
            };
            CreditOut(Out {
                entity_topic: topic,
                entry,
            })
            .emit_created(ctx.conn())?;
        }
        Ok(())
    }

    fn message_processed(
        ctx: &mut HandlerContext<'_>,
        event: &Event<serde_json::Value>,
    ) -> Result<(), HandlerError> {
        log(ctx.conn(), format!("processed {}", event.event))
    }

    fn after_commit(outcome: Outcome, record: Self) {
        COMMITTED.lock().unwrap().push((record.account_id, outcome));
    }
}

/// The remote service's account, as it publishes it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RemoteAccount {
    pub topic: String,
    pub id: i64,
    pub name: String,
    pub plan: String,
    pub profile: serde_json::Value,
}

impl procon::Outbox for RemoteAccount {
    const ENTITY: &'static str = "remote_account";
    fn topic(&self) -> std::borrow::Cow<'_, str> {
        std::borrow::Cow::Borrowed(&self.topic)
    }
    fn key(&self) -> String {
        self.id.to_string()
    }
    fn serialize_payload<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serde_json::json!({
            "id": self.id, "name": self.name, "plan": self.plan, "profile": self.profile,
        })
        .serialize(serializer)
    }
}

/// The remote service's membership.
#[derive(Debug, Clone)]
pub struct RemoteMembership {
    pub topic: String,
    pub tenant: i64,
    pub account: i64,
    pub role: String,
}

impl procon::Outbox for RemoteMembership {
    const ENTITY: &'static str = "remote_membership";
    fn topic(&self) -> std::borrow::Cow<'_, str> {
        std::borrow::Cow::Borrowed(&self.topic)
    }
    fn key(&self) -> String {
        format!("{}/{}", self.tenant, self.account)
    }
    fn serialize_payload<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serde_json::json!({ "tenant": self.tenant, "account": self.account, "role": self.role })
            .serialize(serializer)
    }
}

//! The billing service: keeps its own copy of accounts (`customers`), driven by the accounts
//! service's events. Each handler runs inside the transaction that records the consumption, so
//! every event changes `customers` exactly once.

use diesel::prelude::*;
use procon::{event_handler, Event, HandlerContext, HandlerError};

diesel::table! {
    customers (account_id) {
        account_id -> BigInt,
        email -> Text,
        plan -> Text,
        monthly_fee_cents -> BigInt,
    }
}

/// SQL creating the billing service's table.
pub const SCHEMA: &str = "CREATE TABLE customers (
    account_id BIGINT PRIMARY KEY, email TEXT NOT NULL, plan TEXT NOT NULL, monthly_fee_cents BIGINT NOT NULL)";

/// What billing reads from an account event (it ignores the fields it does not need).
#[derive(Debug, Clone, serde::Deserialize)]
pub struct AccountView {
    pub id: i64,
    pub email: String,
    pub plan: String,
}

fn fee(plan: &str) -> i64 {
    match plan {
        "pro" => 2_900,
        "team" => 9_900,
        _ => 0,
    }
}

fn upsert(ctx: &mut HandlerContext<'_>, account: &AccountView) -> Result<(), HandlerError> {
    use diesel::upsert::excluded;
    diesel::insert_into(customers::table)
        .values((
            customers::account_id.eq(account.id),
            customers::email.eq(&account.email),
            customers::plan.eq(&account.plan),
            customers::monthly_fee_cents.eq(fee(&account.plan)),
        ))
        .on_conflict(customers::account_id)
        .do_update()
        .set((
            customers::email.eq(excluded(customers::email)),
            customers::plan.eq(excluded(customers::plan)),
            customers::monthly_fee_cents.eq(excluded(customers::monthly_fee_cents)),
        ))
        .execute(ctx.conn())?;
    Ok(())
}

/// A new account becomes a customer.
#[event_handler(topic = "accounts", event = "account.created")]
pub fn on_account_created(
    ctx: &mut HandlerContext<'_>,
    event: Event<AccountView>,
) -> Result<(), HandlerError> {
    let account = event
        .after
        .as_ref()
        .ok_or_else(|| HandlerError::msg("account.created without `after`"))?;
    upsert(ctx, account)
}

/// A changed account updates the customer (or creates it, if billing never saw it).
#[event_handler(topic = "accounts", event = "account.updated")]
pub fn on_account_updated(
    ctx: &mut HandlerContext<'_>,
    event: Event<AccountView>,
) -> Result<(), HandlerError> {
    let account = event
        .after
        .as_ref()
        .ok_or_else(|| HandlerError::msg("account.updated without `after`"))?;
    upsert(ctx, account)
}

/// A closed account stops being billed.
#[event_handler(topic = "accounts", event = "account.deleted")]
pub fn on_account_deleted(
    ctx: &mut HandlerContext<'_>,
    event: Event<AccountView>,
) -> Result<(), HandlerError> {
    let account = event
        .before
        .as_ref()
        .ok_or_else(|| HandlerError::msg("account.deleted without `before`"))?;
    diesel::delete(customers::table.find(account.id)).execute(ctx.conn())?;
    Ok(())
}

/// A customer row, as the demo prints it.
#[derive(Debug, Clone, PartialEq, Queryable)]
pub struct Customer {
    pub account_id: i64,
    pub email: String,
    pub plan: String,
    pub monthly_fee_cents: i64,
}

/// Every customer, by account id.
pub fn customers(conn: &mut PgConnection) -> QueryResult<Vec<Customer>> {
    customers::table.order(customers::account_id).load(conn)
}

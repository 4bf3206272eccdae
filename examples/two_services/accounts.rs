//! The accounts service: owns `accounts` and publishes their changes through the outbox.

use diesel::prelude::*;
use procon::prelude::*;

diesel::table! {
    accounts (id) {
        id -> BigInt,
        email -> Text,
        plan -> Text,
        password_hash -> Text,
    }
}

/// SQL creating the accounts service's table.
pub const SCHEMA: &str = "CREATE TABLE accounts (
    id BIGINT PRIMARY KEY, email TEXT NOT NULL, plan TEXT NOT NULL, password_hash TEXT NOT NULL)";

/// An account. Its password hash never leaves the service.
#[derive(Debug, Clone, Queryable, Selectable, Insertable, serde::Serialize, Outbox)]
#[diesel(table_name = accounts)]
#[procon(topic = "accounts", entity = "account", key = id)]
pub struct Account {
    pub id: i64,
    pub email: String,
    pub plan: String,
    #[procon(skip)]
    pub password_hash: String,
}

/// Opens an account and publishes `account.created`, atomically.
pub fn open(conn: &mut PgConnection, id: i64, email: &str) -> Result<Account, procon::EmitError> {
    conn.transaction(|conn| {
        let account = Account {
            id,
            email: email.into(),
            plan: "free".into(),
            password_hash: "…".into(),
        };
        diesel::insert_into(accounts::table)
            .values(&account)
            .execute(conn)?;
        account.emit_created(conn)?;
        Ok(account)
    })
}

/// Changes an account's plan and publishes `account.updated`, atomically.
pub fn change_plan(conn: &mut PgConnection, id: i64, plan: &str) -> Result<(), procon::EmitError> {
    conn.transaction(|conn| {
        let before: Account = accounts::table
            .find(id)
            .select(Account::as_select())
            .for_update()
            .first(conn)?;
        let after: Account = diesel::update(accounts::table.find(id))
            .set(accounts::plan.eq(plan))
            .returning(Account::as_returning())
            .get_result(conn)?;
        after.emit_updated(&before, conn)?;
        Ok(())
    })
}

/// Closes an account and publishes `account.deleted`, atomically.
pub fn close(conn: &mut PgConnection, id: i64) -> Result<(), procon::EmitError> {
    conn.transaction(|conn| {
        let account: Account = diesel::delete(accounts::table.find(id))
            .returning(Account::as_returning())
            .get_result(conn)?;
        account.emit_deleted(conn)?;
        Ok(())
    })
}

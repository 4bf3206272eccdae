//! Values of the wrong shape, each with the correct form in the help, and no follow-on
//! "missing" error for a key that an unreadable attribute may hold.

use procon::Outbox;

#[derive(Outbox)]
#[procon(topic, key = "account_id")]
struct Account {
    account_id: i64,
    #[procon(rename)]
    email: String,
}

#[derive(Outbox)]
#[procon(topic = "accounts", entity = account, skip)]
struct User {
    id: i64,
    #[procon(topic = "users", skip(true))]
    name: String,
}

#[derive(Outbox)]
#[procon = "accounts"]
struct Tenant {
    id: i64,
}

// Unreadable past `key =`: nothing after it is reported missing.
#[derive(Outbox)]
#[procon(key = , topic = "regions")]
struct Region {
    region_id: i64,
}

fn main() {}

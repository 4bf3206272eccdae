use procon::Materialize;

diesel::table! {
    customers (account_id) {
        account_id -> BigInt,
        email -> Text,
    }
}

// Missing topic and entity; a misspelled key.
#[derive(Materialize)]
#[diesel(table_name = customers)]
#[procon(master_kee = account_id)]
struct NoTopic {
    account_id: i64,
    email: String,
}

// Master key naming no field, and malformed.
#[derive(Materialize)]
#[diesel(table_name = customers)]
#[procon(topic = "accounts", entity = "account", master_key = acount_id)]
struct UnknownKey {
    account_id: i64,
    email: String,
}

#[derive(Materialize)]
#[diesel(table_name = customers)]
#[procon(topic = "accounts", entity = "account", master_key = "account_id")]
struct StringKey {
    account_id: i64,
    email: String,
}

// No table anywhere, and no `id` field for the default master key.
#[derive(Materialize)]
#[procon(topic = "accounts", entity = "account")]
struct NoTable {
    account_id: i64,
}

fn main() {}

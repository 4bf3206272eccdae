use procon::Materialize;

diesel::table! {
    customers (account_id) {
        account_id -> BigInt,
        email -> Text,
    }
}

// `emails` is no column of `customers`.
#[derive(Materialize)]
#[diesel(table_name = customers)]
#[procon(topic = "accounts", entity = "account", master_key = account_id)]
struct Misnamed {
    account_id: i64,
    emails: String,
}

// `email` is TEXT, the field an integer.
#[derive(Materialize)]
#[diesel(table_name = customers)]
#[procon(topic = "accounts", entity = "account", master_key = account_id)]
struct Mistyped {
    account_id: i64,
    email: i32,
}

fn main() {}

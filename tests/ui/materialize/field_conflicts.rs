use procon::Materialize;

diesel::table! {
    customers (account_id) {
        account_id -> BigInt,
        email -> Text,
        plan -> Text,
        note -> Nullable<Text>,
    }
}

#[derive(Materialize)]
#[diesel(table_name = customers)]
#[procon(topic = "accounts", entity = "account", master_key = account_id)]
struct Customer {
    #[procon(skip_on_update)]
    account_id: i64,
    #[procon(from = "profile.email", skip)]
    email: String,
    #[procon(skip_on_create, skip_on_update)]
    plan: String,
    #[procon(from = "profile..note")]
    note: Option<String>,
}

fn main() {}

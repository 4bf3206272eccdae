//! Independent mistakes are all reported in one compilation, and the struct still counts as
//! an `Outbox`: no follow-on error where `main` uses it as one.

use procon::Outbox;

#[derive(Outbox)]
#[procon(topik = "accounts", entity = "", key = account_id)]
#[procon(entity = "account")]
struct Account {
    id: i64,
    #[procon(renam = "emailAddress", skip = true)]
    email: String,
    #[procon(skip, rename = "hash")]
    password_hash: String,
    #[procon(rename = "id")]
    legacy_id: i64,
}

fn publish<T: Outbox>(model: &T) -> (String, &'static str) {
    (model.key(), T::ENTITY)
}

fn main() {
    let account = Account {
        id: 1,
        email: String::new(),
        password_hash: String::new(),
        legacy_id: 1,
    };
    let _ = publish(&account);
    let _ = Account::ENTITY;
}

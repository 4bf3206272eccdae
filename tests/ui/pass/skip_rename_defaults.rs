//! `skip`, `rename`, the default entity (snake_case struct name) and the default key (`id`).

#![deny(warnings)]

use procon::Outbox;

#[derive(Outbox)]
#[procon(topic = "bank-accounts")]
struct BankAccount {
    id: u64,
    #[procon(rename = "emailAddress")]
    email: String,
    #[procon(skip)]
    #[allow(dead_code)]
    password_hash: String,
}

fn main() {
    let account = BankAccount {
        id: 7,
        email: "ada@example.com".to_owned(),
        password_hash: "secret".to_owned(),
    };
    assert_eq!(BankAccount::ENTITY, "bank_account");
    assert_eq!(account.topic(), "bank-accounts");
    assert_eq!(account.key(), "7");
}

//! The derive sits next to `#[derive(serde::Serialize)]` (and `#[serde]` attributes) without
//! interfering: the outbox payload ignores `#[serde]`, serde ignores `#[procon]`.

#![deny(warnings)]

use procon::Outbox;

#[derive(Outbox, serde::Serialize)]
#[serde(rename_all = "camelCase")]
#[procon(topic = "accounts", entity = "account")]
struct Account {
    id: i64,
    #[serde(rename = "mail")]
    #[procon(rename = "email")]
    email_address: String,
    #[procon(skip)]
    #[serde(skip)]
    password_hash: String,
}

/// Serializes through `Outbox::serialize_payload` rather than `Serialize`.
struct Payload<'a, T>(&'a T);

impl<T: Outbox> serde::Serialize for Payload<'_, T> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.0.serialize_payload(serializer)
    }
}

fn main() {
    let account = Account {
        id: 1,
        email_address: "ada@example.com".to_owned(),
        password_hash: "secret".to_owned(),
    };
    assert_eq!(
        serde_json::to_value(&account).unwrap(),
        serde_json::json!({ "id": 1, "mail": "ada@example.com" }),
    );
    assert_eq!(
        serde_json::to_value(Payload(&account)).unwrap(),
        serde_json::json!({ "id": 1, "email": "ada@example.com" }),
    );
    assert_eq!(account.password_hash, "secret");
}

//! `#[derive(Materialize)]` and the same impl written by hand both compile and register.
// `diesel::table!` makes public items without docs; the case is about the impls below.
#![allow(missing_docs)]
use diesel::pg::PgConnection;
use procon::{Materialize, MaterializeError, MaterializeHooks};

diesel::table! {
    customers (account_id) {
        account_id -> BigInt,
        email -> Text,
    }
}

#[derive(Materialize)]
#[diesel(table_name = customers)]
#[procon(topic = "accounts", entity = "account", master_key = account_id)]
struct Derived {
    #[procon(from = "id")]
    account_id: i64,
    #[procon(from = "profile.email")]
    email: String,
}

struct ByHand {
    account_id: i64,
    email: String,
}

impl Materialize for ByHand {
    const TOPIC: &'static str = "other-accounts";
    const CREATED: &'static str = "account.created";
    const UPDATED: &'static str = "account.updated";
    const DELETED: &'static str = "account.deleted";

    fn from_image(
        image: &procon::runtime::materialize::Image<'_>,
    ) -> Result<Self, MaterializeError> {
        Ok(ByHand {
            account_id: image.attribute("id", "account_id")?,
            email: image.attribute("profile.email", "email")?,
        })
    }

    fn upsert(&self, conn: &mut PgConnection) -> diesel::QueryResult<usize> {
        use diesel::prelude::*;
        diesel::insert_into(customers::table)
            .values((
                customers::account_id.eq(self.account_id),
                customers::email.eq(&self.email),
            ))
            .on_conflict(customers::account_id)
            .do_update()
            .set(customers::email.eq(diesel::upsert::excluded(customers::email)))
            .execute(conn)
    }

    fn delete(&self, conn: &mut PgConnection) -> diesel::QueryResult<usize> {
        use diesel::prelude::*;
        diesel::delete(customers::table.filter(customers::account_id.eq(self.account_id)))
            .execute(conn)
    }
}

impl MaterializeHooks for ByHand {}
procon::register_materializer!(ByHand);

fn main() {
    let events: Vec<&str> = procon::runtime::consumer::registered_handlers()
        .iter()
        .map(|r| r.event)
        .collect();
    assert_eq!(
        events.iter().filter(|e| **e == "account.created").count(),
        2
    );
    let _ = std::mem::size_of::<Derived>();
}

//! One PostgreSQL schema per test, so tests (and their relays) never see each other's outbox.

use diesel::connection::SimpleConnection;
use diesel::{Connection, PgConnection, QueryableByName, RunQueryDsl};

/// The database the tests use (the `test` database of the local server by default).
pub fn base_url() -> String {
    std::env::var("PROCON_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned())
}

/// A fresh schema with procon's tables and the test model's table.
pub struct TestDb {
    /// The URL whose `search_path` is the test schema.
    pub url: String,
    /// The schema name.
    pub schema: String,
}

#[derive(QueryableByName)]
struct Count {
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    n: i64,
}

/// One `count(*) AS n`.
#[derive(QueryableByName)]
pub struct CountRow {
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    pub n: i64,
}

impl TestDb {
    /// Drops and recreates schema `t_<name>`, then applies procon's migrations in it.
    pub fn new(name: &str) -> TestDb {
        let db = TestDb::empty(name);
        let mut conn = db.conn();
        procon::migrate(&mut conn).expect("apply procon migrations");
        conn.batch_execute(super::model::CREATE_ACCOUNTS)
            .expect("create the accounts table");
        db
    }

    /// Drops and recreates schema `t_<name>`, empty: no migration applied.
    pub fn empty(name: &str) -> TestDb {
        let schema = format!("t_{name}");
        let mut admin = PgConnection::establish(&base_url()).expect("connect to the test database");
        admin
            .batch_execute(&format!(
                "DROP SCHEMA IF EXISTS {schema} CASCADE; CREATE SCHEMA {schema};"
            ))
            .expect("create the test schema");
        TestDb {
            url: with_search_path(&base_url(), &schema),
            schema,
        }
    }

    /// A new connection to the test schema.
    pub fn conn(&self) -> PgConnection {
        PgConnection::establish(&self.url).expect("connect to the test schema")
    }

    /// Number of rows waiting in the outbox.
    pub fn outbox_len(&self) -> i64 {
        count(&mut self.conn(), "procon_outbox")
    }
}

/// Adds `options=-csearch_path=<schema>` to a PostgreSQL URL (understood by libpq and
/// tokio-postgres alike).
pub fn with_search_path(url: &str, schema: &str) -> String {
    let separator = if url.contains('?') { '&' } else { '?' };
    format!("{url}{separator}options=-csearch_path%3D{schema}")
}

/// Number of rows of `table`.
pub fn count(conn: &mut PgConnection, table: &str) -> i64 {
    count_where(conn, table, "true")
}

/// Rows of `table` matching the SQL condition `condition`.
pub fn count_where(conn: &mut PgConnection, table: &str, condition: &str) -> i64 {
    let count: Count = diesel::sql_query(format!(
        "SELECT count(*) AS n FROM {table} WHERE {condition}"
    ))
    .get_result(conn)
    .unwrap_or_else(|e| panic!("count {table} where {condition}: {e}"));
    count.n
}

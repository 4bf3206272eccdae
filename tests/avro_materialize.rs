//! A materializer fed by Avro events (real PostgreSQL, the real broker, the test registry of
//! tests/common/registry.rs): the local copy follows creates, updates and deletes of the
//! Avro model, reading the fields its own type names.

mod common;

use std::time::Duration;

use common::avro_model::{AvroAccount, AVRO_TOPIC};
use common::broker::{brokers, create_topic, unique_topic};
use common::db::TestDb;
use common::registry::FakeRegistry;
use diesel::connection::SimpleConnection;
use diesel::prelude::*;
use procon::prelude::*;
use procon::Materialize;

mod schema {
    diesel::table! {
        account_copies (id) {
            id -> BigInt,
            owner_name -> Text,
            seq -> BigInt,
            nickname -> Nullable<Text>,
        }
    }
}
use schema::account_copies;

/// The local copy of an Avro account.
#[derive(Debug, Clone, PartialEq, Queryable, Selectable, Materialize)]
#[diesel(table_name = account_copies)]
#[procon(topic = "avro-accounts", entity = "account", master_key = id)]
struct AccountCopy {
    id: i64,
    owner_name: String,
    seq: i64,
    nickname: Option<String>,
}

fn account(id: i64, seq: i64, nickname: Option<&str>) -> AvroAccount {
    AvroAccount {
        id,
        owner: format!("owner-{id}"),
        seq,
        nickname: nickname.map(str::to_owned),
        secret: String::new(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_materializer_follows_an_avro_model() {
    common::init_logs();
    let db = TestDb::new("avro_materialize");
    db.conn()
        .batch_execute(
            "CREATE TABLE account_copies (id BIGINT PRIMARY KEY, owner_name TEXT NOT NULL, \
             seq BIGINT NOT NULL, nickname TEXT)",
        )
        .unwrap();
    let topic = unique_topic("avro-materialize");
    create_topic(&brokers(), &topic, 2).await;
    let registry = FakeRegistry::start();
    let mut config = common::consumer_config(
        &db,
        &brokers(),
        &unique_topic("avro-materialize-group"),
        &unique_topic("unused-ledger"),
    );
    config.relay.topics.insert(AVRO_TOPIC.into(), topic.clone());
    config
        .consumer
        .topics
        .insert(AVRO_TOPIC.into(), topic.clone());
    config.schema_registry.url = Some(registry.url.clone());
    let runtime = procon::start(config).unwrap();

    let mut conn = db.conn();
    conn.transaction(|conn| {
        for id in 0..5 {
            account(id, 1, None).emit_created(conn)?;
        }
        for id in 0..5 {
            account(id, 2, Some("nick")).emit_updated(&account(id, 1, None), conn)?;
        }
        account(0, 2, Some("nick")).emit_deleted(conn)?;
        Ok::<_, procon::EmitError>(())
    })
    .unwrap();

    let expected: Vec<AccountCopy> = (1..5)
        .map(|id| AccountCopy {
            id,
            owner_name: format!("owner-{id}"),
            seq: 2,
            nickname: Some("nick".into()),
        })
        .collect();
    common::wait_for(
        "the copies to follow the Avro events",
        Duration::from_secs(60),
        || {
            let copies: Vec<AccountCopy> = account_copies::table
                .select(AccountCopy::as_select())
                .order(account_copies::id)
                .load(&mut db.conn())
                .unwrap();
            (copies == expected).then_some(())
        },
    );
    assert_eq!(registry.subjects().len(), 1);
    runtime.shutdown().await.unwrap();
}

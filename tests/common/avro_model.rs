//! The Avro model the tests publish (also linked into `procon-test-cli`, so its
//! `schemas` commands have a model to list, register and check), and what an older consumer
//! knows of it.

use procon::prelude::*;
use serde::{Deserialize, Serialize};

/// The logical topic of [`AvroAccount`]: each test maps it to a physical topic of its own.
pub const AVRO_TOPIC: &str = "avro-accounts";

/// An account published as Avro. `nickname` is the field this writer added since
/// [`AccountV1`]: an `Option`, so its schema gives it the default `null`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Outbox)]
#[procon(
    topic = "avro-accounts",
    entity = "account",
    key = id,
    format = "avro",
    avro_name = "Account",
    avro_namespace = "procon.test"
)]
pub struct AvroAccount {
    pub id: i64,
    #[procon(rename = "owner_name")]
    pub owner: String,
    pub seq: i64,
    pub nickname: Option<String>,
    #[procon(skip)]
    pub secret: String,
}

/// An account as a consumer deployed before `nickname` existed reads it.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct AccountV1 {
    pub id: i64,
    pub owner_name: String,
    pub seq: i64,
}

/// The schema of an earlier deploy in which `seq` was a string: the current model cannot read
/// its events (a breaking change under BACKWARD).
pub const SEQ_AS_STRING: &str = r#"{"type":"record","name":"AccountEvent","namespace":"procon.test","fields":[
  {"name":"schema_version","type":"int"},{"name":"event_id","type":"string"},
  {"name":"event","type":"string"},{"name":"entity","type":"string"},{"name":"kind","type":"string"},
  {"name":"key","type":"string"},
  {"name":"occurred_at","type":{"type":"long","logicalType":"timestamp-micros"}},
  {"name":"before","type":["null",{"type":"record","name":"Account","fields":[
     {"name":"id","type":"long"},{"name":"owner_name","type":"string"},{"name":"seq","type":"string"}]}],"default":null},
  {"name":"after","type":["null","procon.test.Account"],"default":null},
  {"name":"metadata","type":{"type":"map","values":"string"},"default":{}},
  {"name":"traceparent","type":["null","string"],"default":null}]}"#;

//! The Kinesis emulator of the tests (kinesis-local, started by `scripts/kinesis.sh`): a
//! client, streams of a test's own, and a reader of everything a stream holds.

use std::time::Duration;

use aws_sdk_kinesis::types::{Shard, ShardIteratorType};
use procon::runtime::transport::kinesis::{self, Client};

/// The emulator's endpoint: `PROCON_TEST_KINESIS_ENDPOINT`, default `http://127.0.0.1:4568`.
pub fn endpoint() -> String {
    std::env::var("PROCON_TEST_KINESIS_ENDPOINT")
        .unwrap_or_else(|_| "http://127.0.0.1:4568".to_owned())
}

/// Kinesis settings pointing at the emulator.
pub fn settings() -> procon::KinesisConfig {
    procon::KinesisConfig {
        region: "us-east-1".to_owned(),
        endpoint_url: Some(endpoint()),
        ..procon::KinesisConfig::default()
    }
}

/// A client of the emulator, built the way the runtime builds its own.
pub fn client() -> Client {
    procon::runtime::transport::kinesis::client(&settings()).expect("a Kinesis client")
}

/// A stream name no other test uses.
pub fn unique_stream(prefix: &str) -> String {
    super::broker::unique_topic(prefix)
}

/// Creates `stream` with `shards` shards and waits until it is active.
pub async fn create_stream(client: &Client, stream: &str, shards: i32) {
    kinesis::ensure_stream(client, stream, shards, Duration::from_secs(10))
        .await
        .expect("a new stream");
}

/// Waits until `stream` is active (after a split or merge).
pub async fn wait_active(client: &Client, stream: &str) {
    kinesis::wait_active(client, stream, Duration::from_secs(10))
        .await
        .expect("an active stream");
}

/// Every shard of `stream`, open and closed.
pub async fn shards(client: &Client, stream: &str) -> Vec<Shard> {
    client
        .list_shards()
        .stream_name(stream)
        .send()
        .await
        .expect("ListShards")
        .shards()
        .to_vec()
}

/// One record as read back.
#[derive(Debug, Clone)]
pub struct Read {
    /// The shard it was read from.
    pub shard: String,
    /// Its sequence number.
    pub sequence: String,
    /// Its partition key.
    pub key: String,
    /// Its data.
    pub data: Vec<u8>,
}

/// What one shard holds now, from its oldest record, and whether the shard is closed and read
/// to its end (its last `GetRecords` gave no next iterator).
pub async fn read_shard(client: &Client, stream: &str, shard: &str) -> (Vec<Read>, bool) {
    let mut iterator = client
        .get_shard_iterator()
        .stream_name(stream)
        .shard_id(shard)
        .shard_iterator_type(ShardIteratorType::TrimHorizon)
        .send()
        .await
        .expect("GetShardIterator")
        .shard_iterator()
        .map(str::to_owned);
    let mut read = Vec::new();
    while let Some(current) = iterator.take() {
        let page = client
            .get_records()
            .shard_iterator(current)
            .send()
            .await
            .expect("GetRecords");
        let records = page.records();
        for record in records {
            read.push(Read {
                shard: shard.to_owned(),
                sequence: record.sequence_number().to_owned(),
                key: record.partition_key().unwrap_or_default().to_owned(),
                data: record.data().as_ref().to_vec(),
            });
        }
        let next = page.next_shard_iterator().map(str::to_owned);
        if next.is_none() {
            return (read, true);
        }
        if records.is_empty() && page.millis_behind_latest() == Some(0) {
            return (read, false);
        }
        iterator = next;
    }
    (read, false)
}

/// Everything `stream` holds, shard by shard (in `ListShards` order).
pub async fn read_all(client: &Client, stream: &str) -> Vec<Read> {
    let mut all = Vec::new();
    for shard in shards(client, stream).await {
        all.extend(read_shard(client, stream, shard.shard_id()).await.0);
    }
    all
}

/// Reads `stream` until `done` holds for what it holds, or panics after `timeout`.
pub async fn read_until(
    client: &Client,
    stream: &str,
    timeout: Duration,
    done: impl Fn(&[Read]) -> bool,
) -> Vec<Read> {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        let read = read_all(client, stream).await;
        if done(&read) {
            return read;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "timed out after {timeout:?} reading {stream}: {} records so far",
            read.len()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Kinesis sequence numbers are decimal strings of up to 128 digits: compared by length, then
/// digit by digit.
pub fn sequence_order(a: &str, b: &str) -> std::cmp::Ordering {
    a.len().cmp(&b.len()).then_with(|| a.cmp(b))
}

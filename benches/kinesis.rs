//! Scenario 9: the relay and the exactly-once consumer on Kinesis against a raw
//! `aws-sdk-kinesis` producer and reader, in the same run against the same emulator
//! (`PROCON_BENCH_KINESIS_ENDPOINT`, default `http://127.0.0.1:4568`): `BENCH_KINESIS_EVENTS`
//! (default 5,000: the emulator slows down as it holds more) events over 1,000 keys on a
//! stream of 4 shards.
//!
//! The producer baseline sends the same record bytes (procon's header line and the envelope)
//! with the same partition keys, in `PutRecords` calls of 500 records, 8 calls at once: what
//! the relay's publisher does, without the outbox. The reader baseline reads the relay's
//! stream with `GetRecords` (1,000 records a call) on the 4 shards at once and decodes each
//! record; the consumer applies the same records, each in a transaction with one insert (the
//! Kafka scenarios' handler), 8 processors.

use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_sdk_kinesis::primitives::Blob;
use aws_sdk_kinesis::types::PutRecordsRequestEntry;
use diesel::connection::SimpleConnection;
use diesel::PgConnection;
use procon::runtime::transport::kinesis::{self, record, Client};

use aws_sdk_kinesis::types::ShardIteratorType;

use super::{env_or, exactly_once_consumer_with, fill_outbox, outbox_len, BoxError, KEYS};

fn settings() -> procon::KinesisConfig {
    procon::KinesisConfig {
        endpoint_url: Some(env_or(
            "PROCON_BENCH_KINESIS_ENDPOINT",
            "http://127.0.0.1:4568",
        )),
        ..procon::KinesisConfig::default()
    }
}

async fn create_stream(client: &Client, stream: &str) -> Result<(), BoxError> {
    Ok(kinesis::ensure_stream(client, stream, 4, Duration::from_secs(30)).await?)
}

/// Raw `PutRecords`: `count` records of `data`, 500 per call, 8 calls at once.
async fn raw_producer(
    client: &Client,
    stream: &str,
    data: &[u8],
    count: i64,
) -> Result<f64, BoxError> {
    let calls = Arc::new(tokio::sync::Semaphore::new(8));
    let started = Instant::now();
    let mut sent = Vec::new();
    for chunk in 0..(count + 499) / 500 {
        let permit = calls.clone().acquire_owned().await?;
        let entries = (chunk * 500..((chunk + 1) * 500).min(count))
            .map(|i| {
                PutRecordsRequestEntry::builder()
                    .partition_key((i % KEYS).to_string())
                    .data(Blob::new(data))
                    .build()
            })
            .collect::<Result<Vec<_>, _>>()?;
        let call = client
            .put_records()
            .stream_name(stream)
            .set_records(Some(entries));
        sent.push(tokio::spawn(async move {
            let output = call.send().await;
            drop(permit);
            output.map(|o| o.failed_record_count().unwrap_or(0))
        }));
    }
    for call in sent {
        let failed = call.await??;
        if failed > 0 {
            return Err(format!("the emulator failed {failed} records of a call").into());
        }
    }
    Ok(count as f64 / started.elapsed().as_secs_f64())
}

/// Raw `GetRecords` on every shard of `stream` at once, from its oldest record, decoding each
/// record, until `count` records are read.
async fn raw_reader(client: &Client, stream: &str, count: usize) -> Result<f64, BoxError> {
    let shards = client.list_shards().stream_name(stream).send().await?;
    let started = Instant::now();
    let reads = shards.shards().iter().map(|shard| {
        let (client, stream, shard) = (
            client.clone(),
            stream.to_owned(),
            shard.shard_id().to_owned(),
        );
        async move {
            let mut iterator = client
                .get_shard_iterator()
                .stream_name(&stream)
                .shard_id(&shard)
                .shard_iterator_type(ShardIteratorType::TrimHorizon)
                .send()
                .await?
                .shard_iterator()
                .map(str::to_owned);
            let mut read = 0usize;
            while let Some(current) = iterator.take() {
                let page = client
                    .get_records()
                    .shard_iterator(current)
                    .limit(1000)
                    .send()
                    .await?;
                for r in page.records() {
                    record::decode(r.data().as_ref())?;
                    read += 1;
                }
                if page.records().is_empty() && page.millis_behind_latest() == Some(0) {
                    break;
                }
                iterator = page.next_shard_iterator().map(str::to_owned);
            }
            Ok::<usize, BoxError>(read)
        }
    });
    let mut read = 0;
    for shard in futures::future::join_all(reads).await {
        read += shard?;
    }
    if read < count {
        return Err(format!("the raw reader found {read} of {count} records").into());
    }
    Ok(read as f64 / started.elapsed().as_secs_f64())
}

/// Scenario 9; prints its lines.
pub async fn scenario(url: &str, conn: &mut PgConnection, run: &str) -> Result<(), BoxError> {
    let events: i64 = env_or("BENCH_KINESIS_EVENTS", "5000").parse()?;
    let client = kinesis::client(&settings())?;
    let (raw_stream, relay_stream) = (
        format!("bench-kinesis-raw-{run}"),
        format!("bench-kinesis-relay-{run}"),
    );
    create_stream(&client, &raw_stream).await?;
    create_stream(&client, &relay_stream).await?;
    conn.batch_execute("TRUNCATE procon_outbox")?;
    let payload = fill_outbox(conn, &relay_stream, events)?;
    let data = record::encode(
        &[
            ("procon-event-id", b"01930000-0000-7000-8000-000000000000"),
            ("procon-event", b"item.created"),
            ("procon-entity", b"item"),
            ("content-type", b"application/json"),
        ],
        payload.as_bytes(),
    )?;
    println!(
        "kinesis: {events} events, {KEYS} keys, 4 shards, {} B records",
        data.len()
    );
    let raw = raw_producer(&client, &raw_stream, &data, events).await?;
    println!("kinesis raw PutRecords (baseline):    {raw:>9.0} events/s");
    let mut config = procon::Config::new_kinesis(url, settings());
    config.consumer.enabled = false;
    let runtime = procon::start(config)?;
    let started = Instant::now();
    while outbox_len(conn)? > 0 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let relay = events as f64 / started.elapsed().as_secs_f64();
    runtime.shutdown().await?;
    println!(
        "kinesis relay draining the outbox:    {relay:>9.0} events/s   ({:.2}x raw PutRecords)",
        relay / raw
    );
    let reader = raw_reader(&client, &relay_stream, events as usize).await?;
    println!("kinesis raw GetRecords (baseline):    {reader:>9.0} events/s");
    let mut config = procon::Config::new_kinesis(url, settings());
    config.consumer.concurrency = 8;
    let consumer = exactly_once_consumer_with(config, conn, &relay_stream, events, 1, 8).await?;
    println!(
        "kinesis exactly-once consumer:        {consumer:>9.0} events/s   ({:.3}x raw GetRecords)",
        consumer / reader
    );
    Ok(())
}

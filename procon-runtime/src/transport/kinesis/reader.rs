//! Reading a stream for its operator, without leases or stored positions: [`read_stream`],
//! everything it holds now (a dead-letter stream's view), and [`positions_at`], where each
//! shard's first record at or after a time sits (a replay's start). Blocking: they run the
//! SDK's calls on the current Tokio runtime (call them from a blocking thread there) or, outside
//! one, on a runtime of their own.

use std::collections::BTreeMap;
use std::future::Future;
use std::time::{Duration, Instant, SystemTime};

use aws_sdk_kinesis::primitives::DateTime;
use aws_sdk_kinesis::types::ShardIteratorType;

use super::source::{message, partition_number, position_of};
use super::{client, shard_iterator, Client, KinesisError};
use crate::config::Config;
use crate::transport::{Message, PartitionId, Position};

/// Records asked for per `GetRecords` call while reading a whole stream.
const PAGE: i32 = 1000;

/// Every record `stream` holds, shard by shard in position order, read up to each shard's end
/// as it was when its reading started; after `timeout`, what was read by then (logged).
/// `progress` is told the records read so far (twice: Kinesis says nothing of how many are
/// left).
pub fn read_stream(
    config: &Config,
    stream: &str,
    timeout: Duration,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<Vec<Message>, KinesisError> {
    let client = client(&config.kinesis)?;
    let deadline = Instant::now() + timeout;
    block_on(async {
        let mut messages = Vec::new();
        for shard in shard_ids(&client, stream).await? {
            let Some(number) = partition_number(&shard) else {
                continue;
            };
            let partition = PartitionId {
                topic: stream.to_owned(),
                partition: number,
            };
            let kind = ShardIteratorType::TrimHorizon;
            let opened = shard_iterator(&client, stream, &shard, kind, None, None);
            let mut iterator = opened.await?;
            while let Some(current) = iterator {
                if Instant::now() >= deadline {
                    tracing::warn!(
                        stream,
                        read = messages.len(),
                        "the stream was not read to its end in time; showing what was read"
                    );
                    return Ok(messages);
                }
                let page = client
                    .get_records()
                    .shard_iterator(current)
                    .limit(PAGE)
                    .send()
                    .await
                    .map_err(|error| KinesisError::from_sdk("GetRecords", &error))?;
                for record in page.records() {
                    if let Some(position) = position_of(record.sequence_number()) {
                        messages.push(message(&partition, position, record));
                    }
                }
                let read = messages.len() as u64;
                progress(read, read);
                // An empty page at the shard's tip ends it; a closed shard ends by itself.
                let at_tip = page.millis_behind_latest().is_none_or(|behind| behind == 0);
                iterator = match page.records().is_empty() && at_tip {
                    true => None,
                    false => page.next_shard_iterator().map(str::to_owned),
                };
            }
        }
        messages.sort_by(|a, b| (&a.partition, a.position).cmp(&(&b.partition, b.position)));
        Ok(messages)
    })?
}

/// Per shard of `stream` (by number), the position of its first record written at or after
/// `at` (an `AT_TIMESTAMP` iterator); shards holding nothing that recent are left out.
pub fn positions_at(
    config: &Config,
    stream: &str,
    at: SystemTime,
    timeout: Duration,
) -> Result<BTreeMap<i32, Position>, KinesisError> {
    let client = client(&config.kinesis)?;
    let deadline = Instant::now() + timeout;
    block_on(async {
        let mut positions = BTreeMap::new();
        for shard in shard_ids(&client, stream).await? {
            let Some(number) = partition_number(&shard) else {
                continue;
            };
            let kind = ShardIteratorType::AtTimestamp;
            let at = Some(DateTime::from(at));
            let opened = shard_iterator(&client, stream, &shard, kind, None, at);
            let mut iterator = opened.await?;
            while let Some(current) = iterator {
                if Instant::now() >= deadline {
                    return Err(KinesisError {
                        operation: "GetRecords",
                        code: None,
                        message: format!("{stream}/{shard} was not read in time"),
                        refused_here: false,
                    });
                }
                let page = client
                    .get_records()
                    .shard_iterator(current)
                    .limit(1)
                    .send()
                    .await
                    .map_err(|error| KinesisError::from_sdk("GetRecords", &error))?;
                if let Some(record) = page.records().first() {
                    if let Some(position) = position_of(record.sequence_number()) {
                        positions.insert(number, position);
                    }
                    break;
                }
                let at_tip = page.millis_behind_latest().is_none_or(|behind| behind == 0);
                iterator = match at_tip {
                    true => None,
                    false => page.next_shard_iterator().map(str::to_owned),
                };
            }
        }
        Ok(positions)
    })?
}

/// Every shard of `stream`, open and closed, in id order.
async fn shard_ids(client: &Client, stream: &str) -> Result<Vec<String>, KinesisError> {
    let mut ids: Vec<String> = super::list_shards(client, stream)
        .await?
        .iter()
        .map(|shard| shard.shard_id().to_owned())
        .collect();
    ids.sort();
    Ok(ids)
}

/// Runs `work` to completion: on the current runtime from one of its blocking threads, or on a
/// runtime of its own outside any.
fn block_on<F: Future>(work: F) -> Result<F::Output, KinesisError> {
    if let Ok(handle) = tokio::runtime::Handle::try_current() {
        return Ok(handle.block_on(work));
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|error| KinesisError {
            operation: "start a runtime",
            code: None,
            message: error.to_string(),
            refused_here: true,
        })?;
    Ok(runtime.block_on(work))
}

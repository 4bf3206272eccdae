//! Reading a topic for its operator, without a consumer group (nothing is committed; the
//! topic is left as it is): [`read_topic`], everything it holds now (a dead-letter topic's
//! view), and [`positions_at`], where each partition stood at a time (a replay's start).

use std::collections::BTreeMap;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Message as _, Offset, TopicPartitionList};

use super::{client_config, TracingContext};
use crate::config::Config;
use crate::transport::{Message, Position, TransportError};

/// Every message `topic` holds, partition by partition in position order, read up to each
/// partition's end as it was when the call started; after `timeout`, what was read by then
/// (logged). `progress` is told (messages read, messages to read) as reading goes on.
pub fn read_topic(
    config: &Config,
    topic: &str,
    timeout: Duration,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<Vec<Message>, TransportError> {
    let consumer = reader(config)?;
    let partitions = partitions_of(&consumer, topic, timeout)?;
    let mut assignment = TopicPartitionList::new();
    let mut ends = Vec::new();
    for partition in &partitions {
        let (low, high) = consumer.fetch_watermarks(topic, *partition, timeout)?;
        if high > low {
            assignment.add_partition_offset(topic, *partition, Offset::Offset(low))?;
            ends.push((*partition, high));
        }
    }
    if ends.is_empty() {
        return Ok(Vec::new());
    }
    let total: i64 = ends
        .iter()
        .map(|(partition, high)| {
            let low = assignment
                .find_partition(topic, *partition)
                .and_then(|e| e.offset().to_raw())
                .unwrap_or(*high);
            high - low
        })
        .sum();
    let total = u64::try_from(total).unwrap_or(0);
    progress(0, total);
    consumer.assign(&assignment)?;
    let deadline = Instant::now() + timeout;
    let mut messages: Vec<Message> = Vec::new();
    let done = |messages: &[Message]| {
        ends.iter().all(|(partition, high)| {
            messages
                .iter()
                .filter(|m| m.partition.partition == *partition)
                .any(|m| m.position.as_offset().is_some_and(|o| o + 1 >= *high))
        })
    };
    while !done(&messages) {
        if Instant::now() >= deadline {
            tracing::warn!(
                topic,
                read = messages.len(),
                "the topic was not read to its end in time; showing what was read"
            );
            break;
        }
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(m)) => {
                messages.push(super::source::owned(&m));
                progress(messages.len() as u64, total);
            }
            Some(Err(error)) => return Err(error.into()),
            None => {}
        }
    }
    messages.sort_by(|a, b| (&a.partition, a.position).cmp(&(&b.partition, b.position)));
    Ok(messages)
}

/// Per partition of `topic`, the position of its first message written at or after `at`;
/// partitions holding no message that recent are left out (nothing of theirs to replay).
///
/// The broker's time index answers the lookup. A partition whose newest message is older than
/// `at` is checked here rather than trusted to the broker: tansu answers such a lookup with
/// the partition's first position, which would replay the whole partition.
pub fn positions_at(
    config: &Config,
    topic: &str,
    at: SystemTime,
    timeout: Duration,
) -> Result<BTreeMap<i32, Position>, TransportError> {
    let consumer = reader(config)?;
    let at_ms = at
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
    let mut query = TopicPartitionList::new();
    for partition in partitions_of(&consumer, topic, timeout)? {
        query.add_partition_offset(topic, partition, Offset::Offset(at_ms))?;
    }
    let answer = consumer.offsets_for_times(query, timeout)?;
    let mut positions = BTreeMap::new();
    for element in answer.elements() {
        let partition = element.partition();
        element.error()?;
        // `End`: no message at or after `at` (Kafka's answer when there is none).
        let Offset::Offset(offset) = element.offset() else {
            continue;
        };
        let (low, high) = consumer.fetch_watermarks(topic, partition, timeout)?;
        if offset >= high {
            continue;
        }
        let newest = timestamp_at(&consumer, topic, partition, high - 1, timeout)?;
        if newest.is_some_and(|newest| newest < at_ms) {
            continue;
        }
        positions.insert(partition, Position::offset(offset.max(low)));
    }
    Ok(positions)
}

/// The timestamp (ms) of the message at `offset` of `partition`; `None` when it has none or
/// was not read in time.
fn timestamp_at(
    consumer: &BaseConsumer<TracingContext>,
    topic: &str,
    partition: i32,
    offset: i64,
    timeout: Duration,
) -> Result<Option<i64>, TransportError> {
    let mut assignment = TopicPartitionList::new();
    assignment.add_partition_offset(topic, partition, Offset::Offset(offset))?;
    consumer.assign(&assignment)?;
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(message)) if message.partition() == partition => {
                return Ok(message.timestamp().to_millis());
            }
            Some(Ok(_)) | None => {}
            Some(Err(error)) => return Err(error.into()),
        }
    }
    Ok(None)
}

/// A consumer that reads without a group's positions (nothing is committed).
fn reader(config: &Config) -> Result<BaseConsumer<TracingContext>, TransportError> {
    Ok(client_config(config)
        .set("group.id", format!("{}-reader", config.service_name))
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "false")
        .create_with_context(TracingContext)?)
}

/// The partitions of `topic`, from the broker's metadata.
fn partitions_of(
    consumer: &BaseConsumer<TracingContext>,
    topic: &str,
    timeout: Duration,
) -> Result<Vec<i32>, TransportError> {
    let metadata = consumer.fetch_metadata(Some(topic), timeout)?;
    Ok(metadata
        .topics()
        .iter()
        .flat_map(|t| t.partitions().iter().map(|p| p.id()))
        .collect())
}

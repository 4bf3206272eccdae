//! [`read_topic`]: everything a topic holds now, read without a consumer group (the operator's
//! view of a dead-letter topic). Nothing is committed; the topic is left as it is.

use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Offset, TopicPartitionList};

use super::{client_config, TracingContext};
use crate::config::Config;
use crate::transport::{Message, TransportError};

/// Every message `topic` holds, partition by partition in position order, read up to each
/// partition's end as it was when the call started; after `timeout`, what was read by then
/// (logged).
pub fn read_topic(
    config: &Config,
    topic: &str,
    timeout: Duration,
) -> Result<Vec<Message>, TransportError> {
    let consumer: BaseConsumer<TracingContext> = client_config(config)
        .set("group.id", format!("{}-reader", config.service_name))
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "false")
        .create_with_context(TracingContext)?;
    let metadata = consumer.fetch_metadata(Some(topic), timeout)?;
    let partitions: Vec<i32> = metadata
        .topics()
        .iter()
        .flat_map(|t| t.partitions().iter().map(|p| p.id()))
        .collect();
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
            Some(Ok(m)) => messages.push(super::source::owned(&m)),
            Some(Err(error)) => return Err(error.into()),
            None => {}
        }
    }
    messages.sort_by(|a, b| (&a.partition, a.position).cmp(&(&b.partition, b.position)));
    Ok(messages)
}

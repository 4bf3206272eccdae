//! procon's metrics, through the [`metrics`] facade: the application installs the exporter it
//! wants (or enables the admin server, which installs a Prometheus recorder and serves
//! `/metrics`). Without a recorder every call here is a no-op.
//!
//! Names follow Prometheus conventions: base units (`_seconds`), `_total` for counters, labels
//! for what varies (`topic` is the physical topic or stream). Every metric is described once at
//! start ([`describe`]) and listed in the README ("Operating procon").
//!
//! Job: name the metrics and record them; the callers (relay rounds, consumer processors and
//! intake) decide when. Nothing here blocks or fails.

use std::time::Duration;

use metrics::{
    counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram, Unit,
};

/// Events waiting in the outbox (sampled by the relay at each lease heartbeat).
pub const OUTBOX_PENDING: &str = "procon_outbox_pending_events";
/// Age of the oldest event waiting in the outbox, 0 when it is empty.
pub const OUTBOX_OLDEST_AGE: &str = "procon_outbox_oldest_pending_age_seconds";
/// Events parked (rejected by the transport on every attempt).
pub const OUTBOX_PARKED: &str = "procon_outbox_parked_events";
/// Events the transport acknowledged, by topic.
pub const RELAY_PUBLISHED: &str = "procon_relay_published_total";
/// Deliveries that failed (retried or parked), by topic and `rejected` (`true`: the transport
/// refused the record itself; `false`: an outage or timeout).
pub const RELAY_FAILED: &str = "procon_relay_failed_total";
/// Events moved to the parked table, by topic.
pub const RELAY_PARKED: &str = "procon_relay_parked_total";
/// Time from handing a record to the transport to its acknowledgement.
pub const RELAY_ACK_SECONDS: &str = "procon_relay_ack_duration_seconds";
/// Outbox shards this relay holds (0: standby).
pub const RELAY_SHARDS_HELD: &str = "procon_relay_shards_held";
/// Messages the consumer settled, by topic and outcome: `applied` (the handler's transaction
/// committed), `duplicate` (its event id was applied before), `failed` (an attempt failed),
/// and when the attempts are exhausted `dead_lettered`, `error_emitted` or `stopped` (the
/// failure policy).
pub const CONSUMER_MESSAGES: &str = "procon_consumer_messages_total";
/// Time to apply one unit (one transaction: a message, or a batch), by topic.
pub const CONSUMER_UNIT_SECONDS: &str = "procon_consumer_unit_duration_seconds";
/// Messages between the stored position and the log end, by topic and partition (Kafka; Kinesis
/// has no log end to compare with).
pub const CONSUMER_LAG: &str = "procon_consumer_lag_messages";
/// Messages received and not yet applied, by topic and partition.
pub const CONSUMER_IN_FLIGHT: &str = "procon_consumer_in_flight_messages";
/// Partitions this member owns.
pub const CONSUMER_PARTITIONS: &str = "procon_consumer_assigned_partitions";
/// Lanes (keys, or whole partitions) held on a failing message, retrying.
pub const CONSUMER_STALLED: &str = "procon_consumer_stalled_lanes";
/// Lanes stopped by the `stop` policy (or an out-of-range position) until an operator resumes.
pub const CONSUMER_STOPPED: &str = "procon_consumer_stopped_lanes";
/// Error events written for messages whose attempts were exhausted (policy `dead_letter`).
pub const CONSUMER_DEAD_LETTERS: &str = "procon_consumer_dead_letters_total";

/// Every metric, as `describe_*` registers them and the README lists them:
/// (name, kind, labels, help).
pub const ALL: [(&str, &str, &str, &str); 16] = [
    (OUTBOX_PENDING, "gauge", "", "events waiting in the outbox"),
    (
        OUTBOX_OLDEST_AGE,
        "gauge",
        "",
        "age of the oldest waiting event",
    ),
    (OUTBOX_PARKED, "gauge", "", "events parked"),
    (
        RELAY_PUBLISHED,
        "counter",
        "topic",
        "events acknowledged by the transport",
    ),
    (
        RELAY_FAILED,
        "counter",
        "topic, rejected",
        "deliveries that failed",
    ),
    (RELAY_PARKED, "counter", "topic", "events parked"),
    (
        RELAY_ACK_SECONDS,
        "histogram",
        "",
        "send to acknowledgement",
    ),
    (
        RELAY_SHARDS_HELD,
        "gauge",
        "",
        "outbox shards this relay holds",
    ),
    (
        CONSUMER_MESSAGES,
        "counter",
        "topic, outcome",
        "messages settled",
    ),
    (
        CONSUMER_UNIT_SECONDS,
        "histogram",
        "topic",
        "time to apply one unit",
    ),
    (
        CONSUMER_LAG,
        "gauge",
        "topic, partition",
        "log end minus stored position",
    ),
    (
        CONSUMER_IN_FLIGHT,
        "gauge",
        "topic, partition",
        "received, not applied",
    ),
    (CONSUMER_PARTITIONS, "gauge", "", "partitions owned"),
    (
        CONSUMER_STALLED,
        "gauge",
        "",
        "lanes retrying a failing message",
    ),
    (CONSUMER_STOPPED, "gauge", "", "lanes stopped until resumed"),
    (
        CONSUMER_DEAD_LETTERS,
        "counter",
        "topic",
        "error events written",
    ),
];

/// Registers every metric's description and unit with the installed recorder (`start` does it;
/// call it again after installing a recorder later).
pub fn describe() {
    for (name, kind, _, help) in ALL {
        match kind {
            "counter" => describe_counter!(name, Unit::Count, help),
            "histogram" => describe_histogram!(name, Unit::Seconds, help),
            _ if name.ends_with("_seconds") => describe_gauge!(name, Unit::Seconds, help),
            _ => describe_gauge!(name, Unit::Count, help),
        }
    }
}

/// The relay's sample of the outbox.
pub(crate) fn outbox(pending: i64, oldest_age: Duration, parked: i64) {
    gauge!(OUTBOX_PENDING).set(pending as f64);
    gauge!(OUTBOX_OLDEST_AGE).set(oldest_age.as_secs_f64());
    gauge!(OUTBOX_PARKED).set(parked as f64);
}

/// `count` events of `topic` acknowledged.
pub(crate) fn published(topic: &str, count: u64) {
    counter!(RELAY_PUBLISHED, "topic" => topic.to_owned()).increment(count);
}

/// The transport answered a record `after` it was handed over.
pub(crate) fn answered_after(after: Duration) {
    histogram!(RELAY_ACK_SECONDS).record(after.as_secs_f64());
}

/// One delivery failed.
pub(crate) fn delivery_failed(topic: &str, rejected: bool) {
    counter!(RELAY_FAILED, "topic" => topic.to_owned(), "rejected" => rejected.to_string())
        .increment(1);
}

/// One event parked.
pub(crate) fn parked(topic: &str) {
    counter!(RELAY_PARKED, "topic" => topic.to_owned()).increment(1);
}

/// The relay holds `shards` shards.
pub(crate) fn shards_held(shards: usize) {
    gauge!(RELAY_SHARDS_HELD).set(shards as f64);
}

/// Messages of `topic` settled with `outcome`.
pub(crate) fn consumed(topic: &str, outcome: &'static str, messages: usize) {
    counter!(CONSUMER_MESSAGES, "topic" => topic.to_owned(), "outcome" => outcome)
        .increment(messages as u64);
}

/// One unit of `topic` took `took`.
pub(crate) fn unit_applied(topic: &str, took: Duration) {
    histogram!(CONSUMER_UNIT_SECONDS, "topic" => topic.to_owned()).record(took.as_secs_f64());
}

/// A partition's lag and in-flight count.
pub(crate) fn partition(topic: &str, partition: i32, lag: Option<f64>, in_flight: usize) {
    let labels = [
        ("topic", topic.to_owned()),
        ("partition", partition.to_string()),
    ];
    if let Some(lag) = lag {
        gauge!(CONSUMER_LAG, &labels).set(lag);
    }
    gauge!(CONSUMER_IN_FLIGHT, &labels).set(in_flight as f64);
}

/// The member's partitions and held lanes.
pub(crate) fn ownership(partitions: usize, stalled: usize, stopped: usize) {
    gauge!(CONSUMER_PARTITIONS).set(partitions as f64);
    gauge!(CONSUMER_STALLED).set(stalled as f64);
    gauge!(CONSUMER_STOPPED).set(stopped as f64);
}

/// One error event written for `topic`.
pub(crate) fn dead_lettered(topic: &str) {
    counter!(CONSUMER_DEAD_LETTERS, "topic" => topic.to_owned()).increment(1);
}

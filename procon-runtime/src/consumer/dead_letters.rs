//! Dead letters, for operators: reading a dead-letter topic back, and redriving letters to the
//! topic they failed on once the cause is fixed.
//!
//! A dead letter (policy `dead_letter`) is the failed message as it was (key, payload, its own
//! headers) plus `procon-dlq-*` headers: the error, the attempts, the group, and the topic,
//! partition and position it failed at. Redriving writes each letter back to the outbox, in the
//! order given, in one transaction: to the topic it failed on, with its key, payload and
//! headers (without the `procon-dlq-*` ones, plus `procon-redriven-from`), under a new event id
//! (the failed event's id was recorded as consumed when it was dead-lettered, so the old id
//! would be skipped as a duplicate). Kafka keeps the letters: a second redrive sends them again.

use std::collections::BTreeMap;
use std::time::Duration;

use diesel::pg::PgConnection;
use diesel::Connection;
use uuid::Uuid;

use super::exhausted::{insert_row, key_text, Row};
use crate::config::Config;
use crate::event::headers;
use crate::transport::{Message, Position, TransportError};

/// One letter of a dead-letter topic.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct DeadLetter {
    /// The dead-letter topic it was read from.
    pub dlq_topic: String,
    /// Its partition there.
    pub partition: i32,
    /// Its position there.
    pub position: Position,
    /// The failed message's key.
    pub key: Option<String>,
    /// Every header, the `procon-dlq-*` ones included, values as text.
    pub headers: BTreeMap<String, String>,
    /// The failed message's payload, as (lossy) text.
    pub payload: String,
    #[serde(skip)]
    raw_key: Option<Vec<u8>>,
    #[serde(skip)]
    raw_payload: Vec<u8>,
}

impl DeadLetter {
    fn of(message: Message) -> Self {
        DeadLetter {
            dlq_topic: message.partition.topic.clone(),
            partition: message.partition.partition,
            position: message.position,
            key: message
                .key
                .as_deref()
                .map(|k| String::from_utf8_lossy(k).into_owned()),
            headers: message
                .headers
                .iter()
                .map(|(n, v)| (n.clone(), String::from_utf8_lossy(v).into_owned()))
                .collect(),
            payload: String::from_utf8_lossy(&message.payload).into_owned(),
            raw_key: message.key,
            raw_payload: message.payload,
        }
    }

    /// The header `name`.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(String::as_str)
    }

    /// Why it failed (`procon-dlq-error`).
    pub fn error(&self) -> Option<&str> {
        self.header("procon-dlq-error")
    }

    /// The topic it failed on (`procon-dlq-topic`), where a redrive sends it.
    pub fn failed_topic(&self) -> Option<&str> {
        self.header("procon-dlq-topic")
    }

    /// Its event name (`procon-event`).
    pub fn event(&self) -> Option<&str> {
        self.header(headers::EVENT_NAME)
    }
}

/// Every letter `dlq_topic` holds (a Kafka topic or a Kinesis stream, as `config.transport`
/// says), in partition and position order. Blocking (see `transport::kinesis::read_stream`).
pub fn dead_letters(
    config: &Config,
    dlq_topic: &str,
    timeout: Duration,
) -> Result<Vec<DeadLetter>, TransportError> {
    dead_letters_with_progress(config, dlq_topic, timeout, &mut |_, _| {})
}

/// [`dead_letters`], telling `progress` (letters read, letters to read) as reading goes on
/// (the CLI's progress bar).
pub fn dead_letters_with_progress(
    config: &Config,
    dlq_topic: &str,
    timeout: Duration,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<Vec<DeadLetter>, TransportError> {
    let messages = match config.transport {
        crate::config::Transport::Kafka => {
            crate::transport::kafka::read_topic(config, dlq_topic, timeout, progress)?
        }
        crate::config::Transport::Kinesis => {
            crate::transport::kinesis::read_stream(config, dlq_topic, timeout, progress)?
        }
    };
    Ok(messages.into_iter().map(DeadLetter::of).collect())
}

/// Why a redrive wrote nothing.
#[derive(Debug, thiserror::Error)]
pub enum RedriveError {
    /// A letter without `procon-dlq-topic`: not a procon dead letter.
    #[error("{0} is not a procon dead letter (no procon-dlq-topic header)")]
    NotADeadLetter(String),
    /// The database failed; nothing was written.
    #[error("could not write to the outbox: {0}")]
    Database(#[from] diesel::result::Error),
}

fn place(letter: &DeadLetter) -> String {
    format!(
        "{}[{}]@{}",
        letter.dlq_topic, letter.partition, letter.position
    )
}

/// Every letter must say where it failed, or nothing is redriven.
fn check(letters: &[DeadLetter]) -> Result<(), RedriveError> {
    match letters.iter().find(|l| l.failed_topic().is_none()) {
        Some(letter) => Err(RedriveError::NotADeadLetter(place(letter))),
        None => Ok(()),
    }
}

/// Writes `letters` back to the outbox, in order, in one transaction (see the module doc);
/// returns how many.
pub fn redrive(conn: &mut PgConnection, letters: &[DeadLetter]) -> Result<usize, RedriveError> {
    check(letters)?;
    conn.transaction(|conn| {
        for letter in letters {
            let mut kept: BTreeMap<String, String> = letter
                .headers
                .iter()
                .filter(|(name, _)| !name.starts_with("procon-dlq-"))
                .filter(|(name, _)| {
                    ![
                        headers::EVENT_ID,
                        headers::EVENT_NAME,
                        headers::ENTITY,
                        headers::TRACEPARENT,
                    ]
                    .contains(&name.as_str())
                })
                .map(|(n, v)| (n.clone(), v.clone()))
                .collect();
            kept.insert("procon-redriven-from".to_owned(), place(letter));
            insert_row(
                conn,
                Row {
                    event_id: Uuid::now_v7(),
                    topic: letter.failed_topic().unwrap_or_default(),
                    key: &key_text(letter.raw_key.as_deref()),
                    raw_key: letter.raw_key.as_deref(),
                    event_name: letter.event().unwrap_or("unidentified"),
                    entity: letter.header(headers::ENTITY).unwrap_or(""),
                    payload: "null",
                    raw_payload: Some(&letter.raw_payload),
                    headers: Some(serde_json::to_string(&kept).unwrap_or_else(|_| "{}".into())),
                    traceparent: letter.header(headers::TRACEPARENT),
                },
            )?;
        }
        tracing::info!(
            letters = letters.len(),
            "dead letters redriven through the outbox"
        );
        Ok(letters.len())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transport::PartitionId;

    fn letter(headers: &[(&str, &str)]) -> DeadLetter {
        DeadLetter::of(Message {
            partition: PartitionId::new("accounts.dlq", 0),
            position: Position::offset(7),
            key: Some(b"42".to_vec()),
            headers: headers
                .iter()
                .map(|(n, v)| ((*n).to_owned(), v.as_bytes().to_vec()))
                .collect(),
            payload: b"{}".to_vec(),
        })
    }

    #[test]
    fn a_message_without_the_dead_letter_headers_is_refused_by_its_place() {
        let good = letter(&[
            ("procon-dlq-topic", "accounts"),
            ("procon-dlq-error", "boom"),
        ]);
        assert_eq!(good.failed_topic(), Some("accounts"));
        assert_eq!(good.error(), Some("boom"));
        assert!(check(std::slice::from_ref(&good)).is_ok());
        let stranger = letter(&[("procon-event", "account.created")]);
        let error = check(&[good, stranger]).unwrap_err().to_string();
        assert!(error.contains("accounts.dlq[0]@7"), "{error}");
        assert!(error.contains("not a procon dead letter"), "{error}");
    }
}

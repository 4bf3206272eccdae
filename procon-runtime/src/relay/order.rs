//! Which rows of a published batch may be deleted.
//!
//! A row is deleted only after its own delivery report said "delivered" *and* every earlier row
//! of the same (topic, key) in the batch was delivered too. So when a row fails, it and every
//! later row of its key stay in the outbox and are published again, in id order, next round:
//! the broker may then hold duplicates (same event id, allowed) but a consumer that keeps the
//! last applied event id per key never sees a later event of a key before an earlier one.

use std::collections::HashSet;

use super::source::OutboxRow;

/// What happened to one row of a batch.
#[derive(Debug)]
pub(crate) enum Outcome {
    /// The broker acknowledged it (partition, offset).
    Delivered,
    /// It was not handed to the producer (an earlier row of its key failed, or shutdown).
    NotSent,
    /// The producer or the broker refused it (logged where it happened).
    Failed,
}

/// Ids of the rows that may be deleted; `rows` are in id order, `outcomes` parallel to them.
pub(crate) fn deletable_ids(rows: &[OutboxRow], outcomes: &[Outcome]) -> Vec<i64> {
    let mut stuck: HashSet<(&str, &str)> = HashSet::new();
    let mut ids = Vec::with_capacity(rows.len());
    for (row, outcome) in rows.iter().zip(outcomes) {
        let key = (row.topic.as_str(), row.key.as_str());
        match outcome {
            Outcome::Delivered if !stuck.contains(&key) => ids.push(row.id),
            Outcome::Delivered => {}
            Outcome::NotSent | Outcome::Failed => {
                stuck.insert(key);
            }
        }
    }
    ids
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(id: i64, key: &str) -> OutboxRow {
        OutboxRow {
            raw_key: None,
            id,
            event_id: format!("e{id}"),
            topic: "t".into(),
            key: key.into(),
            event_name: "x.created".into(),
            entity: "x".into(),
            payload: b"{}".to_vec(),
            traceparent: None,
            headers: Vec::new(),
        }
    }

    fn failed() -> Outcome {
        Outcome::Failed
    }

    #[test]
    fn all_delivered_rows_are_deleted() {
        let rows = [row(1, "a"), row(2, "b"), row(3, "a")];
        let outcomes = [Outcome::Delivered, Outcome::Delivered, Outcome::Delivered];
        assert_eq!(deletable_ids(&rows, &outcomes), vec![1, 2, 3]);
    }

    #[test]
    fn a_failure_keeps_every_later_row_of_its_key_but_not_other_keys() {
        let rows = [
            row(1, "a"),
            row(2, "a"),
            row(3, "b"),
            row(4, "a"),
            row(5, "b"),
        ];
        let outcomes = [
            Outcome::Delivered,
            failed(),
            Outcome::Delivered,
            Outcome::Delivered,
            Outcome::Delivered,
        ];
        assert_eq!(deletable_ids(&rows, &outcomes), vec![1, 3, 5]);
    }

    #[test]
    fn not_sent_rows_block_their_key_too() {
        let rows = [row(1, "a"), row(2, "a")];
        let outcomes = [Outcome::NotSent, Outcome::Delivered];
        assert!(deletable_ids(&rows, &outcomes).is_empty());
    }

    #[test]
    fn same_key_on_another_topic_is_independent() {
        let mut other = row(2, "a");
        other.topic = "u".into();
        let rows = [row(1, "a"), other];
        let outcomes = [failed(), Outcome::Delivered];
        assert_eq!(deletable_ids(&rows, &outcomes), vec![2]);
    }
}

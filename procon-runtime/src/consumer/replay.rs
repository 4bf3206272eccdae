//! Replay (KaufmannEx's reinit): a consumer group applies a topic's events again from an
//! earlier position, each once per replay, optionally without publishing what its handlers
//! emit meanwhile.
//!
//! [`replay`] moves the group's stored positions of the topic back, records per partition
//! where the replay ends (`replay_until`: the position stored before, below which every event
//! was applied) and bumps the partition's replay generation and epoch. A member holding the
//! partition notices the new generation within a second (`intake::follow_replays`, also when
//! the partition is idle), drops its work on it (whatever it was applying is refused by the
//! new epoch) and claims it again at the replay's start: running consumers follow a replay
//! without a restart.
//! While a partition's messages are below `replay_until`, the consumer records their event ids
//! under the generation's own name (`<group>/replay-<n>`), so each is applied exactly once in
//! this replay although it was applied before; at and above it, the group's usual records
//! apply. With `publish = false`, handlers applying replayed messages run with
//! `procon.publish = 'off'` set in their transaction: every emit (and realtime notification)
//! of theirs writes nothing. The replay ends by itself when the stored position passes
//! `replay_until`.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use diesel::pg::PgConnection;
use diesel::sql_types::{Bool, Integer, Text};
use diesel::{Connection, QueryableByName, RunQueryDsl};

use crate::config::{Config, Transport};
use crate::transport::{Position, TransportError};

/// Where a replay starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReplayFrom {
    /// The oldest message each partition still holds.
    Earliest,
    /// This position in every partition (a Kafka offset; a partition stored below it is left
    /// alone).
    Position(Position),
    /// A position per partition (a time's, from [`replay_positions_at`]); a partition not
    /// listed, or stored below its position, is left alone.
    Positions(BTreeMap<i32, Position>),
}

/// Where an operator asks a replay to start, as written (`procon replay --to`, the admin
/// page): `earliest`, a position (a Kafka offset, or a Kinesis position as procon shows it), or
/// an RFC 3339 time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplayTarget {
    /// `earliest`.
    Earliest,
    /// A position in every partition.
    Position(Position),
    /// A time: each partition from its first event written at or after it.
    Time(SystemTime),
}

/// Text that names no replay start.
#[derive(Debug, Clone, thiserror::Error)]
#[error(
    "{0}: expected `earliest`, a time (RFC 3339, e.g. 2026-12-01T09:30:00Z) or a position (a \
     Kafka offset)"
)]
pub struct ReplayTargetError(pub String);

impl std::str::FromStr for ReplayTarget {
    type Err = ReplayTargetError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let text = text.trim();
        if text == "earliest" {
            return Ok(ReplayTarget::Earliest);
        }
        if let Ok(position) = text.parse::<Position>() {
            return Ok(ReplayTarget::Position(position));
        }
        chrono::DateTime::parse_from_rfc3339(text)
            .map(|at| ReplayTarget::Time(at.into()))
            .map_err(|_| ReplayTargetError(text.to_owned()))
    }
}

impl ReplayTarget {
    /// Where the replay starts. Only a time is looked up, with `positions_at` (usually
    /// [`replay_positions_at`]), so `earliest` and a position need no broker.
    pub fn resolve<E>(
        self,
        positions_at: impl FnOnce(SystemTime) -> Result<BTreeMap<i32, Position>, E>,
    ) -> Result<ReplayFrom, E> {
        Ok(match self {
            ReplayTarget::Earliest => ReplayFrom::Earliest,
            ReplayTarget::Position(position) => ReplayFrom::Position(position),
            ReplayTarget::Time(at) => ReplayFrom::Positions(positions_at(at)?),
        })
    }
}

/// Per partition of `topic`, where a replay to the time `at` starts: the first message written
/// at or after it; partitions with nothing that recent are left out. Asks the broker: Kafka's
/// time index, or an `AT_TIMESTAMP` iterator per Kinesis shard. Blocking.
pub fn replay_positions_at(
    config: &Config,
    topic: &str,
    at: SystemTime,
    timeout: Duration,
) -> Result<BTreeMap<i32, Position>, TransportError> {
    match config.transport {
        Transport::Kafka => crate::transport::kafka::positions_at(config, topic, at, timeout),
        Transport::Kinesis => Ok(crate::transport::kinesis::positions_at(
            config, topic, at, timeout,
        )?),
    }
}

/// What a replay does to one partition.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ReplayedPartition {
    /// The partition.
    pub partition: i32,
    /// The position stored before: every event below it is applied again.
    pub from: Position,
    /// Where the partition starts over (`None`: its oldest message).
    pub to: Option<Position>,
}

/// Why a replay changed nothing.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    /// The group has stored no position for the topic (it never consumed it, or the topic is
    /// named differently: the physical name, as `procon stopped` shows it).
    #[error("group {group} has no stored position for topic {topic}: nothing to replay (use the physical topic name)")]
    NothingStored {
        /// The group.
        group: String,
        /// The topic.
        topic: String,
    },
    /// The database failed; nothing changed.
    #[error("could not replay: {0}")]
    Database(#[from] diesel::result::Error),
}

#[derive(QueryableByName)]
struct Stored {
    #[diesel(sql_type = Integer)]
    partition: i32,
    #[diesel(sql_type = Text)]
    next: String,
}

/// Moves `group`'s positions of `topic` back to `from` (see the module doc). With `dry_run`
/// nothing changes; the plan is returned either way.
pub fn replay(
    conn: &mut PgConnection,
    group: &str,
    topic: &str,
    from: ReplayFrom,
    publish: bool,
    dry_run: bool,
) -> Result<Vec<ReplayedPartition>, ReplayError> {
    conn.transaction(|conn| {
        let stored: Vec<Stored> = diesel::sql_query(
            "SELECT partition, next_offset::text AS next FROM procon_consumer_offsets \
             WHERE group_id = $1 AND topic = $2 AND next_offset >= 0 ORDER BY partition FOR UPDATE",
        )
        .bind::<Text, _>(group)
        .bind::<Text, _>(topic)
        .load(conn)?;
        if stored.is_empty() {
            return Err(ReplayError::NothingStored {
                group: group.to_owned(),
                topic: topic.to_owned(),
            });
        }
        let mut plan = Vec::new();
        for row in stored {
            let Ok(at) = row.next.parse::<Position>() else {
                continue;
            };
            let to = match &from {
                ReplayFrom::Earliest => None,
                ReplayFrom::Position(p) if *p < at => Some(*p),
                ReplayFrom::Positions(map) => match map.get(&row.partition) {
                    Some(p) if *p < at => Some(*p),
                    _ => continue,
                },
                ReplayFrom::Position(_) => continue,
            };
            plan.push(ReplayedPartition {
                partition: row.partition,
                from: at,
                to,
            });
        }
        if dry_run {
            return Ok(plan);
        }
        for step in &plan {
            diesel::sql_query(
                "UPDATE procon_consumer_offsets SET \
                   replay_until = GREATEST(COALESCE(replay_until, 0), next_offset), \
                   next_offset = $4::numeric, replay_generation = replay_generation + 1, \
                   replay_publish = $5, epoch = epoch + 1, updated_at = now() \
                 WHERE group_id = $1 AND topic = $2 AND partition = $3",
            )
            .bind::<Text, _>(group)
            .bind::<Text, _>(topic)
            .bind::<Integer, _>(step.partition)
            .bind::<Text, _>(step.to.map_or("-1".to_owned(), |p| p.to_string()))
            .bind::<Bool, _>(publish)
            .execute(conn)?;
        }
        tracing::info!(
            group,
            topic,
            partitions = plan.len(),
            publish,
            "replay recorded; the group's consumers apply the events again from there"
        );
        Ok(plan)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_target_is_earliest_a_position_or_a_time_and_anything_else_is_named_in_the_error() {
        assert_eq!(
            "earliest".parse::<ReplayTarget>().unwrap(),
            ReplayTarget::Earliest
        );
        assert_eq!(
            " 42 ".parse::<ReplayTarget>().unwrap(),
            ReplayTarget::Position(Position::offset(42))
        );
        let at = "2026-12-01T09:30:00Z".parse::<ReplayTarget>().unwrap();
        let expected = SystemTime::UNIX_EPOCH + Duration::from_secs(1_796_117_400);
        assert_eq!(at, ReplayTarget::Time(expected));
        let error = "yesterday".parse::<ReplayTarget>().unwrap_err().to_string();
        assert!(
            error.starts_with("yesterday: expected `earliest`"),
            "{error}"
        );
    }
}

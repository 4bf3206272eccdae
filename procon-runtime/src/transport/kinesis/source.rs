//! [`KinesisSource`]: a consumer-group member reading Kinesis shards it leases in PostgreSQL.
//!
//! Shards are the partitions (`PartitionId::partition` is the number at the end of the shard
//! id). Which member reads which shard is decided by the leases ([`super::leases`]), renewed
//! every third of `kinesis.lease_ttl` from inside [`Source::poll`]; newly leased shards are
//! handed to the runtime's [`Ownership`] (which claims them, fencing the previous reader, and
//! says where each starts), lost or surplus ones are revoked first (the runtime drains and
//! stores their positions) and then released.
//!
//! Positions: a record's position is its sequence number times ten, so that "just after a
//! record" (`position + 1`, what the runtime stores once it is applied) is a position of its
//! own. Starting at a position ending in 0 reads `AT_SEQUENCE_NUMBER`, any other
//! `AFTER_SEQUENCE_NUMBER` of the record it follows: both are numbers Kinesis gave out.
//!
//! Reading: one `GetRecords` (`kinesis.max_records_per_read` records) per leased, unpaused
//! shard whose buffer is empty, all shards at once; a shard that returned nothing is read again after `kinesis.idle_poll_interval`.
//! Expired iterators are renewed from the last record delivered; throttling
//! (`ProvisionedThroughputExceeded`) backs the shard off (200 ms doubling to 10 s) and keeps
//! its iterator, so no position is lost. A shard read to its end (split or merged: no next
//! iterator) is finished once the runtime stored a position past its last record: its lease is
//! marked finished and its children become readable.
//!
//! Kinesis has no watermarks: [`Source::bounds`] accepts every stored position.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_sdk_kinesis::types::ShardIteratorType;
use diesel::pg::PgConnection;
use diesel::Connection;

use super::leases::{self, ShardInfo};
use super::{lease_store, record, Client, KinesisError};
use crate::config::{Config, KinesisConfig};
use crate::transport::{
    Bounds, Message, Ownership, PartitionId, Position, Source, StartAt, TransportError,
};

/// The first delay after a throttled or failed read; it doubles up to `MAX_BACKOFF`.
const MIN_BACKOFF: Duration = Duration::from_millis(200);
const MAX_BACKOFF: Duration = Duration::from_secs(10);
/// Error codes meaning "read less often": the shard backs off and keeps its iterator.
const THROTTLED: [&str; 3] = [
    "ProvisionedThroughputExceededException",
    "LimitExceededException",
    "KMSThrottlingException",
];

/// The position of the record with sequence number `sequence` (ten times it).
pub(crate) fn position_of(sequence: &str) -> Option<Position> {
    sequence.parse::<Position>().ok()?.push_digit(0)
}

/// Where to open a shard iterator for a start: the iterator type and its sequence number.
pub(crate) fn iterator_start(start: StartAt) -> (ShardIteratorType, Option<String>) {
    match start {
        StartAt::Beginning => (ShardIteratorType::TrimHorizon, None),
        StartAt::At(position) => {
            let (sequence, rest) = position.div_rem(10);
            let kind = match rest {
                0 => ShardIteratorType::AtSequenceNumber,
                _ => ShardIteratorType::AfterSequenceNumber,
            };
            (kind, Some(sequence.to_string()))
        }
    }
}

/// What a reader does after a failed read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Recovery {
    /// The iterator expired (unused for five minutes): open a new one from the last record
    /// delivered, and read at once.
    Reopen,
    /// Throttled: keep the iterator (the position is in it) and read again later.
    BackOff,
    /// Anything else (an outage, a stream being resharded or deleted): open a new iterator
    /// from the last record delivered, later.
    ReopenLater,
}

/// The recovery for a failed read's error code.
pub(crate) fn recovery(code: Option<&str>) -> Recovery {
    match code {
        Some("ExpiredIteratorException") => Recovery::Reopen,
        Some(code) if THROTTLED.contains(&code) => Recovery::BackOff,
        _ => Recovery::ReopenLater,
    }
}

/// The partition number of a shard id (`shardId-000000000007` → 7).
pub(crate) fn partition_number(shard_id: &str) -> Option<i32> {
    shard_id.rsplit('-').next()?.parse().ok()
}

/// One leased shard.
#[derive(Debug)]
struct Reader {
    stream: String,
    shard_id: String,
    /// Records of the shard are delivered only before this instant (the lease's local
    /// deadline: renewal sent + ⅔ ttl, earlier than the database's expiry).
    deadline: Instant,
    /// Where the runtime said to start (or seek).
    start: StartAt,
    /// The last record handed to the runtime since `start`.
    last_delivered: Option<Position>,
    iterator: Option<String>,
    paused: bool,
    /// `GetRecords` gave no next iterator: the shard is closed and read to its end.
    ended: bool,
    buffer: VecDeque<Message>,
    next_read: Instant,
    backoff: Duration,
}

impl Reader {
    /// Where a new iterator starts: after the last record delivered, else at `start`.
    fn resume_point(&self) -> StartAt {
        match self.last_delivered {
            Some(last) => StartAt::At(last.after()),
            None => self.start,
        }
    }

    fn readable(&self, now: Instant) -> bool {
        !self.paused && !self.ended && self.buffer.is_empty() && now >= self.next_read
    }

    fn back_off(&mut self, now: Instant) {
        self.backoff = (self.backoff * 2).clamp(MIN_BACKOFF, MAX_BACKOFF);
        self.next_read = now + self.backoff;
    }
}

/// What one read of a shard returned.
struct Page {
    records: Vec<aws_sdk_kinesis::types::Record>,
    next: Option<String>,
}

/// A Kinesis consumer-group member behind the [`Source`] trait.
pub struct KinesisSource {
    client: Client,
    runtime: tokio::runtime::Handle,
    ownership: Arc<dyn Ownership>,
    group: String,
    member: String,
    streams: Vec<String>,
    settings: KinesisConfig,
    database_url: String,
    db: Option<PgConnection>,
    next_heartbeat: Instant,
    topology: BTreeMap<String, Vec<ShardInfo>>,
    readers: BTreeMap<PartitionId, Reader>,
}

impl KinesisSource {
    /// A member of `config.service_name`'s group reading `streams` (physical names). Nothing
    /// is contacted yet: the first poll joins the group. Must be called inside a Tokio runtime
    /// (the SDK's client runs on it; polls block on it from a blocking thread).
    pub fn subscribe(
        config: &Config,
        streams: &[String],
        ownership: Arc<dyn Ownership>,
    ) -> Result<Self, TransportError> {
        let client = super::client(&config.kinesis)?;
        Self::with_client(config, streams, ownership, client)
    }

    /// Like [`KinesisSource::subscribe`], with a client built by the caller (other
    /// credentials).
    pub fn with_client(
        config: &Config,
        streams: &[String],
        ownership: Arc<dyn Ownership>,
        client: Client,
    ) -> Result<Self, TransportError> {
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| KinesisError {
            operation: "subscribe",
            code: None,
            message: "the Kinesis consumer needs a Tokio runtime (call procon::start from one)"
                .to_owned(),
            refused_here: false,
        })?;
        Ok(KinesisSource {
            client,
            runtime,
            ownership,
            group: config.service_name.clone(),
            member: format!("{}-{}", std::process::id(), uuid::Uuid::now_v7()),
            streams: streams.to_vec(),
            settings: config.kinesis.clone(),
            database_url: config.database_url.clone(),
            db: None,
            next_heartbeat: Instant::now(),
            topology: BTreeMap::new(),
            readers: BTreeMap::new(),
        })
    }

    fn connection(&mut self) -> Result<&mut PgConnection, diesel::ConnectionError> {
        if self.db.is_none() {
            self.db = Some(PgConnection::establish(&self.database_url)?);
        }
        Ok(self.db.as_mut().expect("connected above"))
    }

    /// Renews, finishes, releases and claims leases; refreshes the shard lists.
    fn heartbeat(&mut self) {
        let sent_at = Instant::now();
        let ttl = self.settings.lease_ttl;
        self.next_heartbeat = sent_at + ttl / 3;
        if let Err(error) = self.try_heartbeat(sent_at) {
            // The leases lapse at their deadline; the database is tried again next heartbeat.
            tracing::warn!(%error, group = self.group, "Kinesis lease heartbeat failed; trying again");
            self.db = None;
        }
    }

    fn try_heartbeat(&mut self, sent_at: Instant) -> Result<(), HeartbeatError> {
        let ttl = self.settings.lease_ttl;
        let (group, member) = (self.group.clone(), self.member.clone());
        let conn = self.connection()?;
        let members = lease_store::heartbeat(conn, &group, &member, ttl)?;
        let renewed = lease_store::renew(conn, &group, &member, ttl)?;
        let deadline = sent_at + ttl - ttl / 3;
        let mut lost = Vec::new();
        for (partition, reader) in self.readers.iter_mut() {
            if renewed.contains(&(reader.stream.clone(), reader.shard_id.clone())) {
                reader.deadline = deadline;
            } else {
                lost.push(partition.clone());
            }
        }
        if !lost.is_empty() {
            tracing::warn!(
                ?lost,
                "Kinesis shard leases lost; the shards are given back"
            );
            self.revoke(&lost);
        }
        self.finish_ended()?;
        for stream in self.streams.clone() {
            match self.list_shards(&stream) {
                Ok(shards) => {
                    self.topology.insert(stream.clone(), shards);
                }
                Err(error) => {
                    tracing::warn!(%error, stream, "could not list the stream's shards");
                }
            }
            let Some(shards) = self.topology.get(&stream).cloned() else {
                continue;
            };
            let conn = self.connection()?;
            let ids: Vec<String> = shards.iter().map(|s| s.id.clone()).collect();
            lease_store::ensure_rows(conn, &group, &stream, &ids)?;
            let rows = lease_store::rows(conn, &group, &stream)?;
            let plan = leases::plan(&member, &shards, &rows, members);
            let surplus: Vec<PartitionId> = plan
                .release
                .iter()
                .filter_map(|id| Some(PartitionId::new(stream.clone(), partition_number(id)?)))
                .collect();
            if !surplus.is_empty() {
                tracing::info!(?surplus, "giving Kinesis shards to other members");
                self.revoke(&surplus);
                let conn = self.connection()?;
                for id in &plan.release {
                    lease_store::release(conn, &group, &stream, id, &member, false)?;
                }
            }
            let mut gained = Vec::new();
            for id in &plan.claim {
                let Some(number) = partition_number(id) else {
                    tracing::error!(shard = id, "a shard id without a number; not read");
                    continue;
                };
                let conn = self.connection()?;
                if lease_store::claim(conn, &group, &stream, id, &member, ttl)? {
                    gained.push((PartitionId::new(stream.clone(), number), id.clone()));
                }
            }
            self.assign(gained, deadline);
        }
        Ok(())
    }

    /// Hands newly leased shards to the runtime and opens readers where it says.
    fn assign(&mut self, gained: Vec<(PartitionId, String)>, deadline: Instant) {
        if gained.is_empty() {
            return;
        }
        let partitions: Vec<PartitionId> = gained.iter().map(|(p, _)| p.clone()).collect();
        let bounds = |_: &PartitionId| Ok(everything());
        let starts = self.ownership.assigned(&partitions, &bounds);
        let now = Instant::now();
        for ((partition, shard_id), start) in gained.into_iter().zip(starts) {
            tracing::info!(%partition, shard_id, ?start, "Kinesis shard leased");
            self.readers.insert(
                partition.clone(),
                Reader {
                    stream: partition.topic.clone(),
                    shard_id,
                    deadline,
                    start: start.unwrap_or(StartAt::Beginning),
                    last_delivered: None,
                    iterator: None,
                    paused: start.is_none(),
                    ended: false,
                    buffer: VecDeque::new(),
                    next_read: now,
                    backoff: Duration::ZERO,
                },
            );
        }
    }

    /// Gives partitions back to the runtime (it drains them and stores their positions) and
    /// forgets their readers. The leases are released by the caller, or lapse.
    fn revoke(&mut self, partitions: &[PartitionId]) {
        self.ownership.revoked(partitions);
        for partition in partitions {
            self.readers.remove(partition);
        }
    }

    /// Shards read to their end whose last record the runtime has stored past: revoked and
    /// their leases marked finished, so their children can be read.
    fn finish_ended(&mut self) -> Result<(), HeartbeatError> {
        let ended: Vec<(PartitionId, Option<Position>)> = self
            .readers
            .iter()
            .filter(|(_, r)| r.ended && r.buffer.is_empty())
            .map(|(p, r)| (p.clone(), r.last_delivered))
            .collect();
        let (group, member) = (self.group.clone(), self.member.clone());
        for (partition, last) in ended {
            if let Some(last) = last {
                let conn = self.connection()?;
                let stored = lease_store::stored_position(
                    conn,
                    &group,
                    &partition.topic,
                    partition.partition,
                )?;
                if stored.is_none_or(|stored| stored <= last) {
                    continue;
                }
            }
            let shard_id = self.readers[&partition].shard_id.clone();
            self.revoke(std::slice::from_ref(&partition));
            let conn = self.connection()?;
            lease_store::release(conn, &group, &partition.topic, &shard_id, &member, true)?;
            tracing::info!(%partition, shard_id, "Kinesis shard finished (closed and applied); its children may start");
            // Children are claimed at once rather than a heartbeat later.
            self.next_heartbeat = Instant::now();
        }
        Ok(())
    }

    fn list_shards(&self, stream: &str) -> Result<Vec<ShardInfo>, KinesisError> {
        let client = self.client.clone();
        let stream = stream.to_owned();
        self.runtime.block_on(async move {
            Ok(super::list_shards(&client, &stream)
                .await?
                .iter()
                .map(|s| ShardInfo {
                    id: s.shard_id().to_owned(),
                    parents: s
                        .parent_shard_id()
                        .into_iter()
                        .chain(s.adjacent_parent_shard_id())
                        .map(str::to_owned)
                        .collect(),
                })
                .collect())
        })
    }

    /// Reads every shard that is due, all at once.
    fn read(&mut self, due: Vec<PartitionId>) {
        let requests: Vec<_> = due
            .iter()
            .map(|p| {
                let reader = &self.readers[p];
                (
                    reader.stream.clone(),
                    reader.shard_id.clone(),
                    reader.iterator.clone(),
                    reader.resume_point(),
                )
            })
            .collect();
        let (client, limit) = (self.client.clone(), self.settings.max_records_per_read);
        let pages = self
            .runtime
            .block_on(futures::future::join_all(requests.into_iter().map(
                |(stream, shard, iterator, start)| {
                    read_shard(client.clone(), stream, shard, iterator, start, limit)
                },
            )));
        let now = Instant::now();
        let idle = self.settings.idle_poll_interval;
        for (partition, page) in due.into_iter().zip(pages) {
            let Some(reader) = self.readers.get_mut(&partition) else {
                continue;
            };
            match page {
                Ok(page) => {
                    reader.backoff = Duration::ZERO;
                    reader.next_read = if page.records.is_empty() {
                        now + idle
                    } else {
                        now
                    };
                    reader.ended = page.next.is_none();
                    reader.iterator = page.next;
                    for r in &page.records {
                        let Some(position) = position_of(r.sequence_number()) else {
                            tracing::error!(%partition, sequence = r.sequence_number(), "a sequence number procon cannot hold; the shard stops here");
                            reader.iterator = None;
                            reader.ended = false;
                            reader.back_off(now);
                            break;
                        };
                        reader.buffer.push_back(message(&partition, position, r));
                    }
                }
                Err(error) => match recovery(error.code.as_deref()) {
                    Recovery::Reopen => {
                        tracing::debug!(%partition, "shard iterator expired; opening a new one");
                        reader.iterator = None;
                    }
                    Recovery::BackOff => {
                        tracing::debug!(%partition, %error, "shard reads throttled; backing off");
                        reader.back_off(now);
                    }
                    Recovery::ReopenLater => {
                        tracing::warn!(%partition, %error, "could not read the shard; trying again");
                        reader.iterator = None;
                        reader.back_off(now);
                    }
                },
            }
        }
    }

    /// Takes up to `max` buffered messages, a shard at a time in turn.
    fn take(&mut self, max: usize, now: Instant) -> Vec<Message> {
        let mut batch = Vec::new();
        for reader in self.readers.values_mut() {
            if reader.paused || now >= reader.deadline {
                continue;
            }
            while batch.len() < max {
                let Some(message) = reader.buffer.pop_front() else {
                    break;
                };
                reader.last_delivered = Some(message.position);
                batch.push(message);
            }
        }
        batch
    }

    /// Readers whose lease lapsed without a renewal (the database was unreachable): revoked.
    fn drop_lapsed(&mut self, now: Instant) {
        let lapsed: Vec<PartitionId> = self
            .readers
            .iter()
            .filter(|(_, r)| now >= r.deadline)
            .map(|(p, _)| p.clone())
            .collect();
        if !lapsed.is_empty() {
            tracing::warn!(
                ?lapsed,
                "Kinesis shard leases lapsed without renewal; the shards are given back"
            );
            self.revoke(&lapsed);
        }
    }
}

/// Kinesis keeps no watermarks the runtime could check a position against.
fn everything() -> Bounds {
    Bounds {
        low: Position::ZERO,
        high: Position::MAX,
    }
}

pub(crate) fn message(
    partition: &PartitionId,
    position: Position,
    record: &aws_sdk_kinesis::types::Record,
) -> Message {
    let data = record.data().as_ref();
    // Records another producer wrote (without procon's header line) arrive as they are.
    let (headers, payload) = match record::decode(data) {
        Ok(decoded) => (decoded.headers, decoded.payload.to_vec()),
        Err(_) => (Vec::new(), data.to_vec()),
    };
    Message {
        partition: partition.clone(),
        position,
        key: record.partition_key().map(|k| k.as_bytes().to_vec()),
        headers,
        payload,
    }
}

async fn read_shard(
    client: Client,
    stream: String,
    shard: String,
    iterator: Option<String>,
    start: StartAt,
    limit: i32,
) -> Result<Page, KinesisError> {
    let iterator = match iterator {
        Some(iterator) => iterator,
        None => {
            let (kind, sequence) = iterator_start(start);
            match super::shard_iterator(&client, &stream, &shard, kind, sequence, None).await? {
                Some(iterator) => iterator,
                None => {
                    return Ok(Page {
                        records: Vec::new(),
                        next: None,
                    })
                }
            }
        }
    };
    let page = client
        .get_records()
        .shard_iterator(iterator)
        .limit(limit)
        .send()
        .await
        .map_err(|error| KinesisError::from_sdk("GetRecords", &error))?;
    Ok(Page {
        next: page.next_shard_iterator().map(str::to_owned),
        records: page.records().to_vec(),
    })
}

/// Why a heartbeat stopped half way.
#[derive(Debug, thiserror::Error)]
enum HeartbeatError {
    #[error("cannot connect to the database: {0}")]
    Connect(#[from] diesel::ConnectionError),
    #[error("database error: {0}")]
    Database(#[from] diesel::result::Error),
}

impl Source for KinesisSource {
    fn poll(&mut self, max: usize, timeout: Duration) -> Vec<Message> {
        let deadline = Instant::now() + timeout;
        loop {
            let mut now = Instant::now();
            if now >= self.next_heartbeat {
                self.heartbeat();
                now = Instant::now();
            }
            self.drop_lapsed(now);
            let batch = self.take(max, now);
            if !batch.is_empty() {
                return batch;
            }
            let due: Vec<PartitionId> = self
                .readers
                .iter()
                .filter(|(_, r)| r.readable(now))
                .map(|(p, _)| p.clone())
                .collect();
            if !due.is_empty() {
                self.read(due);
                continue;
            }
            if now >= deadline {
                return Vec::new();
            }
            let wake = self
                .readers
                .values()
                .filter(|r| !r.paused && !r.ended && r.buffer.is_empty())
                .map(|r| r.next_read)
                .chain([deadline, self.next_heartbeat])
                .min()
                .unwrap_or(deadline);
            std::thread::sleep(wake.saturating_duration_since(now).min(deadline - now));
        }
    }

    fn pause(&mut self, partition: &PartitionId) -> Result<(), TransportError> {
        if let Some(reader) = self.readers.get_mut(partition) {
            reader.paused = true;
        }
        Ok(())
    }

    fn resume(&mut self, partition: &PartitionId) -> Result<(), TransportError> {
        if let Some(reader) = self.readers.get_mut(partition) {
            reader.paused = false;
        }
        Ok(())
    }

    fn seek(&mut self, partition: &PartitionId, at: StartAt) -> Result<(), TransportError> {
        let Some(reader) = self.readers.get_mut(partition) else {
            return Err(KinesisError {
                operation: "seek",
                code: None,
                message: format!("{partition} is not leased by this member"),
                refused_here: true,
            }
            .into());
        };
        reader.start = at;
        reader.last_delivered = None;
        reader.iterator = None;
        reader.buffer.clear();
        reader.ended = false;
        reader.paused = false;
        reader.next_read = Instant::now();
        Ok(())
    }

    fn bounds(&mut self, _partition: &PartitionId) -> Result<Bounds, TransportError> {
        Ok(everything())
    }

    fn hint_position(&mut self, _partition: &PartitionId, _next: Position) {
        // Kinesis keeps no consumer positions: the runtime's stored positions are the only ones.
    }

    fn close(&mut self) {
        let owned: Vec<PartitionId> = self.readers.keys().cloned().collect();
        self.revoke(&owned);
        let (group, member) = (self.group.clone(), self.member.clone());
        match self.connection() {
            Ok(conn) => {
                if let Err(error) = lease_store::leave(conn, &group, &member) {
                    tracing::warn!(%error, "could not release the Kinesis leases; they expire");
                }
            }
            Err(error) => {
                tracing::warn!(%error, "could not release the Kinesis leases; they expire")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_position_opens_at_it_and_the_position_after_it_opens_after_it() {
        let sequence = "49590338271490256608559692538361571095921575989136588898";
        let position = position_of(sequence).unwrap();
        assert_eq!(position.to_string(), format!("{sequence}0"));
        assert_eq!(
            iterator_start(StartAt::At(position)),
            (
                ShardIteratorType::AtSequenceNumber,
                Some(sequence.to_owned())
            )
        );
        assert_eq!(
            iterator_start(StartAt::At(position.after())),
            (
                ShardIteratorType::AfterSequenceNumber,
                Some(sequence.to_owned())
            )
        );
        assert_eq!(
            iterator_start(StartAt::Beginning),
            (ShardIteratorType::TrimHorizon, None)
        );
        // A later record is after the position following an earlier one.
        let next = position_of("49590338271490256608559692538361571095921575989136588899").unwrap();
        assert!(position.after() < next);
    }

    #[test]
    fn throttling_keeps_the_iterator_and_an_expired_one_is_reopened_at_once() {
        assert_eq!(
            recovery(Some("ProvisionedThroughputExceededException")),
            Recovery::BackOff
        );
        assert_eq!(recovery(Some("LimitExceededException")), Recovery::BackOff);
        assert_eq!(recovery(Some("ExpiredIteratorException")), Recovery::Reopen);
        assert_eq!(recovery(Some("InternalFailure")), Recovery::ReopenLater);
        assert_eq!(recovery(None), Recovery::ReopenLater);
    }

    #[test]
    fn a_reopened_iterator_starts_after_the_last_record_delivered() {
        let first = position_of("100").unwrap();
        let mut reader = Reader {
            stream: "s".into(),
            shard_id: "shardId-000000000000".into(),
            deadline: Instant::now(),
            start: StartAt::Beginning,
            last_delivered: None,
            iterator: None,
            paused: false,
            ended: false,
            buffer: VecDeque::new(),
            next_read: Instant::now(),
            backoff: Duration::ZERO,
        };
        assert_eq!(reader.resume_point(), StartAt::Beginning);
        reader.last_delivered = Some(first);
        assert_eq!(
            iterator_start(reader.resume_point()),
            (
                ShardIteratorType::AfterSequenceNumber,
                Some("100".to_owned())
            )
        );
        // Backing off doubles from 200 ms and stops at 10 s.
        let now = Instant::now();
        reader.back_off(now);
        assert_eq!(reader.backoff, MIN_BACKOFF);
        for _ in 0..10 {
            reader.back_off(now);
        }
        assert_eq!(reader.backoff, MAX_BACKOFF);
    }

    #[test]
    fn shard_ids_name_their_partition() {
        assert_eq!(partition_number("shardId-000000000007"), Some(7));
        assert_eq!(partition_number("shardId-000000000000"), Some(0));
        assert_eq!(partition_number("not-a-shard"), None);
    }
}

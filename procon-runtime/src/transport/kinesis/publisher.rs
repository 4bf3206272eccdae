//! [`KinesisPublisher`]: the relay's records, batched into `PutRecords` calls.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use aws_sdk_kinesis::primitives::Blob;
use aws_sdk_kinesis::types::PutRecordsRequestEntry;
use tokio::sync::{mpsc, oneshot, Semaphore};

use super::{record, Client, KinesisError};
use crate::config::{Config, KinesisConfig};
use crate::transport::{Delivery, Publisher, Record, SendError, TransportError};

/// Kinesis's limits: records per `PutRecords` call, bytes per call, bytes per record (data and
/// partition key), characters per partition key.
const MAX_RECORDS_PER_CALL: usize = 500;
const MAX_BYTES_PER_CALL: usize = 5 * 1024 * 1024;
const MAX_RECORD_BYTES: usize = 1024 * 1024;
const MAX_KEY_CHARS: usize = 256;

/// Publishes to Kinesis: the event key is the partition key, headers travel in the data
/// ([`record`]). Records wait in a queue; a background task sends what is queued for one
/// stream in one `PutRecords` call (at most 500 records and 5 MiB), with up to
/// `kinesis.max_requests_in_flight` calls at once, so the queue fills while calls are out and
/// the next call carries more.
///
/// One record per key at a time (see the module doc): a failed record of a call never lets a
/// later record of its key through.
pub struct KinesisPublisher {
    client: Client,
    queue: mpsc::UnboundedSender<Queued>,
    runtime: tokio::runtime::Handle,
}

struct Queued {
    stream: String,
    key: String,
    data: Vec<u8>,
    done: oneshot::Sender<Result<(), TransportError>>,
}

impl Queued {
    fn size(&self) -> usize {
        self.data.len() + self.key.len()
    }
}

impl KinesisPublisher {
    /// A publisher with a client built from `config.kinesis` (see [`super::client`]). Must be
    /// called inside a Tokio runtime: its sending task runs there.
    pub fn new(config: &Config) -> Result<Self, TransportError> {
        let client = super::client(&config.kinesis)?;
        Self::with_client(client, &config.kinesis)
    }

    /// A publisher over a client of your own (built with `aws-config`, say, for web identity
    /// or instance-profile credentials). Must be called inside a Tokio runtime.
    pub fn with_client(client: Client, config: &KinesisConfig) -> Result<Self, TransportError> {
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| {
            TransportError::Kinesis(KinesisError {
                operation: "start",
                code: None,
                message: "the Kinesis publisher needs a Tokio runtime".to_owned(),
                refused_here: false,
            })
        })?;
        let (queue, queued) = mpsc::unbounded_channel();
        runtime.spawn(send_batches(
            client.clone(),
            queued,
            config.max_requests_in_flight.max(1),
        ));
        Ok(KinesisPublisher {
            client,
            queue,
            runtime,
        })
    }
}

impl Publisher for KinesisPublisher {
    fn send(&self, record: Record<'_>) -> Result<Delivery, SendError> {
        let refuse = |message: String| {
            SendError::Refused(TransportError::Kinesis(KinesisError::refused(message)))
        };
        let key = match std::str::from_utf8(record.key) {
            Ok(key) if !key.is_empty() && key.chars().count() <= MAX_KEY_CHARS => key.to_owned(),
            _ => {
                return Err(refuse(format!(
                    "a Kinesis partition key is 1 to {MAX_KEY_CHARS} characters of text; \
                     this event's key is {} bytes{}",
                    record.key.len(),
                    if std::str::from_utf8(record.key).is_err() {
                        " of binary"
                    } else {
                        ""
                    }
                )))
            }
        };
        let data = record::encode(record.headers, record.payload)
            .map_err(|error| refuse(error.to_string()))?;
        if data.len() + key.len() > MAX_RECORD_BYTES {
            return Err(refuse(format!(
                "the record is {} bytes with its headers and key; Kinesis takes at most {} \
                 per record",
                data.len() + key.len(),
                MAX_RECORD_BYTES
            )));
        }
        let (done, answer) = oneshot::channel();
        self.queue
            .send(Queued {
                stream: record.topic.to_owned(),
                key,
                data,
                done,
            })
            .map_err(|_| SendError::Refused(TransportError::Cancelled))?;
        Ok(Box::pin(async move {
            answer.await.unwrap_or(Err(TransportError::Cancelled))
        }))
    }

    fn warm_up(&self, timeout: Duration) -> Result<(), TransportError> {
        // One call resolves the endpoint, opens the connection and checks the credentials.
        let call = self.client.list_streams().limit(1).send();
        match self.runtime.block_on(tokio::time::timeout(timeout, call)) {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(error)) => Err(KinesisError::from_sdk("ListStreams", &error).into()),
            Err(_) => Err(TransportError::Kinesis(KinesisError {
                operation: "ListStreams",
                code: None,
                message: format!("no answer within {timeout:?}"),
                refused_here: false,
            })),
        }
    }
}

/// Sends what is queued, one stream per call, while calls are allowed; ends when the
/// publisher is dropped and the queue is empty.
async fn send_batches(
    client: Client,
    mut queued: mpsc::UnboundedReceiver<Queued>,
    max_calls: usize,
) {
    let calls = Arc::new(Semaphore::new(max_calls));
    let mut backlog: VecDeque<Queued> = VecDeque::new();
    loop {
        let Ok(permit) = calls.clone().acquire_owned().await else {
            return;
        };
        if backlog.is_empty() {
            match queued.recv().await {
                Some(first) => backlog.push_back(first),
                None => return,
            }
        }
        while let Ok(more) = queued.try_recv() {
            backlog.push_back(more);
        }
        let batch = take_call(&mut backlog);
        let client = client.clone();
        tokio::spawn(async move {
            put_records(&client, batch).await;
            drop(permit);
        });
    }
}

/// Takes the next call's records from `backlog`: the oldest record's stream, in queue order,
/// within Kinesis's limits per call.
fn take_call(backlog: &mut VecDeque<Queued>) -> Vec<Queued> {
    let Some(stream) = backlog.front().map(|q| q.stream.clone()) else {
        return Vec::new();
    };
    let (mut batch, mut bytes, mut rest) = (Vec::new(), 0, VecDeque::with_capacity(backlog.len()));
    for queued in backlog.drain(..) {
        let fits = batch.len() < MAX_RECORDS_PER_CALL
            && (batch.is_empty() || bytes + queued.size() <= MAX_BYTES_PER_CALL);
        if queued.stream == stream && fits {
            bytes += queued.size();
            batch.push(queued);
        } else {
            rest.push_back(queued);
        }
    }
    *backlog = rest;
    batch
}

/// One `PutRecords` call; answers each record.
async fn put_records(client: &Client, batch: Vec<Queued>) {
    let Some(stream) = batch.first().map(|q| q.stream.clone()) else {
        return;
    };
    let mut answers = Vec::with_capacity(batch.len());
    let mut entries = Vec::with_capacity(batch.len());
    for queued in batch {
        let entry = PutRecordsRequestEntry::builder()
            .partition_key(queued.key)
            .data(Blob::new(queued.data))
            .build();
        match entry {
            Ok(entry) => {
                entries.push(entry);
                answers.push(queued.done);
            }
            Err(error) => {
                let _ = queued
                    .done
                    .send(Err(KinesisError::refused(error.to_string()).into()));
            }
        }
    }
    let call = client
        .put_records()
        .stream_name(&stream)
        .set_records(Some(entries))
        .send()
        .await;
    match call {
        Ok(output) => {
            let mut results = output.records().iter();
            for answer in answers {
                let result = match results.next() {
                    Some(entry) => match entry.error_code() {
                        None => Ok(()),
                        Some(code) => Err(TransportError::Kinesis(KinesisError {
                            operation: "PutRecords",
                            code: Some(code.to_owned()),
                            message: entry.error_message().unwrap_or(code).to_owned(),
                            refused_here: false,
                        })),
                    },
                    None => Err(TransportError::Kinesis(KinesisError {
                        operation: "PutRecords",
                        code: None,
                        message: "Kinesis answered for fewer records than were sent".to_owned(),
                        refused_here: false,
                    })),
                };
                let _ = answer.send(result);
            }
        }
        Err(error) => {
            let error = KinesisError::from_sdk("PutRecords", &error);
            tracing::debug!(target: "procon::kinesis", %error, stream, "PutRecords failed");
            for answer in answers {
                let _ = answer.send(Err(error.clone().into()));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn queued(stream: &str, bytes: usize) -> Queued {
        Queued {
            stream: stream.to_owned(),
            key: "k".to_owned(),
            data: vec![0; bytes.saturating_sub(1)],
            done: oneshot::channel().0,
        }
    }

    #[test]
    fn a_call_takes_the_oldest_records_stream_in_order_and_leaves_the_others_queued() {
        let mut backlog: VecDeque<Queued> = [("a", 1), ("b", 2), ("a", 3), ("b", 4)]
            .into_iter()
            .map(|(stream, size)| queued(stream, size))
            .collect();
        let call = take_call(&mut backlog);
        assert_eq!(call.iter().map(Queued::size).collect::<Vec<_>>(), [1, 3]);
        assert_eq!(backlog.iter().map(Queued::size).collect::<Vec<_>>(), [2, 4]);
    }

    #[test]
    fn a_call_stays_within_kinesis_limits_of_records_and_bytes() {
        let mut backlog: VecDeque<Queued> = (0..600).map(|_| queued("s", 10)).collect();
        assert_eq!(take_call(&mut backlog).len(), MAX_RECORDS_PER_CALL);
        assert_eq!(backlog.len(), 100);
        let mut big: VecDeque<Queued> = (0..7).map(|_| queued("s", MAX_RECORD_BYTES)).collect();
        assert_eq!(take_call(&mut big).len(), 5);
        assert_eq!(big.len(), 2);
    }
}

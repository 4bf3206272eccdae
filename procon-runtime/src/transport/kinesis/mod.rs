//! Kinesis behind the transport seam: everything that names an `aws-sdk-kinesis` type lives
//! here.
//!
//! Job: build the SDK client from [`KinesisConfig`] (region, endpoint, credentials from the
//! standard AWS variables, timeouts), classify Kinesis errors into rejections (the record or
//! the request is wrong: sending it again fails again) and outages (retried without limit),
//! carry procon's headers inside the record data ([`record`]), and implement
//! [`super::Publisher`] ([`KinesisPublisher`]).
//!
//! Kinesis orders records per shard, not per `PutRecords` call: within one call the records
//! are applied independently and some may fail while later ones succeed. The publisher is
//! therefore a one-record-per-key transport ([`super::Publisher::fails_successors`] is false):
//! the relay hands it a key's next record only once the previous one is acknowledged, so a
//! failed record can never be overtaken by a later record of its key.

mod lease_store;
mod leases;
mod publisher;
mod reader;
pub mod record;
mod source;

pub use publisher::KinesisPublisher;
pub use reader::{positions_at, read_stream};
pub use source::KinesisSource;

use std::time::Duration;

use aws_sdk_kinesis::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_kinesis::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_kinesis::types::StreamStatus;

use crate::config::KinesisConfig;

/// The Kinesis SDK's client, re-exported so a caller can build one of its own (other
/// credentials) without naming the SDK crate's version.
pub use aws_sdk_kinesis::Client;

/// Error codes meaning the request or the record itself is wrong: retrying it unchanged fails
/// again (the relay parks such a record after `relay.park_after_attempts`).
const REJECTIONS: [&str; 10] = [
    "ValidationException",
    "InvalidArgumentException",
    "ResourceNotFoundException",
    "AccessDeniedException",
    "KMSAccessDeniedException",
    "KMSDisabledException",
    "KMSInvalidStateException",
    "KMSNotFoundException",
    "KMSOptInRequired",
    "UnrecognizedClientException",
];

/// A Kinesis call or record failed.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{operation}: {message}{}", code.as_deref().map(|c| format!(" ({c})")).unwrap_or_default())]
pub struct KinesisError {
    /// The operation (`PutRecords`, `ListStreams`...), or what procon was doing.
    pub operation: &'static str,
    /// Kinesis's error code, when it answered with one.
    pub code: Option<String>,
    /// What went wrong, with the SDK's context.
    pub message: String,
    /// True when procon refused the record before sending it (too large, a key Kinesis
    /// cannot take).
    pub refused_here: bool,
}

impl KinesisError {
    /// An error of an SDK call.
    pub(crate) fn from_sdk<E, R>(operation: &'static str, error: &SdkError<E, R>) -> Self
    where
        E: ProvideErrorMetadata + std::error::Error + 'static,
        R: std::fmt::Debug,
    {
        KinesisError {
            operation,
            code: error.code().map(str::to_owned),
            message: DisplayErrorContext(error).to_string(),
            refused_here: false,
        }
    }

    /// A record procon will not send, and why.
    pub(crate) fn refused(message: impl Into<String>) -> Self {
        KinesisError {
            operation: "PutRecords",
            code: None,
            message: message.into(),
            refused_here: true,
        }
    }

    /// True when sending the same record again fails again.
    pub fn is_rejection(&self) -> bool {
        self.refused_here
            || self
                .code
                .as_deref()
                .is_some_and(|code| REJECTIONS.contains(&code))
    }
}

/// Builds the SDK client for `config`: credentials from `AWS_ACCESS_KEY_ID`,
/// `AWS_SECRET_ACCESS_KEY` and `AWS_SESSION_TOKEN` (with neither set and an `endpoint_url`
/// given, placeholder credentials for an emulator), TLS by rustls, a 3 s connect timeout and
/// a 30 s limit per call (the SDK retries throttling and transient errors inside it).
pub fn client(config: &KinesisConfig) -> Result<Client, KinesisError> {
    let credentials = credentials(
        |name| std::env::var(name).ok().filter(|v| !v.is_empty()),
        config.endpoint_url.is_some(),
    )?;
    let http = aws_smithy_http_client::Builder::new()
        .tls_provider(aws_smithy_http_client::tls::Provider::Rustls(
            aws_smithy_http_client::tls::rustls_provider::CryptoMode::Ring,
        ))
        .build_https();
    let timeouts = aws_sdk_kinesis::config::timeout::TimeoutConfig::builder()
        .connect_timeout(Duration::from_secs(3))
        .operation_timeout(Duration::from_secs(30))
        .build();
    let mut builder = aws_sdk_kinesis::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new(config.region.clone()))
        .credentials_provider(credentials)
        .http_client(http)
        .timeout_config(timeouts);
    if let Some(url) = &config.endpoint_url {
        builder = builder.endpoint_url(url);
    }
    Ok(Client::from_conf(builder.build()))
}

/// The credentials: static keys from `variable` (the AWS variables), else placeholders when an
/// endpoint other than AWS's is set (an emulator checks no signature; a real endpoint answers
/// UnrecognizedClient), else an error saying what to set.
fn credentials(
    variable: impl Fn(&str) -> Option<String>,
    custom_endpoint: bool,
) -> Result<Credentials, KinesisError> {
    match (
        variable("AWS_ACCESS_KEY_ID"),
        variable("AWS_SECRET_ACCESS_KEY"),
    ) {
        (Some(key), Some(secret)) => Ok(Credentials::new(
            key,
            secret,
            variable("AWS_SESSION_TOKEN"),
            None,
            "environment",
        )),
        (None, None) if custom_endpoint => Ok(Credentials::new(
            "procon",
            "emulator",
            None,
            None,
            "placeholder",
        )),
        _ => Err(KinesisError {
            operation: "connect",
            code: None,
            message: "no credentials: set both AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or \
                      build a client with aws-config and use KinesisPublisher::with_client"
                .to_owned(),
            refused_here: false,
        }),
    }
}

/// Creates `stream` with `shards` shards unless it exists, then waits until it is active (at
/// most `timeout`). For demos, tests and bootstrapping: the relay never creates streams (a
/// missing stream parks its events, see the README).
pub async fn ensure_stream(
    client: &Client,
    stream: &str,
    shards: i32,
    timeout: Duration,
) -> Result<(), KinesisError> {
    let described = client
        .describe_stream_summary()
        .stream_name(stream)
        .send()
        .await;
    if let Err(error) = &described {
        if error.code() != Some("ResourceNotFoundException") {
            return Err(KinesisError::from_sdk("DescribeStreamSummary", error));
        }
        client
            .create_stream()
            .stream_name(stream)
            .shard_count(shards)
            .send()
            .await
            .map_err(|error| KinesisError::from_sdk("CreateStream", &error))?;
    }
    wait_active(client, stream, timeout).await
}

/// Waits until `stream` is active (after a create, split or merge), at most `timeout`.
pub async fn wait_active(
    client: &Client,
    stream: &str,
    timeout: Duration,
) -> Result<(), KinesisError> {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let summary = client
            .describe_stream_summary()
            .stream_name(stream)
            .send()
            .await
            .map_err(|error| KinesisError::from_sdk("DescribeStreamSummary", &error))?;
        let status = summary
            .stream_description_summary()
            .map(|s| s.stream_status().clone());
        if status == Some(StreamStatus::Active) {
            return Ok(());
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(KinesisError {
                operation: "DescribeStreamSummary",
                code: None,
                message: format!("stream {stream} is not active after {timeout:?} ({status:?})"),
                refused_here: false,
            });
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Every shard of `stream`, open and closed (all `ListShards` pages).
pub(crate) async fn list_shards(
    client: &Client,
    stream: &str,
) -> Result<Vec<aws_sdk_kinesis::types::Shard>, KinesisError> {
    let mut shards = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let request = match &token {
            Some(token) => client.list_shards().next_token(token),
            None => client.list_shards().stream_name(stream),
        };
        let page = request
            .send()
            .await
            .map_err(|error| KinesisError::from_sdk("ListShards", &error))?;
        shards.extend_from_slice(page.shards());
        token = page.next_token().map(str::to_owned);
        if token.is_none() {
            return Ok(shards);
        }
    }
}

/// An iterator of `shard` of the given kind, from `sequence` or `timestamp` when the kind
/// takes one (`None`: Kinesis gave none, the shard has nothing to read).
pub(crate) async fn shard_iterator(
    client: &Client,
    stream: &str,
    shard: &str,
    kind: aws_sdk_kinesis::types::ShardIteratorType,
    sequence: Option<String>,
    timestamp: Option<aws_sdk_kinesis::primitives::DateTime>,
) -> Result<Option<String>, KinesisError> {
    let opened = client
        .get_shard_iterator()
        .stream_name(stream)
        .shard_id(shard)
        .shard_iterator_type(kind)
        .set_starting_sequence_number(sequence)
        .set_timestamp(timestamp)
        .send()
        .await
        .map_err(|error| KinesisError::from_sdk("GetShardIterator", &error))?;
    Ok(opened.shard_iterator().map(str::to_owned))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(set: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        move |name| {
            set.iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| (*v).to_owned())
        }
    }

    #[test]
    fn credentials_come_from_the_aws_variables_and_half_a_pair_is_refused_by_name() {
        let both = vars(&[
            ("AWS_ACCESS_KEY_ID", "AKIA1"),
            ("AWS_SECRET_ACCESS_KEY", "s3"),
        ]);
        let keys = credentials(both, false).unwrap();
        assert_eq!(keys.access_key_id(), "AKIA1");
        assert!(
            !format!("{keys:?}").contains("s3"),
            "the secret is not shown"
        );
        let half = vars(&[("AWS_ACCESS_KEY_ID", "AKIA1")]);
        let error = credentials(half, true).unwrap_err().to_string();
        assert!(error.contains("AWS_SECRET_ACCESS_KEY"), "{error}");
    }

    #[test]
    fn an_emulator_endpoint_needs_no_credentials_aws_does() {
        assert_eq!(
            credentials(vars(&[]), true).unwrap().access_key_id(),
            "procon"
        );
        let error = credentials(vars(&[]), false).unwrap_err().to_string();
        assert!(error.contains("AWS_ACCESS_KEY_ID"), "{error}");
    }

    #[test]
    fn codes_of_a_wrong_request_are_rejections_throttling_and_outages_are_not() {
        let with = |code: Option<&str>| KinesisError {
            operation: "PutRecords",
            code: code.map(str::to_owned),
            message: String::new(),
            refused_here: false,
        };
        assert!(with(Some("ResourceNotFoundException")).is_rejection());
        assert!(with(Some("AccessDeniedException")).is_rejection());
        assert!(!with(Some("ProvisionedThroughputExceededException")).is_rejection());
        assert!(!with(Some("InternalFailure")).is_rejection());
        assert!(!with(None).is_rejection());
        assert!(KinesisError::refused("too large").is_rejection());
    }
}

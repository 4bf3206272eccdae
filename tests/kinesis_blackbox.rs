//! A black-box check of the Kinesis emulator (kinesis-local) against the AWS SDK, before any
//! procon test trusts it: what procon relies on from Kinesis must hold here too. Records of a
//! partition key stay on one shard in the order they were acknowledged; sequence numbers grow
//! along a shard; a split or merge closes the parents (read to their end, no next iterator)
//! and names them in the children; a call to a missing stream fails as a whole with the code
//! procon treats as a rejection.

mod common;

use std::collections::BTreeMap;

use aws_sdk_kinesis::error::ProvideErrorMetadata;
use aws_sdk_kinesis::primitives::Blob;
use aws_sdk_kinesis::types::PutRecordsRequestEntry;
use common::kinesis::{self, read_shard, sequence_order, shards, Read};
use procon::runtime::transport::kinesis::Client;

async fn put(client: &Client, stream: &str, records: &[(String, String)]) {
    let entries = records
        .iter()
        .map(|(key, data)| {
            PutRecordsRequestEntry::builder()
                .partition_key(key)
                .data(Blob::new(data.as_bytes()))
                .build()
                .unwrap()
        })
        .collect();
    let output = client
        .put_records()
        .stream_name(stream)
        .set_records(Some(entries))
        .send()
        .await
        .expect("PutRecords");
    assert_eq!(output.failed_record_count(), Some(0));
    assert_eq!(output.records().len(), records.len());
    for entry in output.records() {
        assert!(entry.sequence_number().is_some() && entry.shard_id().is_some());
    }
}

fn by_key(read: &[Read]) -> BTreeMap<String, Vec<&Read>> {
    let mut keys: BTreeMap<String, Vec<&Read>> = BTreeMap::new();
    for record in read {
        keys.entry(record.key.clone()).or_default().push(record);
    }
    keys
}

#[tokio::test]
async fn records_of_a_key_stay_on_one_shard_in_order_with_growing_sequence_numbers() {
    let client = kinesis::client();
    let stream = kinesis::unique_stream("bb-order");
    kinesis::create_stream(&client, &stream, 4).await;
    // 20 calls, each with the next record of 10 keys.
    for seq in 0..20 {
        let records: Vec<(String, String)> = (0..10)
            .map(|k| (format!("key-{k}"), format!("{seq}")))
            .collect();
        put(&client, &stream, &records).await;
    }
    let read = kinesis::read_all(&client, &stream).await;
    assert_eq!(read.len(), 200);
    for shard in shards(&client, &stream).await {
        let sequences: Vec<&str> = read
            .iter()
            .filter(|r| r.shard == shard.shard_id())
            .map(|r| r.sequence.as_str())
            .collect();
        assert!(
            sequences
                .windows(2)
                .all(|w| sequence_order(w[0], w[1]).is_lt()),
            "sequence numbers grow along shard {}",
            shard.shard_id()
        );
    }
    let keys = by_key(&read);
    assert_eq!(keys.len(), 10);
    let mut used_shards = std::collections::BTreeSet::new();
    for (key, records) in keys {
        assert!(
            records.iter().all(|r| r.shard == records[0].shard),
            "{key} stays on one shard"
        );
        used_shards.insert(records[0].shard.clone());
        let order: Vec<String> = records
            .iter()
            .map(|r| String::from_utf8(r.data.clone()).unwrap())
            .collect();
        let expected: Vec<String> = (0..20).map(|s| s.to_string()).collect();
        assert_eq!(order, expected, "{key} in the order it was written");
    }
    assert!(used_shards.len() > 1, "keys spread over the shards");
}

#[tokio::test]
async fn a_split_and_a_merge_close_the_parents_and_the_children_name_them() {
    let client = kinesis::client();
    let stream = kinesis::unique_stream("bb-reshard");
    kinesis::create_stream(&client, &stream, 1).await;
    let before: Vec<(String, String)> = (0..10)
        .map(|i| (format!("k{i}"), "before".into()))
        .collect();
    put(&client, &stream, &before).await;
    let parent = shards(&client, &stream).await[0].clone();
    let range = parent.hash_key_range().unwrap();
    let (low, high): (u128, u128) = (
        range.starting_hash_key().parse().unwrap(),
        range.ending_hash_key().parse().unwrap(),
    );
    client
        .split_shard()
        .stream_name(&stream)
        .shard_to_split(parent.shard_id())
        .new_starting_hash_key(((low + high) / 2 + 1).to_string())
        .send()
        .await
        .expect("SplitShard");
    kinesis::wait_active(&client, &stream).await;
    let after_split = shards(&client, &stream).await;
    assert_eq!(after_split.len(), 3);
    let closed = after_split
        .iter()
        .find(|s| s.shard_id() == parent.shard_id())
        .unwrap();
    assert!(
        closed
            .sequence_number_range()
            .unwrap()
            .ending_sequence_number()
            .is_some(),
        "the parent is closed"
    );
    let children: Vec<_> = after_split
        .iter()
        .filter(|s| s.parent_shard_id() == Some(parent.shard_id()))
        .collect();
    assert_eq!(children.len(), 2);

    let after: Vec<(String, String)> = (0..10).map(|i| (format!("k{i}"), "after".into())).collect();
    put(&client, &stream, &after).await;
    let (in_parent, parent_ended) = read_shard(&client, &stream, parent.shard_id()).await;
    assert!(
        parent_ended,
        "a closed shard read to its end gives no next iterator"
    );
    assert_eq!(in_parent.len(), 10);
    assert!(in_parent.iter().all(|r| r.data == b"before"));
    let mut in_children = Vec::new();
    for child in &children {
        let (read, ended) = read_shard(&client, &stream, child.shard_id()).await;
        assert!(!ended, "an open shard has a next iterator");
        in_children.extend(read);
    }
    assert_eq!(in_children.len(), 10);
    assert!(in_children.iter().all(|r| r.data == b"after"));

    // Merging the two children closes both and names both in the new shard.
    let (left, right) = if children[0].hash_key_range().unwrap().starting_hash_key()
        < children[1].hash_key_range().unwrap().starting_hash_key()
        && children[0]
            .hash_key_range()
            .unwrap()
            .starting_hash_key()
            .len()
            <= children[1]
                .hash_key_range()
                .unwrap()
                .starting_hash_key()
                .len()
    {
        (children[0], children[1])
    } else {
        (children[1], children[0])
    };
    client
        .merge_shards()
        .stream_name(&stream)
        .shard_to_merge(left.shard_id())
        .adjacent_shard_to_merge(right.shard_id())
        .send()
        .await
        .expect("MergeShards");
    kinesis::wait_active(&client, &stream).await;
    let after_merge = shards(&client, &stream).await;
    let merged = after_merge
        .iter()
        .find(|s| s.parent_shard_id() == Some(left.shard_id()))
        .expect("the merged shard names its parent");
    assert_eq!(merged.adjacent_parent_shard_id(), Some(right.shard_id()));
}

#[tokio::test]
async fn a_call_to_a_missing_stream_fails_as_a_whole_with_resource_not_found() {
    let client = kinesis::client();
    let missing = kinesis::unique_stream("bb-missing");
    let error = client
        .put_records()
        .stream_name(&missing)
        .records(
            PutRecordsRequestEntry::builder()
                .partition_key("k")
                .data(Blob::new("x"))
                .build()
                .unwrap(),
        )
        .send()
        .await
        .expect_err("no such stream");
    assert_eq!(error.code(), Some("ResourceNotFoundException"));
}

//! Shard leases of a consumer group on Kinesis: which member reads which shard. Pure: the
//! source ([`super::source`]) runs the SQL ([`super::lease_store`]) and feeds the answers in.
//!
//! `procon_kinesis_leases` has a row per (group, stream, shard): its owner, an expiry
//! (database time) and whether the shard is finished. Every member of the group is in
//! `procon_kinesis_members`, seen at each heartbeat. Every `lease_ttl / 3` a member renews its
//! leases, counts the live members and claims free or expired readable shards up to its fair
//! share (`ceil(readable shards / members)`), or releases its surplus.
//!
//! Readable: a shard is read only once its parents are finished (closed by a split or merge,
//! and every record of theirs applied), so a key's events before a reshard are applied before
//! its events after it. A parent that `ListShards` no longer returns (trimmed by retention)
//! blocks nothing. Shard ids grow with creation, so claiming in id order takes parents first.
//!
//! Fencing is not the lease's job: when the pipeline claims a shard it increments the
//! partition's epoch, and the previous owner's transactions are refused from then on (see the
//! consumer's `store`). A lease only keeps two members from reading the same shard at once; a
//! member that loses its lease (no renewal within its local deadline) stops delivering the
//! shard and gives it back to the pipeline.

use std::collections::{BTreeMap, BTreeSet};

/// A shard of a stream, as `ListShards` describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ShardInfo {
    /// The shard id (`shardId-000000000003`).
    pub(crate) id: String,
    /// Its parent and, after a merge, its adjacent parent.
    pub(crate) parents: Vec<String>,
}

/// A lease row of one shard, as read now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LeaseRow {
    /// The shard id.
    pub(crate) shard_id: String,
    /// The member holding it, when the lease is live (not expired).
    pub(crate) live_owner: Option<String>,
    /// The shard is closed and applied to its end.
    pub(crate) finished: bool,
}

/// What a member does with its leases after a heartbeat.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Plan {
    /// Shards to claim, in order (parents before children).
    pub(crate) claim: Vec<String>,
    /// Shards to give up (surplus over the fair share).
    pub(crate) release: Vec<String>,
}

/// The shards of `shards` that may be read now: not finished, and every parent still listed
/// is finished.
pub(crate) fn readable<'a>(shards: &'a [ShardInfo], leases: &[LeaseRow]) -> Vec<&'a str> {
    let finished: BTreeSet<&str> = leases
        .iter()
        .filter(|l| l.finished)
        .map(|l| l.shard_id.as_str())
        .collect();
    let listed: BTreeSet<&str> = shards.iter().map(|s| s.id.as_str()).collect();
    let mut readable: Vec<&str> = shards
        .iter()
        .filter(|s| !finished.contains(s.id.as_str()))
        .filter(|s| {
            s.parents
                .iter()
                .all(|p| finished.contains(p.as_str()) || !listed.contains(p.as_str()))
        })
        .map(|s| s.id.as_str())
        .collect();
    readable.sort_unstable();
    readable
}

/// What `me` claims and releases, given the stream's shards, the lease rows and how many
/// members are live.
pub(crate) fn plan(me: &str, shards: &[ShardInfo], leases: &[LeaseRow], members: i64) -> Plan {
    let readable = readable(shards, leases);
    let owners: BTreeMap<&str, Option<&str>> = leases
        .iter()
        .map(|l| (l.shard_id.as_str(), l.live_owner.as_deref()))
        .collect();
    let share = readable.len().div_ceil(members.max(1) as usize);
    let mine: Vec<&str> = readable
        .iter()
        .copied()
        .filter(|id| owners.get(id).copied().flatten() == Some(me))
        .collect();
    if mine.len() > share {
        // Keep the oldest shards (parents), give up the newest.
        return Plan {
            claim: Vec::new(),
            release: mine[share..].iter().map(|s| (*s).to_owned()).collect(),
        };
    }
    let free = readable
        .iter()
        .filter(|id| owners.get(*id).copied().flatten().is_none())
        .take(share - mine.len())
        .map(|s| (*s).to_owned())
        .collect();
    Plan {
        claim: free,
        release: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shard(id: u32, parents: &[u32]) -> ShardInfo {
        ShardInfo {
            id: format!("s{id}"),
            parents: parents.iter().map(|p| format!("s{p}")).collect(),
        }
    }

    fn lease(id: u32, owner: Option<&str>, finished: bool) -> LeaseRow {
        LeaseRow {
            shard_id: format!("s{id}"),
            live_owner: owner.map(str::to_owned),
            finished,
        }
    }

    fn ids(list: &[String]) -> Vec<&str> {
        list.iter().map(String::as_str).collect()
    }

    #[test]
    fn members_split_the_shards_fairly_and_a_newcomer_gets_the_surplus() {
        let shards: Vec<_> = (0..4).map(|i| shard(i, &[])).collect();
        let alone = plan("a", &shards, &[], 1);
        assert_eq!(ids(&alone.claim), ["s0", "s1", "s2", "s3"]);
        let held: Vec<_> = (0..4).map(|i| lease(i, Some("a"), false)).collect();
        // A second member joins: `a` gives up two, `b` takes them once they are free.
        assert_eq!(ids(&plan("a", &shards, &held, 2).release), ["s2", "s3"]);
        assert_eq!(plan("b", &shards, &held, 2), Plan::default());
        let after = [
            lease(0, Some("a"), false),
            lease(1, Some("a"), false),
            lease(2, None, false),
            lease(3, None, false),
        ];
        assert_eq!(ids(&plan("b", &shards, &after, 2).claim), ["s2", "s3"]);
        assert_eq!(plan("a", &shards, &after, 2), Plan::default());
    }

    #[test]
    fn an_expired_lease_is_claimable_and_counts_as_nobodys() {
        let shards = [shard(0, &[]), shard(1, &[])];
        // `b` died: its lease is no longer live, so `a`, alone now, takes both.
        let leases = [lease(0, Some("a"), false), lease(1, None, false)];
        assert_eq!(ids(&plan("a", &shards, &leases, 1).claim), ["s1"]);
    }

    #[test]
    fn children_wait_until_their_parents_are_finished() {
        // s0 split into s1 and s2; s1 and s2 merged into s3.
        let shards = [
            shard(0, &[]),
            shard(1, &[0]),
            shard(2, &[0]),
            shard(3, &[1, 2]),
        ];
        assert_eq!(readable(&shards, &[]), ["s0"]);
        let parent_done = [lease(0, None, true)];
        assert_eq!(readable(&shards, &parent_done), ["s1", "s2"]);
        let one_done = [lease(0, None, true), lease(1, None, true)];
        assert_eq!(
            readable(&shards, &one_done),
            ["s2"],
            "a merge waits for both"
        );
        let both = [
            lease(0, None, true),
            lease(1, None, true),
            lease(2, None, true),
        ];
        assert_eq!(readable(&shards, &both), ["s3"]);
        assert_eq!(ids(&plan("a", &shards, &both, 3).claim), ["s3"]);
    }

    #[test]
    fn a_parent_trimmed_from_the_stream_blocks_nothing() {
        let shards = [shard(1, &[0]), shard(2, &[0])];
        assert_eq!(readable(&shards, &[]), ["s1", "s2"]);
    }
}

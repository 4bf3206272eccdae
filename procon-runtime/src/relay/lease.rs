//! Shard leases: how several relay processes share one outbox, with PostgreSQL as the only
//! coordinator. Pure: the rounds loop runs the SQL (`source`) and feeds the answers in.
//!
//! The outbox is split into `relay.shards` shards by a hash of (topic, key), so a key always
//! belongs to one shard and its order is one relay's business. `procon_relay_leases` has a row
//! per shard: its owner, an epoch (incremented by every claim) and an expiry (database time).
//! Every relay is a member (`procon_relay_members`, seen at each heartbeat). Every `ttl / 3` a
//! relay renews its leases, counts the live members and claims free or expired shards up to
//! its fair share (`ceil(shards / members)`), or releases its surplus.
//!
//! Fencing: a relay sends a shard's rows only before its local deadline for that shard, taken
//! as the instant it *sent* the renewing statement plus `ttl` minus a margin: the database's
//! expiry (`now()` at the renewal, plus `ttl`) is later, so the relay stops sending before any
//! other relay can claim the shard. Its deletes check the lease in the same statement. A relay
//! that cannot reach the database therefore stops publishing within `ttl`, and the shard moves
//! to another relay once the lease expired.
//!
//! Order across a move: records the old owner handed to the producer before its deadline may
//! still reach the broker after the new owner started. Both publish, per key, an in-order prefix
//! of the same rows (a failed record fails the later ones of its key: the gapless producer), so
//! the first copy of each event a consumer sees is still in key order; later copies carry the
//! same event id and are recognised.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// A lease this relay holds: its epoch, and when it stops sending the shard's rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Held {
    epoch: i64,
    deadline: Instant,
}

/// What changed in this relay's leases.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Change {
    /// Shards newly held: their rows are read from the head of the outbox.
    pub(crate) gained: Vec<i32>,
    /// Shards no longer held: their rows are forgotten and never sent again by this relay.
    pub(crate) lost: Vec<i32>,
}

/// The leases of one relay.
#[derive(Debug)]
pub(crate) struct Leases {
    shards: i32,
    ttl: Duration,
    held: BTreeMap<i32, Held>,
}

/// The fair share of `shards` among `members` live relays.
pub(crate) fn fair_share(shards: i32, members: i64) -> usize {
    let members = members.max(1) as usize;
    (shards.max(0) as usize).div_ceil(members)
}

impl Leases {
    pub(crate) fn new(shards: i32, ttl: Duration) -> Self {
        Leases {
            shards,
            ttl,
            held: BTreeMap::new(),
        }
    }

    /// The deadline of a lease renewed by a statement sent at `sent_at`: a third of the lease
    /// is kept as margin for the statement's own time and the clocks' drift.
    fn deadline(&self, sent_at: Instant) -> Instant {
        sent_at + self.ttl - self.ttl / 3
    }

    /// Shards this relay may read and send at `now`.
    pub(crate) fn owned(&self, now: Instant) -> Vec<i32> {
        self.held
            .iter()
            .filter(|(_, held)| now < held.deadline)
            .map(|(&shard, _)| shard)
            .collect()
    }

    /// True when a row of `shard` may be handed to the producer at `now`.
    pub(crate) fn may_send(&self, shard: i32, now: Instant) -> bool {
        self.held
            .get(&shard)
            .is_some_and(|held| now < held.deadline)
    }

    /// True while this relay holds `shard` (the realtime task runs with shard 0).
    pub(crate) fn holds(&self, shard: i32, now: Instant) -> bool {
        self.may_send(shard, now)
    }

    /// Leases whose local deadline passed without a renewal: dropped, and returned as lost.
    pub(crate) fn lapsed(&mut self, now: Instant) -> Vec<i32> {
        let lapsed: Vec<i32> = self
            .held
            .iter()
            .filter(|(_, held)| now >= held.deadline)
            .map(|(&shard, _)| shard)
            .collect();
        for shard in &lapsed {
            self.held.remove(shard);
        }
        lapsed
    }

    /// Takes in what the renewal sent at `sent_at` returned (the leases still ours, with their
    /// epochs), what the claims after it returned, and what was released.
    pub(crate) fn renewed(
        &mut self,
        sent_at: Instant,
        renewed: &[(i32, i64)],
        claimed: &[(i32, i64)],
        released: &[i32],
    ) -> Change {
        let deadline = self.deadline(sent_at);
        let next: BTreeMap<i32, Held> = renewed
            .iter()
            .chain(claimed)
            .filter(|(shard, _)| !released.contains(shard))
            .map(|&(shard, epoch)| (shard, Held { epoch, deadline }))
            .collect();
        // Same shard, same epoch: the lease went on. Another epoch: it was claimed by another
        // relay in between and claimed back, so it starts over.
        let same =
            |a: Option<&Held>, b: Option<&Held>| a.zip(b).is_some_and(|(a, b)| a.epoch == b.epoch);
        let change = Change {
            lost: self
                .held
                .keys()
                .filter(|shard| !same(self.held.get(shard), next.get(shard)))
                .copied()
                .collect(),
            gained: next
                .keys()
                .filter(|shard| !same(self.held.get(shard), next.get(shard)))
                .copied()
                .collect(),
        };
        self.held = next;
        change
    }

    /// Every lease is gone (the database failed or the relay stops): all shards are lost.
    pub(crate) fn drop_all(&mut self) -> Vec<i32> {
        let lost = self.held.keys().copied().collect();
        self.held.clear();
        lost
    }

    /// How many more shards to claim with `members` live relays (`held` still ours).
    pub(crate) fn to_claim(&self, held: usize, members: i64) -> usize {
        fair_share(self.shards, members).saturating_sub(held)
    }

    /// Which of `held` to release with `members` live relays: the surplus over the fair share,
    /// highest shard numbers first (shard 0, with realtime, moves last).
    pub(crate) fn to_release(&self, held: &[i32], members: i64) -> Vec<i32> {
        let share = fair_share(self.shards, members);
        let mut held = held.to_vec();
        held.sort_unstable();
        held.into_iter().skip(share).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TTL: Duration = Duration::from_secs(6);

    #[test]
    fn the_fair_share_rounds_up() {
        assert_eq!(fair_share(8, 1), 8);
        assert_eq!(fair_share(8, 3), 3);
        assert_eq!(fair_share(1, 2), 1);
        assert_eq!(fair_share(8, 0), 8);
    }

    #[test]
    fn a_lease_is_usable_until_its_local_deadline_only() {
        let mut leases = Leases::new(4, TTL);
        let t0 = Instant::now();
        let change = leases.renewed(t0, &[], &[(0, 1), (1, 1)], &[]);
        assert_eq!(change.gained, vec![0, 1]);
        assert!(leases.may_send(0, t0 + Duration::from_secs(3)));
        // The deadline keeps a third of the lease as margin: the database's expiry is later.
        assert!(!leases.may_send(0, t0 + Duration::from_secs(4)));
        assert!(!leases.may_send(2, t0));
        assert_eq!(leases.owned(t0), vec![0, 1]);
    }

    #[test]
    fn a_lease_not_renewed_is_lost_and_one_claimed_again_starts_over() {
        let mut leases = Leases::new(4, TTL);
        let t0 = Instant::now();
        leases.renewed(t0, &[], &[(0, 1), (1, 1)], &[]);
        let t1 = t0 + Duration::from_secs(2);
        // Shard 1's lease expired and was taken by another relay: the renewal leaves it out.
        let change = leases.renewed(t1, &[(0, 1)], &[], &[]);
        assert_eq!(
            change,
            Change {
                gained: vec![],
                lost: vec![1]
            }
        );
        // Claimed back later, with a new epoch: gained again (its rows are read anew).
        let t2 = t1 + Duration::from_secs(2);
        let change = leases.renewed(t2, &[(0, 1)], &[(1, 3)], &[]);
        assert_eq!(
            change,
            Change {
                gained: vec![1],
                lost: vec![]
            }
        );
        // No renewal in time: both lapse at their local deadline...
        let late = t2 + Duration::from_secs(10);
        assert_eq!(leases.lapsed(late), vec![0, 1]);
        assert!(leases.owned(late).is_empty());
        // ...and a renewal that still comes back starts them over.
        let change = leases.renewed(late, &[(0, 1), (1, 3)], &[], &[]);
        assert_eq!(change.gained, vec![0, 1]);
    }

    #[test]
    fn surplus_shards_are_released_highest_first() {
        let leases = Leases::new(8, TTL);
        assert_eq!(
            leases.to_release(&[0, 1, 2, 3, 4, 5, 6, 7], 2),
            vec![4, 5, 6, 7]
        );
        assert_eq!(leases.to_release(&[0, 5], 4), Vec::<i32>::new());
        assert_eq!(leases.to_claim(2, 4), 0);
        assert_eq!(leases.to_claim(2, 2), 2);
    }

    #[test]
    fn released_shards_are_lost() {
        let mut leases = Leases::new(2, TTL);
        let t0 = Instant::now();
        leases.renewed(t0, &[], &[(0, 1), (1, 1)], &[]);
        let change = leases.renewed(t0, &[(0, 1), (1, 1)], &[], &[1]);
        assert_eq!(change.lost, vec![1]);
        assert_eq!(leases.owned(t0), vec![0]);
        assert_eq!(leases.drop_all(), vec![0]);
    }
}

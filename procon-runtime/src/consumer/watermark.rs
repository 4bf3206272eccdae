//! The watermark of one partition: the lowest position not yet applied.
//!
//! Pure bookkeeping, no I/O. Lanes complete out of position order, so what can be stored as
//! "applied up to here" is only the contiguous prefix: the position of the oldest message
//! received and not completed, or, when nothing is pending, the position after the last
//! message received. Gaps between positions (compacted topics, transaction markers) need no
//! special case: only received positions count.
//!
//! After a crash the consumer starts again at the stored watermark; messages above it that were
//! already applied are recognised by their event id (recorded in the same transaction as their
//! effects), so a stale watermark costs re-reading, never a second effect.

use std::collections::BTreeSet;

use crate::transport::Position;

/// The applied prefix of one partition.
#[derive(Debug, Clone)]
pub(crate) struct Watermark {
    pending: BTreeSet<Position>,
    /// Where the partition started, or after the last message received.
    next_unreceived: Option<Position>,
}

impl Watermark {
    /// A partition that starts at `start` (`None`: at the beginning, position not known yet).
    pub(crate) fn new(start: Option<Position>) -> Self {
        Watermark {
            pending: BTreeSet::new(),
            next_unreceived: start,
        }
    }

    /// Whether `position` was received before (a transport may deliver a message again after
    /// a pause); such a message is not queued twice.
    pub(crate) fn seen(&self, position: Position) -> bool {
        self.next_unreceived.is_some_and(|next| position < next)
    }

    /// A message was received and is pending.
    pub(crate) fn received(&mut self, position: Position) {
        self.pending.insert(position);
        let after = position.after();
        if self.next_unreceived.is_none_or(|next| after > next) {
            self.next_unreceived = Some(after);
        }
    }

    /// A message was applied or settled.
    pub(crate) fn done(&mut self, position: Position) {
        self.pending.remove(&position);
    }

    /// The lowest position not yet applied: what to store, and where a restart begins.
    pub(crate) fn next(&self) -> Option<Position> {
        self.pending.first().copied().or(self.next_unreceived)
    }

    /// Messages received and not completed.
    #[cfg(test)]
    pub(crate) fn pending(&self) -> usize {
        self.pending.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(offset: i64) -> Position {
        Position::offset(offset)
    }

    #[test]
    fn the_watermark_is_the_oldest_pending_position() {
        let mut w = Watermark::new(Some(p(10)));
        assert_eq!(w.next(), Some(p(10)));
        for o in 10..15 {
            w.received(p(o));
        }
        w.done(p(11));
        w.done(p(12));
        assert_eq!(
            w.next(),
            Some(p(10)),
            "10 still pending holds the watermark"
        );
        w.done(p(10));
        assert_eq!(w.next(), Some(p(13)));
        w.done(p(13));
        w.done(p(14));
        assert_eq!(
            w.next(),
            Some(p(15)),
            "nothing pending: after the last received"
        );
        assert_eq!(w.pending(), 0);
    }

    #[test]
    fn gaps_between_positions_do_not_hold_the_watermark() {
        // A compacted topic or transaction markers: offsets 3 and 4 never arrive.
        let mut w = Watermark::new(Some(p(0)));
        for o in [0, 1, 2, 5, 6] {
            w.received(p(o));
        }
        for o in [0, 1, 2, 5] {
            w.done(p(o));
        }
        assert_eq!(w.next(), Some(p(6)));
        w.done(p(6));
        assert_eq!(w.next(), Some(p(7)));
    }

    #[test]
    fn a_partition_started_at_the_beginning_learns_its_first_position() {
        let mut w = Watermark::new(None);
        assert_eq!(w.next(), None);
        w.received(p(42));
        assert_eq!(w.next(), Some(p(42)));
        w.done(p(42));
        assert_eq!(w.next(), Some(p(43)));
    }

    #[test]
    fn redelivered_positions_are_recognised() {
        let mut w = Watermark::new(Some(p(0)));
        w.received(p(0));
        w.received(p(1));
        w.done(p(0));
        assert!(w.seen(p(0)));
        assert!(w.seen(p(1)));
        assert!(!w.seen(p(2)));
    }
}

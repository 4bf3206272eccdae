//! Per-channel throttling of realtime notifications (the rule is stated in the module doc of
//! [`crate::realtime`]). Pure logic over instants, so every case is unit-tested without clocks.

use std::collections::HashMap;
use std::time::{Duration, Instant};

/// The newest pending notification of one channel, as the relay reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Latest {
    pub(crate) channel: String,
    /// Its own window, if it set one.
    pub(crate) threshold: Option<Duration>,
}

/// What to do now: which channels' latest notification to publish, and when to look again.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Plan {
    /// Indexes into the `latest` slice given to [`Throttle::plan`].
    pub(crate) publish: Vec<usize>,
    /// The earliest end of a window that still holds a notification.
    pub(crate) next_due: Option<Instant>,
}

/// When each channel last published.
#[derive(Debug)]
pub(crate) struct Throttle {
    default_threshold: Duration,
    last_published: HashMap<String, Instant>,
}

impl Throttle {
    pub(crate) fn new(default_threshold: Duration) -> Self {
        Throttle {
            default_threshold,
            last_published: HashMap::new(),
        }
    }

    /// Decides, at `now`, for the newest pending notification of each channel.
    pub(crate) fn plan(&self, latest: &[Latest], now: Instant) -> Plan {
        let mut plan = Plan {
            publish: Vec::new(),
            next_due: None,
        };
        for (index, pending) in latest.iter().enumerate() {
            let window = pending.threshold.unwrap_or(self.default_threshold);
            match self.last_published.get(&pending.channel) {
                Some(&at) if now < at + window => {
                    let due = at + window;
                    plan.next_due = Some(plan.next_due.map_or(due, |d| d.min(due)));
                }
                _ => plan.publish.push(index),
            }
        }
        plan
    }

    /// Records that `channel` published at `at` (which opens its next window).
    pub(crate) fn published(&mut self, channel: &str, at: Instant) {
        self.last_published.insert(channel.to_owned(), at);
    }

    /// Forgets channels whose window ended long ago, so memory follows the active channels.
    pub(crate) fn forget_quiet(&mut self, now: Instant, longest_window: Duration) {
        let horizon = longest_window.max(self.default_threshold);
        self.last_published
            .retain(|_, at| now.saturating_duration_since(*at) < horizon);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const W: Duration = Duration::from_millis(1000);

    fn latest(channel: &str) -> Latest {
        Latest {
            channel: channel.to_owned(),
            threshold: None,
        }
    }

    #[test]
    fn a_quiet_channel_publishes_at_once() {
        let throttle = Throttle::new(W);
        let plan = throttle.plan(&[latest("a"), latest("b")], Instant::now());
        assert_eq!(plan.publish, vec![0, 1]);
        assert_eq!(plan.next_due, None);
    }

    #[test]
    fn inside_the_window_the_notification_waits_for_its_end() {
        let mut throttle = Throttle::new(W);
        let t0 = Instant::now();
        throttle.published("a", t0);
        let plan = throttle.plan(&[latest("a")], t0 + Duration::from_millis(300));
        assert!(plan.publish.is_empty());
        assert_eq!(plan.next_due, Some(t0 + W));
        let plan = throttle.plan(&[latest("a")], t0 + W);
        assert_eq!(
            plan.publish,
            vec![0],
            "published exactly when the window ends"
        );
    }

    #[test]
    fn windows_are_per_channel() {
        let mut throttle = Throttle::new(W);
        let t0 = Instant::now();
        throttle.published("a", t0);
        let plan = throttle.plan(&[latest("a"), latest("b")], t0 + Duration::from_millis(10));
        assert_eq!(plan.publish, vec![1]);
        assert_eq!(plan.next_due, Some(t0 + W));
    }

    #[test]
    fn the_earliest_window_end_is_the_next_due_time() {
        let mut throttle = Throttle::new(W);
        let t0 = Instant::now();
        throttle.published("a", t0);
        throttle.published("b", t0 + Duration::from_millis(200));
        let plan = throttle.plan(&[latest("b"), latest("a")], t0 + Duration::from_millis(500));
        assert_eq!(plan.next_due, Some(t0 + W));
    }

    #[test]
    fn a_message_threshold_overrides_the_default() {
        let mut throttle = Throttle::new(W);
        let t0 = Instant::now();
        throttle.published("a", t0);
        let short = Latest {
            channel: "a".into(),
            threshold: Some(Duration::from_millis(100)),
        };
        let plan = throttle.plan(&[short], t0 + Duration::from_millis(150));
        assert_eq!(plan.publish, vec![0]);
    }

    #[test]
    fn quiet_channels_are_forgotten_and_then_publish_at_once() {
        let mut throttle = Throttle::new(W);
        let t0 = Instant::now();
        throttle.published("a", t0);
        throttle.forget_quiet(t0 + 2 * W, W);
        assert!(throttle.last_published.is_empty());
        throttle.published("b", t0 + 2 * W);
        throttle.forget_quiet(t0 + 2 * W + Duration::from_millis(1), W);
        assert_eq!(throttle.last_published.len(), 1);
    }
}

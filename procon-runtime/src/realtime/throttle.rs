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

/// When each channel last published, and the window that publication opened.
#[derive(Debug)]
pub(crate) struct Throttle {
    default_threshold: Duration,
    last_published: HashMap<String, (Instant, Duration)>,
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
                Some(&(at, _)) if now < at + window => {
                    let due = at + window;
                    plan.next_due = Some(plan.next_due.map_or(due, |d| d.min(due)));
                }
                _ => plan.publish.push(index),
            }
        }
        plan
    }

    /// Records that `channel` published at `at` a notification whose window is `window`
    /// (its own threshold, else the default).
    pub(crate) fn published(&mut self, channel: &str, at: Instant, window: Option<Duration>) {
        let window = window.unwrap_or(self.default_threshold);
        self.last_published.insert(channel.to_owned(), (at, window));
    }

    /// Forgets every channel whose window is over, so memory follows the channels active
    /// within their own window (a channel with a long window does not keep the others).
    pub(crate) fn forget_quiet(&mut self, now: Instant) {
        self.last_published
            .retain(|_, (at, window)| now < *at + *window);
    }

    /// Channels inside their window at `now`: not worth reading (their newest notification
    /// waits anyway), so a read reaches the other channels.
    pub(crate) fn held(&self, now: Instant) -> Vec<String> {
        self.last_published
            .iter()
            .filter(|(_, (at, window))| now < *at + *window)
            .map(|(channel, _)| channel.clone())
            .collect()
    }

    /// The earliest end of a window still open at `now`.
    pub(crate) fn next_window_end(&self, now: Instant) -> Option<Instant> {
        self.last_published
            .values()
            .map(|(at, window)| *at + *window)
            .filter(|end| *end > now)
            .min()
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
        throttle.published("a", t0, None);
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
        throttle.published("a", t0, None);
        let plan = throttle.plan(&[latest("a"), latest("b")], t0 + Duration::from_millis(10));
        assert_eq!(plan.publish, vec![1]);
        assert_eq!(plan.next_due, Some(t0 + W));
    }

    #[test]
    fn the_earliest_window_end_is_the_next_due_time() {
        let mut throttle = Throttle::new(W);
        let t0 = Instant::now();
        throttle.published("a", t0, None);
        throttle.published("b", t0 + Duration::from_millis(200), None);
        let plan = throttle.plan(&[latest("b"), latest("a")], t0 + Duration::from_millis(500));
        assert_eq!(plan.next_due, Some(t0 + W));
    }

    #[test]
    fn a_message_threshold_overrides_the_default() {
        let mut throttle = Throttle::new(W);
        let t0 = Instant::now();
        throttle.published("a", t0, None);
        let short = Latest {
            channel: "a".into(),
            threshold: Some(Duration::from_millis(100)),
        };
        let plan = throttle.plan(&[short], t0 + Duration::from_millis(150));
        assert_eq!(plan.publish, vec![0]);
    }

    #[test]
    fn quiet_channels_are_forgotten_each_by_its_own_window() {
        let mut throttle = Throttle::new(W);
        let t0 = Instant::now();
        throttle.published("a", t0, None);
        // A channel with a very long window does not keep the quiet ones in memory.
        throttle.published("slow", t0, Some(Duration::from_secs(3600)));
        throttle.forget_quiet(t0 + 2 * W);
        assert_eq!(throttle.last_published.len(), 1);
        assert!(throttle.last_published.contains_key("slow"));
        throttle.published("b", t0 + 2 * W, None);
        throttle.forget_quiet(t0 + 2 * W + Duration::from_millis(1));
        assert_eq!(throttle.last_published.len(), 2);
    }

    #[test]
    fn channels_inside_their_window_are_held_until_it_ends() {
        let mut throttle = Throttle::new(W);
        let t0 = Instant::now();
        throttle.published("a", t0, None);
        throttle.published("b", t0, Some(Duration::from_millis(100)));
        let mut held = throttle.held(t0 + Duration::from_millis(50));
        held.sort();
        assert_eq!(held, vec!["a", "b"]);
        assert_eq!(throttle.held(t0 + Duration::from_millis(150)), vec!["a"]);
        assert_eq!(
            throttle.next_window_end(t0 + Duration::from_millis(150)),
            Some(t0 + W)
        );
        assert!(throttle.held(t0 + W).is_empty());
    }
}

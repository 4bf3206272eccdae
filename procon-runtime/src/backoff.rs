//! Exponential backoff with jitter, used wherever the runtime retries (database, broker).

use std::time::Duration;

/// Bounds of an exponential backoff.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BackoffConfig {
    /// First delay.
    pub initial: Duration,
    /// Largest delay; the delay doubles until it reaches this.
    pub max: Duration,
}

impl Default for BackoffConfig {
    fn default() -> Self {
        BackoffConfig {
            initial: Duration::from_millis(100),
            max: Duration::from_secs(10),
        }
    }
}

/// The state of one retry sequence: doubling delays, each with ±25% jitter so that many
/// processes retrying the same dependency do not wake in lockstep.
#[derive(Debug, Clone)]
pub(crate) struct Backoff {
    config: BackoffConfig,
    next: Duration,
}

impl Backoff {
    pub(crate) fn new(config: BackoffConfig) -> Self {
        Backoff {
            config,
            next: config.initial,
        }
    }

    /// The delay to wait before the next attempt.
    pub(crate) fn next_delay(&mut self) -> Duration {
        let base = self.next;
        self.next = (self.next * 2).min(self.config.max);
        let jitter = 0.75 + fastrand::f64() * 0.5;
        base.mul_f64(jitter).min(self.config.max)
    }

    /// Starts over after a success.
    pub(crate) fn reset(&mut self) {
        self.next = self.config.initial;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_double_up_to_the_maximum_and_reset() {
        let config = BackoffConfig {
            initial: Duration::from_millis(100),
            max: Duration::from_millis(1000),
        };
        let mut backoff = Backoff::new(config);
        let delays: Vec<_> = (0..8).map(|_| backoff.next_delay()).collect();
        for (i, d) in delays.iter().enumerate() {
            let base = (100u64 << i).min(1000) as f64;
            let ms = d.as_secs_f64() * 1000.0;
            assert!(ms >= base * 0.75 - 0.001 && ms <= base.min(1000.0) * 1.25 + 0.001);
            assert!(*d <= config.max);
        }
        backoff.reset();
        assert!(backoff.next_delay() <= Duration::from_millis(125));
    }
}

//! Retry scheduling: after a message failed, when it is tried again, or whether its attempts
//! are exhausted and the failure policy settles it.
//!
//! Pure decisions, no I/O. Counted failures (handler errors, undecodable or unknown events)
//! are persisted (`procon_consumer_failures`) so that a rebalance or restart goes on counting
//! where the last owner stopped; database outages are not counted, they are retried until the
//! database is back.

use std::time::Duration;

use crate::backoff::BackoffConfig;

/// What happens to a message after a failed attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Next {
    /// Try again after this delay.
    RetryIn(Duration),
    /// Every attempt failed: apply the policy's last resort.
    Exhaust,
}

/// Decides what follows a failed attempt: `failures` counted failures so far (this one
/// included), `attempt` attempts in all (outages included).
pub(crate) fn after_failure(
    failures: u32,
    attempt: u32,
    counted: bool,
    max_attempts: u32,
    backoff: BackoffConfig,
    jitter: f64,
) -> Next {
    if counted && failures >= max_attempts.max(1) {
        return Next::Exhaust;
    }
    Next::RetryIn(delay(attempt, backoff, jitter))
}

/// The delay before attempt `attempt + 1`: doubling from `initial`, capped at `max`, times
/// `jitter` (0.75..1.25, so that members retrying one dependency do not wake in lockstep).
pub(crate) fn delay(attempt: u32, backoff: BackoffConfig, jitter: f64) -> Duration {
    let doublings = attempt.saturating_sub(1).min(30);
    let base = backoff
        .initial
        .saturating_mul(1u32 << doublings)
        .min(backoff.max);
    base.mul_f64(jitter.clamp(0.75, 1.25)).min(backoff.max)
}

#[cfg(test)]
mod tests {
    use super::*;

    const BACKOFF: BackoffConfig = BackoffConfig {
        initial: Duration::from_millis(100),
        max: Duration::from_secs(1),
    };

    #[test]
    fn retries_until_the_counted_failures_reach_the_limit() {
        assert_eq!(
            after_failure(1, 1, true, 3, BACKOFF, 1.0),
            Next::RetryIn(Duration::from_millis(100))
        );
        assert_eq!(
            after_failure(2, 2, true, 3, BACKOFF, 1.0),
            Next::RetryIn(Duration::from_millis(200))
        );
        assert_eq!(after_failure(3, 3, true, 3, BACKOFF, 1.0), Next::Exhaust);
    }

    #[test]
    fn outages_are_not_counted_and_never_exhaust() {
        assert_eq!(
            after_failure(3, 20, false, 3, BACKOFF, 1.0),
            Next::RetryIn(Duration::from_secs(1))
        );
    }

    #[test]
    fn delays_double_up_to_the_maximum_with_bounded_jitter() {
        assert_eq!(delay(4, BACKOFF, 1.0), Duration::from_millis(800));
        assert_eq!(delay(5, BACKOFF, 1.0), Duration::from_secs(1));
        assert_eq!(delay(1, BACKOFF, 0.0), Duration::from_millis(75));
        assert_eq!(delay(40, BACKOFF, 2.0), Duration::from_secs(1));
    }
}

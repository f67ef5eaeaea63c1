//! The wall clock, passed in rather than read: every decision made on the time of day (when a
//! message was accepted, when a lease or a deadline ends, when a retry is due, whether a
//! signature is still valid) asks a [`Clock`], so a test can hold time still and move it on
//! instead of sleeping.
//!
//! Network timeouts (a connection's read limit, an HTTP client's timeout) are not decisions on
//! the time of day: they stay on tokio's monotonic timers.

use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use jiff::Timestamp;
use tokio::sync::watch;

/// Where the adapter reads the time of day, and waits for one.
pub trait Clock: Send + Sync {
    /// The time now.
    fn now(&self) -> Timestamp;

    /// Resolves once [`Clock::now`] has reached `at` (at once if it has already).
    fn sleep_until(&self, at: Timestamp) -> BoxFuture<'static, ()>;

    /// Unix milliseconds now, as the store keeps times.
    fn now_ms(&self) -> i64 {
        self.now().as_millisecond()
    }

    /// [`Clock::sleep_until`] with unix milliseconds.
    fn sleep_until_ms(&self, at_ms: i64) -> BoxFuture<'static, ()> {
        let at = Timestamp::from_millisecond(at_ms).unwrap_or(Timestamp::MAX);
        self.sleep_until(at)
    }
}

/// The clock the adapter shares: one per application.
pub type SharedClock = Arc<dyn Clock>;

/// The system's clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl SystemClock {
    /// The system clock as a [`SharedClock`].
    pub fn shared() -> SharedClock {
        Arc::new(SystemClock)
    }
}

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        Timestamp::now()
    }

    fn sleep_until(&self, at: Timestamp) -> BoxFuture<'static, ()> {
        Box::pin(async move {
            // Slept in steps of at most a minute, so that a clock set forward meanwhile is
            // followed within that minute.
            loop {
                let left = at.as_millisecond() - Timestamp::now().as_millisecond();
                if left <= 0 {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(left.min(60_000) as u64)).await;
            }
        })
    }
}

/// A clock that stands still until told to move: tests run on it instead of sleeping.
#[derive(Debug)]
pub struct ManualClock {
    now: watch::Sender<Timestamp>,
}

impl ManualClock {
    /// A clock showing `start`.
    pub fn new(start: Timestamp) -> Arc<ManualClock> {
        Arc::new(ManualClock {
            now: watch::Sender::new(start),
        })
    }

    /// A clock showing the system's time now.
    pub fn starting_now() -> Arc<ManualClock> {
        ManualClock::new(Timestamp::now())
    }

    /// Moves the clock on by `by` and wakes whoever waits for a time now reached.
    pub fn advance(&self, by: Duration) {
        self.now.send_modify(|now| {
            let by = jiff::SignedDuration::try_from(by).unwrap_or(jiff::SignedDuration::MAX);
            *now = now.checked_add(by).unwrap_or(Timestamp::MAX);
        });
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Timestamp {
        *self.now.borrow()
    }

    fn sleep_until(&self, at: Timestamp) -> BoxFuture<'static, ()> {
        let mut now = self.now.subscribe();
        Box::pin(async move {
            if now.wait_for(|now| *now >= at).await.is_err() {
                // The clock is gone: its time never comes.
                std::future::pending::<()>().await;
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_manual_clock_wakes_sleepers_when_their_time_comes() {
        let start = Timestamp::from_second(1_700_000_000).unwrap();
        let clock = ManualClock::new(start);
        assert_eq!(clock.now(), start);
        let at = start
            .checked_add(jiff::SignedDuration::from_secs(30))
            .unwrap();
        let sleeper = tokio::spawn(clock.sleep_until(at));
        clock.advance(Duration::from_secs(10));
        tokio::task::yield_now().await;
        assert!(!sleeper.is_finished(), "woken before its time");
        clock.advance(Duration::from_secs(20));
        tokio::time::timeout(Duration::from_secs(5), sleeper)
            .await
            .expect("woken once its time came")
            .unwrap();
        assert_eq!(clock.now_ms(), start.as_millisecond() + 30_000);
        // a time already past does not wait
        clock.sleep_until(start).await;
    }

    #[tokio::test]
    async fn the_system_clock_sleeps_until_a_near_time() {
        let clock = SystemClock;
        let at = clock.now_ms() + 20;
        clock.sleep_until_ms(at).await;
        assert!(clock.now_ms() >= at);
    }
}

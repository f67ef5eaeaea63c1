//! Keeping a claim while its work runs: the holder renews the claim's lease every third of
//! the lease, so work that runs longer than the lease (a slow ERP, a slow receiver) is not
//! taken over by another process. Work whose claim is lost (taken over, or not renewed before
//! its lease ended, as when the process was paused) is dropped unfinished; its outcome would be
//! refused by the store's fence anyway.

use std::future::Future;
use std::time::Duration;

use futures::future::BoxFuture;

use super::StoreResult;
use crate::clock::Clock;

/// How work held under a claim ended.
#[derive(Debug)]
pub enum Held<T> {
    Done(T),
    /// The claim was taken over or could not be renewed in time; the work was dropped.
    Lost,
}

/// How often a claim of `lease` is renewed: a third of the lease, so that two renewals can
/// fail (a slow store round trip) before it ends.
pub fn renewal_interval(lease: Duration) -> Duration {
    (lease / 3).max(Duration::from_millis(10))
}

/// Runs `work` while renewing its claim with `renew(until)` (true: still held) every
/// [`renewal_interval`]. `held_until` is when the claim's current lease ends (Unix ms, by
/// `clock`).
pub async fn while_held<'a, T>(
    clock: &dyn Clock,
    lease: Duration,
    held_until: i64,
    renew: impl Fn(i64) -> BoxFuture<'a, StoreResult<bool>>,
    work: impl Future<Output = T>,
) -> Held<T> {
    let lease_ms = lease.as_millis() as i64;
    let mut held_until = held_until;
    tokio::pin!(work);
    loop {
        let tick = tokio::time::sleep(renewal_interval(lease));
        tokio::select! {
            biased;
            out = &mut work => return Held::Done(out),
            _ = tick => {}
        }
        let now = clock.now_ms();
        if now >= held_until {
            // Not renewed in time (the process stood still, or the store did not answer):
            // another process may have the work by now.
            return Held::Lost;
        }
        match renew(now + lease_ms).await {
            Ok(true) => held_until = now + lease_ms,
            Ok(false) => return Held::Lost,
            Err(e) => tracing::warn!(error = %e, "cannot renew a claim; trying again"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::SystemClock;
    use crate::store::now_ms;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[tokio::test]
    async fn work_longer_than_its_lease_is_renewed_and_finishes() {
        let renewals = Arc::new(AtomicUsize::new(0));
        let r = renewals.clone();
        let out = while_held(
            &SystemClock,
            Duration::from_millis(90),
            now_ms() + 90,
            move |_| {
                r.fetch_add(1, Ordering::SeqCst);
                Box::pin(async { Ok(true) })
            },
            async {
                tokio::time::sleep(Duration::from_millis(300)).await;
                7
            },
        )
        .await;
        assert!(matches!(out, Held::Done(7)));
        assert!(renewals.load(Ordering::SeqCst) >= 3);
    }

    #[tokio::test]
    async fn work_whose_claim_was_taken_over_is_dropped() {
        let out = while_held(
            &SystemClock,
            Duration::from_millis(60),
            now_ms() + 60,
            |_| Box::pin(async { Ok(false) }),
            std::future::pending::<()>(),
        )
        .await;
        assert!(matches!(out, Held::Lost));
    }
}

//! The overview's headline figures for the last minutes, not only since start: a ring of
//! per-minute buckets kept in memory by each process (one small map per minute, the oldest
//! dropped as minutes pass), fed where the metrics are counted.

use std::collections::VecDeque;
use std::sync::Mutex;

use super::Headline;

/// How many minutes the window covers.
pub const WINDOW_MINUTES: u64 = 15;

/// Per-minute buckets of headline figures: (minute since the Unix epoch, its figures).
pub struct Recent {
    buckets: Mutex<VecDeque<(u64, Headline)>>,
}

impl Recent {
    pub const fn new() -> Self {
        Recent {
            buckets: Mutex::new(VecDeque::new()),
        }
    }

    /// Adds to the figures of `minute` (buckets older than the window are dropped).
    pub fn add_at(&self, minute: u64, add: impl FnOnce(&mut Headline)) {
        let Ok(mut buckets) = self.buckets.lock() else {
            return;
        };
        while buckets
            .front()
            .is_some_and(|(m, _)| m + WINDOW_MINUTES <= minute)
        {
            buckets.pop_front();
        }
        match buckets.back_mut() {
            Some((m, figures)) if *m == minute => add(figures),
            // A clock stepping back adds to the newest bucket rather than reordering the ring.
            Some((m, figures)) if *m > minute => add(figures),
            _ => {
                let mut figures = Headline::default();
                add(&mut figures);
                buckets.push_back((minute, figures));
            }
        }
    }

    /// The figures of the `WINDOW_MINUTES` minutes up to and including `minute`.
    pub fn sum_at(&self, minute: u64) -> Headline {
        let mut out = Headline::default();
        let Ok(buckets) = self.buckets.lock() else {
            return out;
        };
        for (m, figures) in buckets.iter() {
            if m + WINDOW_MINUTES <= minute {
                continue;
            }
            for (k, n) in &figures.requests {
                *out.requests.entry(k.clone()).or_default() += n;
            }
            for (k, n) in &figures.deliveries {
                *out.deliveries.entry(k.clone()).or_default() += n;
            }
            out.sink_refusals += figures.sink_refusals;
        }
        out
    }
}

impl Default for Recent {
    fn default() -> Self {
        Self::new()
    }
}

/// The process's window.
pub(super) static RECENT: Recent = Recent::new();

/// The current minute since the Unix epoch.
pub(super) fn this_minute() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() / 60)
        .unwrap_or(0)
}

/// Adds one to `key` of `map`, allocating the key only the first time in a minute.
pub(super) fn bump(map: &mut std::collections::BTreeMap<String, u64>, key: &str) {
    match map.get_mut(key) {
        Some(n) => *n += 1,
        None => {
            map.insert(key.to_string(), 1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn figures_older_than_the_window_drop_out() {
        let recent = Recent::new();
        recent.add_at(100, |h| bump(&mut h.requests, "ack"));
        recent.add_at(101, |h| bump(&mut h.requests, "nack 10001"));
        recent.add_at(101, |h| h.sink_refusals += 1);
        recent.add_at(110, |h| bump(&mut h.deliveries, "dead"));
        let now = recent.sum_at(110);
        assert_eq!(now.requests.get("ack"), Some(&1));
        assert_eq!(now.requests.get("nack 10001"), Some(&1));
        assert_eq!(now.sink_refusals, 1);
        assert_eq!(now.deliveries.get("dead"), Some(&1));
        let later = recent.sum_at(100 + WINDOW_MINUTES);
        assert_eq!(later.requests.get("ack"), None, "minute 100 is out");
        assert_eq!(later.requests.get("nack 10001"), Some(&1));
        recent.add_at(200, |h| bump(&mut h.requests, "ack"));
        assert_eq!(recent.sum_at(200).requests.len(), 1);
        assert_eq!(
            recent.buckets.lock().unwrap().len(),
            1,
            "old buckets dropped"
        );
    }
}

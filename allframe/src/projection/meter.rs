//! How fast a projection's generation moves through the log: the progress a
//! rebuild or a catch-up reports in its status (`GET /admin/projections`)
//! and, every [`LOG_EVERY`], in the logs.

use std::collections::VecDeque;
use std::time::Duration;

use tokio::time::Instant;

/// The rate is measured over about this long.
const WINDOW: Duration = Duration::from_secs(10);
/// The newest sample replaces the one before it until they are this far
/// apart: a generation that moves many times a second keeps a few dozen
/// samples, not one per batch.
const SAMPLE_EVERY: Duration = Duration::from_millis(250);
/// How often work under way is logged.
pub(super) const LOG_EVERY: Duration = Duration::from_secs(5);

/// How a rebuild, or a catch-up at least a batch behind the head, is
/// getting on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[non_exhaustive]
pub struct WorkProgress {
    /// Log positions covered a second, over the last ten seconds.
    pub events_per_second: u64,
    /// Positions left to the head.
    pub remaining_events: u64,
    /// Seconds left at that rate; absent while nothing has moved yet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eta_seconds: Option<u64>,
}

/// The positions a generation covered over the last [`WINDOW`].
#[derive(Debug, Default)]
pub(super) struct Meter {
    samples: VecDeque<(Instant, u64)>,
    logged: Option<Instant>,
}

impl Meter {
    /// Notes that the generation covers `covered` now.
    pub(super) fn record(&mut self, covered: u64) {
        let now = Instant::now();
        if self.samples.back().is_some_and(|&(_, last)| covered < last) {
            // Started over (a new generation, or from the stored
            // checkpoint): the old samples say nothing about it.
            self.clear();
        }
        let len = self.samples.len();
        if len >= 2 && now.duration_since(self.samples[len - 2].0) < SAMPLE_EVERY {
            self.samples[len - 1] = (now, covered);
            return;
        }
        self.samples.push_back((now, covered));
        // Keep one sample at least WINDOW old, as the rate's start.
        while self
            .samples
            .get(1)
            .is_some_and(|&(at, _)| now.duration_since(at) >= WINDOW)
        {
            self.samples.pop_front();
        }
    }

    /// The progress towards `head`: the rate runs from the oldest sample
    /// to now, so work that stalls slows down in the report too.
    pub(super) fn progress(&self, head: u64) -> Option<WorkProgress> {
        let &(since, first) = self.samples.front()?;
        let &(_, last) = self.samples.back()?;
        let elapsed = since.elapsed().as_secs_f64();
        let rate = match elapsed > 0.0 {
            true => (last - first) as f64 / elapsed,
            false => 0.0,
        };
        let remaining = head.saturating_sub(last);
        Some(WorkProgress {
            events_per_second: rate.round() as u64,
            remaining_events: remaining,
            eta_seconds: (rate > 0.0).then(|| (remaining as f64 / rate).ceil() as u64),
        })
    }

    /// Whether a log line is due: every [`LOG_EVERY`], the first one a
    /// period after the first asking, so short work logs nothing.
    pub(super) fn log_due(&mut self) -> bool {
        let now = Instant::now();
        match self.logged {
            Some(at) if now.duration_since(at) < LOG_EVERY => false,
            Some(_) => {
                self.logged = Some(now);
                true
            }
            None => {
                self.logged = Some(now);
                false
            }
        }
    }

    /// Forgets everything: the work ended or started over.
    pub(super) fn clear(&mut self) {
        self.samples.clear();
        self.logged = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn the_rate_and_the_time_left_follow_the_positions() {
        let mut meter = Meter::default();
        assert_eq!(meter.progress(100), None, "nothing measured yet");
        meter.record(0);
        for second in 1..=4 {
            tokio::time::advance(Duration::from_secs(1)).await;
            meter.record(second * 1_000);
        }
        assert_eq!(
            meter.progress(10_000),
            Some(WorkProgress {
                events_per_second: 1_000,
                remaining_events: 6_000,
                eta_seconds: Some(6),
            })
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_stall_slows_the_rate_and_old_samples_leave_the_window() {
        let mut meter = Meter::default();
        meter.record(0);
        tokio::time::advance(Duration::from_secs(2)).await;
        meter.record(2_000);
        tokio::time::advance(Duration::from_secs(2)).await;
        let stalled = meter.progress(4_000).unwrap();
        assert_eq!(stalled.events_per_second, 500);
        assert_eq!(stalled.eta_seconds, Some(4));
        // Twenty seconds of steady work: the rate is the last ten's.
        for _ in 0..20 {
            tokio::time::advance(Duration::from_secs(1)).await;
            meter.record(meter.samples.back().unwrap().1 + 100);
        }
        let steady = meter.progress(10_000).unwrap();
        assert!(
            (100..=110).contains(&steady.events_per_second),
            "{steady:?}"
        );
        assert!(meter.samples.len() <= 12, "{} samples", meter.samples.len());
    }

    #[tokio::test(start_paused = true)]
    async fn nothing_moved_means_no_time_left_and_starting_over_forgets() {
        let mut meter = Meter::default();
        meter.record(500);
        tokio::time::advance(Duration::from_secs(1)).await;
        meter.record(500);
        let idle = meter.progress(900).unwrap();
        assert_eq!((idle.events_per_second, idle.eta_seconds), (0, None));
        assert_eq!(idle.remaining_events, 400);
        meter.record(10);
        assert_eq!(meter.samples.len(), 1, "a lower position starts over");
    }

    #[tokio::test(start_paused = true)]
    async fn samples_close_together_are_one() {
        let mut meter = Meter::default();
        for position in 0..100 {
            tokio::time::advance(Duration::from_millis(10)).await;
            meter.record(position);
        }
        assert!(meter.samples.len() <= 6, "{} samples", meter.samples.len());
        let newest = *meter.samples.back().unwrap();
        assert_eq!(newest.1, 99, "the newest sample is the latest position");
        assert_eq!(newest.0.elapsed(), Duration::ZERO);
    }

    #[tokio::test(start_paused = true)]
    async fn logs_are_due_every_few_seconds() {
        let mut meter = Meter::default();
        assert!(!meter.log_due(), "not at once");
        tokio::time::advance(Duration::from_secs(1)).await;
        assert!(!meter.log_due());
        tokio::time::advance(LOG_EVERY).await;
        assert!(meter.log_due());
        assert!(!meter.log_due());
    }
}

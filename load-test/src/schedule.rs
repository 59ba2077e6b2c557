//! Open-model arrival schedules: when each request is *meant* to be sent.
//!
//! The runner sends each request at its intended time and measures latency
//! from that time, not from when it actually went out, so a slow server
//! cannot hide its slowness by delaying the next send (no coordinated
//! omission).

use std::time::Duration;

/// A constant arrival rate held for a while.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RateStep {
    /// Requests per second.
    pub rate: f64,
    pub duration: Duration,
}

/// Steps of arrival rates, one after another.
#[derive(Debug, Clone, PartialEq)]
pub struct RateSchedule {
    pub steps: Vec<RateStep>,
}

/// One intended send.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Arrival {
    /// Offset from the start of the run.
    pub at: Duration,
    /// Index of its step.
    pub step: usize,
}

impl RateSchedule {
    pub fn total(&self) -> Duration {
        self.steps.iter().map(|s| s.duration).sum()
    }

    /// The same steps, each stretched or compressed by `factor`.
    pub fn scaled(&self, factor: f64) -> Self {
        Self {
            steps: self
                .steps
                .iter()
                .map(|s| RateStep {
                    rate: s.rate,
                    duration: s.duration.mul_f64(factor),
                })
                .collect(),
        }
    }

    /// Every intended send in order: step `k` sends at `start_k + i / rate`
    /// for every `i` that falls inside the step.
    pub fn sends(&self) -> impl Iterator<Item = Arrival> + '_ {
        let mut start = Duration::ZERO;
        self.steps.iter().enumerate().flat_map(move |(step, s)| {
            let begin = start;
            start += s.duration;
            // Sends at i / rate < duration; the epsilon keeps 5 s × 200/s at
            // exactly 1000 despite rounding.
            let count = (s.duration.as_secs_f64() * s.rate - 1e-9).ceil().max(0.0) as u64;
            let interval = 1.0 / s.rate;
            (0..count).map(move |i| Arrival {
                at: begin + Duration::from_secs_f64(i as f64 * interval),
                step,
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn step(rate: f64, secs: u64) -> RateStep {
        RateStep {
            rate,
            duration: Duration::from_secs(secs),
        }
    }

    #[test]
    fn a_constant_rate_sends_evenly_spaced_requests() {
        let schedule = RateSchedule {
            steps: vec![step(200.0, 5)],
        };
        let sends: Vec<_> = schedule.sends().collect();
        assert_eq!(sends.len(), 1000);
        assert_eq!(sends[0].at, Duration::ZERO);
        assert_eq!(sends[1].at, Duration::from_millis(5));
        assert!(sends.last().unwrap().at < Duration::from_secs(5));
    }

    #[test]
    fn steps_follow_each_other() {
        let schedule = RateSchedule {
            steps: vec![step(10.0, 1), step(20.0, 1)],
        };
        let sends: Vec<_> = schedule.sends().collect();
        assert_eq!(sends.len(), 30);
        assert_eq!(sends[10].at, Duration::from_secs(1));
        assert_eq!(sends[10].step, 1);
        assert_eq!(schedule.total(), Duration::from_secs(2));
        assert_eq!(schedule.scaled(0.5).total(), Duration::from_secs(1));
        assert_eq!(schedule.scaled(0.5).sends().count(), 15);
    }
}

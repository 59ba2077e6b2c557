//! Liveness you can see: each worker marks the time of its last progress
//! in a gauge (`flagmeter_worker_progress_timestamp_seconds`, by shard),
//! and `flagmeter-pipeline --healthcheck` fails when a worker has made none
//! for longer than its bound while its shard has work, so that Docker or
//! Kubernetes restarts a replica that is stuck.
//!
//! Progress is any step that completed: a read (an empty one too: an idle
//! worker reads every block time), a commit, a settled batch. Work is what
//! the replica's last sample of its shard says (`flagmeter_consumer_group_*`,
//! taken by the janitor): entries undelivered or pending; a shard never
//! sampled counts as having work. The verdict is drawn by the health check
//! process from the gauges, so that it holds even when the replica's own
//! tasks are wedged.

use std::{collections::BTreeMap, time::Duration};

/// The gauge of a worker's last progress, in Unix seconds.
pub const PROGRESS: &str = "flagmeter_worker_progress_timestamp_seconds";
const LAG: &str = "flagmeter_consumer_group_lag_entries";
const PENDING: &str = "flagmeter_consumer_group_pending_entries";

/// Marks one worker's progress.
#[derive(Clone)]
pub struct Progress(metrics::Gauge);

impl Progress {
    /// The progress of the worker of `shard`, marked now: a worker that
    /// never gets going is seen as stalled once the bound has passed.
    pub fn of_shard(shard: usize) -> Self {
        let progress = Self(metrics::gauge!(PROGRESS, "shard" => shard.to_string()));
        progress.mark();
        progress
    }

    /// A step completed just now.
    pub fn mark(&self) {
        self.0.set(unix_now());
    }
}

/// Seconds since the Unix epoch, now.
pub fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        // A clock before 1970 is no clock to judge by: every worker then
        // looks fresh rather than stalled.
        .map_or(f64::MAX, |d| d.as_secs_f64())
}

/// What a scrape says about one shard.
#[derive(Debug, Default)]
struct Shard {
    progress: Option<f64>,
    lag: Option<f64>,
    pending: Option<f64>,
}

impl Shard {
    /// Entries waiting for the group, as last sampled; unknown counts as
    /// some.
    fn has_work(&self) -> bool {
        match (self.lag, self.pending) {
            (Some(lag), Some(pending)) => lag + pending > 0.0,
            _ => true,
        }
    }
}

/// The health check's verdict on the replica's metrics (Prometheus text),
/// at `now` (Unix seconds): every worker has made progress within `bound`,
/// or its shard has no work; else which have not, and since when.
pub fn judge(metrics: &str, now: f64, bound: Duration) -> Result<(), String> {
    let mut shards: BTreeMap<&str, Shard> = BTreeMap::new();
    for line in metrics.lines().filter(|l| !l.starts_with('#')) {
        let Some((series, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let Ok(value) = value.parse::<f64>() else {
            continue;
        };
        let Some((name, labels)) = series.split_once('{') else {
            continue;
        };
        let Some(shard) = label(labels, "shard") else {
            continue;
        };
        let slot = match name {
            PROGRESS => &mut shards.entry(shard).or_default().progress,
            LAG => &mut shards.entry(shard).or_default().lag,
            PENDING => &mut shards.entry(shard).or_default().pending,
            _ => continue,
        };
        *slot = Some(value);
    }
    let stalled: Vec<String> = shards
        .iter()
        .filter_map(|(shard, seen)| {
            let since = now - seen.progress?;
            (since > bound.as_secs_f64() && seen.has_work()).then(|| {
                format!("the worker of shard {shard} has made no progress for {since:.0} s")
            })
        })
        .collect();
    if stalled.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "{} while its shard has work (bound {} s)",
            stalled.join("; "),
            bound.as_secs()
        ))
    }
}

/// The value of label `name` in `labels` (the text after `{`).
fn label<'a>(labels: &'a str, name: &str) -> Option<&'a str> {
    labels.trim_end_matches('}').split(',').find_map(|pair| {
        pair.strip_prefix(name)?
            .strip_prefix("=\"")?
            .strip_suffix('"')
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const BOUND: Duration = Duration::from_secs(60);

    fn scrape(progress: f64, lag: Option<u64>, pending: u64) -> String {
        let mut text = format!(
            "# TYPE {PROGRESS} gauge\n{PROGRESS}{{shard=\"0\"}} {progress}\n\
             {PENDING}{{shard=\"0\"}} {pending}\n{PROGRESS}{{shard=\"1\"}} 1000\n\
             {LAG}{{shard=\"1\"}} 0\n{PENDING}{{shard=\"1\"}} 0\n"
        );
        if let Some(lag) = lag {
            text += &format!("{LAG}{{shard=\"0\"}} {lag}\n");
        }
        text
    }

    #[test]
    fn a_worker_silent_past_the_bound_with_work_waiting_is_unhealthy() {
        let verdict = judge(&scrape(1000.0, Some(5), 0), 1061.0, BOUND);
        let reason = verdict.unwrap_err();
        assert!(reason.contains("shard 0"), "{reason}");
        assert!(!reason.contains("shard 1"), "{reason}");
    }

    #[test]
    fn pending_entries_or_an_unknown_backlog_are_work_too() {
        assert!(judge(&scrape(1000.0, Some(0), 3), 1061.0, BOUND).is_err());
        assert!(judge(&scrape(1000.0, None, 0), 1061.0, BOUND).is_err());
    }

    #[test]
    fn a_recent_worker_or_one_with_nothing_to_do_is_healthy() {
        assert_eq!(judge(&scrape(1000.0, Some(5), 0), 1059.0, BOUND), Ok(()));
        assert_eq!(judge(&scrape(1000.0, Some(0), 0), 5000.0, BOUND), Ok(()));
        assert_eq!(judge("", 5000.0, BOUND), Ok(()), "no worker yet");
    }
}

//! A replica's own counters, scraped from its Prometheus endpoint at the
//! end of a drain: how many batches it committed, their size, and how many
//! entries it reclaimed from another consumer.

/// One replica's counters after a drain.
#[derive(Debug, Clone, Copy, Default)]
pub struct WorkerCounters {
    pub batches: f64,
    pub batched_events: f64,
    pub reclaimed: f64,
}

impl WorkerCounters {
    /// Scrapes `http://127.0.0.1:{port}/`; zeros if it does not answer (the
    /// figures are then missing, not the drain).
    pub async fn scrape(client: &reqwest::Client, port: u16) -> Self {
        let text = match client.get(format!("http://127.0.0.1:{port}/")).send().await {
            Ok(response) => response.text().await.unwrap_or_default(),
            Err(_) => String::new(),
        };
        Self {
            batches: sum(&text, "flagmeter_batch_size_events_count"),
            batched_events: sum(&text, "flagmeter_batch_size_events_sum"),
            reclaimed: sum(&text, "flagmeter_events_reclaimed_total"),
        }
    }

    pub fn add(self, other: Self) -> Self {
        Self {
            batches: self.batches + other.batches,
            batched_events: self.batched_events + other.batched_events,
            reclaimed: self.reclaimed + other.reclaimed,
        }
    }

    /// Events per batch, on average.
    pub fn mean_batch(&self) -> f64 {
        if self.batches > 0.0 {
            self.batched_events / self.batches
        } else {
            0.0
        }
    }
}

/// The sum of every series of `name` (whatever its labels) in a Prometheus
/// text exposition.
fn sum(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|line| {
            line.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with(' ') || rest.starts_with('{'))
        })
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn series_of_a_name_are_summed_over_their_labels_and_no_other_name() {
        let text = "# TYPE flagmeter_events_reclaimed_total counter\n\
                    flagmeter_events_reclaimed_total{shard=\"0\"} 3\n\
                    flagmeter_events_reclaimed_total{shard=\"1\"} 4\n\
                    flagmeter_events_reclaimed_total_other 100\n\
                    flagmeter_batch_size_events_count 7\n";
        assert_eq!(sum(text, "flagmeter_events_reclaimed_total"), 7.0);
        assert_eq!(sum(text, "flagmeter_batch_size_events_count"), 7.0);
        assert_eq!(sum(text, "missing"), 0.0);
    }
}

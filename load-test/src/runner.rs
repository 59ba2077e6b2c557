//! Executing a plan: open-model arrivals or closed-model virtual users, both
//! bounded by the plan's length, with at most `--connections` requests in
//! flight.
//!
//! Latency is measured from the moment a request was *meant* to go out: its
//! scheduled time in the open model, the start of the user's iteration in
//! the closed model. Time spent waiting for a free connection is therefore
//! part of the latency, never hidden.

use std::{sync::Arc, time::Duration};

use rand::Rng;
use tokio::{
    sync::{Semaphore, watch},
    time::Instant,
};
use tokio_util::{sync::CancellationToken, task::TaskTracker};

use crate::{
    audit::Ledger,
    client::{self, Outcome},
    profile::{Plan, Think, UserPlan},
    schedule::RateSchedule,
    stats::Stats,
    traffic::{Format, Kind, Traffic},
};

/// What every task of a run shares.
pub struct Run {
    pub client: reqwest::Client,
    pub traffic: Traffic,
    pub stats: Stats,
    /// Present with `--audit`.
    pub ledger: Option<Ledger>,
    /// One permit per connection: the most requests in flight.
    pub slots: Arc<Semaphore>,
}

/// How the load phase ended.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Ended {
    /// From the start until the last answer.
    pub elapsed: Duration,
    /// Open model: sends that were due but found no free connection before
    /// the end of the run.
    pub not_sent: u64,
    /// Breakpoint: the rate of the step during which errors appeared; the
    /// run did not step higher.
    pub stopped_at_rate: Option<f64>,
}

/// Runs the plan until its end; returns once every request has its answer.
pub async fn execute(run: Arc<Run>, plan: &Plan, start: Instant) -> Ended {
    match plan {
        Plan::Arrivals {
            schedule,
            stop_on_errors,
        } => arrivals(run, schedule, *stop_on_errors, start).await,
        Plan::Users(users) => closed(run, users, start).await,
    }
}

/// Sends one request (after its reservation, if it has one: a refused
/// reservation is the call's outcome) meant to leave at `intended` and
/// records its result.
async fn fire(run: &Run, intended: Instant) {
    let request = run.traffic.next();
    let reserved = match request.reservation {
        Some(reservation) => {
            let url = run.traffic.reservations_url();
            client::send(&run.client, &url, Some(reservation), Format::Json).await
        }
        None => Outcome::Status(201),
    };
    let outcome = if reserved == Outcome::Status(201) {
        client::send(
            &run.client,
            &request.url,
            request.body,
            run.traffic.format(),
        )
        .await
    } else {
        reserved
    };
    let latency = intended.elapsed();
    run.stats
        .record(request.kind, latency, outcome, request.events.len() as u64);
    if let Some(ledger) = &run.ledger
        && request.kind == Kind::Post
    {
        ledger.note(outcome, &request.events);
    }
}

/// The open model: each request leaves at its scheduled time (or as soon
/// as a connection frees up), whatever happened to the ones before.
async fn arrivals(
    run: Arc<Run>,
    schedule: &RateSchedule,
    stop_on_errors: bool,
    start: Instant,
) -> Ended {
    let tracker = TaskTracker::new();
    let deadline = start + schedule.total();
    let mut due = schedule.sends().peekable();
    let mut step = 0;
    let mut stopped_at_rate = None;
    let mut saturated = false;
    while let Some(arrival) = due.peek().copied() {
        let intended = start + arrival.at;
        tokio::time::sleep_until(intended).await;
        if arrival.step != step {
            if stop_on_errors && run.stats.errors() > 0 {
                stopped_at_rate = Some(schedule.steps[step].rate);
                break;
            }
            step = arrival.step;
        }
        let permit = tokio::select! {
            permit = Arc::clone(&run.slots).acquire_owned() => permit.ok(),
            () = tokio::time::sleep_until(deadline) => None,
        };
        let Some(permit) = permit else {
            saturated = true;
            break;
        };
        due.next();
        let run = Arc::clone(&run);
        tracker.spawn(async move {
            fire(&run, intended).await;
            drop(permit);
        });
    }
    // Every send still due was scheduled before the deadline, which passed.
    let not_sent = if saturated { due.count() as u64 } else { 0 };
    tracker.close();
    tracker.wait().await;
    Ended {
        elapsed: start.elapsed(),
        not_sent,
        stopped_at_rate,
    }
}

/// The closed model: virtual users, ramped to the plan's count every
/// 100 ms; a user past the current count finishes its iteration and waits.
async fn closed(run: Arc<Run>, plan: &UserPlan, start: Instant) -> Ended {
    let tracker = TaskTracker::new();
    let stop = CancellationToken::new();
    let deadline = start + plan.total();
    let (wanted, watched) = watch::channel(plan.users_at(Duration::ZERO));
    let mut spawned = 0;
    let mut ramp = tokio::time::interval(Duration::from_millis(100));
    loop {
        tokio::select! {
            at = ramp.tick() => {
                let users = plan.users_at(at.saturating_duration_since(start));
                wanted.send_if_modified(|current| std::mem::replace(current, users) != users);
                while spawned < users {
                    let user = User {
                        index: spawned,
                        run: Arc::clone(&run),
                        wanted: watched.clone(),
                        stop: stop.clone(),
                        think: plan.think,
                    };
                    tracker.spawn(user.run());
                    spawned += 1;
                }
            }
            () = tokio::time::sleep_until(deadline) => break,
        }
    }
    stop.cancel();
    tracker.close();
    tracker.wait().await;
    Ended {
        elapsed: start.elapsed(),
        not_sent: 0,
        stopped_at_rate: None,
    }
}

/// One virtual user of the closed model.
struct User {
    index: u32,
    run: Arc<Run>,
    wanted: watch::Receiver<u32>,
    stop: CancellationToken,
    think: Think,
}

impl User {
    async fn run(mut self) {
        loop {
            let index = self.index;
            let active = tokio::select! {
                biased;
                () = self.stop.cancelled() => false,
                wanted = self.wanted.wait_for(|&users| users > index) => wanted.is_ok(),
            };
            if !active {
                return;
            }
            let intended = Instant::now();
            let permit = tokio::select! {
                biased;
                () = self.stop.cancelled() => return,
                permit = self.run.slots.acquire() => permit,
            };
            let Ok(slot) = permit else { return };
            fire(&self.run, intended).await;
            drop(slot);
            let pause = match self.think {
                Think::None => continue,
                Think::Fixed(pause) => pause,
                Think::UpTo(most) => most.mul_f64(rand::rng().random::<f64>()),
            };
            tokio::select! {
                () = self.stop.cancelled() => return,
                () = tokio::time::sleep(pause) => {}
            }
        }
    }
}

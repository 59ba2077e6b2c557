//! The traffic profiles: the original's k6 stages, turned into plans the
//! runner executes. The stages themselves are data, in `profiles.json`,
//! which `k6/flagmeter.js` reads too, so that both tools run one traffic.
//!
//! Staged VU profiles are closed-model (each virtual user sends, waits for
//! the answer, thinks, and sends again, so a slow server slows the load);
//! `constant` and `breakpoint` are open-model (requests leave at scheduled
//! times whatever the server does).

use std::{collections::HashMap, sync::LazyLock, time::Duration};

use serde::Deserialize;

use crate::{
    cli::{DEFAULT_DURATION, ProfileName},
    schedule::{RateSchedule, RateStep},
};

/// What the runner does.
#[derive(Debug, Clone, PartialEq)]
pub enum Plan {
    /// Closed model: virtual users ramped through stages.
    Users(UserPlan),
    /// Open model: a schedule of arrivals.
    Arrivals {
        schedule: RateSchedule,
        /// Breakpoint search: once errors have appeared, do not step up.
        stop_on_errors: bool,
    },
}

/// A ramp of virtual users, k6 `ramping-vus` style.
#[derive(Debug, Clone, PartialEq)]
pub struct UserPlan {
    /// Users at the start.
    pub start: u32,
    /// Each stage moves linearly from the previous target to its own.
    pub stages: Vec<Stage>,
    /// Pause of a user between getting an answer and sending again.
    pub think: Think,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Stage {
    pub duration: Duration,
    pub target: u32,
}

/// A virtual user's pause between requests.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Think {
    None,
    /// Uniformly random between zero and this.
    UpTo(Duration),
    Fixed(Duration),
}

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

fn stage(duration: Duration, target: u32) -> Stage {
    Stage { duration, target }
}

/// `profiles.json`: the staged profiles by name, and the breakpoint steps.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Profiles {
    staged: HashMap<String, StagedProfile>,
    breakpoint: BreakpointProfile,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct StagedProfile {
    start_users: u32,
    /// (seconds, target users) per stage.
    stages: Vec<(u64, u32)>,
    think: ThinkSpec,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
enum ThinkSpec {
    None,
    UpToMs(u64),
    FixedMs(u64),
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct BreakpointProfile {
    rates: Vec<f64>,
    step_seconds: u64,
}

static PROFILES: LazyLock<Profiles> = LazyLock::new(|| {
    // Compiled in, and parsed by a unit test: it cannot fail at run time.
    serde_json::from_str(include_str!("../profiles.json")).expect("profiles.json is valid")
});

impl StagedProfile {
    fn plan(&self) -> UserPlan {
        UserPlan {
            start: self.start_users,
            stages: self
                .stages
                .iter()
                .map(|&(seconds, target)| stage(secs(seconds), target))
                .collect(),
            think: match self.think {
                ThinkSpec::None => Think::None,
                ThinkSpec::UpToMs(ms) => Think::UpTo(Duration::from_millis(ms)),
                ThinkSpec::FixedMs(ms) => Think::Fixed(Duration::from_millis(ms)),
            },
        }
    }
}

impl Plan {
    /// The plan for a profile. `rate` is used by `constant`; `duration`, when
    /// given, is the length of `constant`, and the length that a staged
    /// profile's whole timeline is scaled to.
    pub fn new(profile: ProfileName, rate: f64, duration: Option<Duration>) -> Self {
        let plan = match profile {
            ProfileName::Constant => {
                return Self::Arrivals {
                    schedule: RateSchedule {
                        steps: vec![RateStep {
                            rate,
                            duration: duration.unwrap_or(DEFAULT_DURATION),
                        }],
                    },
                    stop_on_errors: false,
                };
            }
            ProfileName::Breakpoint => {
                let steps = &PROFILES.breakpoint;
                Self::Arrivals {
                    schedule: RateSchedule {
                        steps: steps
                            .rates
                            .iter()
                            .map(|&rate| RateStep {
                                rate,
                                duration: secs(steps.step_seconds),
                            })
                            .collect(),
                    },
                    stop_on_errors: true,
                }
            }
            // The original documents no pause for spike; it shares the
            // baseline's 0–100 ms.
            staged => Self::Users(PROFILES.staged[staged.as_str()].plan()),
        };
        match duration {
            Some(to) => plan.scaled_to(to),
            None => plan,
        }
    }

    /// How long the plan runs (a breakpoint run may stop earlier).
    pub fn total(&self) -> Duration {
        match self {
            Self::Users(users) => users.total(),
            Self::Arrivals { schedule, .. } => schedule.total(),
        }
    }

    fn scaled_to(self, to: Duration) -> Self {
        let factor = to.as_secs_f64() / self.total().as_secs_f64();
        match self {
            Self::Users(users) => Self::Users(UserPlan {
                stages: users
                    .stages
                    .iter()
                    .map(|s| stage(s.duration.mul_f64(factor), s.target))
                    .collect(),
                ..users
            }),
            Self::Arrivals {
                schedule,
                stop_on_errors,
            } => Self::Arrivals {
                schedule: schedule.scaled(factor),
                stop_on_errors,
            },
        }
    }
}

impl UserPlan {
    pub fn total(&self) -> Duration {
        self.stages.iter().map(|s| s.duration).sum()
    }

    /// The most users the plan ever asks for.
    pub fn peak(&self) -> u32 {
        self.stages
            .iter()
            .map(|s| s.target)
            .fold(self.start, u32::max)
    }

    /// Users wanted `elapsed` into the run, interpolated within a stage.
    pub fn users_at(&self, elapsed: Duration) -> u32 {
        let mut from = self.start;
        let mut stage_start = Duration::ZERO;
        for s in &self.stages {
            let stage_end = stage_start + s.duration;
            if elapsed < stage_end {
                let done = (elapsed - stage_start).as_secs_f64() / s.duration.as_secs_f64();
                let users = f64::from(from) + (f64::from(s.target) - f64::from(from)) * done;
                return users.round() as u32;
            }
            from = s.target;
            stage_start = stage_end;
        }
        from
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn profiles_json_names_every_staged_profile() {
        for profile in [
            ProfileName::Baseline,
            ProfileName::Spike,
            ProfileName::Stress,
            ProfileName::Soak,
        ] {
            assert!(
                PROFILES.staged.contains_key(profile.as_str()),
                "{profile:?}"
            );
        }
    }

    fn users(plan: Plan) -> UserPlan {
        match plan {
            Plan::Users(users) => users,
            Plan::Arrivals { .. } => panic!("expected a closed-model plan"),
        }
    }

    #[test]
    fn baseline_ramps_like_the_original() {
        let plan = users(Plan::new(ProfileName::Baseline, 1.0, None));
        assert_eq!(plan.total(), secs(270));
        assert_eq!(plan.users_at(Duration::ZERO), 0);
        assert_eq!(plan.users_at(secs(5)), 50);
        assert_eq!(plan.users_at(secs(10)), 100);
        assert_eq!(plan.users_at(secs(20)), 300);
        assert_eq!(plan.users_at(secs(120)), 1200);
        assert_eq!(plan.users_at(secs(270)), 0);
        assert_eq!(plan.peak(), 1200);
        assert_eq!(plan.think, Think::UpTo(Duration::from_millis(100)));
    }

    #[test]
    fn soak_holds_five_hundred_users_from_the_start() {
        let plan = users(Plan::new(ProfileName::Soak, 1.0, None));
        assert_eq!(plan.users_at(Duration::ZERO), 500);
        assert_eq!(plan.users_at(secs(599)), 500);
        assert_eq!(plan.total(), secs(600));
    }

    #[test]
    fn stress_peaks_at_five_thousand_without_pauses() {
        let plan = users(Plan::new(ProfileName::Stress, 1.0, None));
        assert_eq!(plan.peak(), 5000);
        assert_eq!(plan.think, Think::None);
        assert_eq!(plan.total(), secs(240));
        let spike = users(Plan::new(ProfileName::Spike, 1.0, None));
        assert_eq!(spike.peak(), 3000);
        assert_eq!(spike.total(), secs(110));
    }

    #[test]
    fn a_duration_scales_the_stages() {
        let plan = users(Plan::new(ProfileName::Baseline, 1.0, Some(secs(27))));
        assert_eq!(plan.total(), secs(27));
        assert_eq!(plan.users_at(secs(1)), 100);
        assert_eq!(plan.peak(), 1200);
    }

    #[test]
    fn breakpoint_steps_the_arrival_rate_each_minute() {
        let Plan::Arrivals {
            schedule,
            stop_on_errors,
        } = Plan::new(ProfileName::Breakpoint, 1.0, None)
        else {
            panic!("expected an open-model plan");
        };
        assert!(stop_on_errors);
        let rates: Vec<_> = schedule.steps.iter().map(|s| s.rate).collect();
        assert_eq!(rates, [100.0, 500.0, 1000.0, 2000.0, 3000.0, 5000.0]);
        assert_eq!(schedule.total(), secs(360));
    }

    #[test]
    fn constant_uses_rate_and_duration() {
        let plan = Plan::new(ProfileName::Constant, 200.0, Some(secs(5)));
        assert_eq!(plan.total(), secs(5));
        let Plan::Arrivals { schedule, .. } = Plan::new(ProfileName::Constant, 200.0, None) else {
            panic!("expected an open-model plan");
        };
        assert_eq!(schedule.total(), DEFAULT_DURATION);
        assert_eq!(schedule.steps[0].rate, 200.0);
    }
}

//! The loss audit: the tokens of every event answered 202, per tenant,
//! against what the tenants' usage grew by during the run.
//!
//! Usage is read before the run and polled after it until the growth equals
//! what was accepted for every tenant, or the drain timeout passes. Usage
//! counts the current billing period by event time; events are sent without
//! a timestamp, so they land in the period current at the server, and a run
//! across a tenant's period boundary cannot match. Other traffic to the same
//! tenants during the run also shows up as a mismatch: audit on an otherwise
//! idle system, or with tenant names of the run's own.

use std::{
    collections::BTreeMap,
    sync::atomic::{AtomicI64, Ordering},
    time::Duration,
};

use anyhow::{Context, bail};
use serde::Serialize;
use tokio::time::Instant;

use crate::{client::Outcome, traffic::Traffic};

/// How often usage is read while waiting for the pipeline.
const POLL: Duration = Duration::from_millis(250);

/// Tokens the run expects to be counted, per tenant index.
pub struct Ledger {
    /// Events answered 202.
    accepted: Vec<AtomicI64>,
    /// Posts that failed in transport after they may have reached the api:
    /// the api may or may not have stored them.
    uncertain: Vec<AtomicI64>,
    /// Posts answered with another status: by the contract, not stored.
    /// Shown so that a surplus in `counted` can be traced to them.
    refused: Vec<AtomicI64>,
}

impl Ledger {
    pub fn new(tenants: usize) -> Self {
        let zeros = || (0..tenants).map(|_| AtomicI64::new(0)).collect();
        Self {
            accepted: zeros(),
            uncertain: zeros(),
            refused: zeros(),
        }
    }

    /// Notes the events of a post that ended with `outcome`.
    pub fn note(&self, outcome: Outcome, events: &[(usize, i64)]) {
        let column = match outcome {
            Outcome::Status(202) => &self.accepted,
            Outcome::Status(_) => &self.refused,
            Outcome::Transport(error) if error.maybe_delivered() => &self.uncertain,
            Outcome::Transport(_) => return,
        };
        for &(tenant, tokens) in events {
            column[tenant].fetch_add(tokens, Ordering::Relaxed);
        }
    }
}

/// The audit's verdict.
#[derive(Debug, Serialize)]
pub struct AuditReport {
    /// Tokens of the events answered 202.
    pub expected: i64,
    /// Growth of the tenants' usage during the run and the drain.
    pub counted: i64,
    #[serde(rename = "match")]
    pub matched: bool,
    /// From the end of the load until everything was counted (or the
    /// drain timeout passed).
    pub drain_seconds: f64,
    /// Tokens of posts whose fate the client cannot know (timeouts, resets).
    pub uncertain: i64,
    /// Tokens of posts answered with a status other than 202.
    pub refused: i64,
    pub tenants: BTreeMap<String, TenantAudit>,
}

#[derive(Debug, Serialize)]
pub struct TenantAudit {
    pub expected: i64,
    pub counted: i64,
    pub uncertain: i64,
    pub refused: i64,
}

/// Attempts of one usage read before the audit gives up: a read is
/// harmless to repeat, and one cut short (a paused load generator, as
/// `scripts/bench drain` pauses it, or a busy api) should not end the audit.
const USAGE_ATTEMPTS: usize = 3;

/// A tenant's tokens this billing period; 0 for a tenant never seen.
async fn usage(client: &reqwest::Client, traffic: &Traffic, tenant: &str) -> anyhow::Result<i64> {
    let url = traffic.usage_url(tenant);
    let mut attempt = 1;
    let response = loop {
        match client.get(&url).send().await {
            Ok(response) => break response,
            Err(_) if attempt < USAGE_ATTEMPTS => attempt += 1,
            Err(err) => return Err(err).with_context(|| format!("GET {url}")),
        }
    };
    match response.status().as_u16() {
        404 => Ok(0),
        200 => {
            let body: serde_json::Value = response
                .json()
                .await
                .with_context(|| format!("read the answer of GET {url}"))?;
            body["totalTokens"]
                .as_i64()
                .with_context(|| format!("GET {url}: no integer totalTokens in {body}"))
        }
        status => bail!("GET {url} answered {status}"),
    }
}

/// Every tenant's usage, in tenant order.
pub async fn usage_now(client: &reqwest::Client, traffic: &Traffic) -> anyhow::Result<Vec<i64>> {
    let mut totals = Vec::with_capacity(traffic.tenants().len());
    for tenant in traffic.tenants() {
        totals.push(usage(client, traffic, tenant).await?);
    }
    Ok(totals)
}

/// Polls usage until every tenant grew by exactly what was accepted, or
/// `timeout` passes.
pub async fn settle(
    client: &reqwest::Client,
    traffic: &Traffic,
    before: &[i64],
    ledger: &Ledger,
    timeout: Duration,
) -> anyhow::Result<AuditReport> {
    let expected: Vec<i64> = ledger
        .accepted
        .iter()
        .map(|t| t.load(Ordering::Relaxed))
        .collect();
    let started = Instant::now();
    let deadline = started + timeout;
    let counted = loop {
        let now = usage_now(client, traffic).await?;
        let counted: Vec<i64> = now.iter().zip(before).map(|(a, b)| a - b).collect();
        if counted == expected || Instant::now() >= deadline {
            break counted;
        }
        tokio::time::sleep(POLL).await;
    };
    let drain_seconds = started.elapsed().as_secs_f64();
    let tenants = traffic
        .tenants()
        .iter()
        .enumerate()
        .map(|(i, name)| {
            let audit = TenantAudit {
                expected: expected[i],
                counted: counted[i],
                uncertain: ledger.uncertain[i].load(Ordering::Relaxed),
                refused: ledger.refused[i].load(Ordering::Relaxed),
            };
            (name.clone(), audit)
        })
        .collect::<BTreeMap<_, _>>();
    Ok(AuditReport {
        expected: expected.iter().sum(),
        counted: counted.iter().sum(),
        matched: counted == expected,
        drain_seconds,
        uncertain: tenants.values().map(|t| t.uncertain).sum(),
        refused: tenants.values().map(|t| t.refused).sum(),
        tenants,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::TransportError;

    #[test]
    fn only_accepted_posts_are_expected_and_lost_answers_are_uncertain() {
        let ledger = Ledger::new(2);
        ledger.note(Outcome::Status(202), &[(0, 100), (1, 5), (0, 1)]);
        ledger.note(Outcome::Status(503), &[(0, 1000)]);
        ledger.note(Outcome::Transport(TransportError::Connect), &[(0, 1000)]);
        ledger.note(Outcome::Transport(TransportError::Timeout), &[(1, 7)]);
        let load = |column: &[AtomicI64]| -> Vec<i64> {
            column.iter().map(|t| t.load(Ordering::Relaxed)).collect()
        };
        assert_eq!(load(&ledger.accepted), [101, 5]);
        assert_eq!(load(&ledger.uncertain), [0, 7]);
        assert_eq!(load(&ledger.refused), [1000, 0]);
    }
}

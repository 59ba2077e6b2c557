//! The capped-replica drain (issue 27): 1, 2 and 3 replicas, each capped
//! as a pod's CPU limit would cap it, so that the replicas and not
//! PostgreSQL are the limit: whether each added replica adds a replica's
//! worth. Every run is audited; the single-replica runs also time the bare
//! ledger insert in their database, so that their rate reads as a share of
//! what PostgreSQL inserts with nothing else to do.

use crate::{
    cgroup::{CpuCap, Cpus},
    drain::{self, Drained, Spec, cells, ratio_line},
    postgres,
    services::Bench,
    stats::{median, spread},
};

const REPLICAS: [usize; 3] = [1, 2, 3];

pub async fn run(
    bench: &Bench,
    events: u64,
    caps: &[Cpus],
    tenant_counts: &[usize],
) -> anyhow::Result<()> {
    if let Err(reason) = CpuCap::writable() {
        println!("replicas: skipped, cgroups (v1, cpu) are not writable on this machine: {reason}");
        return Ok(());
    }
    let mut runs = Vec::new();
    for &cap in caps {
        for &tenants in tenant_counts {
            for run in 1..=bench.settings.runs {
                for workers in REPLICAS {
                    let spec = Spec {
                        events,
                        workers,
                        tenants,
                        cap: Some(cap),
                        bare: workers == 1,
                    };
                    runs.push(drain::once(bench, spec, run).await?);
                }
            }
        }
    }
    print!("{}", table(&runs));
    let key = |d: &Drained| (cap_key(d), d.spec.tenants, d.spec.workers);
    for &cap in caps {
        let c = (cap.get() * 1000.0).round() as u64;
        for &tenants in tenant_counts {
            for more in [2, 3] {
                let name = format!(
                    "cap {} CPU, {tenants} tenants: {more} replicas / 1",
                    cap.get()
                );
                if let Some(line) =
                    ratio_line(&name, &runs, key, (c, tenants, more), (c, tenants, 1))
                {
                    println!("{line}");
                }
            }
        }
    }
    Ok(())
}

/// The cap in thousandths of a CPU: a key that orders and compares.
fn cap_key(drained: &Drained) -> u64 {
    drained
        .spec
        .cap
        .map_or(0, |cap| (cap.get() * 1000.0).round() as u64)
}

fn table(runs: &[Drained]) -> String {
    let mut out = String::from(
        "| cap per replica | tenants | replicas | events/s (median) | spread | audits | worker CPU µs/event | \
         batches | mean batch | reclaimed | PostgreSQL waits (all runs) | bare ledger insert rows/s | drain ÷ bare |\n\
         |---|---|---|---|---|---|---|---|---|---|---|---|---|\n",
    );
    for ((cap, tenants, workers), cell) in
        cells(runs, |d| (cap_key(d), d.spec.tenants, d.spec.workers))
    {
        let of = |f: &dyn Fn(&Drained) -> f64| -> Vec<f64> { cell.iter().map(|d| f(d)).collect() };
        let rates = of(&|d| d.rate());
        let bare: Vec<f64> = cell.iter().filter_map(|d| d.bare_rate).collect();
        let shares: Vec<f64> = cell
            .iter()
            .filter_map(|d| d.bare_rate.map(|b| d.rate() / b))
            .collect();
        let waits: Vec<String> = cell.iter().flat_map(|d| d.waits.iter().cloned()).collect();
        let optional = |values: &[f64], digits: usize| {
            median(values).map_or("–".to_owned(), |m| format!("{m:.digits$}"))
        };
        out += &format!(
            "| {:.2} CPU | {tenants} | {workers} | **{:.0}** | {} | {}/{} match | {:.1} | {:.0} | {:.0} | {:.0} | {} | {} | {} |\n",
            cap as f64 / 1000.0,
            median(&rates).unwrap_or(0.0),
            spread(&rates, |r| format!("{r:.0}")),
            cell.iter().filter(|d| d.audit_match == Some(true)).count(),
            cell.len(),
            median(&of(&|d| d.workers_us)).unwrap_or(0.0),
            median(&of(&|d| d.counters.batches)).unwrap_or(0.0),
            median(&of(&|d| d.counters.mean_batch())).unwrap_or(0.0),
            median(&of(&|d| d.counters.reclaimed)).unwrap_or(0.0),
            postgres::describe_waits(&waits),
            optional(&bare, 0),
            optional(&shares, 2),
        );
    }
    out
}

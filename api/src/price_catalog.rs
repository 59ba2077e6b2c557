//! `flagmeter-api prices import`: price versions from a public price
//! catalog, straight into the database (`DATABASE_URL`), with no api
//! running: so that prices need not be typed in model by model.
//!
//! The one format read is LiteLLM's `model_prices_and_context_window.json`
//! (`--format litellm`): an object of models, each with
//! `input_cost_per_token`, `output_cost_per_token` and optionally
//! `cache_read_input_token_cost` and `cache_creation_input_token_cost`.
//! Prices are read from the number's text (`2.5e-06`) and converted to a
//! price per million tokens exactly ([`PerMillion::from_per_token`]); a
//! price that cannot be held exactly is refused, never rounded. A cache
//! price not given is the input price, as with `POST /api/prices`.
//!
//! A model gets a new version from `--effective-from` only if its prices
//! differ from the version in force then, so importing the same catalog
//! twice adds nothing. Every version added goes in one transaction; the
//! budgets are re-evaluated afterwards, as after `POST /api/prices`.

use std::{collections::BTreeMap, path::PathBuf};

use chrono::{DateTime, Utc};
use clap::{Subcommand, ValueEnum};
use domain::{money::PerMillion, pricing::PriceBook, validate};
use runtime::config::DatabaseArgs;
use sea_orm::TransactionTrait;
use serde::Deserialize;
use serde_json::value::RawValue;
use store::prices::{self, NewPrices};

/// Manage price versions in the database (DATABASE_URL); no api needs to
/// run.
#[derive(Debug, Subcommand)]
pub enum PricesCommand {
    /// Add a price version for each model of a catalog file whose prices
    /// differ from those in force; print what is added.
    Import {
        /// The catalog file.
        file: PathBuf,
        /// The catalog's format.
        #[arg(long, value_enum)]
        format: CatalogFormat,
        /// When the new versions take effect (RFC 3339), by event time.
        #[arg(long)]
        effective_from: DateTime<Utc>,
        /// Print what would be added, and add nothing.
        #[arg(long)]
        dry_run: bool,
    },
}

/// Price catalog formats.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum CatalogFormat {
    /// LiteLLM's `model_prices_and_context_window.json`.
    Litellm,
}

/// A model of the LiteLLM catalog: its per-token prices as written.
#[derive(Deserialize)]
struct LiteLlmModel<'a> {
    #[serde(borrow)]
    input_cost_per_token: Option<&'a RawValue>,
    #[serde(borrow)]
    output_cost_per_token: Option<&'a RawValue>,
    #[serde(borrow)]
    cache_read_input_token_cost: Option<&'a RawValue>,
    #[serde(borrow)]
    cache_creation_input_token_cost: Option<&'a RawValue>,
}

/// The documentation entry at the top of LiteLLM's file, not a model.
const LITELLM_SAMPLE: &str = "sample_spec";

/// What the catalog says of one model.
#[derive(Debug, PartialEq)]
enum Entry {
    /// Its prices.
    Priced(NewPrices),
    /// Not priced per token (images, audio, the sample entry).
    Unpriced,
    /// Prices that cannot be taken, and why.
    Refused(String),
}

/// A price field: absent (or `null`), or its exact price per million.
fn per_million(field: &str, raw: Option<&RawValue>) -> Result<Option<PerMillion>, String> {
    match raw.map(RawValue::get) {
        None | Some("null") => Ok(None),
        Some(text) => PerMillion::from_per_token(text)
            .map(Some)
            .map_err(|err| format!("{field} = {text}: {err}")),
    }
}

/// Reads one model of the LiteLLM catalog.
fn litellm_entry(name: &str, raw: &RawValue) -> Entry {
    if name == LITELLM_SAMPLE {
        return Entry::Unpriced;
    }
    let Ok(model) = serde_json::from_str::<LiteLlmModel>(raw.get()) else {
        return Entry::Unpriced;
    };
    let read = || -> Result<Option<NewPrices>, String> {
        let input = per_million("input_cost_per_token", model.input_cost_per_token)?;
        let output = per_million("output_cost_per_token", model.output_cost_per_token)?;
        let (Some(input), Some(output)) = (input, output) else {
            return Ok(None);
        };
        validate::feature(name).map_err(|err| err.to_string())?;
        let cache = |field, raw| per_million(field, raw).map(|p| p.unwrap_or(input));
        Ok(Some(NewPrices {
            input,
            output,
            cache_read: cache(
                "cache_read_input_token_cost",
                model.cache_read_input_token_cost,
            )?,
            cache_write: cache(
                "cache_creation_input_token_cost",
                model.cache_creation_input_token_cost,
            )?,
        }))
    };
    match read() {
        Ok(Some(prices)) => Entry::Priced(prices),
        Ok(None) => Entry::Unpriced,
        Err(reason) => Entry::Refused(reason),
    }
}

/// Every model of a LiteLLM catalog, by name.
fn read_litellm(text: &str) -> anyhow::Result<BTreeMap<String, Entry>> {
    let models: BTreeMap<String, &RawValue> = serde_json::from_str(text).map_err(|err| {
        anyhow::anyhow!("not a LiteLLM price catalog (an object of models): {err}")
    })?;
    Ok(models
        .into_iter()
        .map(|(name, raw)| {
            let entry = litellm_entry(&name, raw);
            (name, entry)
        })
        .collect())
}

/// The prices of a version, as a line shows them.
fn show(p: &NewPrices) -> String {
    format!(
        "input {} output {} cache-read {} cache-write {}",
        p.input, p.output, p.cache_read, p.cache_write
    )
}

impl PricesCommand {
    /// Runs the command: each version added (or, with `--dry-run`, that
    /// would be) on a line of stdout, refusals and the summary on stderr.
    /// Models refused do not stop the others; they make the exit status 1.
    pub async fn run(self, database: &DatabaseArgs) -> anyhow::Result<()> {
        let PricesCommand::Import {
            file,
            format: CatalogFormat::Litellm,
            effective_from,
            dry_run,
        } = self;
        let text = std::fs::read_to_string(&file)
            .map_err(|err| anyhow::anyhow!("cannot read {}: {err}", file.display()))?;
        let entries = read_litellm(&text)?;
        let db = database.connect().await?;
        migration::run(&db).await?;
        let book = PriceBook::new(prices::versions(&db, None).await?);
        let (mut added, mut unchanged, mut unpriced, mut refused) = (Vec::new(), 0, 0, 0);
        for (name, entry) in entries {
            match entry {
                Entry::Unpriced => unpriced += 1,
                Entry::Refused(reason) => {
                    refused += 1;
                    eprintln!("refused {name}: {reason}");
                }
                Entry::Priced(new) => match book.in_force(&name, effective_from) {
                    Some(current) if new.same_as(current) => unchanged += 1,
                    current => {
                        let was = current.map_or("no price".to_owned(), |v| {
                            format!(
                                "was {} from {}",
                                show(&NewPrices::from(v)),
                                v.effective_from
                            )
                        });
                        println!("{name}  {}  ({was})", show(&new));
                        added.push((name, new));
                    }
                },
            }
        }
        if !dry_run && !added.is_empty() {
            let txn = db.begin().await?;
            for (name, new) in &added {
                prices::add_version(&txn, name, effective_from, *new).await?;
            }
            txn.commit().await?;
            alerts::budget::evaluate_all(&db, Utc::now()).await?;
        }
        let verb = if dry_run { "would add" } else { "added" };
        eprintln!(
            "{verb} {} price versions from {effective_from}; {unchanged} unchanged, \
             {unpriced} not priced per token, {refused} refused",
            added.len()
        );
        if refused > 0 {
            anyhow::bail!(
                "refused {refused} of the catalog's models (see above); the others were imported"
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn price(text: &str) -> PerMillion {
        PerMillion::parse(text).unwrap()
    }

    #[test]
    fn litellm_models_are_read_exactly() {
        let catalog = r#"{
            "sample_spec": {"input_cost_per_token": 0.0, "output_cost_per_token": 0.0,
                            "mode": "one of: chat, embedding"},
            "gpt-4o": {"input_cost_per_token": 2.5e-06, "output_cost_per_token": 1e-05,
                       "cache_read_input_token_cost": 1.25e-06, "max_tokens": 16384},
            "dall-e-3": {"input_cost_per_pixel": 1e-08, "output_cost_per_token": 0.0},
            "odd": {"input_cost_per_token": 3.3333333333333e-06, "output_cost_per_token": 1e-06},
            "has space": {"input_cost_per_token": 1e-06, "output_cost_per_token": 1e-06}
        }"#;
        let entries = read_litellm(catalog).unwrap();
        assert_eq!(entries["sample_spec"], Entry::Unpriced);
        assert_eq!(entries["dall-e-3"], Entry::Unpriced);
        assert_eq!(
            entries["gpt-4o"],
            Entry::Priced(NewPrices {
                input: price("2.5"),
                output: price("10"),
                cache_read: price("1.25"),
                cache_write: price("2.5"),
            })
        );
        assert!(
            matches!(&entries["odd"], Entry::Refused(why) if why.contains("input_cost_per_token = 3.3333333333333e-06: cannot be held exactly")),
            "{:?}",
            entries["odd"]
        );
        assert!(matches!(&entries["has space"], Entry::Refused(why) if why.contains("feature")));
        assert!(read_litellm("[1]").is_err());
    }
}

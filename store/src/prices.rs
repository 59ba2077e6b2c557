//! Price versions as stored (`prices`, one row per feature and price
//! change) and token counts as the rollups and the ledger hold them, read
//! into the domain's [`PriceVersion`], [`PriceBook`] and [`Counts`].

use chrono::{DateTime, Utc};
use domain::{
    money::PerMillion,
    pricing::{Counts, PriceBook, PriceVersion},
};
use sea_orm::{ConnectionTrait, DbBackend, DbErr, QueryResult, Statement};

/// Reads a row of `prices` with its prices cast to text.
pub fn version_from_row(row: &QueryResult) -> Result<PriceVersion, DbErr> {
    let price = |column: &str| -> Result<PerMillion, DbErr> {
        let text: String = row.try_get("", column)?;
        PerMillion::parse(&text)
            .map_err(|err| DbErr::Type(format!("prices.{column} = {text}: {err}")))
    };
    Ok(PriceVersion {
        id: row.try_get("", "id")?,
        feature: row.try_get("", "feature")?,
        effective_from: row.try_get("", "effective_from")?,
        input: price("input_per_million")?,
        output: price("output_per_million")?,
        cache_read: price("cache_read_per_million")?,
        cache_write: price("cache_write_per_million")?,
        created_at: row.try_get("", "created_at")?,
    })
}

/// Reads token counts from a row with the columns `events`, `tokens`,
/// `input_tokens`, `output_tokens`, `cache_read_tokens`,
/// `cache_write_tokens`.
pub fn counts_from_row(row: &QueryResult) -> Result<Counts, DbErr> {
    Ok(Counts {
        events: row.try_get("", "events")?,
        tokens: row.try_get("", "tokens")?,
        input: row.try_get("", "input_tokens")?,
        output: row.try_get("", "output_tokens")?,
        cache_read: row.try_get("", "cache_read_tokens")?,
        cache_write: row.try_get("", "cache_write_tokens")?,
    })
}

const VERSIONS: &str = r#"
SELECT id, feature, effective_from, input_per_million::text, output_per_million::text,
       cache_read_per_million::text, cache_write_per_million::text, created_at
FROM prices
WHERE $1::text IS NULL OR feature = $1
ORDER BY feature, effective_from, id
"#;

/// The price versions of `feature` (or of every feature), oldest first.
pub async fn versions<C: ConnectionTrait>(
    db: &C,
    feature: Option<&str>,
) -> Result<Vec<PriceVersion>, DbErr> {
    db.query_all_raw(Statement::from_sql_and_values(
        DbBackend::Postgres,
        VERSIONS,
        [feature.map(str::to_owned).into()],
    ))
    .await?
    .iter()
    .map(version_from_row)
    .collect()
}

const INSERT_PRICE: &str = r#"
INSERT INTO prices (feature, effective_from, input_per_million, output_per_million,
                    cache_read_per_million, cache_write_per_million)
VALUES ($1, $2, $3::numeric, $4::numeric, $5::numeric, $6::numeric)
RETURNING id, feature, effective_from, input_per_million::text, output_per_million::text,
          cache_read_per_million::text, cache_write_per_million::text, created_at
"#;

/// The prices of a new version, per million tokens of each class.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NewPrices {
    pub input: PerMillion,
    pub output: PerMillion,
    pub cache_read: PerMillion,
    pub cache_write: PerMillion,
}

impl NewPrices {
    /// Whether `version` has exactly these prices.
    pub fn same_as(&self, version: &PriceVersion) -> bool {
        *self == Self::from(version)
    }
}

impl From<&PriceVersion> for NewPrices {
    fn from(version: &PriceVersion) -> Self {
        Self {
            input: version.input,
            output: version.output,
            cache_read: version.cache_read,
            cache_write: version.cache_write,
        }
    }
}

/// Adds a price version of `feature` from `effective_from`; returns it as
/// stored.
pub async fn add_version<C: ConnectionTrait>(
    db: &C,
    feature: &str,
    effective_from: DateTime<Utc>,
    prices: NewPrices,
) -> Result<PriceVersion, DbErr> {
    let row = db
        .query_one_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            INSERT_PRICE,
            [
                feature.to_owned().into(),
                effective_from.into(),
                prices.input.to_string().into(),
                prices.output.to_string().into(),
                prices.cache_read.to_string().into(),
                prices.cache_write.to_string().into(),
            ],
        ))
        .await?
        .ok_or(DbErr::RecordNotInserted)?;
    version_from_row(&row)
}

/// Every feature's price versions, read fresh (the table is small).
pub async fn price_book<C: ConnectionTrait>(db: &C) -> Result<PriceBook, DbErr> {
    Ok(PriceBook::new(versions(db, None).await?))
}

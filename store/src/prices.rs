//! Price versions as stored (`prices`, one row per feature and price
//! change) and token counts as the rollups and the ledger hold them, read
//! into the domain's [`PriceVersion`], [`PriceBook`] and [`Counts`].

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

/// Every feature's price versions, read fresh (the table is small).
pub async fn price_book<C: ConnectionTrait>(db: &C) -> Result<PriceBook, DbErr> {
    Ok(PriceBook::new(versions(db, None).await?))
}

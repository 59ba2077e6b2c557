//! `flagmeter-migrate`: the sea-orm-migration command line for FlagMeter's
//! schema (`up`, `down`, `status`, `fresh`, ...). It reads `DATABASE_URL`.

#[tokio::main]
async fn main() {
    sea_orm_migration::cli::run_cli(migration::Migrator).await;
}

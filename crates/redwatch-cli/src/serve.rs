//! `redwatch serve`.

use std::process::ExitCode;

/// Flags of `redwatch serve`.
#[derive(Debug, clap::Args)]
pub struct ServeArgs {}

pub async fn run(_args: ServeArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("`redwatch serve` is not implemented yet")
}

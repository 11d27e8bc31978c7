//! `redwatch load`.

use std::process::ExitCode;

/// Flags of `redwatch load`.
#[derive(Debug, clap::Args)]
pub struct LoadArgs {}

pub async fn run(_args: LoadArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("`redwatch load` is not implemented yet")
}

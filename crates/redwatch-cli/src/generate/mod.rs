//! `redwatch generate`.

use std::process::ExitCode;

/// Flags of `redwatch generate`.
#[derive(Debug, clap::Args)]
pub struct GenerateArgs {}

pub async fn run(_args: GenerateArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("`redwatch generate` is not implemented yet")
}

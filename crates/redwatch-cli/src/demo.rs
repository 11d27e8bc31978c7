//! `redwatch demo`.

use std::process::ExitCode;

/// Flags of `redwatch demo`.
#[derive(Debug, clap::Args)]
pub struct DemoArgs {}

pub async fn run(_args: DemoArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("`redwatch demo` is not implemented yet")
}

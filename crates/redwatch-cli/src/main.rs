//! The `redwatch` command: a thin shell over the `redwatch` library and the subcommand modules.

mod demo;
mod duration;
mod generate;
mod load;
mod serve;
mod signals;

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Monitor an HTTP API written in Rust with Prometheus and Grafana.
#[derive(Debug, Parser)]
#[command(name = "redwatch", version, about, long_about = None, propagate_version = true)]
struct Cli {
    /// Log level filter (error, warn, info, debug, trace); `RUST_LOG` takes precedence when set.
    #[arg(
        long,
        global = true,
        env = "REDWATCH_LOG_LEVEL",
        default_value = "info"
    )]
    log_level: String,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the demo API, instrumented with redwatch.
    Serve(serve::ServeArgs),
    /// Generate HTTP load with an open-loop (--rate) or closed-loop (--concurrency) schedule.
    Load(load::LoadArgs),
    /// Write Grafana dashboards, Prometheus rules and configs.
    Generate(generate::GenerateArgs),
    /// Run the whole system on this machine: API, load, Prometheus and a live dashboard.
    Demo(demo::DemoArgs),
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(err) if !err.use_stderr() => {
            // --help and --version.
            let _ = err.print();
            return ExitCode::SUCCESS;
        }
        Err(err) => {
            // One line naming the problem; clap's usage and tips would bury it.
            eprintln!("error: {}", clap_error_line(&err));
            return ExitCode::from(2);
        }
    };
    if let Err(err) = init_logging(&cli.log_level) {
        eprintln!("error: {err:#}");
        return ExitCode::from(2);
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("error: cannot start the async runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        match cli.command {
            Command::Serve(args) => serve::run(args).await,
            Command::Load(args) => load::run(args).await,
            Command::Generate(args) => generate::run(args).await,
            Command::Demo(args) => demo::run(args).await,
        }
    });
    match result {
        Ok(code) => code,
        Err(err) => {
            // One line, no backtrace: `{:#}` joins the context chain with ": ".
            eprintln!("error: {err:#}");
            ExitCode::from(2)
        }
    }
}

/// The one line of a clap error that names the problem, without clap's `error: ` prefix.
pub(crate) fn clap_error_line(err: &clap::Error) -> String {
    let rendered = err.render().to_string();
    let first = rendered.lines().next().unwrap_or("invalid arguments");
    first.trim_start_matches("error: ").to_owned()
}

fn init_logging(level: &str) -> anyhow::Result<()> {
    use tracing_subscriber::EnvFilter;
    let filter = match std::env::var("RUST_LOG") {
        Ok(spec) if !spec.is_empty() => EnvFilter::try_new(spec)?,
        _ => EnvFilter::try_new(level)
            .map_err(|_| anyhow::anyhow!("invalid --log-level {level:?}"))?,
    };
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        // Colour codes only for a person at a terminal, not in files, pipes or journald.
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .init();
    Ok(())
}

//! The `redwatch` command as a library: one module per subcommand. Each turns its flags into a
//! typed settings value in one step ([`Cli::settings`]); the demo and the tests build those
//! values directly and run them.

pub mod demo;
pub mod duration;
pub mod generate;
pub mod load;
pub mod serve;
mod signals;
mod write;

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};

/// Monitor an HTTP API written in Rust with Prometheus and Grafana.
#[derive(Debug, Parser)]
#[command(name = "redwatch", version, about, long_about = None, propagate_version = true)]
pub struct Cli {
    /// Log level filter (error, warn, info, debug, trace); `RUST_LOG` takes precedence when set.
    #[arg(
        long,
        global = true,
        env = "REDWATCH_LOG_LEVEL",
        default_value = "info",
        value_parser = parse_log_level
    )]
    pub log_level: String,

    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands' flags, as clap reads them.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the demo API, instrumented with redwatch.
    Serve(serve::ServeArgs),
    /// Generate HTTP load with an open-loop (--rate) or closed-loop (--concurrency) schedule.
    // Boxed: the generator has many flags, and the others stay small.
    Load(Box<load::LoadArgs>),
    /// Write Grafana dashboards, Prometheus rules and configs.
    Generate(generate::GenerateArgs),
    /// Run the whole system on this machine: API, load, Prometheus and a live dashboard.
    Demo(demo::DemoArgs),
}

/// A subcommand with its settings checked, ready to run.
#[derive(Debug)]
pub enum Settings {
    Serve(serve::ServeArgs),
    Load(Box<load::LoadSettings>),
    /// `redwatch load merge`.
    LoadMerge(load::MergeArgs),
    // Boxed: the generator has many settings, and the others stay small.
    Generate(Box<generate::GenerateSettings>),
    Demo(demo::DemoArgs),
}

impl Cli {
    /// Parses `argv` and the environment. A flag on the command line sets aside the variables
    /// of the flags it excludes: `REDWATCH_RATE`, say, set for the demo, does not stop
    /// `redwatch load --concurrency 8`.
    pub fn try_parse_args<I, T>(argv: I) -> Result<Self, clap::Error>
    where
        I: IntoIterator<Item = T>,
        T: Into<std::ffi::OsString> + Clone,
    {
        let matches = Self::command().try_get_matches_from(argv)?;
        let mut cli = Self::from_arg_matches(&matches)?;
        if let (Command::Load(args), Some(("load", load))) =
            (&mut cli.command, matches.subcommand())
        {
            args.prefer_command_line(load);
        }
        Ok(cli)
    }

    /// The typed settings of the subcommand: every value and every combination checked, with
    /// the same kind of error as clap's own.
    pub fn settings(self) -> Result<Settings, clap::Error> {
        Ok(match self.command {
            Command::Serve(args) => Settings::Serve(args),
            Command::Load(mut args) => match args.command.take() {
                Some(load::LoadCommand::Merge(merge)) => Settings::LoadMerge(merge),
                None => Settings::Load(Box::new(args.settings()?)),
            },
            Command::Generate(args) => Settings::Generate(Box::new(args.settings()?)),
            Command::Demo(args) => Settings::Demo(args),
        })
    }
}

/// Runs a subcommand.
pub async fn run(settings: Settings) -> anyhow::Result<ExitCode> {
    match settings {
        Settings::Serve(settings) => serve::run(settings).await,
        Settings::Load(settings) => load::run(*settings).await,
        Settings::LoadMerge(args) => load::merge(&args),
        Settings::Generate(settings) => generate::run(*settings).await,
        Settings::Demo(settings) => demo::run(settings).await,
    }
}

/// The `redwatch` command: bad input is one line and exit status 2, whether clap or a
/// combination of flags refused it.
pub fn main() -> ExitCode {
    let (log_level, settings) = match Cli::try_parse_args(std::env::args_os()).and_then(|cli| {
        let log_level = cli.log_level.clone();
        cli.settings().map(|settings| (log_level, settings))
    }) {
        Ok(parsed) => parsed,
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
    if let Err(err) = init_logging(&log_level) {
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
    match runtime.block_on(run(settings)) {
        Ok(code) => code,
        Err(err) => {
            // One line, no backtrace: `{:#}` joins the context chain with ": ".
            eprintln!("error: {err:#}");
            ExitCode::from(2)
        }
    }
}

/// The defaults of a subcommand's flags as clap gives them, without reading the environment:
/// the start of settings built in code (the demo's parts, tests).
pub fn defaults<A: clap::Args + clap::FromArgMatches>() -> Result<A, clap::Error> {
    let command = A::augment_args(clap::Command::new("defaults")).mut_args(|arg| arg.env(None));
    A::from_arg_matches(&command.try_get_matches_from(["defaults"])?)
}

/// An invalid combination of flags, reported like clap's own errors.
pub(crate) fn invalid(message: impl std::fmt::Display) -> clap::Error {
    clap::Error::raw(clap::error::ErrorKind::ValueValidation, message)
}

fn parse_log_level(level: &str) -> Result<String, String> {
    tracing_subscriber::EnvFilter::try_new(level)
        .map(|_| level.to_owned())
        .map_err(|_| "expected a filter such as info, warn or redwatch=debug".to_owned())
}

/// The one line of a clap error that names the problem, without clap's `error: ` prefix.
pub fn clap_error_line(err: &clap::Error) -> String {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(argv: &[&str]) -> Result<Settings, String> {
        Cli::try_parse_args(argv)
            .and_then(Cli::settings)
            .map_err(|err| clap_error_line(&err))
    }

    #[test]
    fn run_modes_on_the_command_line_exclude_each_other() {
        for modes in [
            ["--rate", "5", "--concurrency", "2"],
            ["--rate", "5", "--rate-profile", "ramp:1..2"],
            ["--rate-profile", "ramp:1..2", "--concurrency", "2"],
        ] {
            let argv: Vec<&str> = ["redwatch", "load"].into_iter().chain(modes).collect();
            let err = settings(&argv).expect_err("refused");
            assert!(err.contains("exclude each other"), "{modes:?}: {err}");
        }
    }

    #[test]
    fn a_load_bounded_by_nothing_runs_ten_seconds() {
        let Ok(Settings::Load(load)) = settings(&["redwatch", "load", "--rate", "5"]) else {
            panic!("load settings");
        };
        assert_eq!(load.duration, Some(std::time::Duration::from_secs(10)));
        assert_eq!(load.requests, None);
    }

    #[test]
    fn combinations_are_refused_like_single_values() {
        let error = settings(&[
            "redwatch",
            "load",
            "--rate-profile",
            "ramp:0..9",
            "--requests",
            "5",
        ])
        .unwrap_err();
        assert!(
            error.contains("--rate-profile") && error.contains("--duration"),
            "{error}"
        );
        let error = settings(&["redwatch", "generate", "--buckets", "0.1,0.5"]).unwrap_err();
        assert!(error.contains("--latency-threshold 250ms"), "{error}");
        let error = settings(&["redwatch", "load"]).unwrap_err();
        assert!(error.contains("--concurrency"), "{error}");
    }
}

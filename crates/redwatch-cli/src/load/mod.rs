//! `redwatch load`: an HTTP request generator that reports what it actually did.
//!
//! Open loop (`--rate`, `--rate-profile`) follows one global arrival schedule and measures latency
//! from each request's *intended* send time, so a stalled target shows up in the percentiles
//! instead of silently slowing the generator down (coordinated omission). Closed loop
//! (`--concurrency`) keeps N connections busy back to back, for maximum throughput.

mod client;
mod driver;
mod metrics;
mod mix;
mod record;
mod report;
mod schedule;

use std::io::IsTerminal;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use tokio::sync::watch;

use crate::duration::parse_duration;
use client::{ConnectionPool, Target};
use driver::{Plan, RunEnd};
use metrics::ClientMetrics;
use mix::Mix;
use record::Recorder;
use report::{RunFacts, Summary};
use schedule::RateProfile;

pub use mix::DEFAULT_MIX;

/// Flags of `redwatch load`. Values are kept as text and validated by [`run`], so every bad value
/// gets a one-line error naming the flag.
#[derive(Debug, Clone, clap::Args)]
#[command(after_long_help = AFTER_HELP)]
pub struct LoadArgs {
    /// Base URL of the API under load (http:// only); mix paths are appended to its path.
    #[arg(long, env = "REDWATCH_TARGET", default_value = "http://127.0.0.1:5000")]
    pub target: String,

    /// Open loop: requests per second on one global schedule, whatever the responses do.
    /// [default: none; one of --rate, --rate-profile or --concurrency is required]
    #[arg(long, env = "REDWATCH_RATE", conflicts_with_all = ["concurrency", "rate_profile"])]
    pub rate: Option<String>,

    /// Open loop with a rate that changes over time (instead of --rate):
    /// `ramp:FROM..TO[:OVER]` (linear from FROM to TO req/s over OVER, default the whole
    /// --duration, then TO), `step:RATE@AT,RATE@AT,...` (e.g. `step:100@0s,500@10s`; first step
    /// at 0s), `sine:MIN..MAX:PERIOD` (between MIN and MAX req/s, starting at the middle and
    /// rising). [default: none]
    #[arg(long, env = "REDWATCH_RATE_PROFILE", conflicts_with = "concurrency")]
    pub rate_profile: Option<String>,

    /// Closed loop: N connections each sending the next request as soon as the previous one
    /// completes (maximum throughput). [default: none]
    #[arg(long, env = "REDWATCH_CONCURRENCY")]
    pub concurrency: Option<String>,

    /// Stop sending after this long, e.g. 30s, 5m. [default: 10s unless --requests is given]
    #[arg(long, env = "REDWATCH_DURATION")]
    pub duration: Option<String>,

    /// Stop after this many requests (with --duration: whichever comes first). [default: none]
    #[arg(long, env = "REDWATCH_REQUESTS")]
    pub requests: Option<String>,

    /// Endpoints and weights: comma-separated `[METHOD ]PATH=WEIGHT` (method defaults to GET),
    /// e.g. `/ep_one=4,POST /users/1=1`.
    #[arg(long, env = "REDWATCH_MIX", default_value = DEFAULT_MIX)]
    pub mix: String,

    /// Per-request timeout, from the moment the request is sent until the whole response body
    /// has arrived; also bounds connecting.
    #[arg(long, env = "REDWATCH_TIMEOUT", default_value = "2s")]
    pub timeout: String,

    /// Write the JSON summary to PATH (`-` = stdout; the table then goes to stderr).
    /// [default: none]
    #[arg(long, env = "REDWATCH_JSON", value_name = "PATH")]
    pub json: Option<String>,

    /// Serve the generator's own Prometheus metrics at http://ADDR/metrics. Its variable is
    /// REDWATCH_LOAD_METRICS_LISTEN, so one environment can also set serve's --metrics-listen.
    /// [default: off]
    #[arg(long, env = "REDWATCH_LOAD_METRICS_LISTEN", value_name = "ADDR")]
    pub metrics_listen: Option<String>,

    /// Keep serving --metrics-listen this long after the run (Ctrl-C ends it early).
    #[arg(long, env = "REDWATCH_LINGER", default_value = "0s")]
    pub linger: String,

    /// Seed for the endpoint sequence: the same seed and mix give the same sequence of requests.
    /// [default: random, printed in the summary]
    #[arg(long, env = "REDWATCH_SEED")]
    pub seed: Option<String>,

    /// Open loop: most requests outstanding at once. Further due requests queue (their latency
    /// still counts from their intended time); those still queued when the run ends are
    /// reported as dropped.
    #[arg(long, env = "REDWATCH_MAX_IN_FLIGHT", default_value = "1000")]
    pub max_in_flight: String,

    /// Exit with status 1 when (errors without response + 5xx) / requests exceeds this,
    /// given as a fraction (0.01) or percentage (1%). [default: off]
    #[arg(long, env = "REDWATCH_FAIL_ON_ERROR_RATE", value_name = "RATE")]
    pub fail_on_error_rate: Option<String>,

    /// Speak HTTP/2 without TLS (prior knowledge) instead of HTTP/1.1. [default: off]
    #[arg(long, env = "REDWATCH_H2C")]
    pub h2c: bool,
}

const AFTER_HELP: &str = "\
Latency is measured from each request's intended send time (open loop) and from its actual send
time; both are reported, with how late sends left. Failed requests (no response) are counted by
kind: timeout, connect, reset, other. Closed-loop workers back off after a failure (10 ms,
doubling to 1 s) so a dead target is not hammered; open loop keeps to its schedule and counts each
failed request. Exit status: 0 success, 1 --fail-on-error-rate exceeded,
2 bad input, 130 interrupted by SIGINT (Ctrl-C) or SIGTERM (the partial summary and --json are
still written).";

/// How the run generates load.
enum Mode {
    Open(RateProfile),
    Closed(usize),
}

/// Validated settings.
struct Settings {
    target: Target,
    mode: Mode,
    mix: Mix,
    seed: u64,
    timeout: Duration,
    duration: Option<Duration>,
    requests: Option<u64>,
    max_in_flight: usize,
    fail_on_error_rate: Option<f64>,
    linger: Duration,
}

fn parse_count<T: std::str::FromStr + PartialOrd + Copy + std::fmt::Display>(
    flag: &str,
    text: &str,
    min: T,
    max: T,
) -> anyhow::Result<T> {
    text.trim()
        .parse::<T>()
        .ok()
        .filter(|v| *v >= min && *v <= max)
        .with_context(|| {
            format!("invalid {flag} {text:?}: expected a whole number from {min} to {max}")
        })
}

fn parse_fraction(text: &str) -> anyhow::Result<f64> {
    let trimmed = text.trim();
    let (number, scale) = match trimmed.strip_suffix('%') {
        Some(percent) => (percent, 0.01),
        None => (trimmed, 1.0),
    };
    number
        .trim()
        .parse::<f64>()
        .ok()
        .map(|v| v * scale)
        .filter(|v| (0.0..=1.0).contains(v))
        .with_context(|| {
            format!("invalid --fail-on-error-rate {text:?}: expected a fraction 0..1 (e.g. 0.01) or a percentage (e.g. 1%)")
        })
}

impl Settings {
    /// `default_duration` bounds a run given neither --duration nor --requests (`None`: until
    /// stopped).
    fn from_args(args: &LoadArgs, default_duration: Option<Duration>) -> anyhow::Result<Self> {
        // Refuse an unwritable --json before the run, not after it.
        if let Some(path) = args.json.as_deref().filter(|path| *path != "-") {
            let dir = std::path::Path::new(path)
                .parent()
                .filter(|dir| !dir.as_os_str().is_empty())
                .unwrap_or(std::path::Path::new("."));
            if !dir.is_dir() {
                bail!(
                    "invalid --json {path:?}: the directory {} does not exist",
                    dir.display()
                );
            }
        }
        let target = Target::parse(&args.target)?;
        let mix = Mix::parse(&args.mix)?;
        let duration = args
            .duration
            .as_deref()
            .map(|d| parse_duration(d).with_context(|| format!("invalid --duration {d:?}")))
            .transpose()?;
        if duration.is_some_and(|d| d.is_zero()) {
            bail!("invalid --duration: must be greater than zero");
        }
        let requests = args
            .requests
            .as_deref()
            .map(|r| parse_count("--requests", r, 1u64, u64::MAX / 2))
            .transpose()?;
        let duration = match (duration, requests) {
            (None, None) => default_duration,
            (duration, _) => duration,
        };
        let mode = match (&args.rate, &args.rate_profile, &args.concurrency) {
            (Some(rate), None, None) => {
                let value: f64 = rate
                    .trim()
                    .parse()
                    .ok()
                    .filter(|r: &f64| r.is_finite())
                    .with_context(|| {
                        format!("invalid --rate {rate:?}: expected requests per second, e.g. 100")
                    })?;
                if value <= 0.0 {
                    bail!("invalid --rate {rate:?}: the rate must be greater than zero");
                }
                Mode::Open(RateProfile::Constant(value))
            }
            (None, Some(profile), None) => Mode::Open(RateProfile::parse(profile, duration)?),
            (None, None, Some(concurrency)) => {
                Mode::Closed(parse_count("--concurrency", concurrency, 1usize, 100_000)?)
            }
            (None, None, None) => {
                bail!(
                    "give --rate RPS or --rate-profile SPEC (open loop), or --concurrency N (closed loop)"
                )
            }
            _ => bail!("--rate, --rate-profile and --concurrency exclude each other"),
        };
        if let Mode::Open(profile) = &mode
            && duration.is_none()
            && profile.final_rate().is_some_and(|rate| rate <= 0.0)
        {
            bail!(
                "the --rate-profile ends at rate 0 and no --duration is set: the run would never end"
            );
        }
        let timeout = parse_duration(&args.timeout)
            .with_context(|| format!("invalid --timeout {:?}", args.timeout))?;
        if timeout.is_zero() {
            bail!("invalid --timeout: must be greater than zero");
        }
        let linger = parse_duration(&args.linger)
            .with_context(|| format!("invalid --linger {:?}", args.linger))?;
        let seed = match &args.seed {
            Some(seed) => parse_count("--seed", seed, 0u64, u64::MAX)?,
            None => rand::random(),
        };
        Ok(Self {
            target,
            mode,
            mix,
            seed,
            timeout,
            duration,
            requests,
            max_in_flight: parse_count("--max-in-flight", &args.max_in_flight, 1usize, 1_000_000)?,
            fail_on_error_rate: args
                .fail_on_error_rate
                .as_deref()
                .map(parse_fraction)
                .transpose()?,
            linger,
        })
    }
}

/// How another subcommand (`redwatch demo`) runs the generator inside its own process.
pub(crate) struct Embedding {
    /// Ends the run when it turns true; the embedding process handles Ctrl-C itself.
    pub stop: watch::Receiver<bool>,
    /// Serves the client metrics on this bound listener (instead of --metrics-listen).
    pub metrics_listener: Option<tokio::net::TcpListener>,
}

/// What an embedded run reports back.
pub(crate) struct EmbeddedOutcome {
    /// Requests completed, as in the summary.
    pub requests: u64,
}

/// Runs `redwatch load`.
pub async fn run(args: LoadArgs) -> anyhow::Result<ExitCode> {
    // Always stop by itself: default to 10 s unless a request count bounds the run.
    // Installed before anything else, so a signal in the first moments of a run is not lost.
    let mut signals = crate::signals::ShutdownSignals::install()?;
    let settings = Settings::from_args(&args, Some(Duration::from_secs(10)))?;
    let (stop_tx, stop_rx) = watch::channel(false);
    let interrupt_watch = {
        let stop_tx = stop_tx.clone();
        tokio::spawn(async move {
            if signals.recv().await.is_ok() {
                let _ = stop_tx.send(true);
            }
        })
    };
    let result = run_with(args, settings, stop_rx, None).await;
    interrupt_watch.abort();
    drop(stop_tx);
    result.map(|(code, _)| code)
}

/// Checks `args` as [`run_embedded`] will, so the embedding process can refuse bad settings
/// before it starts anything.
pub(crate) fn check_embedded(args: &LoadArgs) -> anyhow::Result<()> {
    Settings::from_args(args, None).map(drop)
}

/// Runs the generator for `redwatch demo`: until `embedding.stop` when neither --duration nor
/// --requests bounds it; prints the summary table like `redwatch load`.
pub(crate) async fn run_embedded(
    args: LoadArgs,
    embedding: Embedding,
) -> anyhow::Result<EmbeddedOutcome> {
    let settings = Settings::from_args(&args, None)?;
    let (_, outcome) = run_with(args, settings, embedding.stop, embedding.metrics_listener).await?;
    Ok(outcome)
}

async fn run_with(
    args: LoadArgs,
    settings: Settings,
    stop_rx: watch::Receiver<bool>,
    metrics_listener: Option<tokio::net::TcpListener>,
) -> anyhow::Result<(ExitCode, EmbeddedOutcome)> {
    let addrs = settings.target.resolve().await?;
    let templates = settings
        .mix
        .entries()
        .iter()
        .map(|entry| settings.target.template(entry))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let labels: Vec<String> = settings.mix.entries().iter().map(|e| e.label()).collect();

    let metrics = (args.metrics_listen.is_some() || metrics_listener.is_some())
        .then(|| Arc::new(ClientMetrics::new()));
    if let Some(metrics) = &metrics {
        match metrics_listener {
            Some(listener) => {
                metrics::serve_on(listener, Arc::clone(metrics))?;
            }
            None => {
                if let Some(listen) = &args.metrics_listen {
                    let addr = metrics::serve(listen, Arc::clone(metrics)).await?;
                    eprintln!("redwatch load metrics on http://{addr}/metrics");
                }
            }
        }
    }
    let recorder = Arc::new(Recorder::new(&labels, metrics.clone()));

    let plan = Arc::new(Plan {
        templates,
        mix: settings.mix.clone(),
        seed: settings.seed,
        timeout: settings.timeout,
        duration: settings.duration,
        request_limit: settings.requests,
    });
    let bound = match (settings.duration, settings.requests) {
        (Some(d), Some(n)) => format!("for {:.3} s or {n} requests", d.as_secs_f64()),
        (Some(d), None) => format!("for {:.3} s", d.as_secs_f64()),
        (None, Some(n)) => format!("for {n} requests"),
        (None, None) => "until stopped".to_owned(),
    };
    match &settings.mode {
        Mode::Open(RateProfile::Constant(rate)) => {
            eprintln!(
                "redwatch load: {rate} req/s open loop against {} {bound}, seed {}",
                settings.target.display, settings.seed
            )
        }
        Mode::Open(profile) => {
            eprintln!(
                "redwatch load: {profile} open loop against {} {bound}, seed {}",
                settings.target.display, settings.seed
            )
        }
        Mode::Closed(n) => eprintln!(
            "redwatch load: {n} connections closed loop against {} {bound}, seed {}",
            settings.target.display, settings.seed
        ),
    }

    let started = Instant::now();
    let profile = match &settings.mode {
        Mode::Open(profile) => Some(profile.clone()),
        Mode::Closed(_) => None,
    };
    let ticker = tokio::spawn(watch_progress(
        Arc::clone(&recorder),
        started,
        profile.clone(),
        settings.duration,
        settings.requests,
    ));

    let end: RunEnd = match &settings.mode {
        Mode::Open(profile) => {
            let client = Arc::new(ConnectionPool::new(
                addrs.into(),
                settings.timeout,
                args.h2c,
            ));
            driver::open_loop(
                Arc::clone(&plan),
                profile.clone(),
                client,
                settings.max_in_flight,
                Arc::clone(&recorder),
                stop_rx.clone(),
            )
            .await
        }
        Mode::Closed(concurrency) => {
            driver::closed_loop(
                Arc::clone(&plan),
                addrs.into(),
                args.h2c,
                *concurrency,
                Arc::clone(&recorder),
                stop_rx.clone(),
            )
            .await
        }
    };
    ticker.abort();
    let _ = ticker.await;
    if let Some(metrics) = recorder.metrics() {
        metrics
            .in_flight
            .set(recorder.in_flight.load(Ordering::Relaxed));
        metrics.schedule_lag.set(0.0);
        metrics.target_rate.set(0.0);
    }

    let elapsed = end.elapsed.as_secs_f64();
    let target_rate = profile.as_ref().map(|p| {
        if elapsed > 0.0 {
            p.cumulative(elapsed) / elapsed
        } else {
            p.rate_at(0.0)
        }
    });
    let facts = RunFacts {
        mode: if profile.is_some() { "open" } else { "closed" },
        target: settings.target.display.clone(),
        seed: settings.seed,
        duration_s: elapsed,
        target_rate,
        rate_profile: match &profile {
            Some(RateProfile::Constant(_)) | None => None,
            Some(p) => Some(p.to_string()),
        },
        concurrency: match settings.mode {
            Mode::Closed(n) => Some(n),
            Mode::Open(_) => None,
        },
        sent: recorder.sent.load(Ordering::Relaxed),
        dropped: recorder.dropped.load(Ordering::Relaxed),
        max_backlog: recorder.max_backlog.load(Ordering::Relaxed),
        unfinished: end.unfinished,
        interrupted: end.interrupted,
    };
    let entries: Vec<(String, String)> = settings
        .mix
        .entries()
        .iter()
        .map(|e| (e.path.clone(), e.method.to_string()))
        .collect();
    let summary = Summary::build(facts, &entries, &recorder.snapshot(), &recorder.lateness());
    let table = summary.render_table();
    if args.json.as_deref() == Some("-") {
        eprint!("{table}");
    } else {
        print!("{table}");
    }
    if let Some(path) = &args.json {
        summary.write_json(path)?;
    }

    let mut code = ExitCode::SUCCESS;
    if let Some(threshold) = settings.fail_on_error_rate
        && summary.error_rate > threshold
    {
        eprintln!(
            "redwatch load: error rate {:.3}% is above --fail-on-error-rate {:.3}%",
            summary.error_rate * 100.0,
            threshold * 100.0
        );
        code = ExitCode::from(1);
    }
    if end.interrupted {
        code = ExitCode::from(130);
    } else if metrics.is_some() && !settings.linger.is_zero() {
        eprintln!(
            "redwatch load: serving metrics for {:.1} s more (Ctrl-C to stop)",
            settings.linger.as_secs_f64()
        );
        let mut stop = stop_rx.clone();
        tokio::select! {
            _ = tokio::time::sleep(settings.linger) => {}
            _ = stop.wait_for(|stopped| *stopped) => {}
        }
    }
    Ok((
        code,
        EmbeddedOutcome {
            requests: summary.requests,
        },
    ))
}

/// Refreshes the gauges and, on a terminal, the progress line, until aborted.
async fn watch_progress(
    recorder: Arc<Recorder>,
    started: Instant,
    profile: Option<RateProfile>,
    duration: Option<Duration>,
    requests: Option<u64>,
) {
    let bar = std::io::stderr().is_terminal().then(|| {
        let bar = match duration {
            Some(d) => {
                indicatif::ProgressBar::new(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
            }
            None => indicatif::ProgressBar::new(requests.unwrap_or(0)),
        };
        // A run bounded by nothing (embedded in `redwatch demo`) has no progress to show.
        let template = if duration.is_none() && requests.is_none() {
            "{elapsed:>4} {msg}"
        } else {
            "{elapsed:>4} [{bar:30}] {msg}"
        };
        if let Ok(style) = indicatif::ProgressStyle::with_template(template) {
            bar.set_style(style.progress_chars("=> "));
        }
        bar
    });
    // Clears the line when the task is aborted at the end of the run.
    struct ClearOnDrop(Option<indicatif::ProgressBar>);
    impl Drop for ClearOnDrop {
        fn drop(&mut self) {
            if let Some(bar) = &self.0 {
                bar.finish_and_clear();
            }
        }
    }
    let bar = ClearOnDrop(bar);
    let mut interval = tokio::time::interval(Duration::from_millis(200));
    let mut previous = (Instant::now(), 0u64);
    loop {
        interval.tick().await;
        let elapsed = started.elapsed();
        let completed = recorder.completed.load(Ordering::Relaxed);
        let lag = Duration::from_micros(recorder.lag_micros.load(Ordering::Relaxed));
        let rate_now = profile.as_ref().map(|p| p.rate_at(elapsed.as_secs_f64()));
        if let Some(metrics) = recorder.metrics() {
            metrics.target_rate.set(rate_now.unwrap_or(0.0));
            metrics.schedule_lag.set(lag.as_secs_f64());
        }
        if let Some(bar) = &bar.0 {
            let window = previous.0.elapsed().as_secs_f64();
            let current_rate = if window > 0.0 {
                completed.saturating_sub(previous.1) as f64 / window
            } else {
                0.0
            };
            previous = (Instant::now(), completed);
            match duration {
                Some(_) => bar.set_position(u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX)),
                None => bar.set_position(completed),
            }
            let target = rate_now.map_or_else(String::new, |r| format!(" (target {r:.0})"));
            bar.set_message(format!(
                "{completed} done, {current_rate:.0} req/s{target}, in flight {}, errors {}, lag {:.1} ms, dropped {}",
                recorder.in_flight.load(Ordering::Relaxed),
                recorder.errors.load(Ordering::Relaxed),
                lag.as_secs_f64() * 1000.0,
                recorder.dropped.load(Ordering::Relaxed),
            ));
        }
    }
}

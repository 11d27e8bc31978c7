//! `redwatch load`: an HTTP request generator that reports what it actually did.
//!
//! Open loop (`--rate`, `--rate-profile`) follows one global arrival schedule and measures latency
//! from each request's *intended* send time, so a stalled target shows up in the percentiles
//! instead of silently slowing the generator down (coordinated omission). Closed loop
//! (`--concurrency`) keeps N connections busy back to back, for maximum throughput.

mod client;
mod compare;
mod driver;
mod http1;
mod merge;
mod metrics;
mod mix;
mod record;
mod report;
mod scenario;
mod schedule;
mod settings;
mod threshold;
mod timeline;
mod tls;

use std::io::IsTerminal;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use tokio::sync::watch;

use client::{ConnectionPool, RequestTemplate, Transport};
use driver::{Plan, RunEnd};
use metrics::ClientMetrics;
use record::Recorder;
use report::{RunFacts, Summary};
use schedule::RateProfile;

pub use client::Target;
pub use merge::{MergeArgs, run as merge};
pub use mix::{DEFAULT_MIX, Mix};
pub use settings::{
    JsonOutput, LoadArgs, LoadCommand, LoadSettings, Mode, mix_flag, positive_duration, rate_flag,
};

/// How another subcommand (`redwatch demo`) runs the generator inside its own process.
pub struct Embedding {
    /// Ends the run when it turns true; the embedding process handles Ctrl-C itself.
    pub stop: watch::Receiver<bool>,
    /// Serves the client metrics on this bound listener (instead of --metrics-listen).
    pub metrics_listener: Option<tokio::net::TcpListener>,
}

/// What an embedded run reports back.
pub struct EmbeddedOutcome {
    /// Requests completed, as in the summary.
    pub requests: u64,
}

/// Runs `redwatch load`.
pub async fn run(settings: LoadSettings) -> anyhow::Result<ExitCode> {
    // Installed before anything else, so a signal in the first moments of a run is not lost.
    let mut signals = crate::signals::ShutdownSignals::install()?;
    let (stop_tx, stop_rx) = watch::channel(false);
    let interrupt_watch = {
        let stop_tx = stop_tx.clone();
        tokio::spawn(async move {
            if signals.recv().await.is_ok() {
                let _ = stop_tx.send(true);
            }
        })
    };
    let result = run_with(settings, stop_rx, None).await;
    interrupt_watch.abort();
    drop(stop_tx);
    result.map(|(code, _)| code)
}

/// Runs the generator for `redwatch demo`: until `embedding.stop` when neither a duration nor a
/// request count bounds it; prints the summary table like `redwatch load`.
pub async fn run_embedded(
    settings: LoadSettings,
    embedding: Embedding,
) -> anyhow::Result<EmbeddedOutcome> {
    let (_, outcome) = run_with(settings, embedding.stop, embedding.metrics_listener).await?;
    Ok(outcome)
}

/// One run: resolve the target, send the requests, report, then linger when asked.
async fn run_with(
    settings: LoadSettings,
    stop_rx: watch::Receiver<bool>,
    metrics_listener: Option<tokio::net::TcpListener>,
) -> anyhow::Result<(ExitCode, EmbeddedOutcome)> {
    let addrs = settings.target.resolve().await?;
    // Read before anything is sent, so that the difference is this run's requests.
    let server_before = match &settings.compare_server {
        Some(url) => Some(
            compare::scrape(url)
                .await
                .context("--compare-server: cannot read the target's metrics")?,
        ),
        None => None,
    };
    let templates = request_templates(&settings)?;
    let labels: Vec<String> = settings.mix.entries().iter().map(|e| e.label()).collect();
    let metrics = start_client_metrics(&settings, metrics_listener).await?;
    let recorder = Arc::new(Recorder::new(
        &labels,
        metrics.clone(),
        settings.timeline.is_some(),
    ));
    announce(&settings);

    let started = Instant::now();
    let timeline = match &settings.timeline {
        Some(path) => {
            let timeline = Arc::new(std::sync::Mutex::new(timeline::Timeline::create(
                path,
                labels.clone(),
                started,
            )?));
            let task = tokio::spawn(timeline::every_second(
                Arc::clone(&timeline),
                Arc::clone(&recorder),
                started,
            ));
            Some((timeline, task))
        }
        None => None,
    };
    let ticker = tokio::spawn(watch_progress(
        Arc::clone(&recorder),
        started,
        open_loop_profile(&settings.mode),
        settings.duration,
        settings.requests,
    ));
    let plan = Arc::new(Plan {
        templates,
        mix: settings.mix.clone(),
        seed: settings.request_seed(),
        timeout: settings.timeout,
        duration: settings.duration,
        request_limit: settings.requests,
    });
    let end = send_requests(&settings, plan, addrs, &recorder, stop_rx.clone()).await?;
    ticker.abort();
    let _ = ticker.await;
    settle_gauges(&recorder);
    if let Some((timeline, task)) = timeline {
        task.abort();
        let _ = task.await;
        // The rest of the run since the last full second, stragglers included.
        timeline::write_line_or_report(&timeline, &recorder);
    }

    let mut summary = summarize(&settings, &end, &recorder);
    if let (Some(source), Some(before)) = (&settings.compare_server, &server_before) {
        summary.server_comparison =
            Some(compare_with_server(&settings, &summary, source, before).await);
    }
    write_report(&summary, settings.json.as_ref())?;
    let code = exit_code(&summary, &settings, &end);
    if !end.interrupted && metrics.is_some() && !settings.linger.is_zero() {
        linger(settings.linger, stop_rx).await;
    }
    Ok((
        code,
        EmbeddedOutcome {
            requests: summary.requests,
        },
    ))
}

fn request_templates(settings: &LoadSettings) -> anyhow::Result<Vec<RequestTemplate>> {
    settings
        .mix
        .entries()
        .iter()
        .enumerate()
        .map(|(index, entry)| {
            settings.target.template(
                index,
                entry,
                &settings.headers,
                settings.traceparent,
                settings.scenario.as_ref(),
            )
        })
        .collect()
}

/// The client metrics, served on `listener` (embedded) or on --metrics-listen; `None` when
/// neither asks for them.
async fn start_client_metrics(
    settings: &LoadSettings,
    listener: Option<tokio::net::TcpListener>,
) -> anyhow::Result<Option<Arc<ClientMetrics>>> {
    let listener = match (listener, settings.metrics_listen) {
        (Some(listener), _) => listener,
        (None, Some(addr)) => bind_metrics_listener(addr).await?,
        (None, None) => return Ok(None),
    };
    let announce = settings.metrics_listen.is_some();
    let metrics = Arc::new(ClientMetrics::new());
    let addr = metrics::serve_on(listener, &metrics)?;
    if announce {
        eprintln!("redwatch load metrics on http://{addr}/metrics");
    }
    Ok(Some(metrics))
}

async fn bind_metrics_listener(addr: SocketAddr) -> anyhow::Result<tokio::net::TcpListener> {
    use anyhow::Context;
    tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on --metrics-listen {addr}"))
}

/// The first line of a run: what is sent where, for how long, with which seed.
fn announce(settings: &LoadSettings) {
    let bound = match (settings.duration, settings.requests) {
        (Some(d), Some(n)) => format!("for {:.3} s or {n} requests", d.as_secs_f64()),
        (Some(d), None) => format!("for {:.3} s", d.as_secs_f64()),
        (None, Some(n)) => format!("for {n} requests"),
        (None, None) => "until stopped".to_owned(),
    };
    let how = match &settings.mode {
        Mode::Open(RateProfile::Constant(rate)) => format!("{rate} req/s open loop"),
        Mode::Open(profile) => format!("{profile} open loop"),
        Mode::Closed(n) => format!("{n} connections closed loop"),
    };
    let shard = settings
        .shard
        .map_or_else(String::new, |shard| format!(", shard {shard}"));
    eprintln!(
        "redwatch load: {how} against {} {bound}, seed {}{shard}",
        settings.target.display, settings.seed
    );
}

fn open_loop_profile(mode: &Mode) -> Option<RateProfile> {
    match mode {
        Mode::Open(profile) => Some(profile.clone()),
        Mode::Closed(_) => None,
    }
}

/// Sends the requests on the open- or closed-loop schedule until the run ends.
async fn send_requests(
    settings: &LoadSettings,
    plan: Arc<Plan>,
    addrs: Vec<SocketAddr>,
    recorder: &Arc<Recorder>,
    stop_rx: watch::Receiver<bool>,
) -> anyhow::Result<RunEnd> {
    let transport = Transport::new(&settings.target, addrs, settings.tls.clone(), settings.h2c)?;
    Ok(match &settings.mode {
        Mode::Open(profile) => {
            let client = Arc::new(ConnectionPool::new(
                transport,
                settings.timeout,
                settings.connections,
            ));
            driver::open_loop(
                plan,
                profile.clone(),
                client,
                settings.max_in_flight,
                Arc::clone(recorder),
                stop_rx,
            )
            .await
        }
        Mode::Closed(concurrency) => {
            driver::closed_loop(plan, transport, *concurrency, Arc::clone(recorder), stop_rx).await
        }
    })
}

/// The gauges as they stand once nothing is sent any more.
fn settle_gauges(recorder: &Recorder) {
    if let Some(metrics) = recorder.metrics() {
        metrics
            .in_flight
            .set(recorder.in_flight.load(Ordering::Relaxed));
        metrics.schedule_lag.set(0.0);
        metrics.target_rate.set(0.0);
    }
}

fn summarize(settings: &LoadSettings, end: &RunEnd, recorder: &Recorder) -> Summary {
    let elapsed = end.elapsed.as_secs_f64();
    let profile = open_loop_profile(&settings.mode);
    let target_rate = profile.as_ref().map(|p| {
        if elapsed > 0.0 {
            p.cumulative(elapsed) / elapsed
        } else {
            p.rate_at(0.0)
        }
    });
    let facts = RunFacts {
        mode: if profile.is_some() { "open" } else { "closed" }.to_owned(),
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
        shard: settings.shard.map(|shard| shard.to_string()),
    };
    let entries: Vec<(String, String, String)> = settings
        .mix
        .entries()
        .iter()
        .map(|e| (e.label(), e.path.clone(), e.method.to_string()))
        .collect();
    Summary::build(
        facts,
        &entries,
        &recorder.snapshot(),
        &recorder.lateness(),
        &settings.thresholds,
    )
}

/// The client's figures next to the server's, read again now. The server records a request
/// as its response ends, a moment after the client may have read it: the read is repeated
/// (for up to a second) until the server has counted as many requests as the client.
async fn compare_with_server(
    settings: &LoadSettings,
    summary: &Summary,
    source: &compare::MetricsSource,
    before: &compare::ServerView,
) -> report::ServerComparison {
    let endpoints: Vec<(String, String, String)> = settings
        .mix
        .entries()
        .iter()
        .map(|e| {
            (
                e.label(),
                e.method.to_string(),
                settings.target.server_path(&e.path),
            )
        })
        .collect();
    let client: Vec<compare::ClientFigures> = summary
        .endpoints
        .iter()
        .map(|e| compare::ClientFigures {
            count: e.count,
            p50_ms: e.latency_ms.map(|p| p.p50),
            p99_ms: e.latency_ms.map(|p| p.p99),
        })
        .collect();
    let mut rows = Vec::new();
    let mut metric = None;
    for attempt in 0..10 {
        if attempt > 0 {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        match compare::scrape(source).await {
            Ok(after) => {
                let delta = after.since(before);
                metric = delta.metric.clone();
                rows = compare::compare(&endpoints, &client, &delta);
            }
            Err(err) => {
                eprintln!("redwatch load: --compare-server: {err:#}");
                break;
            }
        }
        let caught_up = rows.iter().all(|row| {
            row.server
                .as_ref()
                .is_none_or(|server| server.count >= row.client.count)
        });
        if caught_up {
            break;
        }
    }
    report::ServerComparison {
        metric,
        endpoints: rows,
    }
}

/// The table on stdout (stderr when the JSON goes to stdout), and the JSON when asked.
fn write_report(summary: &Summary, json: Option<&JsonOutput>) -> anyhow::Result<()> {
    let table = summary.render_table();
    match json {
        Some(JsonOutput::Stdout) => eprint!("{table}"),
        _ => print!("{table}"),
    }
    match json {
        Some(output) => summary.write_json(output),
        None => Ok(()),
    }
}

fn exit_code(summary: &Summary, settings: &LoadSettings, end: &RunEnd) -> ExitCode {
    let mut code = ExitCode::SUCCESS;
    for (result, threshold) in summary.thresholds.iter().zip(&settings.thresholds) {
        if result.passed {
            continue;
        }
        if threshold.from_fail_on_error_rate {
            eprintln!(
                "redwatch load: error rate {:.3}% is above --fail-on-error-rate {:.3}%",
                summary.error_rate * 100.0,
                threshold.bound * 100.0
            );
        } else {
            eprintln!(
                "redwatch load: threshold {} failed: measured {}",
                result.expr, result.display
            );
        }
        code = ExitCode::from(1);
    }
    if end.interrupted {
        code = ExitCode::from(130);
    }
    code
}

/// Keeps the metrics listener up for `linger` after the run, or until stopped.
async fn linger(linger: Duration, mut stop: watch::Receiver<bool>) {
    eprintln!(
        "redwatch load: serving metrics for {:.1} s more (Ctrl-C to stop)",
        linger.as_secs_f64()
    );
    tokio::select! {
        _ = tokio::time::sleep(linger) => {}
        _ = stop.wait_for(|stopped| *stopped) => {}
    }
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

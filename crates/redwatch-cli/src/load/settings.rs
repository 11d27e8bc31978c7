//! The flags of `redwatch load` and the typed settings a run reads. Every value is checked by
//! its clap value parser; [`LoadArgs::settings`] adds the checks that involve two flags.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use super::client::Target;
use super::compare::MetricsSource;
use super::merge::MergeArgs;
use super::mix::{DEFAULT_MIX, Mix};
use super::scenario::{Scenario, parse_header_flag};
use super::schedule::{RateProfile, RateProfileFlag};
use super::threshold::{Metric, Threshold};
use crate::duration::duration_flag;
use hyper::header::{HeaderMap, HeaderName, HeaderValue};
use std::sync::Arc;

/// Flags of `redwatch load`.
#[derive(Debug, Clone, clap::Args)]
#[command(after_long_help = AFTER_HELP, args_conflicts_with_subcommands = true,
          subcommand_negates_reqs = true)]
pub struct LoadArgs {
    /// `redwatch load merge`, instead of a run.
    #[command(subcommand)]
    pub command: Option<LoadCommand>,

    /// Base URL of the API under load, http:// or https:// (TLS; HTTP/2 when the server's ALPN
    /// chooses it); mix paths are appended to its path.
    #[arg(long, env = "REDWATCH_TARGET", default_value = "http://127.0.0.1:5000",
          value_parser = reason(str::parse::<Target>))]
    pub target: Target,

    /// Open loop: requests per second on one global schedule, whatever the responses do.
    /// [default: none; one of --rate, --rate-profile or --concurrency is required]
    #[arg(long, env = "REDWATCH_RATE", value_parser = rate_flag, allow_negative_numbers = true)]
    pub rate: Option<f64>,

    /// Open loop with a rate that changes over time (instead of --rate):
    /// `ramp:FROM..TO[:OVER]` (linear from FROM to TO req/s over OVER, default the whole
    /// --duration, then TO), `step:RATE@AT,RATE@AT,...` (e.g. `step:100@0s,500@10s`; first step
    /// at 0s), `sine:MIN..MAX:PERIOD` (between MIN and MAX req/s, starting at the middle and
    /// rising). [default: none]
    #[arg(long, env = "REDWATCH_RATE_PROFILE", value_parser = reason(RateProfileFlag::parse))]
    pub rate_profile: Option<RateProfileFlag>,

    /// Closed loop: N connections each sending the next request as soon as the previous one
    /// completes (maximum throughput). [default: none]
    #[arg(long, env = "REDWATCH_CONCURRENCY", value_parser = count(1usize, 100_000))]
    pub concurrency: Option<usize>,

    /// Stop sending after this long, e.g. 30s, 5m. [default: 10s unless --requests is given]
    #[arg(long, env = "REDWATCH_DURATION", value_parser = positive_duration)]
    pub duration: Option<Duration>,

    /// Stop after this many requests (with --duration: whichever comes first). [default: none]
    #[arg(long, env = "REDWATCH_REQUESTS", value_parser = count(1u64, u64::MAX / 2))]
    pub requests: Option<u64>,

    /// Endpoints and weights: comma-separated `[METHOD ]PATH=WEIGHT` (method defaults to GET),
    /// e.g. `/ep_one=4,POST /users/1=1`.
    #[arg(long, env = "REDWATCH_MIX", default_value = DEFAULT_MIX, value_parser = mix_flag)]
    pub mix: Mix,

    /// A YAML file of endpoints, each with its method, path, headers, body and weight, and
    /// variables templated into paths and bodies (`{{ name }}`): random integers, sequences, CSV
    /// columns; random values follow --seed. It replaces --mix (so that a REDWATCH_MIX in the
    /// environment does not get in the way). See the README for the format. [default: none]
    #[arg(long, env = "REDWATCH_SCENARIO", value_name = "FILE")]
    pub scenario: Option<PathBuf>,

    /// A header sent with every request, `Name: value`; repeatable (in REDWATCH_HEADER, one per
    /// line). A scenario endpoint's own headers take precedence. Content-Length and
    /// Transfer-Encoding are refused: each request's framing is the load generator's. [default:
    /// none]
    #[arg(long = "header",  env = "REDWATCH_HEADER", value_name = "'NAME: VALUE'",
          value_delimiter = '\n', value_parser = reason(parse_header_flag))]
    pub headers: Vec<(HeaderName, HeaderValue)>,

    /// Send a W3C `traceparent` header with a new random, sampled trace id on every request, so
    /// that a server keeping exemplars (`redwatch serve` does) links its latency buckets to
    /// these requests. [default: off]
    #[arg(long, env = "REDWATCH_TRACEPARENT")]
    pub traceparent: bool,

    /// Per-request timeout, from the moment the request is sent until the whole response body
    /// has arrived; also bounds connecting.
    #[arg(long, env = "REDWATCH_TIMEOUT", default_value = "2s", value_parser = positive_duration)]
    pub timeout: Duration,

    /// Write the JSON summary to PATH (`-` = stdout; the table then goes to stderr).
    /// [default: none]
    #[arg(long, env = "REDWATCH_JSON", value_name = "PATH", value_parser = parse_json_output)]
    pub json: Option<JsonOutput>,

    /// Write a timeline to PATH: one JSON line per second, per endpoint the requests completed
    /// in that second, status counts, errors, and p50/p99 from the intended and from the actual
    /// send time; the last line covers the rest of the run. [default: none]
    #[arg(long, env = "REDWATCH_TIMELINE", value_name = "PATH", value_parser = parse_timeline)]
    pub timeline: Option<PathBuf>,

    /// Serve the generator's own Prometheus metrics at http://ADDR/metrics. Its variable is
    /// REDWATCH_LOAD_METRICS_LISTEN, so one environment can also set serve's --metrics-listen.
    /// [default: off]
    #[arg(long, env = "REDWATCH_LOAD_METRICS_LISTEN", value_name = "ADDR",
          value_parser = crate::serve::parse_addr)]
    pub metrics_listen: Option<SocketAddr>,

    /// Keep serving --metrics-listen this long after the run (Ctrl-C ends it early).
    #[arg(long, env = "REDWATCH_LINGER", default_value = "0s", value_parser = duration_flag)]
    pub linger: Duration,

    /// Seed for the endpoint sequence: the same seed and mix give the same sequence of requests.
    /// [default: random, printed in the summary]
    #[arg(long, env = "REDWATCH_SEED", value_parser = count(0u64, u64::MAX))]
    pub seed: Option<u64>,

    /// Open loop: most requests outstanding at once. Further due requests queue (their latency
    /// still counts from their intended time); those still queued when the run ends are
    /// reported as dropped.
    #[arg(long, env = "REDWATCH_MAX_IN_FLIGHT", default_value = "1000",
          value_parser = count(1usize, 1_000_000))]
    pub max_in_flight: usize,

    /// Exit with status 1 when (errors without response + 5xx) / requests exceeds this,
    /// given as a fraction (0.01) or percentage (1%); the same as `--threshold
    /// 'error_rate<=RATE'`. [default: off]
    #[arg(long, env = "REDWATCH_FAIL_ON_ERROR_RATE", value_name = "RATE",
          value_parser = parse_fraction)]
    pub fail_on_error_rate: Option<f64>,

    /// A pass/fail condition for CI, repeatable (or comma-separated); exit status 1 when one
    /// fails. `[ENDPOINT:]METRIC OP VALUE` with OP one of < <= > >= ==, METRIC one of
    /// pNN (p50, p90, p99, p99.9; latency from the intended send time), max, mean (VALUE a
    /// duration such as 300ms), error_rate ((errors + 5xx) / requests, VALUE 1% or 0.01),
    /// rate (achieved / target rate, open loop; VALUE 99%), dropped (VALUE a count).
    /// ENDPOINT (a mix entry such as /ep_one or `POST /users/1`) scopes a latency or error_rate.
    /// E.g. `--threshold p99<300ms --threshold /ep_one:p90<200ms --threshold dropped==0`.
    /// [default: none]
    #[arg(long = "threshold", env = "REDWATCH_THRESHOLD", value_name = "EXPR",
          value_delimiter = ',', value_parser = reason(str::parse::<Threshold>))]
    pub thresholds: Vec<Threshold>,

    /// Read the target's Prometheus metrics before and after the run and show, per endpoint,
    /// the server's count, p50 and p99 (from its duration histogram's buckets, interpolated as
    /// Prometheus does) next to the client's. Understands redwatch's otel and flask presets and
    /// prometheus_flask_exporter. The metrics are read from --server-metrics. [default: off]
    #[arg(long, env = "REDWATCH_COMPARE_SERVER")]
    pub compare_server: bool,

    /// Where --compare-server reads the target's metrics (an http:// or https:// URL; https
    /// with the --cacert or --insecure of an https target).
    /// [default: /metrics on the --target's host]
    #[arg(long, env = "REDWATCH_SERVER_METRICS", value_name = "URL",
          value_parser = reason(parse_metrics_url))]
    pub server_metrics: Option<hyper::Uri>,

    /// Run shard I of N (I from 0 to N-1, e.g. a Kubernetes Indexed Job's
    /// JOB_COMPLETION_INDEX): 1/N of the rate (or of --concurrency and --requests), with a seed
    /// derived from --seed and I, and sequences and CSV rows interleaved with the other shards'.
    /// `redwatch load merge` combines the shards' --json summaries. [default: the whole run]
    #[arg(long, env = "REDWATCH_SHARD", value_name = "I/N", value_parser = reason(Shard::parse))]
    pub shard: Option<Shard>,

    /// https: trust the certificate authorities in this PEM file (as well as the built-in Mozilla
    /// roots), e.g. a private CA or a self-signed certificate. [default: none]
    #[arg(
        long,
        env = "REDWATCH_CACERT",
        value_name = "FILE",
        conflicts_with = "insecure"
    )]
    pub cacert: Option<PathBuf>,

    /// https: accept any certificate, unverified (for test servers only: the traffic is still
    /// encrypted, but to whoever answers). [default: off]
    #[arg(long, env = "REDWATCH_INSECURE")]
    pub insecure: bool,

    /// Open loop over HTTP/2 (h2c, or https where the server's ALPN chooses h2): spread the
    /// requests over this many multiplexed connections, taken in turn. HTTP/1.1 opens a
    /// connection per request in flight whatever this says; closed loop has one per worker.
    #[arg(long, env = "REDWATCH_CONNECTIONS", default_value = "1",
          value_parser = count(1usize, 10_000))]
    pub connections: usize,

    /// Speak HTTP/2 without TLS (prior knowledge) instead of HTTP/1.1. [default: off]
    #[arg(long, env = "REDWATCH_H2C")]
    pub h2c: bool,
}

const AFTER_HELP: &str = "\
Latency is measured from each request's intended send time (open loop) and from its actual send
time; both are reported, with how late sends left. Failed requests (no response) are counted by
kind: timeout, connect, reset, other. Closed-loop workers back off after a failure (10 ms,
doubling to 1 s) so a dead target is not hammered; open loop keeps to its schedule and counts each
failed request. Exit status: 0 success, 1 a --threshold (or --fail-on-error-rate) failed,
2 bad input, 130 interrupted by SIGINT (Ctrl-C) or SIGTERM (the partial summary and --json are
still written).";

/// What `redwatch load` does other than a run.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum LoadCommand {
    /// Combine `--json` summaries (e.g. the shards of one run) into one, exactly: counts add,
    /// histograms merge, quantiles are computed again. Prints the JSON on stdout, the table on
    /// stderr.
    Merge(MergeArgs),
}

/// How long a `redwatch load` given neither --duration nor --requests runs.
const DEFAULT_RUN_LENGTH: Duration = Duration::from_secs(10);

/// How the run generates load.
#[derive(Debug, Clone, PartialEq)]
pub enum Mode {
    /// Requests on one global schedule.
    Open(RateProfile),
    /// N connections back to back.
    Closed(usize),
}

/// `--shard I/N`: this process runs shard `index` (0-based) of `count`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    pub index: u64,
    pub count: u64,
}

impl std::fmt::Display for Shard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

impl Shard {
    /// Parses `I/N` with N ≥ 1 and I < N.
    pub fn parse(text: &str) -> anyhow::Result<Self> {
        use anyhow::Context;
        let (index, count) = text
            .trim()
            .split_once('/')
            .with_context(|| format!("{text:?}: expected I/N, e.g. 0/4"))?;
        let number = |part: &str| part.trim().parse::<u64>().ok();
        let (Some(index), Some(count)) = (number(index), number(count)) else {
            anyhow::bail!("{text:?}: expected I/N with whole numbers, e.g. 0/4");
        };
        if count == 0 || index >= count {
            anyhow::bail!("{text:?}: I counts from 0 to N-1 (N = {count})");
        }
        Ok(Self { index, count })
    }

    /// This shard's part of `total` whole things: the remainder goes to the first shards.
    pub fn share(&self, total: u64) -> u64 {
        total / self.count + u64::from(self.index < total % self.count)
    }

    /// The seed of this shard's requests, from the run's `--seed`.
    pub fn seed(&self, seed: u64) -> u64 {
        super::mix::mix64(seed, self.index ^ 0x5_4a2d_0000)
    }
}

/// Where `--json` writes the summary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JsonOutput {
    Stdout,
    File(PathBuf),
}

/// Everything a run of the load generator reads, checked.
#[derive(Debug, Clone)]
pub struct LoadSettings {
    pub target: Target,
    pub mode: Mode,
    /// The endpoints: --mix, or the --scenario's.
    pub mix: Mix,
    /// The --scenario, whose endpoints are the mix's.
    pub scenario: Option<Arc<Scenario>>,
    /// --header, sent with every request.
    pub headers: HeaderMap,
    /// A fresh `traceparent` on every request (--traceparent).
    pub traceparent: bool,
    pub seed: u64,
    pub timeout: Duration,
    /// `None` with `requests: None`: until stopped (as embedded in `redwatch demo`).
    pub duration: Option<Duration>,
    pub requests: Option<u64>,
    pub max_in_flight: usize,
    /// Every `--threshold`, then the one `--fail-on-error-rate` stands for.
    pub thresholds: Vec<Threshold>,
    pub json: Option<JsonOutput>,
    pub timeline: Option<PathBuf>,
    pub metrics_listen: Option<SocketAddr>,
    pub linger: Duration,
    pub h2c: bool,
    /// `--shard`: already applied to the mode, the request count and the scenario.
    pub shard: Option<Shard>,
    /// `--compare-server`: where to read the target's metrics.
    pub compare_server: Option<MetricsSource>,
    /// An https target's TLS configuration (--cacert, --insecure; ALPN h2 and http/1.1).
    pub tls: Option<Arc<rustls::ClientConfig>>,
    /// HTTP/2 connections of open loop (--connections).
    pub connections: usize,
}

impl LoadSettings {
    /// The seed requests are drawn from: `seed` itself, or the shard's seed derived from it.
    pub fn request_seed(&self) -> u64 {
        self.shard.map_or(self.seed, |shard| shard.seed(self.seed))
    }

    /// `rate` requests per second against `target`, until stopped; everything else is the
    /// flags' defaults (not the environment's).
    pub fn open_loop(target: Target, rate: f64) -> Result<Self, clap::Error> {
        let defaults: LoadArgs = crate::defaults()?;
        Ok(Self {
            target,
            mode: Mode::Open(RateProfile::Constant(rate)),
            mix: defaults.mix,
            scenario: None,
            headers: HeaderMap::new(),
            traceparent: defaults.traceparent,
            seed: rand::random(),
            timeout: defaults.timeout,
            duration: None,
            requests: None,
            max_in_flight: defaults.max_in_flight,
            thresholds: Vec::new(),
            json: None,
            timeline: None,
            metrics_listen: None,
            linger: defaults.linger,
            h2c: defaults.h2c,
            shard: None,
            compare_server: None,
            tls: None,
            connections: defaults.connections,
        })
    }
}

impl LoadArgs {
    /// With a run mode (--rate, --rate-profile, --concurrency) on the command line, the others'
    /// environment variables are set aside, so that one environment can run every subcommand.
    pub(crate) fn prefer_command_line(&mut self, matches: &clap::ArgMatches) {
        use clap::parser::ValueSource;
        let source = |id: &str| matches.value_source(id);
        let modes = ["rate", "rate_profile", "concurrency"];
        if !modes
            .iter()
            .any(|id| source(id) == Some(ValueSource::CommandLine))
        {
            return;
        }
        if source("rate") == Some(ValueSource::EnvVariable) {
            self.rate = None;
        }
        if source("rate_profile") == Some(ValueSource::EnvVariable) {
            self.rate_profile = None;
        }
        if source("concurrency") == Some(ValueSource::EnvVariable) {
            self.concurrency = None;
        }
    }

    /// The settings of a `redwatch load` run: 10 s unless --duration or --requests bounds it.
    pub fn settings(self) -> Result<LoadSettings, clap::Error> {
        let duration = match (self.duration, self.requests) {
            (None, None) => Some(DEFAULT_RUN_LENGTH),
            (duration, _) => duration,
        };
        let mode = match (self.rate, self.rate_profile, self.concurrency) {
            (Some(rate), None, None) => Mode::Open(RateProfile::Constant(rate)),
            (None, Some(profile), None) => Mode::Open(
                profile
                    .resolve(duration)
                    .map_err(|err| crate::invalid(format!("invalid --rate-profile: {err:#}")))?,
            ),
            (None, None, Some(concurrency)) => Mode::Closed(concurrency),
            (None, None, None) => {
                return Err(crate::invalid(
                    "give --rate RPS or --rate-profile SPEC (open loop), or --concurrency N (closed loop)",
                ));
            }
            _ => {
                return Err(crate::invalid(
                    "--rate, --rate-profile and --concurrency exclude each other: give one",
                ));
            }
        };
        let (mode, requests) = match self.shard {
            Some(shard) => sharded(shard, mode, self.requests)?,
            None => (mode, self.requests),
        };
        if let Mode::Open(profile) = &mode
            && duration.is_none()
            && profile.final_rate().is_some_and(|rate| rate <= 0.0)
        {
            return Err(crate::invalid(
                "the --rate-profile ends at rate 0 and no --duration is set: the run would never end",
            ));
        }
        let scenario = match &self.scenario {
            Some(file) => Some(Arc::new(
                Scenario::load(file, self.shard)
                    .map_err(|err| crate::invalid(format!("{err:#}")))?,
            )),
            None => None,
        };
        let mix = scenario
            .as_ref()
            .map_or(self.mix, |scenario| scenario.mix().clone());
        let tls = match (self.target.tls, &self.cacert, self.insecure) {
            (true, cacert, insecure) => Some(Arc::new(
                super::tls::client_config(cacert.as_deref(), insecure)
                    .map_err(|err| crate::invalid(format!("{err:#}")))?,
            )),
            (false, None, false) => None,
            (false, _, _) => {
                return Err(crate::invalid(
                    "--cacert and --insecure apply to https:// targets only",
                ));
            }
        };
        if self.h2c && self.target.tls {
            return Err(crate::invalid(
                "--h2c is HTTP/2 without TLS; an https target gets HTTP/2 by ALPN",
            ));
        }
        let compare_server = match (self.compare_server, self.server_metrics) {
            (false, None) => None,
            (false, Some(_)) => {
                return Err(crate::invalid("--server-metrics needs --compare-server"));
            }
            (true, url) => {
                let url = match url {
                    Some(url) => url,
                    None => self
                        .target
                        .metrics_url()
                        .map_err(|err| crate::invalid(format!("{err:#}")))?,
                };
                let tls = match (url.scheme_str(), &tls) {
                    (Some("https"), Some(tls)) => Some(Arc::clone(tls)),
                    (Some("https"), None) => Some(Arc::new(
                        super::tls::client_config(None, false)
                            .map_err(|err| crate::invalid(format!("{err:#}")))?,
                    )),
                    _ => None,
                };
                Some(MetricsSource { url, tls })
            }
        };
        let thresholds = checked_thresholds(self.thresholds, self.fail_on_error_rate, &mix, &mode)?;
        Ok(LoadSettings {
            target: self.target,
            mode,
            mix,
            scenario,
            headers: self.headers.into_iter().collect(),
            traceparent: self.traceparent,
            seed: self.seed.unwrap_or_else(rand::random),
            timeout: self.timeout,
            duration,
            requests,
            max_in_flight: self.max_in_flight,
            thresholds,
            json: self.json,
            timeline: self.timeline,
            metrics_listen: self.metrics_listen,
            linger: self.linger,
            h2c: self.h2c,
            shard: self.shard,
            compare_server,
            tls,
            connections: self.connections,
        })
    }
}

/// Shard `shard`'s part of the run: 1/N of the rate, or of the connections; 1/N of the
/// requests.
fn sharded(
    shard: Shard,
    mode: Mode,
    requests: Option<u64>,
) -> Result<(Mode, Option<u64>), clap::Error> {
    let mode = match mode {
        Mode::Open(profile) => Mode::Open(profile.scaled(1.0 / shard.count as f64)),
        Mode::Closed(concurrency) => {
            let share = shard.share(concurrency as u64);
            if share == 0 {
                return Err(crate::invalid(format!(
                    "--shard {shard}: --concurrency {concurrency} leaves this shard no connection"
                )));
            }
            Mode::Closed(usize::try_from(share).unwrap_or(usize::MAX))
        }
    };
    let requests = match requests.map(|n| (n, shard.share(n))) {
        Some((n, 0)) => {
            return Err(crate::invalid(format!(
                "--shard {shard}: --requests {n} leaves this shard no request"
            )));
        }
        other => other.map(|(_, share)| share),
    };
    Ok((mode, requests))
}

/// The thresholds, each checked against the mix and the mode: an endpoint it names must be in
/// the mix, and `rate` needs a target rate (open loop).
fn checked_thresholds(
    mut thresholds: Vec<Threshold>,
    fail_on_error_rate: Option<f64>,
    mix: &Mix,
    mode: &Mode,
) -> Result<Vec<Threshold>, clap::Error> {
    let labels: Vec<String> = mix.entries().iter().map(|e| e.label()).collect();
    for threshold in &thresholds {
        if let Some(endpoint) = &threshold.endpoint
            && !labels.contains(endpoint)
        {
            return Err(crate::invalid(format!(
                "invalid --threshold {:?}: no endpoint {endpoint:?} in the mix (endpoints: {})",
                threshold.expr,
                labels.join(", ")
            )));
        }
        if threshold.metric == Metric::Rate && matches!(mode, Mode::Closed(_)) {
            return Err(crate::invalid(format!(
                "invalid --threshold {:?}: rate compares with the target rate, which only an \
                 open-loop run (--rate, --rate-profile) has",
                threshold.expr
            )));
        }
    }
    thresholds.extend(fail_on_error_rate.map(Threshold::error_rate_at_most));
    Ok(thresholds)
}

/// A value parser from a parser whose errors are `anyhow` chains, shown on one line.
fn reason<T>(
    parse: impl Fn(&str) -> anyhow::Result<T> + Clone + Send + Sync + 'static,
) -> impl Fn(&str) -> Result<T, String> + Clone + Send + Sync + 'static {
    move |text| parse(text).map_err(|err| format!("{err:#}"))
}

/// The value parser of `--mix`.
pub fn mix_flag(text: &str) -> Result<Mix, String> {
    Mix::parse(text).map_err(|err| format!("{err:#}"))
}

/// A value parser for a whole number in `min..=max`.
fn count<T>(min: T, max: T) -> impl Fn(&str) -> Result<T, String> + Clone + Send + Sync + 'static
where
    T: std::str::FromStr + PartialOrd + Copy + std::fmt::Display + Send + Sync + 'static,
{
    move |text| {
        text.trim()
            .parse::<T>()
            .ok()
            .filter(|v| *v >= min && *v <= max)
            .ok_or_else(|| format!("expected a whole number from {min} to {max}"))
    }
}

/// Requests per second: finite and greater than zero.
pub fn rate_flag(text: &str) -> Result<f64, String> {
    match text.trim().parse::<f64>() {
        Ok(rate) if rate.is_finite() && rate > 0.0 => Ok(rate),
        _ => Err("expected requests per second greater than zero, e.g. 100".to_owned()),
    }
}

/// A duration greater than zero.
pub fn positive_duration(text: &str) -> Result<Duration, String> {
    let duration = duration_flag(text)?;
    if duration.is_zero() {
        return Err("must be greater than zero".to_owned());
    }
    Ok(duration)
}

fn parse_fraction(text: &str) -> Result<f64, String> {
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
        .ok_or_else(|| "expected a fraction 0..1 (e.g. 0.01) or a percentage (e.g. 1%)".to_owned())
}

/// `-` or a file in an existing directory: an unwritable path is refused before the run, not
/// after it.
fn parse_json_output(text: &str) -> Result<JsonOutput, String> {
    if text == "-" {
        return Ok(JsonOutput::Stdout);
    }
    let path = PathBuf::from(text);
    if path.file_name().is_none() {
        return Err("expected a file path or -".to_owned());
    }
    let dir = path
        .parent()
        .filter(|dir| !dir.as_os_str().is_empty())
        .unwrap_or(std::path::Path::new("."));
    if !dir.is_dir() {
        return Err(format!("the directory {} does not exist", dir.display()));
    }
    Ok(JsonOutput::File(path))
}

/// An http:// URL with a host.
fn parse_metrics_url(text: &str) -> anyhow::Result<hyper::Uri> {
    use anyhow::Context;
    let uri: hyper::Uri = text
        .trim()
        .parse()
        .ok()
        .with_context(|| format!("{text:?} is not a URL"))?;
    if !matches!(uri.scheme_str(), Some("http" | "https")) || uri.host().is_none() {
        anyhow::bail!(
            "{text:?}: expected an http:// or https:// URL, e.g. http://127.0.0.1:9090/metrics"
        );
    }
    Ok(uri)
}

/// A file in an existing directory (checked before the run, not after it).
fn parse_timeline(text: &str) -> Result<PathBuf, String> {
    match parse_json_output(text)? {
        JsonOutput::File(path) => Ok(path),
        JsonOutput::Stdout => Err("expected a file path".to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_and_fractions_keep_their_bounds() {
        assert_eq!(count(1usize, 10)("10"), Ok(10));
        assert!(count(1usize, 10)("0").is_err());
        assert!(count(1usize, 10)("11").is_err());
        assert_eq!(parse_fraction("1%"), Ok(0.01));
        assert_eq!(parse_fraction("0.5"), Ok(0.5));
        assert!(parse_fraction("150%").is_err());
        assert_eq!(rate_flag("0.5"), Ok(0.5));
        for bad in ["0", "-1", "NaN", "inf", "fast", ""] {
            assert!(rate_flag(bad).is_err(), "{bad:?}");
        }
        assert!(positive_duration("0s").is_err());
        assert_eq!(positive_duration("3s"), Ok(Duration::from_secs(3)));
    }

    #[test]
    fn an_embedded_open_loop_has_the_flags_defaults_and_no_end() {
        let target: Target = "http://127.0.0.1:5000".parse().unwrap();
        let settings = LoadSettings::open_loop(target, 20.0).unwrap();
        assert_eq!(settings.mode, Mode::Open(RateProfile::Constant(20.0)));
        assert_eq!(settings.mix.to_string(), DEFAULT_MIX);
        assert_eq!(settings.timeout, Duration::from_secs(2));
        assert_eq!(settings.max_in_flight, 1000);
        assert_eq!((settings.duration, settings.requests), (None, None));
    }

    #[test]
    fn shards_split_the_run() {
        let shard = |text: &str| Shard::parse(text).unwrap();
        assert_eq!(shard("1/4"), Shard { index: 1, count: 4 });
        for bad in ["4/4", "0/0", "1", "a/4", "-1/4", "1/4/2"] {
            assert!(Shard::parse(bad).is_err(), "{bad:?}");
        }
        let shares: Vec<u64> = (0..4).map(|i| shard(&format!("{i}/4")).share(10)).collect();
        assert_eq!(shares, [3, 3, 2, 2]);
        assert_ne!(shard("0/4").seed(7), shard("1/4").seed(7));
        let (mode, requests) = sharded(
            shard("3/4"),
            Mode::Open(RateProfile::Constant(100.0)),
            Some(9),
        )
        .unwrap();
        assert_eq!(
            (mode, requests),
            (Mode::Open(RateProfile::Constant(25.0)), Some(2))
        );
        assert!(sharded(shard("3/4"), Mode::Closed(3), None).is_err());
        assert!(sharded(shard("3/4"), Mode::Closed(8), Some(3)).is_err());
    }

    #[test]
    fn a_ramp_without_length_lasts_the_run() {
        let flag = RateProfileFlag::parse("ramp:0..100").unwrap();
        assert!(flag.resolve(None).is_err());
        assert_eq!(
            flag.resolve(Some(Duration::from_secs(5))).unwrap(),
            RateProfile::Ramp {
                from: 0.0,
                to: 100.0,
                over: 5.0
            }
        );
    }
}

//! Live proof of every generated alert, end to end: a real Prometheus evaluates the rules exactly
//! as `redwatch generate` wrote them (windows compressed to seconds), a real Alertmanager runs the
//! generated configuration, and a webhook receiver of the test records what Alertmanager delivers.
//!
//! Each case is its own scrape job (`--job live-CASE`, generated into its own directory) with its
//! own `redwatch serve` instances and `redwatch load` runs; one Prometheus scrapes the union of
//! the cases' jobs and loads all their rule files, and the cases run concurrently. Every alert
//! name found in the generated rule files must be claimed by a case (see [`CASES`]), so a new
//! alert without a live case fails the test before anything runs.
//!
//! Prometheus first scrapes every job without rules; the rules are then loaded by a reload, and
//! the cases start together. Timeline, from that start (the generator's "day" is 1m and its
//! "week" 2m, see [`generator_flags`]):
//!
//! - `live-errors` (2 instances, healthy load): nothing may fire during a steady warm-up of
//!   [`ANOMALY_WARMUP`] (≈3 min: anomaly predictions need a week and a day of history); then
//!   `/error` requests are added on top of the healthy load until the error-budget burn (every
//!   tier: page and ticket), error-ratio breach and error-ratio anomaly alerts all fire, at most
//!   [`FAULT_CAP`]; then the errors stop and every one of them must resolve.
//! - `live-latency`: the same, [`STAGGER`] later; the fault restarts both instances on their
//!   ports with a large `--latency-scale` (latency budget burn, average latency breach, latency
//!   anomaly) and the recovery restarts them with the healthy one.
//! - `live-rate`: the same, another [`STAGGER`] later; the fault doubles the request rate of the
//!   same mix (request-rate anomaly).
//! - `live-targets` (2 instances): after [`TARGETS_WARMUP`] one instance is killed (ApiTargetDown
//!   for it), then the other (ApiAllTargetsDown; the second ApiTargetDown fires in Prometheus but
//!   must never be delivered, since the generated Alertmanager configuration inhibits it); then
//!   both restart on their ports and everything resolves.
//! - `live-absent` (2 instances exposing the flask preset while the rules expect OpenTelemetry
//!   names): ApiMetricsAbsent fires; the instances restart with the right preset and it resolves.
//! - `live-quiet` (2 instances, a seed-like healthy mix at a steady rate for the whole run): no
//!   alert of its job ever fires (ALERTS polled every second until every other case has finished,
//!   at least [`QUIET_MIN`]) and the webhook never hears of it.
//! - rule scoping: at [`SCOPING_CHECK_AT`], every recording rule's expression is evaluated; each
//!   must yield series of its own job only, or the groups of the jobs sharing this Prometheus
//!   overwrite each other's series.
//!
//! The whole run takes about four minutes.
//!
//! For every expected alert (every severity tier its rule file defines) the test asserts that
//! `ALERTS{alertstate="firing",alertname=...,job=...}` shows it in time, that the webhook receives
//! it firing with the labels `severity` and `job` and non-empty `summary`, `description` and
//! `runbook_url` annotations, and that once the fault is gone ALERTS no longer has it and the
//! webhook receives it `resolved`. A failure prints the query, what was expected and what was
//! measured (including the rule expression and its recorded series evaluated at that moment), the
//! webhook deliveries and Alertmanager's view of the job, and the tails of the Prometheus and
//! Alertmanager logs.
//!
//! Everything the test starts is killed and reaped on success, failure or panic, every loop is
//! bounded, and all traffic stays on 127.0.0.1. Fails (instead of skipping) when `CI` is set and
//! `prometheus` or `prometheus-alertmanager` is missing. With `ALERTS_LIVE_KEEP` set, a failing
//! run keeps its temporary directory (generated files, configurations, logs, Prometheus data).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::thread;
use std::time::{Duration, Instant};

use crate::support;
use crate::support::generate::{compressed_with, generate_ok, yaml};
use crate::support::http::{get_json, post};
use crate::support::live_stack::{
    Delivery, Sample, Serve, StopOnDrop, Webhook, WebhookLog, alertmanager_alerts, daemon, load,
    pause, query, tail, wait_ready, wait_traffic,
};
use crate::support::process::{Proc, free_port, loopback};
use crate::support::tools::require_tool;

/// The generator's settings for a live run: the shared compressed settings (windows of
/// seconds), except for the length of a "week".
///
/// A "day" is a minute and a "week" two minutes (the shortest the generator accepts: two days).
/// Anomaly predictions need a week and a day of recorded history, so the five-minute week of
/// [`COMPRESSED`](crate::support::generate::COMPRESSED) would keep every anomaly alert silent
/// for the first six minutes; with two, the anomaly cases can inject their faults after three.
fn generator_flags() -> Vec<String> {
    compressed_with(&[("--anomaly-week", "2m")])
}

/// Which case proves which alert. Every alert of the generated rule files must appear here.
const CASES: &[CaseDef] = &[
    CaseDef {
        job: "live-errors",
        kind: Kind::Errors,
        naming: "otel",
        latency_scale: BASE_SCALE,
        covers: &[
            "ApiErrorBudgetBurn",
            "ApiErrorRatioBreach",
            "ApiErrorRatioAnomaly",
        ],
    },
    CaseDef {
        job: "live-latency",
        kind: Kind::Latency,
        naming: "otel",
        latency_scale: BASE_SCALE,
        covers: &[
            "ApiLatencyBudgetBurn",
            "ApiLatencyAverageBreach",
            "ApiLatencyAverageAnomaly",
        ],
    },
    CaseDef {
        job: "live-rate",
        kind: Kind::Rate,
        naming: "otel",
        latency_scale: BASE_SCALE,
        covers: &["ApiRequestRateAnomaly"],
    },
    CaseDef {
        job: "live-targets",
        kind: Kind::Targets,
        naming: "otel",
        latency_scale: BASE_SCALE,
        covers: &["ApiTargetDown", "ApiAllTargetsDown"],
    },
    CaseDef {
        job: "live-absent",
        kind: Kind::Absent,
        naming: "flask",
        latency_scale: BASE_SCALE,
        covers: &["ApiMetricsAbsent"],
    },
    CaseDef {
        job: "live-quiet",
        kind: Kind::Quiet,
        naming: "otel",
        latency_scale: QUIET_SCALE,
        covers: &[],
    },
];

/// Instances per case.
const INSTANCES: usize = 2;
/// A seed-like healthy mix: no errors, every request well under the latency thresholds.
const HEALTHY_MIX: &str = "/ep_one=4,/ep_two=3,/ep_three=2,/ep_four=1";
/// Healthy latency: the slowest endpoint sleeps at most 0.2·4·0.1 = 80 ms, far from the 250 ms
/// of the latency SLO even when this VM oversleeps.
const BASE_SCALE: f64 = 0.1;
/// Healthy latency of the quiet case, which runs the longest, while the other cases' faults (and
/// whatever else shares this machine) load the CPU: a mean of 50 ms makes the 20 % anomaly band
/// about 10 ms wide (at 0.1 its 5 ms floor was crossed for a moment), while the slowest endpoint
/// (at most 200 ms) stays clear of the 250 ms of the latency SLO.
const QUIET_SCALE: f64 = 0.25;
/// The latency fault: mean sleep of the healthy mix 0.2·4 = 0.8 s, most requests over 250 ms.
const SLOW_SCALE: f64 = 4.0;
/// Steady load per instance, requests per second. The mean of the healthy mix's uniform sleeps
/// has a relative standard deviation of 0.82/√n over n requests: 50 requests per second per job
/// (250 in a 5 s rate window) keep the noise of signal minus prediction (two such windows, since
/// the compressed reference window is as short as the rate window) at a third of the 20 % band.
const RATE: f64 = 25.0;
/// Steady load per instance of the quiet case, which is exposed to the anomaly rules for longest:
/// 100 requests per second per job put the 20 % band at about 4 standard deviations.
const QUIET_RATE: f64 = 50.0;
/// The error fault: `/error` requests per second per instance on top of the healthy load (about
/// a quarter of all requests fail).
const ERROR_RATE: f64 = 8.0;
/// The rate fault: extra requests per second per instance (the rate doubles, five times the
/// 20 % band).
const EXTRA_RATE: f64 = RATE;

/// Steady load before the faults of the anomaly cases: a prediction exists once the "day" a
/// "week" ago (3m to 2m ago) holds 75 % as many samples as the last one, 2m45s after the rules
/// were loaded; plus margin.
const ANOMALY_WARMUP: Duration = Duration::from_secs(185);
/// The anomaly cases start their faults this far apart, so that the bursts of starting processes
/// do not coincide.
const STAGGER: Duration = Duration::from_secs(4);
/// Steady load before the first instance of `live-targets` is killed.
const TARGETS_WARMUP: Duration = Duration::from_secs(15);
/// The faults last until every expected alert fires, at most this long: under half a "day", or
/// the fault would move the daily median its prediction is corrected by.
const FAULT_CAP: Duration = Duration::from_secs(28);
/// How long the fault of `live-absent` (present from the start) may take to fire.
const ABSENT_CAP: Duration = Duration::from_secs(60);
/// How long a target alert may take to fire after the kill.
const TARGET_CAP: Duration = Duration::from_secs(45);
/// How long a delivery may take once the alert fires in Prometheus.
const DELIVERY_LIMIT: Duration = Duration::from_secs(30);
/// How long everything may take to resolve (and be delivered resolved) once the fault is gone.
const RESOLVE_LIMIT: Duration = Duration::from_secs(120);
/// How long `live-targets` watches for a (wrongly) delivered ApiTargetDown while
/// ApiAllTargetsDown fires: several Alertmanager group intervals.
const INHIBIT_WATCH: Duration = Duration::from_secs(10);
/// Upper bound of every load run and of the whole case phase (longer than the slowest failing
/// path of a case: warm-up, fault cap and resolve limit).
const RUN_LIMIT: Duration = Duration::from_secs(400);
/// The quiet case runs at least this long (anomaly baselines learned, faults of the others done).
const QUIET_MIN: Duration = Duration::from_secs(230);
/// Anomaly signals as recorded by the generated rules, for the quiet case's informational margin
/// (`SIGNAL_upper_band` is the band); not an assertion, so a renamed series only prints 0 %.
const ANOMALY_SIGNALS: [(&str, &str); 3] = [
    ("request rate", "job:redwatch_http_requests:rate5s"),
    (
        "average latency",
        "job:redwatch_http_request_duration_seconds:mean_rate5s",
    ),
    (
        "error ratio",
        "job:redwatch_http_errors_per_request:ratio_rate5s",
    ),
];
/// When the recording rules' results are checked for other jobs' series (every case has data).
const SCOPING_CHECK_AT: Duration = Duration::from_secs(60);
/// Polling period of every wait.
const POLL: Duration = Duration::from_secs(1);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Errors,
    Latency,
    Rate,
    Targets,
    Absent,
    Quiet,
}

struct CaseDef {
    job: &'static str,
    kind: Kind,
    /// Naming preset the instances start with (the rules are always generated for otel).
    naming: &'static str,
    /// `--latency-scale` of the healthy instances.
    latency_scale: f64,
    /// Alert names this case proves.
    covers: &'static [&'static str],
}

/// An alerting rule as generated.
#[derive(Debug, Clone)]
struct RuleAlert {
    name: String,
    severity: String,
    expr: String,
}

/// A recording rule as generated.
#[derive(Debug, Clone)]
struct Recording {
    group: String,
    name: String,
    expr: String,
    /// A `job` label the rule sets itself.
    job_label: Option<String>,
}

/// An alert a case waits for: of its job, optionally of one tier or one instance.
#[derive(Debug, Clone)]
struct Expect {
    name: String,
    severity: Option<String>,
    instance: Option<String>,
}

impl Expect {
    fn new(name: &str) -> Self {
        Self {
            name: name.to_owned(),
            severity: None,
            instance: None,
        }
    }

    fn instance(mut self, instance: String) -> Self {
        self.instance = Some(instance);
        self
    }

    /// Label matchers selecting this alert of `job`.
    fn matchers(&self, job: &str) -> String {
        let mut matchers = format!("alertname=\"{}\",job=\"{job}\"", self.name);
        if let Some(severity) = &self.severity {
            matchers.push_str(&format!(",severity=\"{severity}\""));
        }
        if let Some(instance) = &self.instance {
            matchers.push_str(&format!(",instance=\"{instance}\""));
        }
        matchers
    }

    fn matches(&self, job: &str, labels: &BTreeMap<String, String>) -> bool {
        let is = |name: &str, value: &str| labels.get(name).is_some_and(|v| v == value);
        is("alertname", &self.name)
            && is("job", job)
            && self.severity.as_deref().is_none_or(|s| is("severity", s))
            && self.instance.as_deref().is_none_or(|i| is("instance", i))
    }
}

impl std::fmt::Display for Expect {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.name)?;
        let mut labels = Vec::new();
        if let Some(severity) = &self.severity {
            labels.push(format!("severity={severity}"));
        }
        if let Some(instance) = &self.instance {
            labels.push(format!("instance={instance}"));
        }
        if !labels.is_empty() {
            write!(f, "{{{}}}", labels.join(","))?;
        }
        Ok(())
    }
}

/// What the cases share.
struct Shared {
    prometheus: SocketAddr,
    alertmanager: SocketAddr,
    webhook: WebhookLog,
    t0: Instant,
    stop: Arc<AtomicBool>,
}

impl Shared {
    fn log(&self, job: &str, message: &str) {
        eprintln!(
            "[{:6.1}s] {job}: {message}",
            self.t0.elapsed().as_secs_f64()
        );
    }

    fn pause(&self) -> Result<(), String> {
        pause(&self.stop, POLL)
    }

    fn alerts(&self, matchers: &str) -> Result<Vec<Sample>, String> {
        query(self.prometheus, &format!("ALERTS{{{matchers}}}"))
    }
}

/// One case at run time.
struct Case {
    job: &'static str,
    serves: Vec<Serve>,
    loads: Vec<Proc>,
    fault_loads: Vec<Proc>,
    rules: Vec<RuleAlert>,
    start: Instant,
    /// One line per proven alert, for the summary.
    notes: Vec<String>,
}

impl Case {
    /// Every (alert, severity) pair of the generated rules among `names`.
    fn expected(&self, names: &[&str]) -> Vec<Expect> {
        let mut expected: Vec<Expect> = Vec::new();
        for rule in self
            .rules
            .iter()
            .filter(|r| names.contains(&r.name.as_str()))
        {
            if !expected.iter().any(|e| {
                e.name == rule.name && e.severity.as_deref() == Some(rule.severity.as_str())
            }) {
                expected.push(Expect {
                    name: rule.name.clone(),
                    severity: Some(rule.severity.clone()),
                    instance: None,
                });
            }
        }
        expected
    }

    fn start_loads(&mut self, rate: f64) -> Result<(), String> {
        for serve in &self.serves {
            self.loads
                .push(load(serve.addr(), rate, RUN_LIMIT, HEALTHY_MIX)?);
        }
        Ok(())
    }

    /// `Err` when a load run ended before its time.
    fn check_loads(&mut self) -> Result<(), String> {
        for load in self.loads.iter_mut().chain(&mut self.fault_loads) {
            if let Some(exit) = load.exited() {
                return Err(format!("{}: {exit}", self.job));
            }
        }
        Ok(())
    }

    fn restart_all(&mut self, naming: &str, latency_scale: f64) -> Result<(), String> {
        for serve in &mut self.serves {
            serve.restart(naming, latency_scale)?;
        }
        Ok(())
    }
}

fn secs(duration: Duration) -> String {
    format!("{:.1}s", duration.as_secs_f64())
}

// ------------------------------------------------------------------------------------------
// Setup
// ------------------------------------------------------------------------------------------

/// The alerting and recording rules of every rule file in `dir`, all groups.
fn read_rules(dir: &Path) -> (Vec<RuleAlert>, Vec<Recording>) {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|err| panic!("read {}: {err}", dir.display()))
        .map(|entry| entry.expect("directory entry").path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "yml"))
        .collect();
    files.sort();
    let mut alerts = Vec::new();
    let mut records = Vec::new();
    for file in files {
        let rules = yaml(&file);
        for group in rules["groups"].as_sequence().into_iter().flatten() {
            for rule in group["rules"].as_sequence().into_iter().flatten() {
                if let Some(name) = rule["record"].as_str() {
                    records.push(Recording {
                        group: group["name"].as_str().unwrap_or_default().to_owned(),
                        name: name.to_owned(),
                        expr: rule["expr"].as_str().unwrap_or_default().to_owned(),
                        job_label: rule["labels"]["job"].as_str().map(str::to_owned),
                    });
                }
                if let Some(name) = rule["alert"].as_str() {
                    alerts.push(RuleAlert {
                        name: name.to_owned(),
                        severity: rule["labels"]["severity"]
                            .as_str()
                            .unwrap_or_default()
                            .to_owned(),
                        expr: rule["expr"].as_str().unwrap_or_default().to_owned(),
                    });
                }
            }
        }
    }
    (alerts, records)
}

fn generator_args(job: &str, targets: &str, alertmanager: u16, webhook: SocketAddr) -> Vec<String> {
    let mut args = generator_flags();
    for pair in [
        ["--naming", "otel"],
        ["--job", job],
        ["--api-targets", targets],
        ["--load-targets", ""],
        ["--extra-targets", ""],
        ["--alertmanager", &format!("127.0.0.1:{alertmanager}")],
        ["--webhook-url", &format!("http://{webhook}/alerts")],
    ] {
        args.extend(pair.map(str::to_owned));
    }
    args
}

/// One Prometheus configuration for all cases: the generated global and alerting sections, the
/// union of the cases' scrape jobs, and their rule files (paths made absolute, files unchanged).
fn union_prometheus_config(dirs: &[PathBuf]) -> serde_yaml_ng::Value {
    let mut config = yaml(&dirs[0].join("prometheus/prometheus.yml"));
    let mut scrape = Vec::new();
    let mut rule_files = Vec::new();
    for dir in dirs {
        let case = yaml(&dir.join("prometheus/prometheus.yml"));
        assert_eq!(case["global"], config["global"], "{}", dir.display());
        assert_eq!(case["alerting"], config["alerting"], "{}", dir.display());
        scrape.extend(
            case["scrape_configs"]
                .as_sequence()
                .cloned()
                .unwrap_or_default(),
        );
        for file in case["rule_files"].as_sequence().into_iter().flatten() {
            let file = file.as_str().expect("rule file path");
            let path = dir.join("prometheus").join(file);
            rule_files.push(serde_yaml_ng::Value::from(path.display().to_string()));
        }
    }
    config["scrape_configs"] = serde_yaml_ng::Value::Sequence(scrape);
    config["rule_files"] = serde_yaml_ng::Value::Sequence(rule_files);
    config
}

/// Polls until Prometheus has scraped every job (an `up` series each).
fn wait_scraped(prometheus: SocketAddr, jobs: &[&str], limit: Duration) -> Result<(), String> {
    let deadline = Instant::now() + limit;
    let mut missing = Vec::new();
    while Instant::now() < deadline {
        match query(prometheus, "count by (job) (up)") {
            Ok(samples) => {
                missing = jobs
                    .iter()
                    .filter(|job| !samples.iter().any(|s| s.label("job") == **job))
                    .map(|job| job.to_string())
                    .collect();
                if missing.is_empty() {
                    return Ok(());
                }
            }
            Err(err) => missing = vec![err],
        }
        thread::sleep(Duration::from_millis(200));
    }
    Err(format!(
        "Prometheus did not scrape {missing:?} within {limit:?}"
    ))
}

/// Polls until Prometheus lists `alertmanager` among its active Alertmanagers.
fn wait_alertmanager(
    prometheus: SocketAddr,
    alertmanager: SocketAddr,
    limit: Duration,
) -> Result<(), String> {
    let deadline = Instant::now() + limit;
    let mut last = String::new();
    while Instant::now() < deadline {
        match get_json(prometheus, "/api/v1/alertmanagers") {
            Ok(body) => {
                let active = &body["data"]["activeAlertmanagers"];
                if active.as_array().into_iter().flatten().any(|am| {
                    am["url"]
                        .as_str()
                        .is_some_and(|url| url.contains(&alertmanager.to_string()))
                }) {
                    return Ok(());
                }
                last = active.to_string();
            }
            Err(err) => last = err,
        }
        thread::sleep(Duration::from_millis(200));
    }
    Err(format!(
        "Prometheus did not list Alertmanager {alertmanager} within {limit:?}: {last}"
    ))
}

/// Polls until Prometheus has loaded `expected` alerting rules.
fn wait_rules(prometheus: SocketAddr, expected: usize, limit: Duration) -> Result<(), String> {
    let deadline = Instant::now() + limit;
    let mut loaded = 0;
    while Instant::now() < deadline {
        if let Ok(rules) = get_json(prometheus, "/api/v1/rules?type=alert") {
            loaded = rules["data"]["groups"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|group| group["rules"].as_array().map_or(0, Vec::len))
                .sum();
            if loaded == expected {
                return Ok(());
            }
        }
        thread::sleep(Duration::from_millis(200));
    }
    Err(format!(
        "Prometheus loaded {loaded} alerting rules, the generated files have {expected}"
    ))
}

fn write_yaml(path: &Path, value: &serde_yaml_ng::Value) {
    let text = serde_yaml_ng::to_string(value).expect("serialise YAML");
    std::fs::write(path, text).unwrap_or_else(|err| panic!("write {}: {err}", path.display()));
}

// ------------------------------------------------------------------------------------------
// Waiting and diagnosing
// ------------------------------------------------------------------------------------------

/// Polls until `until`: no alert of the job may fire meanwhile.
fn steady(sh: &Shared, case: &mut Case, until: Instant) -> Result<(), String> {
    while Instant::now() < until {
        case.check_loads()?;
        let firing = sh.alerts(&format!("alertstate=\"firing\",job=\"{}\"", case.job))?;
        if !firing.is_empty() {
            return Err(format!(
                "{}: alerts fired during the steady healthy phase ({} into the case)\n  query:    ALERTS{{alertstate=\"firing\",job=\"{}\"}}\n  expected: no series\n  measured: {}",
                case.job,
                secs(case.start.elapsed()),
                case.job,
                list(&firing)
            ) + &explain_firing(sh, case, &firing));
        }
        sh.pause()?;
    }
    Ok(())
}

fn list(samples: &[Sample]) -> String {
    if samples.is_empty() {
        return "no series".to_owned();
    }
    samples
        .iter()
        .map(|s| format!("\n    {s}"))
        .collect::<String>()
}

/// Polls ALERTS until every expected alert has been seen firing; returns when each was first
/// seen. On timeout, explains each missing one.
fn wait_firing(
    sh: &Shared,
    case: &mut Case,
    expected: &[Expect],
    since: Instant,
    deadline: Instant,
) -> Result<Vec<Instant>, String> {
    let mut seen: Vec<Option<Instant>> = vec![None; expected.len()];
    let mut last_error = None;
    loop {
        case.check_loads()?;
        match sh.alerts(&format!("alertstate=\"firing\",job=\"{}\"", case.job)) {
            Ok(firing) => {
                for (index, expect) in expected.iter().enumerate() {
                    if seen[index].is_none()
                        && firing.iter().any(|s| expect.matches(case.job, &s.labels))
                    {
                        seen[index] = Some(Instant::now());
                        sh.log(
                            case.job,
                            &format!("{expect} firing after {}", secs(since.elapsed())),
                        );
                    }
                }
            }
            Err(err) => last_error = Some(err),
        }
        if seen.iter().all(Option::is_some) {
            return Ok(seen.into_iter().flatten().collect());
        }
        if Instant::now() >= deadline {
            let mut report = format!(
                "{}: not every expected alert fired within {} of the fault",
                case.job,
                secs(deadline - since)
            );
            for (expect, seen) in expected.iter().zip(&seen) {
                if seen.is_none() {
                    report.push_str(&explain_missing(sh, case, expect));
                }
            }
            if let Some(err) = last_error {
                report.push_str(&format!("\n  last query error: {err}"));
            }
            return Err(report);
        }
        sh.pause()?;
    }
}

/// The query that did not return what was expected, and the rule's expression and the series
/// it reads as measured now.
fn explain_missing(sh: &Shared, case: &Case, expect: &Expect) -> String {
    let job = case.job;
    let mut text = format!(
        "\n- {expect}\n  query:    ALERTS{{alertstate=\"firing\",{}}}\n  expected: a firing series",
        expect.matchers(job)
    );
    let any_state = format!("ALERTS{{alertname=\"{}\",job=\"{job}\"}}", expect.name);
    match query(sh.prometheus, &any_state) {
        Ok(samples) => text.push_str(&format!(
            "\n  measured: {any_state} (any state): {}",
            list(&samples)
        )),
        Err(err) => text.push_str(&format!("\n  measured: {any_state}: {err}")),
    }
    for rule in case.rules.iter().filter(|rule| {
        rule.name == expect.name
            && expect
                .severity
                .as_deref()
                .is_none_or(|s| s == rule.severity)
    }) {
        text.push_str(&measure_expression(sh, job, &rule.expr));
    }
    text
}

/// The rules behind alerts that fired unexpectedly, measured now.
fn explain_firing(sh: &Shared, case: &mut Case, alerts: &[Sample]) -> String {
    let mut text = String::from("\n  instances:");
    for serve in &mut case.serves {
        text.push_str(&format!(" {} {};", serve.addr(), serve.status()));
    }
    for rule in case.rules.iter().filter(|rule| {
        alerts.iter().any(|s| {
            s.label("alertstate") == "firing"
                && s.label("alertname") == rule.name
                && s.label("severity") == rule.severity
        })
    }) {
        text.push_str(&format!("\n- {} (severity {})", rule.name, rule.severity));
        text.push_str(&measure_expression(sh, case.job, &rule.expr));
    }
    text
}

/// Evaluates `expr` and every series it names for `job`, now.
fn measure_expression(sh: &Shared, job: &str, expr: &str) -> String {
    let mut text = format!("\n  rule expression:\n    {}", expr.replace('\n', "\n    "));
    match query(sh.prometheus, expr) {
        Ok(samples) => text.push_str(&format!(
            "\n  expression now (empty = condition false): {}",
            list(&samples)
        )),
        Err(err) => text.push_str(&format!("\n  expression now: {err}")),
    }
    for name in series_names(expr) {
        let selector = format!("{name}{{job=\"{job}\"}}");
        match query(sh.prometheus, &selector) {
            Ok(samples) => text.push_str(&format!("\n  {selector}: {}", list(&samples))),
            Err(err) => text.push_str(&format!("\n  {selector}: {err}")),
        }
    }
    text
}

/// Metric names in a PromQL expression: recorded series (`level:metric:operation`) and names
/// followed by a selector.
fn series_names(expr: &str) -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    let mut token = String::new();
    for c in expr.chars().chain([' ']) {
        if c.is_ascii_alphanumeric() || c == '_' || c == ':' {
            token.push(c);
            continue;
        }
        let is_name = token.starts_with(|c: char| c.is_ascii_alphabetic())
            && (token.contains(':') || c == '{');
        if is_name && !names.contains(&token) {
            names.push(token.clone());
        }
        token.clear();
    }
    names
}

/// A problem with a firing delivery: labels and annotations every alert must carry.
fn incomplete(delivery: &Delivery) -> Option<String> {
    let mut missing = Vec::new();
    for label in ["alertname", "job", "severity"] {
        if delivery.label(label).is_empty() {
            missing.push(format!("label {label}"));
        }
    }
    for annotation in ["summary", "description", "runbook_url"] {
        if delivery
            .annotations
            .get(annotation)
            .is_none_or(|text| text.trim().is_empty())
        {
            missing.push(format!("annotation {annotation}"));
        }
    }
    (!missing.is_empty()).then(|| {
        format!(
            "delivered {} without {}: labels {:?}, annotations {:?}",
            delivery.label("alertname"),
            missing.join(", "),
            delivery.labels,
            delivery.annotations
        )
    })
}

/// The first firing delivery of `expect` (checked complete) and the first resolved delivery of
/// the same alert after it.
fn delivered(
    log: &WebhookLog,
    job: &str,
    expect: &Expect,
) -> Result<(Option<Delivery>, Option<Delivery>), String> {
    let deliveries = log.deliveries();
    let Some(firing) = deliveries
        .iter()
        .find(|d| d.status == "firing" && expect.matches(job, &d.labels))
    else {
        return Ok((None, None));
    };
    if let Some(problem) = incomplete(firing) {
        return Err(format!("{job}: {problem}"));
    }
    let resolved = deliveries.iter().find(|d| {
        d.status == "resolved" && d.fingerprint == firing.fingerprint && d.at >= firing.at
    });
    Ok((Some(firing.clone()), resolved.cloned()))
}

/// What the webhook received for `job`, and what Alertmanager holds for it.
fn webhook_and_alertmanager(sh: &Shared, job: &str) -> String {
    let mut text = String::from("\n  webhook deliveries of this job:");
    let deliveries: Vec<Delivery> = sh
        .webhook
        .deliveries()
        .into_iter()
        .filter(|d| d.label("job") == job)
        .collect();
    if deliveries.is_empty() {
        text.push_str(" none");
    }
    for d in deliveries {
        text.push_str(&format!(
            "\n    [{:6.1}s] {} {} severity={} instance={} fingerprint={}",
            d.at.saturating_duration_since(sh.t0).as_secs_f64(),
            d.status,
            d.label("alertname"),
            d.label("severity"),
            d.label("instance"),
            d.fingerprint
        ));
    }
    match alertmanager_alerts(sh.alertmanager, job) {
        Ok(alerts) => {
            text.push_str("\n  Alertmanager /api/v2/alerts of this job (active and suppressed):");
            if alerts.is_empty() {
                text.push_str(" none");
            }
            for (labels, state) in alerts {
                text.push_str(&format!("\n    {labels:?} state={state}"));
            }
        }
        Err(err) => text.push_str(&format!("\n  Alertmanager /api/v2/alerts: {err}")),
    }
    text
}

/// When a fault began and when its alert was first seen firing.
#[derive(Debug, Clone, Copy)]
struct Fired {
    fault: Instant,
    firing: Instant,
}

/// Waits until the expected alerts have left ALERTS (any state) and each was delivered firing
/// and then resolved; `cleared` is when the fault ended.
fn wait_resolved(
    sh: &Shared,
    case: &mut Case,
    expected: &[Expect],
    fired: &[Fired],
    cleared: Instant,
) -> Result<(), String> {
    let deadline = cleared + RESOLVE_LIMIT;
    let names: Vec<&str> = expected.iter().map(|e| e.name.as_str()).collect();
    let active_query = format!(
        "ALERTS{{job=\"{}\",alertname=~\"{}\"}}",
        case.job,
        names.join("|")
    );
    let mut gone_at = vec![None; expected.len()];
    let mut last_active = Vec::new();
    loop {
        case.check_loads()?;
        match query(sh.prometheus, &active_query) {
            Ok(active) => {
                for (index, expect) in expected.iter().enumerate() {
                    if gone_at[index].is_none()
                        && !active.iter().any(|s| expect.matches(case.job, &s.labels))
                    {
                        gone_at[index] = Some(cleared.elapsed());
                    }
                }
                last_active = active;
            }
            Err(err) => sh.log(case.job, &format!("query failed (retrying): {err}")),
        }
        let mut pending = Vec::new();
        let mut done = Vec::new();
        for (index, expect) in expected.iter().enumerate() {
            let (firing, resolved) = delivered(&sh.webhook, case.job, expect)?;
            match (&firing, &resolved, gone_at[index]) {
                (Some(firing), Some(resolved), Some(gone)) => done.push(format!(
                    "{expect}: fired {} after its fault, delivered firing {} later; {} after the fault ended gone from ALERTS, {} delivered resolved",
                    secs(fired[index].firing - fired[index].fault),
                    secs(firing.at.saturating_duration_since(fired[index].firing)),
                    secs(gone),
                    secs(resolved.at.saturating_duration_since(cleared)),
                )),
                _ => pending.push(format!(
                    "\n- {expect}\n  expected: gone from {active_query}, one webhook delivery firing and a later one resolved\n  measured: in ALERTS: {}, delivered firing: {}, delivered resolved: {}",
                    if gone_at[index].is_some() { "gone" } else { "still there" },
                    firing.is_some(),
                    resolved.is_some()
                )),
            }
        }
        if pending.is_empty() {
            for line in done {
                sh.log(case.job, &line);
                case.notes.push(line);
            }
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(format!(
                "{}: not everything resolved and was delivered within {} of the end of the fault{}\n  ALERTS now: {}{}",
                case.job,
                secs(RESOLVE_LIMIT),
                pending.concat(),
                list(&last_active),
                webhook_and_alertmanager(sh, case.job)
            ));
        }
        sh.pause()?;
    }
}

/// Waits until Alertmanager has taken over every expected alert: the webhook received it firing,
/// or Alertmanager holds it suppressed (inhibited, e.g. a ticket under its page; it is delivered
/// once the inhibition ends). Ending a fault earlier could resolve an alert within Alertmanager's
/// group wait, and an alert resolved before it was ever notified is never sent.
fn wait_handed_over(
    sh: &Shared,
    case: &Case,
    expected: &[Expect],
    deadline: Instant,
) -> Result<(), String> {
    loop {
        let held = alertmanager_alerts(sh.alertmanager, case.job).unwrap_or_default();
        let mut missing = Vec::new();
        for expect in expected {
            let (firing, _) = delivered(&sh.webhook, case.job, expect)?;
            let suppressed = held
                .iter()
                .any(|(labels, state)| state == "suppressed" && expect.matches(case.job, labels));
            if firing.is_none() && !suppressed {
                missing.push(expect.to_string());
            }
        }
        if missing.is_empty() {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(format!(
                "{}: Alertmanager neither delivered nor suppressed {missing:?} while firing\n  expected: a firing webhook delivery, or state suppressed in Alertmanager's /api/v2/alerts{}",
                case.job,
                webhook_and_alertmanager(sh, case.job)
            ));
        }
        sh.pause()?;
    }
}

/// Waits until the webhook has received `expect` with `status`; returns the delivery.
fn wait_delivery(
    sh: &Shared,
    case: &Case,
    expect: &Expect,
    status: &str,
    deadline: Instant,
) -> Result<Delivery, String> {
    loop {
        let (firing, resolved) = delivered(&sh.webhook, case.job, expect)?;
        let found = if status == "firing" { firing } else { resolved };
        if let Some(delivery) = found {
            sh.log(case.job, &format!("{expect} delivered {status}"));
            return Ok(delivery);
        }
        if Instant::now() >= deadline {
            return Err(format!(
                "{}: {expect} was not delivered {status} in time\n  expected: a webhook delivery with status {status} and labels {}{}",
                case.job,
                expect.matchers(case.job),
                webhook_and_alertmanager(sh, case.job)
            ));
        }
        sh.pause()?;
    }
}

// ------------------------------------------------------------------------------------------
// Cases
// ------------------------------------------------------------------------------------------

/// Warm-up, fault until every alert of `covers` fires, clear, everything resolves.
fn fault_case(
    sh: &Shared,
    case: &mut Case,
    covers: &[&str],
    warmup: Duration,
    inject: impl FnOnce(&mut Case) -> Result<(), String>,
    clear: impl FnOnce(&mut Case) -> Result<(), String>,
) -> Result<(), String> {
    let expected = case.expected(covers);
    steady(sh, case, case.start + warmup)?;
    sh.log(case.job, "fault on");
    inject(case)?;
    let fault = Instant::now();
    let fired = wait_firing(sh, case, &expected, fault, fault + FAULT_CAP).and_then(|fired| {
        wait_handed_over(sh, case, &expected, Instant::now() + DELIVERY_LIMIT)?;
        Ok(fired)
    });
    // Clear the fault even when a wait failed, so the report shows a quiet system.
    clear(case)?;
    let fired: Vec<Fired> = fired?
        .into_iter()
        .map(|firing| Fired { fault, firing })
        .collect();
    let cleared = Instant::now();
    sh.log(
        case.job,
        &format!("fault off after {}", secs(cleared - fault)),
    );
    wait_resolved(sh, case, &expected, &fired, cleared)
}

fn errors_case(sh: &Shared, case: &mut Case, covers: &[&str]) -> Result<(), String> {
    fault_case(
        sh,
        case,
        covers,
        ANOMALY_WARMUP,
        |case| {
            for serve in &case.serves {
                let limit = FAULT_CAP + Duration::from_secs(10);
                case.fault_loads
                    .push(load(serve.addr(), ERROR_RATE, limit, "/error=1")?);
            }
            Ok(())
        },
        |case| {
            case.fault_loads.clear();
            Ok(())
        },
    )
}

fn latency_case(sh: &Shared, case: &mut Case, covers: &[&str]) -> Result<(), String> {
    fault_case(
        sh,
        case,
        covers,
        ANOMALY_WARMUP + STAGGER,
        |case| case.restart_all("otel", SLOW_SCALE),
        |case| case.restart_all("otel", BASE_SCALE),
    )
}

fn rate_case(sh: &Shared, case: &mut Case, covers: &[&str]) -> Result<(), String> {
    fault_case(
        sh,
        case,
        covers,
        ANOMALY_WARMUP + STAGGER * 2,
        |case| {
            for serve in &case.serves {
                let limit = FAULT_CAP + Duration::from_secs(10);
                case.fault_loads
                    .push(load(serve.addr(), EXTRA_RATE, limit, HEALTHY_MIX)?);
            }
            Ok(())
        },
        |case| {
            case.fault_loads.clear();
            Ok(())
        },
    )
}

fn absent_case(sh: &Shared, case: &mut Case, covers: &[&str]) -> Result<(), String> {
    let expected = case.expected(covers);
    // The fault is there from the start: the instances expose the other preset's names.
    let fault = case.start;
    let fired: Vec<Fired> = wait_firing(sh, case, &expected, fault, fault + ABSENT_CAP)?
        .into_iter()
        .map(|firing| Fired { fault, firing })
        .collect();
    wait_handed_over(sh, case, &expected, Instant::now() + DELIVERY_LIMIT)?;
    case.restart_all("otel", BASE_SCALE)?;
    let cleared = Instant::now();
    sh.log(case.job, "instances restarted with the expected preset");
    wait_resolved(sh, case, &expected, &fired, cleared)
}

fn targets_case(sh: &Shared, case: &mut Case) -> Result<(), String> {
    let job = case.job;
    let [first, second] = [case.serves[0].addr(), case.serves[1].addr()].map(|a| a.to_string());
    let down_first = Expect::new("ApiTargetDown").instance(first.clone());
    let down_second = Expect::new("ApiTargetDown").instance(second.clone());
    let all_down = Expect::new("ApiAllTargetsDown");
    steady(sh, case, case.start + TARGETS_WARMUP)?;

    sh.log(job, &format!("killing {first}"));
    case.serves[0].kill();
    let killed = Instant::now();
    let fired_first = wait_firing(
        sh,
        case,
        std::slice::from_ref(&down_first),
        killed,
        killed + TARGET_CAP,
    )?[0];
    let delivered_first = wait_delivery(
        sh,
        case,
        &down_first,
        "firing",
        Instant::now() + DELIVERY_LIMIT,
    )?;

    sh.log(job, &format!("killing {second} too"));
    case.serves[1].kill();
    let killed_all = Instant::now();
    let both = [all_down.clone(), down_second.clone()];
    let fired_all = wait_firing(sh, case, &both, killed_all, killed_all + TARGET_CAP)?;
    let delivered_all = wait_delivery(
        sh,
        case,
        &all_down,
        "firing",
        Instant::now() + DELIVERY_LIMIT,
    )?;
    // Several group intervals during which Alertmanager would have sent the second
    // ApiTargetDown, were it not inhibited; ApiAllTargetsDown must keep firing meanwhile.
    let watch_until = Instant::now() + INHIBIT_WATCH;
    while Instant::now() < watch_until {
        let still = sh.alerts(&format!("alertstate=\"firing\",{}", all_down.matchers(job)))?;
        if still.is_empty() {
            return Err(format!(
                "{job}: ApiAllTargetsDown stopped firing although every instance is still down\n  query:    ALERTS{{alertstate=\"firing\",{}}}\n  expected: a firing series\n  measured: no series",
                all_down.matchers(job)
            ));
        }
        sh.pause()?;
    }

    // The second instance comes back first, and the first only once ApiAllTargetsDown has
    // resolved: the first's ApiTargetDown then resolves while nothing inhibits it, and its
    // resolved notification is due. Restarted together, its resolution could reach
    // Alertmanager while ApiAllTargetsDown still inhibited it, and Alertmanager sends nothing
    // for an inhibited alert, not even its resolution (seen once in CI).
    sh.log(job, "restarting the second instance");
    case.serves[1].restart("otel", BASE_SCALE)?;
    let cleared_all = Instant::now();
    wait_resolved(
        sh,
        case,
        std::slice::from_ref(&all_down),
        &[Fired {
            fault: killed_all,
            firing: fired_all[0],
        }],
        cleared_all,
    )?;
    sh.log(job, "restarting the first instance");
    case.serves[0].restart("otel", BASE_SCALE)?;
    let cleared = Instant::now();
    wait_resolved(
        sh,
        case,
        std::slice::from_ref(&down_first),
        &[Fired {
            fault: killed,
            firing: fired_first,
        }],
        cleared,
    )?;

    // Inhibition: while both instances were down, the second ApiTargetDown (which fired in
    // Prometheus, see above) was never delivered, and no ApiTargetDown was delivered at all once
    // ApiAllTargetsDown fired. (Once the second instance is back, the first's ApiTargetDown is
    // no longer inhibited and may legitimately be delivered again.)
    let wrongly: Vec<Delivery> = sh
        .webhook
        .deliveries()
        .into_iter()
        .filter(|d| d.status == "firing" && Expect::new("ApiTargetDown").matches(job, &d.labels))
        .filter(|d| d.at < cleared_all)
        .filter(|d| down_second.matches(job, &d.labels) || d.at >= fired_all[0])
        .collect();
    if !wrongly.is_empty() {
        return Err(format!(
            "{job}: ApiTargetDown was delivered firing while ApiAllTargetsDown fired for the same job (the generated Alertmanager configuration should inhibit it)\n  ALERTS showed {down_second} firing {} after the second kill; delivered: {:?}{}",
            secs(fired_all[1] - killed_all),
            wrongly
                .iter()
                .map(|d| d.label("instance").to_owned())
                .collect::<Vec<_>>(),
            webhook_and_alertmanager(sh, job)
        ));
    }
    let note = format!(
        "{down_second}: fired in Prometheus {} after the second kill and was inhibited (not delivered during the {} ApiAllTargetsDown was delivered before the restart); {down_first} delivered {} after the first kill",
        secs(fired_all[1] - killed_all),
        secs(cleared_all.saturating_duration_since(delivered_all.at)),
        secs(delivered_first.at.saturating_duration_since(killed))
    );
    sh.log(job, &note);
    case.notes.push(note);
    Ok(())
}

/// Polls the quiet job until `others_done` (and at least [`QUIET_MIN`]): nothing may fire.
fn quiet_case(sh: &Shared, case: &mut Case, others_done: impl Fn() -> bool) -> Result<(), String> {
    let job = case.job;
    let mut pending_seen: Vec<String> = Vec::new();
    let mut polls = 0u32;
    // Informational: how close each anomaly signal came to its upper band (signal / band).
    let mut closest = [0.0f64; ANOMALY_SIGNALS.len()];
    while case.start.elapsed() < RUN_LIMIT && !(others_done() && case.start.elapsed() >= QUIET_MIN)
    {
        case.check_loads()?;
        let alerts = sh.alerts(&format!("job=\"{job}\""))?;
        polls += 1;
        if alerts.iter().any(|s| s.label("alertstate") == "firing") {
            return Err(format!(
                "{job}: an alert fired under healthy steady load, {} into the run\n  query:    ALERTS{{job=\"{job}\"}}\n  expected: no firing series, ever\n  measured: {}",
                secs(case.start.elapsed()),
                list(&alerts)
            ) + &explain_firing(sh, case, &alerts));
        }
        for sample in &alerts {
            let name = sample.label("alertname").to_owned();
            if !pending_seen.contains(&name) {
                sh.log(job, &format!("(pending, not firing: {sample})"));
                pending_seen.push(name);
            }
        }
        for (max, (_, signal)) in closest.iter_mut().zip(ANOMALY_SIGNALS) {
            let ratio = format!("{signal}{{job=\"{job}\"}} / {signal}_upper_band{{job=\"{job}\"}}");
            if let Some(value) = query(sh.prometheus, &ratio)
                .ok()
                .and_then(|samples| samples.first().and_then(|s| s.value.parse::<f64>().ok()))
            {
                *max = max.max(value);
            }
        }
        sh.pause()?;
    }
    let delivered: Vec<String> = sh
        .webhook
        .deliveries()
        .into_iter()
        .filter(|d| d.label("job") == job)
        .map(|d| format!("{} {}", d.status, d.label("alertname")))
        .collect();
    if !delivered.is_empty() {
        return Err(format!(
            "{job}: the webhook received alerts of the quiet job: {delivered:?}"
        ));
    }
    let closest: Vec<String> = ANOMALY_SIGNALS
        .iter()
        .zip(closest)
        .map(|((name, _), max)| format!("{name} {:.0}%", max * 100.0))
        .collect();
    let note = format!(
        "nothing fired in {} ({polls} polls of ALERTS); pending at some point: {pending_seen:?}; highest signal / upper anomaly band: {}",
        secs(case.start.elapsed()),
        closest.join(", ")
    );
    sh.log(job, &note);
    case.notes.push(note);
    Ok(())
}

/// Every recording rule of a job's rule file must yield series of that job only. One Prometheus
/// commonly loads the rule files of several APIs (here: of every case); a rule whose result also
/// holds other jobs' series records those too, from another group at other instants, racing what
/// the other job's own rules record (and with `or 0 * ...`, overwriting it with zeros).
fn rule_scoping(sh: &Shared, recordings: &[(&str, Vec<Recording>)]) -> Result<Vec<String>, String> {
    // Once every case has recorded data.
    let at = sh.t0 + SCOPING_CHECK_AT;
    pause(&sh.stop, at.saturating_duration_since(Instant::now()))?;
    let mut offending = Vec::new();
    let mut checked = 0;
    for (job, records) in recordings {
        for record in records {
            let samples = query(sh.prometheus, &record.expr)?;
            checked += 1;
            let foreign: Vec<&str> = samples
                .iter()
                .map(|s| record.job_label.as_deref().unwrap_or(s.label("job")))
                .filter(|other| other != job)
                .collect();
            if !foreign.is_empty() {
                offending.push(format!(
                    "{job}: group {}, record {} also yields jobs {:?}\n      expr: {}",
                    record.group,
                    record.name,
                    foreign.iter().collect::<std::collections::BTreeSet<_>>(),
                    record.expr.replace('\n', " ")
                ));
            }
        }
    }
    if offending.is_empty() {
        let note = format!("all {checked} recording rules of the cases yield their own job only");
        sh.log("rule scoping", &note);
        return Ok(vec![note]);
    }
    let shown = 12;
    Err(format!(
        "rule scoping: {} of {checked} recording rules (all cases) yield series of other jobs too; with several jobs' rule files in one Prometheus their groups write each other's series (e.g. `or 0 * job:...:rate5s` zeroes another job's error rate between its own evaluations)\n  query:    each recording rule's expression, {} into the run\n  expected: series of the rule file's job only\n  measured (first {shown}):\n    {}",
        offending.len(),
        secs(SCOPING_CHECK_AT),
        offending
            .iter()
            .take(shown)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n    ")
    ))
}

fn run_case(sh: &Shared, def: &CaseDef, case: &mut Case) -> Result<(), String> {
    match def.kind {
        Kind::Errors => errors_case(sh, case, def.covers),
        Kind::Latency => latency_case(sh, case, def.covers),
        Kind::Rate => rate_case(sh, case, def.covers),
        Kind::Targets => targets_case(sh, case),
        Kind::Absent => absent_case(sh, case, def.covers),
        Kind::Quiet => unreachable!("the quiet case runs on the test's own thread"),
    }
}

fn panic_text(payload: Box<dyn std::any::Any + Send>) -> String {
    payload
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_else(|| "panic".to_owned())
}

// ------------------------------------------------------------------------------------------
// The test
// ------------------------------------------------------------------------------------------

/// The cases' instances under load, with their generated files, before monitoring starts.
struct Prepared {
    cases: Vec<Case>,
    /// The generated set of each case.
    dirs: Vec<PathBuf>,
    /// The recording rules of each case's job.
    recordings: Vec<(&'static str, Vec<Recording>)>,
}

/// Starts every case's instances (their addresses are the generated scrape targets), generates
/// the case's files, and starts its load: the API is busy before monitoring starts, as in real
/// life, so Prometheus' first scrape already finds request metrics.
fn prepare_cases(temp: &Path, alertmanager: SocketAddr, webhook: SocketAddr) -> Prepared {
    let mut prepared = Prepared {
        cases: Vec::new(),
        dirs: Vec::new(),
        recordings: Vec::new(),
    };
    for def in CASES {
        let serves: Vec<Serve> = (0..INSTANCES)
            .map(|_| Serve::start(def.naming, def.latency_scale).expect("start redwatch serve"))
            .collect();
        let targets: Vec<String> = serves.iter().map(|s| s.addr().to_string()).collect();
        let out = temp.join(def.job);
        let args = generator_args(def.job, &targets.join(","), alertmanager.port(), webhook);
        generate_ok(&out, &args.iter().map(String::as_str).collect::<Vec<_>>());
        let dir = out.join("otel");
        let (rules, records) = read_rules(&dir.join("prometheus/rules"));
        prepared.recordings.push((def.job, records));
        prepared.dirs.push(dir);
        let mut case = Case {
            job: def.job,
            serves,
            loads: Vec::new(),
            fault_loads: Vec::new(),
            rules,
            start: Instant::now(),
            notes: Vec::new(),
        };
        let rate = if def.kind == Kind::Quiet {
            QUIET_RATE
        } else {
            RATE
        };
        case.start_loads(rate).expect("start redwatch load");
        prepared.cases.push(case);
    }
    for case in &prepared.cases {
        for serve in &case.serves {
            wait_traffic(serve.addr(), Duration::from_secs(30)).expect("traffic reaches serve");
        }
    }
    prepared
}

/// Alerts on series of exporters that a test machine cannot run: cAdvisor needs a container
/// runtime. Their generated promtool tests (`resources.test.yml`) prove them on input series
/// shaped like cAdvisor's, both ways (fires, stays silent).
const PROVEN_BY_PROMTOOL: &[&str] = &["ApiContainerCpuThrottling", "ApiContainerMemoryNearLimit"];

/// Every generated alert has a live case, every claimed alert exists, and every case's rule
/// files hold the same alerts.
fn assert_every_alert_has_a_case(cases: &[Case]) {
    let mut names: Vec<&str> = cases[0].rules.iter().map(|r| r.name.as_str()).collect();
    names.dedup();
    let claimed: Vec<&str> = CASES
        .iter()
        .flat_map(|def| def.covers.iter().copied())
        .chain(PROVEN_BY_PROMTOOL.iter().copied())
        .collect();
    let unproven: Vec<&&str> = names.iter().filter(|n| !claimed.contains(n)).collect();
    assert!(
        unproven.is_empty(),
        "generated alerts without a live case in alerts_live.rs: {unproven:?}"
    );
    let stale: Vec<&&str> = claimed.iter().filter(|n| !names.contains(n)).collect();
    assert!(
        stale.is_empty(),
        "alerts_live.rs has cases for alerts the generator no longer writes: {stale:?}"
    );
    for case in cases {
        let these: Vec<&str> = case.rules.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(
            these,
            cases[0]
                .rules
                .iter()
                .map(|r| r.name.as_str())
                .collect::<Vec<_>>(),
            "{}: the rule files of the cases differ in their alerts",
            case.job
        );
    }
}

/// A running Alertmanager and Prometheus (killed on drop), and their logs.
struct Monitoring {
    _alertmanager: Proc,
    _prometheus: Proc,
    prometheus_log: PathBuf,
    alertmanager_log: PathBuf,
}

impl Monitoring {
    /// The tails of both logs, for a failure message.
    fn logs(&self) -> String {
        format!(
            "\n--- prometheus log (tail) ---\n{}\n--- alertmanager log (tail) ---\n{}",
            tail(&self.prometheus_log, 40),
            tail(&self.alertmanager_log, 40)
        )
    }
}

/// Starts Alertmanager with the generated configuration and Prometheus with the union of the
/// cases' scrape jobs, waits until every job has been scraped, then loads the rules.
///
/// Prometheus first scrapes without rules: a fresh Prometheus discovers its static targets only
/// after a few seconds, and meanwhile `absent(up{job=...})` holds; with `for` compressed to
/// seconds, ApiMetricsAbsent would fire for every job at startup. The rules are loaded by a
/// configuration reload once every job has been scraped, as when rules are deployed to a running
/// Prometheus.
fn start_monitoring(
    temp: &Path,
    binaries: (PathBuf, PathBuf),
    prepared: &Prepared,
    prometheus: SocketAddr,
    alertmanager: SocketAddr,
) -> Monitoring {
    let (prometheus_bin, alertmanager_bin) = binaries;
    let prometheus_config = union_prometheus_config(&prepared.dirs);
    let mut scrape_only = prometheus_config.clone();
    scrape_only["rule_files"] = serde_yaml_ng::Value::Sequence(Vec::new());
    let prometheus_yml = temp.join("prometheus.yml");
    write_yaml(&prometheus_yml, &scrape_only);
    let alertmanager_yml = temp.join("alertmanager.yml");
    write_yaml(
        &alertmanager_yml,
        &yaml(&prepared.dirs[0].join("alertmanager/alertmanager.yml")),
    );
    let prometheus_log = temp.join("prometheus.log");
    let alertmanager_log = temp.join("alertmanager.log");
    let monitoring = Monitoring {
        _alertmanager: daemon(
            "alertmanager",
            Command::new(alertmanager_bin)
                .arg(format!("--config.file={}", alertmanager_yml.display()))
                .arg(format!("--storage.path={}", temp.join("am-data").display()))
                .arg(format!("--web.listen-address={alertmanager}"))
                .arg("--cluster.listen-address="),
            &alertmanager_log,
        )
        .expect("start alertmanager"),
        _prometheus: daemon(
            "prometheus",
            Command::new(prometheus_bin)
                .arg(format!("--config.file={}", prometheus_yml.display()))
                .arg(format!(
                    "--storage.tsdb.path={}",
                    temp.join("prom-data").display()
                ))
                .arg(format!("--web.listen-address={prometheus}"))
                .arg("--web.enable-lifecycle"),
            &prometheus_log,
        )
        .expect("start prometheus"),
        prometheus_log,
        alertmanager_log,
    };
    for (addr, name) in [(alertmanager, "alertmanager"), (prometheus, "prometheus")] {
        if let Err(err) = wait_ready(addr, "/-/ready", Duration::from_secs(60)) {
            panic!("{name}: {err}{}", monitoring.logs());
        }
    }
    let jobs: Vec<&str> = CASES.iter().map(|def| def.job).collect();
    if let Err(err) = wait_scraped(prometheus, &jobs, Duration::from_secs(60)) {
        panic!("{err}{}", monitoring.logs());
    }
    write_yaml(&prometheus_yml, &prometheus_config);
    match post(prometheus, "/-/reload") {
        Ok(response) if response.status == 200 => {}
        other => panic!(
            "reloading Prometheus with the rules: {other:?}{}",
            monitoring.logs()
        ),
    }
    // Every rule file loaded, as generated.
    let generated: usize = prepared.cases.iter().map(|c| c.rules.len()).sum();
    if let Err(err) = wait_rules(prometheus, generated, Duration::from_secs(30)) {
        panic!("{err}{}", monitoring.logs());
    }
    // A reload also drops Prometheus' list of Alertmanagers until its discovery catches up (up
    // to several seconds); alerts sent meanwhile are lost.
    let reloaded = Instant::now();
    if let Err(err) = wait_alertmanager(prometheus, alertmanager, Duration::from_secs(30)) {
        panic!("{err}{}", monitoring.logs());
    }
    eprintln!(
        "Prometheus sends to Alertmanager again {} after the reload",
        secs(reloaded.elapsed())
    );
    monitoring
}

/// Runs every case on its own thread (the quiet case on this one, until the others are done)
/// and the rule-scoping check; the result of each, by job.
fn run_cases(
    shared: &Shared,
    cases: Vec<Case>,
    recordings: &[(&str, Vec<Recording>)],
) -> Vec<(&'static str, Result<Vec<String>, String>)> {
    let mut results = Vec::new();
    thread::scope(|scope| {
        // Stops the case threads when this closure unwinds (they are joined below otherwise).
        let _stop = StopOnDrop(shared.stop.clone());
        let mut quiet = None;
        let mut handles = vec![(
            "rule scoping",
            scope.spawn(move || rule_scoping(shared, recordings)),
        )];
        for (def, mut case) in CASES.iter().zip(cases) {
            case.start = Instant::now();
            if def.kind == Kind::Quiet {
                quiet = Some(case);
                continue;
            }
            handles.push((
                def.job,
                scope.spawn(move || run_case(shared, def, &mut case).map(|()| case.notes)),
            ));
        }
        if let Some(mut case) = quiet {
            let done = || handles.iter().all(|(_, handle)| handle.is_finished());
            let result = quiet_case(shared, &mut case, done).map(|()| case.notes);
            results.push((case.job, result));
        }
        for (job, handle) in handles {
            let result = handle
                .join()
                .unwrap_or_else(|payload| Err(format!("{job}: panicked: {}", panic_text(payload))));
            results.push((job, result));
        }
    });
    results
}

/// Prints every case's notes and returns the failures: the failed cases and malformed webhook
/// requests.
fn summarise(
    begin: Instant,
    results: &[(&str, Result<Vec<String>, String>)],
    webhook: &WebhookLog,
) -> Vec<String> {
    let mut failures = Vec::new();
    eprintln!(
        "\n== alerts_live summary ({} in all)",
        secs(begin.elapsed())
    );
    for (job, result) in results {
        match result {
            Ok(notes) => {
                for note in notes {
                    eprintln!("{job}: {note}");
                }
            }
            Err(err) => failures.push(err.clone()),
        }
    }
    let errors = webhook.errors();
    if !errors.is_empty() {
        failures.push(format!(
            "the webhook received malformed requests: {errors:?}"
        ));
    }
    failures
}

#[test]
fn every_generated_alert_fires_is_delivered_and_resolves() {
    let _heavy = support::exclusive();
    let Some(prometheus_bin) = require_tool("prometheus", "Debian package prometheus") else {
        return;
    };
    let Some(alertmanager_bin) = require_tool(
        "prometheus-alertmanager",
        "Debian package prometheus-alertmanager",
    ) else {
        return;
    };
    let begin = Instant::now();
    let temp = tempfile::tempdir().expect("temp dir");
    let webhook = Webhook::start().expect("webhook receiver");
    let alertmanager = loopback(free_port());
    let prometheus = loopback(free_port());

    let prepared = prepare_cases(temp.path(), alertmanager, webhook.addr);
    assert_every_alert_has_a_case(&prepared.cases);
    let monitoring = start_monitoring(
        temp.path(),
        (prometheus_bin, alertmanager_bin),
        &prepared,
        prometheus,
        alertmanager,
    );

    let shared = Shared {
        prometheus,
        alertmanager,
        webhook: webhook.log.clone(),
        t0: Instant::now(),
        stop: Arc::new(AtomicBool::new(false)),
    };
    eprintln!(
        "setup took {}; cases start (Prometheus {prometheus}, Alertmanager {alertmanager}, webhook {})",
        secs(begin.elapsed()),
        webhook.addr
    );
    let Prepared {
        cases, recordings, ..
    } = prepared;
    let results = run_cases(&shared, cases, &recordings);

    let failures = summarise(begin, &results, &webhook.log);
    if !failures.is_empty() && std::env::var_os("ALERTS_LIVE_KEEP").is_some() {
        eprintln!("ALERTS_LIVE_KEEP: kept {}", temp.keep().display());
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n\n{}\n{}",
        failures.len(),
        CASES.len(),
        failures.join("\n\n"),
        monitoring.logs()
    );
}

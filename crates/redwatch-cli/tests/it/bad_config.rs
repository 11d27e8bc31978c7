//! Every flag and environment variable of every subcommand, in an invalid form: the command
//! refuses it before doing anything, with one line that names the flag, and exit code 2. The
//! cases are checked against `--help`, so a new flag without a case fails this test.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use crate::support;
use crate::support::Group;
use crate::support::process::{Proc, redwatch};

/// (subcommand, flag, an invalid value). Switches (no value) appear with the value their
/// environment variable is given.
const CASES: &[(&str, &str, &str)] = &[
    ("serve", "--listen", "nowhere"),
    ("serve", "--log-level", "info,[="),
    ("serve", "--naming", "django"),
    ("serve", "--latency-scale", "-1"),
    ("serve", "--app-version", ""),
    ("serve", "--environment", ""),
    ("serve", "--metrics-listen", "nowhere"),
    ("serve", "--metrics-token", "two words"),
    ("serve", "--shutdown-grace", "forever"),
    ("serve", "--extra-series", "2000000"),
    ("serve", "--native-histograms", "maybe"),
    ("load", "--log-level", "info,[="),
    ("load", "--target", "ftp://example"),
    ("load", "--rate", "0"),
    ("load", "--rate-profile", "ramp:x"),
    ("load", "--concurrency", "0"),
    ("load", "--duration", "soon"),
    ("load", "--requests", "0"),
    ("load", "--mix", "/ep_one"),
    ("load", "--timeout", "0s"),
    ("load", "--json", "/nonexistent-redwatch-dir/summary.json"),
    ("load", "--metrics-listen", "nowhere"),
    ("load", "--linger", "later"),
    ("load", "--seed", "abc"),
    ("load", "--max-in-flight", "0"),
    ("load", "--fail-on-error-rate", "200%"),
    ("load", "--h2c", "maybe"),
    ("load", "--threshold", "p99<300"),
    (
        "load",
        "--scenario",
        "/nonexistent-redwatch-dir/scenario.yaml",
    ),
    ("load", "--header", "no colon"),
    ("load", "--header", "Content-Length: 5"),
    (
        "load",
        "--timeline",
        "/nonexistent-redwatch-dir/timeline.jsonl",
    ),
    ("load", "--compare-server", "maybe"),
    ("load", "--server-metrics", "ftp://example/metrics"),
    ("load", "--shard", "4/4"),
    ("load", "--cacert", "/nonexistent-redwatch-dir/ca.pem"),
    ("load", "--insecure", "maybe"),
    ("load", "--traceparent", "maybe"),
    ("load", "--connections", "0"),
    ("generate", "--log-level", "info,[="),
    ("generate", "--naming", "all"),
    ("generate", "--job", "bad\"job"),
    ("generate", "--load-job", ""),
    ("generate", "--slo", "100"),
    ("generate", "--latency-slo", "0"),
    ("generate", "--latency-threshold", "300ms"),
    ("generate", "--namespace", "1shop"),
    ("generate", "--const-label", "service"),
    ("generate", "--buckets", "0.5,0.25"),
    ("generate", "--out", "/etc/hostname"),
    ("generate", "--slo-period", "a month"),
    ("generate", "--page-windows", "14.4:5m/1h"),
    ("generate", "--ticket-windows", "garbage"),
    ("generate", "--rate-window", "0s"),
    ("generate", "--scrape-interval", "2m"),
    ("generate", "--evaluation-interval", "0s"),
    ("generate", "--long-evaluation-interval", "10m"),
    ("generate", "--alert-for", "x"),
    ("generate", "--anomaly-day", "2h"),
    ("generate", "--anomaly-week", "1d"),
    ("generate", "--anomaly-smoothing", "20s"),
    ("generate", "--anomaly-for", "x"),
    ("generate", "--anomaly-sigmas", "0"),
    ("generate", "--anomaly-min-change", "0"),
    ("generate", "--error-ratio-threshold", "0"),
    ("generate", "--average-latency-threshold", "0s"),
    ("generate", "--min-events", "0"),
    ("generate", "--aggregation-labels", "job"),
    ("generate", "--api-targets", "http://api:5000"),
    ("generate", "--load-targets", "http://load:9091"),
    ("generate", "--extra-targets", "node-exporter"),
    ("generate", "--alertmanager", "http://am:9093"),
    ("generate", "--webhook-url", "webhook:9000"),
    ("generate", "--prometheus-url", "prometheus:9090"),
    ("generate", "--runbook-url", "two words"),
    ("generate", "--grafana-url", "grafana:3000"),
    ("generate", "--rule-labels", "release"),
    ("generate", "--group-wait", "x"),
    ("generate", "--group-interval", "0s"),
    ("generate", "--repeat-interval", "0s"),
    ("generate", "--compose-service", "a b"),
    ("generate", "--kubernetes-pods", "namespace=redwatch"),
    ("generate", "--native-histograms", "maybe"),
    ("demo", "--listen", "nowhere"),
    ("demo", "--log-level", "info,[="),
    ("demo", "--rate", "0"),
    ("demo", "--duration", "soon"),
    ("demo", "--mix", "/ep_one"),
    ("demo", "--prometheus", "/nonexistent-redwatch-prometheus"),
    ("demo", "--prometheus-listen", "nowhere"),
    ("demo", "--scrape-interval", "0s"),
    ("demo", "--dashboard-rate-window", "soon"),
];

/// Valid flags that let each subcommand get as far as checking the one under test, without
/// touching anything outside loopback and a temporary directory.
fn base_args(subcommand: &str, out: &str) -> Vec<(&'static str, String)> {
    let args: &[(&str, &str)] = match subcommand {
        "serve" => &[("--listen", "127.0.0.1:0")],
        "load" => &[
            ("--target", "http://127.0.0.1:9"),
            ("--rate", "5"),
            ("--duration", "1s"),
        ],
        "demo" => &[
            ("--listen", "127.0.0.1:0"),
            ("--prometheus", "none"),
            ("--duration", "1s"),
        ],
        _ => &[],
    };
    let mut args: Vec<(&'static str, String)> = args
        .iter()
        .map(|(flag, value)| (*flag, (*value).to_owned()))
        .collect();
    if subcommand == "generate" {
        args.push(("--out", out.to_owned()));
    }
    args
}

/// The variable a flag reads, from `--help`.
fn help_flags(subcommand: &str) -> BTreeMap<String, Option<String>> {
    let output = redwatch()
        .args([subcommand, "--help"])
        .output()
        .expect("run --help");
    let help = String::from_utf8_lossy(&output.stdout).into_owned();
    let mut flags = BTreeMap::new();
    let mut current: Option<String> = None;
    for line in help.lines() {
        let trimmed = line.trim_start();
        let option = trimmed
            .strip_prefix("-h, ")
            .or(trimmed.strip_prefix("-V, "));
        if let Some(flag) = option.unwrap_or(trimmed).strip_prefix("--") {
            let name = format!("--{}", flag.split([' ', '=']).next().unwrap_or_default());
            flags.insert(name.clone(), None);
            current = Some(name);
        }
        if let (Some(flag), Some((_, rest))) = (&current, trimmed.split_once("[env: ")) {
            let variable = rest.split(['=', ']']).next().unwrap_or_default().to_owned();
            flags.insert(flag.clone(), Some(variable));
        }
    }
    flags.remove("--help");
    flags.remove("--version");
    flags
}

fn command(subcommand: &str) -> Command {
    let mut command = redwatch();
    command.arg(subcommand);
    command
}

/// Runs `command` to completion, or kills it after `limit` (an accepted value may start a
/// server) and returns `None`.
fn output_within(command: &mut Command, limit: Duration) -> Option<Output> {
    let mut proc = Proc::start(
        "redwatch",
        command.stdout(Stdio::null()).stderr(Stdio::piped()),
    );
    let mut stderr = proc.child.stderr.take().expect("stderr");
    let reader = std::thread::spawn(move || {
        let mut text = Vec::new();
        let _ = stderr.read_to_end(&mut text);
        text
    });
    // Past the limit, the guard kills and reaps the process.
    let status = proc.wait_within(limit)?;
    Some(Output {
        status,
        stdout: Vec::new(),
        stderr: reader.join().unwrap_or_default(),
    })
}

/// Runs the case once with the flag and once with its variable; returns the failures.
fn check(subcommand: &str, flag: &str, value: &str, variable: &str) -> Vec<String> {
    let temp = tempfile::tempdir().expect("temp dir");
    let out = temp.path().join("out");
    let base: Vec<(&str, String)> = base_args(subcommand, &out.to_string_lossy())
        .into_iter()
        .filter(|(name, _)| *name != flag)
        .collect();
    let is_switch = value == "maybe";
    let mut failures = Vec::new();
    let forms: Vec<(String, Command)> = {
        let mut forms = Vec::new();
        if !is_switch {
            let mut with_flag = command(subcommand);
            for (name, base_value) in &base {
                with_flag.arg(name).arg(base_value);
            }
            with_flag.arg(format!("{flag}={value}"));
            forms.push((format!("{flag}={value:?}"), with_flag));
        }
        let mut with_env = command(subcommand);
        for (name, base_value) in &base {
            with_env.arg(name).arg(base_value);
        }
        with_env.env(variable, value);
        forms.push((format!("{variable}={value:?}"), with_env));
        forms
    };
    for (form, mut command) in forms {
        let Some(output) = output_within(&mut command, Duration::from_secs(20)) else {
            failures.push(format!(
                "redwatch {subcommand} with {form}: accepted (still running after 20 s)"
            ));
            continue;
        };
        let stderr = String::from_utf8_lossy(&output.stderr);
        let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
        let problem = if output.status.code() != Some(2) {
            Some(format!("exit {:?}", output.status.code()))
        } else if lines.len() != 1 {
            Some(format!("{} lines", lines.len()))
        } else if !lines[0].starts_with("error: ") || !lines[0].contains(flag) {
            Some("the message does not name the flag".to_owned())
        } else {
            None
        };
        if let Some(problem) = problem {
            failures.push(format!(
                "redwatch {subcommand} with {form}: {problem}; stderr: {stderr:?}"
            ));
        }
        if out.exists() {
            failures.push(format!("redwatch {subcommand} with {form} wrote files"));
        }
    }
    failures
}

#[test]
fn every_flag_and_variable_refuses_an_invalid_value() {
    let _group = support::shared(Group::Timing);
    let mut failures = Vec::new();
    for subcommand in ["serve", "load", "generate", "demo"] {
        let flags = help_flags(subcommand);
        let cased: BTreeSet<&str> = CASES
            .iter()
            .filter(|(s, ..)| *s == subcommand)
            .map(|(_, flag, _)| *flag)
            .collect();
        for flag in flags.keys() {
            if !cased.contains(flag.as_str()) {
                failures.push(format!("redwatch {subcommand} {flag} has no invalid case"));
            }
        }
        for (_, flag, value) in CASES.iter().filter(|(s, ..)| *s == subcommand) {
            let Some(Some(variable)) = flags.get(*flag) else {
                failures.push(format!(
                    "redwatch {subcommand} {flag}: not in --help, or without a variable"
                ));
                continue;
            };
            failures.extend(check(subcommand, flag, value, variable));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

//! `redwatch generate` runs, the files it writes and the committed set, and the compressed
//! settings of the tests that run generated rules against real time.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use super::process::redwatch;

/// The repository root.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .expect("repository root")
}

/// The committed generated set.
pub fn committed_dir() -> PathBuf {
    repo_root().join("deploy/generated")
}

/// Runs `redwatch generate` with `args` (plus `--out out`) and returns its output.
pub fn generate(out: &Path, args: &[&str]) -> Output {
    redwatch()
        .arg("generate")
        .arg("--out")
        .arg(out)
        .args(args)
        .output()
        .expect("run redwatch generate")
}

/// Runs `redwatch generate` and fails the test unless it succeeded.
pub fn generate_ok(out: &Path, args: &[&str]) {
    let output = generate(out, args);
    assert!(
        output.status.success(),
        "redwatch generate {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Runs a command and fails the test with its output unless it exits successfully.
pub fn run_ok(command: &mut Command) -> String {
    let output = command
        .output()
        .unwrap_or_else(|err| panic!("cannot run {command:?}: {err}"));
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "{command:?} failed\nstdout:\n{stdout}\nstderr:\n{stderr}"
    );
    stdout + &stderr
}

/// All files below `dir`, relative to it, sorted.
pub fn files_below(dir: &Path) -> Vec<PathBuf> {
    fn walk(base: &Path, dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in
            std::fs::read_dir(dir).unwrap_or_else(|err| panic!("read {}: {err}", dir.display()))
        {
            let path = entry.expect("directory entry").path();
            if path.is_dir() {
                walk(base, &path, out);
            } else {
                out.push(path.strip_prefix(base).expect("below base").to_path_buf());
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}

/// Every panel of a Grafana dashboard, with the panels of collapsed rows (nested in them) in
/// place.
pub fn all_panels(board: &serde_json::Value) -> Vec<serde_json::Value> {
    let mut panels = Vec::new();
    for panel in board["panels"].as_array().expect("panels") {
        panels.push(panel.clone());
        panels.extend(panel["panels"].as_array().cloned().unwrap_or_default());
    }
    panels
}

pub fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|err| panic!("read {}: {err}", path.display()))
}

pub fn yaml(path: &Path) -> serde_yaml_ng::Value {
    serde_yaml_ng::from_str(&read(path))
        .unwrap_or_else(|err| panic!("{} is not YAML: {err}", path.display()))
}

/// Every rule of every group of a Prometheus rule file, in order.
pub fn rules_of(file: &serde_yaml_ng::Value) -> Vec<serde_yaml_ng::Value> {
    file["groups"]
        .as_sequence()
        .expect("groups")
        .iter()
        .flat_map(|group| group["rules"].as_sequence().cloned().unwrap_or_default())
        .collect()
}

/// Metric-name and matcher pairs of every `name{...}` selector in `expr`.
pub fn selectors(expr: &str) -> Vec<(String, String)> {
    let mut found = Vec::new();
    let mut rest = expr;
    while let Some(open) = rest.find('{') {
        let name: String = rest[..open]
            .chars()
            .rev()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == ':')
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect();
        let close = rest[open..]
            .find('}')
            .map(|i| open + i)
            .expect("closing brace");
        found.push((name, rest[open + 1..close].to_owned()));
        rest = &rest[close + 1..];
    }
    found
}

/// Compressed settings for tests that run rules against real time: seconds instead of hours.
/// A test that needs other values says which with [`compressed_with`].
pub const COMPRESSED: &[&str] = &[
    "--scrape-interval",
    "1s",
    "--evaluation-interval",
    "1s",
    "--long-evaluation-interval",
    "1s",
    "--rate-window",
    "5s",
    "--page-windows",
    "14.4:20s/5s,6:40s/10s",
    "--ticket-windows",
    "3:1m/15s,1:2m/30s",
    "--slo-period",
    "5m",
    "--alert-for",
    "5s",
    "--anomaly-for",
    "5s",
    "--anomaly-day",
    "1m",
    "--anomaly-week",
    "5m",
    "--anomaly-smoothing",
    "5s",
    "--group-wait",
    "1s",
    "--group-interval",
    "2s",
    "--repeat-interval",
    "1h",
];

/// [`COMPRESSED`] with the values of some of its flags replaced: `(flag, value)` pairs, each flag
/// one that [`COMPRESSED`] sets.
pub fn compressed_with(changes: &[(&str, &str)]) -> Vec<String> {
    let mut flags: Vec<String> = COMPRESSED.iter().map(|s| s.to_string()).collect();
    for (flag, value) in changes {
        let at = flags
            .iter()
            .position(|f| f == flag)
            .unwrap_or_else(|| panic!("{flag} is not one of the compressed settings"));
        flags[at + 1] = (*value).to_owned();
    }
    flags
}

/// `prometheus` running the generated configuration of `preset_dir` (e.g. `out/otel`), with its
/// data in `data` and its web server on `listen`; the caller adds output handling and starts it.
pub fn prometheus_command(
    binary: &Path,
    preset_dir: &Path,
    data: &Path,
    listen: std::net::SocketAddr,
) -> Command {
    let mut command = Command::new(binary);
    command
        .arg(format!(
            "--config.file={}",
            preset_dir.join("prometheus/prometheus.yml").display()
        ))
        .arg(format!("--storage.tsdb.path={}", data.display()))
        .arg(format!("--web.listen-address={listen}"));
    command
}

//! Helpers shared by the `generate_*` integration tests.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

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
    Command::new(env!("CARGO_BIN_EXE_redwatch"))
        .arg("generate")
        .arg("--out")
        .arg(out)
        .args(args)
        .env_remove("RUST_LOG")
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

/// Finds an external tool on PATH. Missing tools fail the test when `CI` is set; otherwise the
/// caller prints a notice and returns early.
pub fn tool(name: &str) -> Option<PathBuf> {
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join(name))
            .find(|candidate| candidate.is_file())
    });
    if found.is_none() {
        if std::env::var_os("CI").is_some() {
            panic!("{name} is required in CI but is not on PATH");
        }
        eprintln!(
            "NOTICE: {name} not found on PATH; skipping this check (it is required when CI is set)"
        );
    }
    found
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

pub fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|err| panic!("read {}: {err}", path.display()))
}

pub fn yaml(path: &Path) -> serde_yaml_ng::Value {
    serde_yaml_ng::from_str(&read(path))
        .unwrap_or_else(|err| panic!("{} is not YAML: {err}", path.display()))
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

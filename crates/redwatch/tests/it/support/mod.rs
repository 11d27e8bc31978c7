//! Helpers shared by the integration tests: checks of snapshots, the exposition reader (for
//! what exists only as text: derived counters, info metrics, user metrics, names; shared with
//! the CLI's tests) and the required-tool check.
#![allow(dead_code)]

#[cfg(feature = "dashboard")]
pub mod chromium;

pub mod exposition;

pub use exposition::Sample;

use std::collections::BTreeMap;

/// Parses the Prometheus 0.0.4 text `text` into its samples.
pub fn parse(text: &str) -> Vec<Sample> {
    exposition::Exposition::parse(text).samples
}

/// Renders `metrics` in the Prometheus text format and parses it.
pub fn scrape(metrics: &redwatch::Metrics) -> Vec<Sample> {
    let text = String::from_utf8(metrics.render(redwatch::Format::Prometheus)).unwrap();
    parse(&text)
}

/// Checks every histogram of an exposition: cumulative buckets never decrease and `_count`
/// equals the `+Inf` bucket. Returns the number of histogram series checked.
pub fn check_histograms(samples: &[Sample]) -> usize {
    type SeriesKey = (String, BTreeMap<String, String>);
    let mut buckets: BTreeMap<SeriesKey, Vec<(f64, f64)>> = BTreeMap::new();
    for s in samples {
        if let Some(base) = s.name.strip_suffix("_bucket") {
            let mut labels = s.labels.clone();
            let le = labels.remove("le").expect("bucket has le");
            let le = if le == "+Inf" {
                f64::INFINITY
            } else {
                le.parse().unwrap()
            };
            buckets
                .entry((base.to_owned(), labels))
                .or_default()
                .push((le, s.value));
        }
    }
    for ((base, labels), mut series) in buckets.clone() {
        series.sort_by(|a, b| a.0.partial_cmp(&b.0).unwrap());
        for pair in series.windows(2) {
            assert!(
                pair[0].1 <= pair[1].1,
                "{base}{labels:?}: buckets decrease: {series:?}"
            );
        }
        let inf = series.last().expect("has buckets");
        assert_eq!(inf.0, f64::INFINITY, "{base}{labels:?} has a +Inf bucket");
        let count = samples
            .iter()
            .find(|s| s.name == format!("{base}_count") && s.labels == labels)
            .unwrap_or_else(|| panic!("{base}{labels:?} has a _count"));
        assert_eq!(count.value, inf.1, "{base}{labels:?}: _count equals +Inf");
    }
    buckets.len()
}

/// Checks every histogram of a snapshot: cumulative buckets never decrease, the last is
/// `+Inf`, and `count` equals it. Returns the number of duration series checked.
pub fn check_snapshot(snapshot: &redwatch::Snapshot) -> usize {
    for series in &snapshot.series {
        let histograms = [
            Some(&series.duration),
            series.request_size.as_ref(),
            series.response_size.as_ref(),
        ];
        for histogram in histograms.into_iter().flatten() {
            let buckets = &histogram.buckets;
            assert!(
                buckets
                    .windows(2)
                    .all(|pair| pair[0].cumulative_count <= pair[1].cumulative_count
                        && pair[0].upper_bound < pair[1].upper_bound),
                "{series:?}: buckets decrease"
            );
            let last = buckets.last().expect("has buckets");
            assert_eq!(last.upper_bound, f64::INFINITY, "{series:?}");
            assert_eq!(histogram.count, last.cumulative_count, "{series:?}");
        }
    }
    snapshot.series.len()
}

/// Whether external tools are mandatory (under CI a missing tool fails the test).
pub fn tool_required() -> bool {
    std::env::var_os("CI").is_some_and(|v| !v.is_empty())
}

/// The path of an external tool, or `None` with a notice when it is missing; under CI a
/// missing tool fails the test instead.
pub fn tool(name: &str) -> Option<std::path::PathBuf> {
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join(name))
            .find(|candidate| candidate.is_file())
    });
    if found.is_none() {
        assert!(
            !tool_required(),
            "{name} is required in CI but is not on PATH"
        );
        eprintln!(
            "NOTICE: {name} not found on PATH; skipping this check (it is required when CI is set)"
        );
    }
    found
}

/// What `promtool check metrics` reports on `exposition` (0.0.4 text): `Ok` when it exits 0 and
/// prints nothing, which is promtool's way of finding nothing wrong.
pub fn promtool_check_metrics(promtool: &std::path::Path, exposition: &[u8]) -> Result<(), String> {
    use std::io::Write;
    let mut child = std::process::Command::new(promtool)
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .map_err(|error| format!("cannot run promtool: {error}"))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(exposition)
            .map_err(|error| format!("cannot write to promtool: {error}"))?;
    }
    let output = child
        .wait_with_output()
        .map_err(|error| format!("promtool: {error}"))?;
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    if output.status.success() && report.trim().is_empty() {
        Ok(())
    } else {
        Err(report)
    }
}

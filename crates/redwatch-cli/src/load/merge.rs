//! `redwatch load merge FILE...`: one summary from the `--json` summaries of several runs (the
//! shards of one run, or runs from several machines at once). Counts add, histograms merge,
//! and every quantile is computed again from the merged histograms, so the result is exact and
//! does not depend on the order of the files.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};

use super::client::ErrorKind;
use super::record::{EndpointStats, new_histogram};
use super::report::{RunFacts, Summary, decode_histogram};
use super::threshold::Threshold;

/// Flags of `redwatch load merge`.
#[derive(Debug, Clone, clap::Args)]
pub struct MergeArgs {
    /// `--json` summaries of `redwatch load` runs (e.g. one per `--shard`), or directories of
    /// them (their `*.json` files). The merged summary goes to stdout as JSON, its table to
    /// stderr.
    #[arg(value_name = "FILE", required = true)]
    pub files: Vec<PathBuf>,

    /// Pass/fail conditions on the merged figures, as `redwatch load --threshold`; exit status 1
    /// when one fails. [default: none]
    #[arg(long = "threshold", env = "REDWATCH_THRESHOLD", value_name = "EXPR", value_delimiter = ',',
          value_parser = |text: &str| text.parse::<Threshold>().map_err(|err| format!("{err:#}")))]
    pub thresholds: Vec<Threshold>,
}

/// Runs `redwatch load merge`.
pub fn run(args: &MergeArgs) -> anyhow::Result<ExitCode> {
    let mut files = Vec::new();
    for file in &args.files {
        files.extend(expand(file)?);
    }
    let summaries = files
        .iter()
        .map(|file| read(file))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let merged = merge(&summaries, &args.thresholds)?;
    eprint!("{}", merged.render_table());
    merged.write_json(&super::JsonOutput::Stdout)?;
    let failed: Vec<&str> = merged
        .thresholds
        .iter()
        .filter(|t| !t.passed)
        .map(|t| t.expr.as_str())
        .collect();
    if failed.is_empty() {
        Ok(ExitCode::SUCCESS)
    } else {
        eprintln!(
            "redwatch load merge: thresholds failed: {}",
            failed.join(", ")
        );
        Ok(ExitCode::from(1))
    }
}

/// A file as itself; a directory as its `*.json` files (e.g. a volume the shards wrote to).
fn expand(path: &Path) -> anyhow::Result<Vec<PathBuf>> {
    if !path.is_dir() {
        return Ok(vec![path.to_owned()]);
    }
    let mut files = Vec::new();
    for entry in
        std::fs::read_dir(path).with_context(|| format!("cannot read {}", path.display()))?
    {
        let file = entry
            .with_context(|| format!("cannot read {}", path.display()))?
            .path();
        if file.is_file() && file.extension().is_some_and(|e| e == "json") {
            files.push(file);
        }
    }
    if files.is_empty() {
        bail!("no *.json summaries in {}", path.display());
    }
    files.sort();
    Ok(files)
}

fn read(file: &Path) -> anyhow::Result<Summary> {
    let text =
        std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))?;
    serde_json::from_str(&text).with_context(|| {
        format!(
            "{} is not a `redwatch load --json` summary with histograms",
            file.display()
        )
    })
}

/// An endpoint's figures from its line of a summary.
fn endpoint_stats(endpoint: &super::report::EndpointSummary) -> anyhow::Result<EndpointStats> {
    let mut stats = EndpointStats::new();
    stats.count = endpoint.count;
    stats.bytes_received = endpoint.bytes_received;
    for (status, n) in &endpoint.status {
        let code: u16 = status
            .parse()
            .ok()
            .with_context(|| format!("status {status:?} is not a number"))?;
        stats.statuses.insert(code, *n);
    }
    for kind in ErrorKind::ALL {
        stats.errors[kind.index()] = endpoint
            .error_kinds
            .get(kind.as_str())
            .copied()
            .unwrap_or(0);
    }
    stats.from_intended =
        decode_histogram(&endpoint.histograms.latency).context("histograms.latency")?;
    stats.from_send = decode_histogram(&endpoint.histograms.latency_from_send)
        .context("histograms.latency_from_send")?;
    Ok(stats)
}

/// One endpoint's identity across summaries: (label, path, method).
type Key = (String, String, String);

/// Combines `summaries`; the same set in any order gives the same result.
pub fn merge(summaries: &[Summary], thresholds: &[Threshold]) -> anyhow::Result<Summary> {
    let Some(first) = summaries.first() else {
        bail!("nothing to merge");
    };
    for summary in summaries {
        if summary.mode != first.mode {
            bail!(
                "cannot merge an {} loop run with a {} loop run",
                first.mode,
                summary.mode
            );
        }
        if summary.target != first.target {
            bail!(
                "cannot merge runs against {} and {}",
                first.target,
                summary.target
            );
        }
    }
    // Endpoints in the runs' order when they agree on it (shards of one run do), else sorted.
    let lists: Vec<Vec<Key>> = summaries
        .iter()
        .map(|s| {
            s.endpoints
                .iter()
                .map(|e| (e.endpoint.clone(), e.path.clone(), e.method.clone()))
                .collect()
        })
        .collect();
    let keys: Vec<Key> = if lists.iter().all(|list| *list == lists[0]) {
        lists[0].clone()
    } else {
        let mut all: Vec<Key> = lists.into_iter().flatten().collect();
        all.sort();
        all.dedup();
        all
    };
    let mut stats: BTreeMap<&Key, EndpointStats> =
        keys.iter().map(|k| (k, EndpointStats::new())).collect();
    let mut lateness = new_histogram();
    for (n, summary) in summaries.iter().enumerate() {
        for endpoint in &summary.endpoints {
            let key = (
                endpoint.endpoint.clone(),
                endpoint.path.clone(),
                endpoint.method.clone(),
            );
            let figures = endpoint_stats(endpoint).with_context(|| {
                format!(
                    "summary {} endpoint {} {}",
                    n + 1,
                    endpoint.method,
                    endpoint.path
                )
            })?;
            if let Some(total) = stats.get_mut(&key) {
                total.merge(&figures);
            }
        }
        if let Some(text) = &summary.send_lateness_histogram {
            let histogram = decode_histogram(text)
                .with_context(|| format!("summary {}: send_lateness_histogram", n + 1))?;
            lateness
                .add(&histogram)
                .map_err(|err| anyhow::anyhow!("summary {}: {err:?}", n + 1))?;
        }
    }
    let mut seeds: Vec<u64> = summaries.iter().map(|s| s.seed).collect();
    seeds.sort_unstable();
    // Sums of floating-point numbers in sorted order, so that file order cannot change a bit.
    let sorted_sum = |values: Vec<f64>| {
        let mut values = values;
        values.sort_by(f64::total_cmp);
        values.into_iter().sum::<f64>()
    };
    let target_rate = summaries
        .iter()
        .map(|s| s.target_rate)
        .collect::<Option<Vec<f64>>>()
        .map(sorted_sum);
    let profiles: Vec<&Option<String>> = summaries.iter().map(|s| &s.rate_profile).collect();
    let facts = RunFacts {
        mode: first.mode.clone(),
        target: first.target.clone(),
        // The shards of one run share their --seed; runs with different seeds report the
        // smallest (each file keeps its own).
        seed: seeds[0],
        // Runs side by side: the merged window is the longest one.
        duration_s: summaries.iter().map(|s| s.duration_s).fold(0.0, f64::max),
        target_rate,
        // A shard's profile is 1/N of the run's: not the merged run's shape.
        rate_profile: if summaries.iter().all(|s| s.shard.is_none())
            && profiles.iter().all(|p| *p == profiles[0])
        {
            profiles[0].clone()
        } else {
            None
        },
        concurrency: summaries
            .iter()
            .map(|s| s.concurrency)
            .sum::<Option<usize>>(),
        sent: summaries.iter().map(|s| s.sent).sum(),
        dropped: summaries.iter().map(|s| s.dropped).sum(),
        max_backlog: summaries.iter().map(|s| s.max_backlog).max().unwrap_or(0),
        unfinished: summaries.iter().map(|s| s.unfinished).sum(),
        interrupted: summaries.iter().any(|s| s.interrupted),
        shard: None,
    };
    for threshold in thresholds {
        if let Some(endpoint) = &threshold.endpoint
            && !keys.iter().any(|(label, _, _)| label == endpoint)
        {
            bail!(
                "--threshold {:?}: no endpoint {endpoint:?} in the summaries",
                threshold.expr
            );
        }
    }
    let entries: Vec<Key> = keys.clone();
    let figures: Vec<EndpointStats> = keys
        .iter()
        .map(|k| stats.remove(k).unwrap_or_default())
        .collect();
    let mut merged = Summary::build(facts, &entries, &figures, &lateness, thresholds);
    merged.merged_from = Some(summaries.len());
    Ok(merged)
}

//! `--threshold EXPR`: pass/fail conditions on a run's figures, for CI.
//!
//! Grammar: `[ENDPOINT:]METRIC OP VALUE`, with
//! - METRIC `pNN` / `pNN.N` (a latency quantile, e.g. `p99`, `p99.9`), `max`, `mean`: latency
//!   from the intended send time (coordinated-omission corrected), VALUE a duration (`300ms`);
//! - `error_rate`: (errors without response + 5xx) / requests, VALUE a fraction or percentage;
//! - `rate`: achieved rate / target rate (open loop only), VALUE a fraction or percentage;
//! - `dropped`: scheduled requests never sent, VALUE a whole number;
//! - OP one of `<`, `<=`, `>`, `>=`, `==`.
//!
//! ENDPOINT (a mix label, e.g. `/ep_one` or `POST /users/1`) scopes latency and error_rate to
//! one endpoint.

use std::fmt;

use anyhow::{Context, bail};
use hdrhistogram::Histogram;
use serde::Serialize;

use super::record::EndpointStats;
use crate::duration::parse_duration;

/// A comparison.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Lt,
    Le,
    Gt,
    Ge,
    Eq,
}

impl Op {
    /// Longest first, so `<=` is not read as `<`.
    const ALL: [(&'static str, Op); 5] = [
        ("<=", Op::Le),
        (">=", Op::Ge),
        ("==", Op::Eq),
        ("<", Op::Lt),
        (">", Op::Gt),
    ];

    fn holds(self, value: f64, bound: f64) -> bool {
        match self {
            Op::Lt => value < bound,
            Op::Le => value <= bound,
            Op::Gt => value > bound,
            Op::Ge => value >= bound,
            Op::Eq => value == bound,
        }
    }
}

/// What a threshold measures.
#[derive(Debug, Clone, PartialEq)]
pub enum Metric {
    /// Latency quantile (0..=1; 1 = max) from the intended send time, in ms.
    Quantile(f64),
    /// Mean latency from the intended send time, in ms.
    Mean,
    /// (errors + 5xx) / requests, a fraction.
    ErrorRate,
    /// Achieved / target rate, a fraction.
    Rate,
    /// Scheduled requests never sent.
    Dropped,
}

/// One checked `--threshold`.
#[derive(Debug, Clone, PartialEq)]
pub struct Threshold {
    /// As written (trimmed), for reports.
    pub expr: String,
    /// The endpoint label it is scoped to, if any.
    pub endpoint: Option<String>,
    pub metric: Metric,
    pub op: Op,
    /// In the metric's unit: ms, a fraction, or a count.
    pub bound: f64,
    /// Set for the threshold that `--fail-on-error-rate` stands for.
    pub from_fail_on_error_rate: bool,
}

impl fmt::Display for Threshold {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.expr)
    }
}

impl std::str::FromStr for Threshold {
    type Err = anyhow::Error;

    fn from_str(text: &str) -> anyhow::Result<Self> {
        Self::parse(text)
    }
}

impl Threshold {
    /// Parses one expression; errors name it.
    pub fn parse(text: &str) -> anyhow::Result<Self> {
        let expr = text.trim();
        Self::parse_inner(expr).with_context(|| format!("invalid threshold {expr:?}"))
    }

    fn parse_inner(expr: &str) -> anyhow::Result<Self> {
        let (at, op_text, op) = Op::ALL
            .iter()
            .filter_map(|(text, op)| expr.find(text).map(|at| (at, *text, *op)))
            // The first operator in the text; at equal positions the longer one (listed first).
            .min_by_key(|(at, _, _)| *at)
            .context("expected [ENDPOINT:]METRIC OP VALUE, e.g. p99<300ms or error_rate<1%")?;
        let (left, value) = (&expr[..at], expr[at + op_text.len()..].trim());
        let (endpoint, metric_text) = match left.rsplit_once(':') {
            Some((endpoint, metric)) => (Some(endpoint.trim()), metric.trim()),
            None => (None, left.trim()),
        };
        if endpoint.is_some_and(str::is_empty) {
            bail!("empty endpoint before `:`");
        }
        let metric = parse_metric(metric_text)?;
        let bound = match metric {
            Metric::Quantile(_) | Metric::Mean => {
                if value.is_empty() || value.chars().all(|c| c.is_ascii_digit() || c == '.') {
                    bail!("latency needs a unit, e.g. 300ms or 1.5s (got {value:?})");
                }
                parse_duration(value)?.as_secs_f64() * 1000.0
            }
            Metric::ErrorRate | Metric::Rate => parse_fraction(value)?,
            Metric::Dropped => value
                .parse::<u64>()
                .ok()
                .with_context(|| format!("dropped is a whole number (got {value:?})"))?
                as f64,
        };
        if endpoint.is_some() && matches!(metric, Metric::Rate | Metric::Dropped) {
            bail!("{metric_text} applies to the whole run, not to one endpoint");
        }
        Ok(Self {
            expr: expr.to_owned(),
            endpoint: endpoint.map(str::to_owned),
            metric,
            op,
            bound,
            from_fail_on_error_rate: false,
        })
    }

    /// The threshold `--fail-on-error-rate RATE` stands for: fail when the error rate is above
    /// RATE (so exactly RATE passes, as the flag always did).
    pub fn error_rate_at_most(rate: f64) -> Self {
        Self {
            expr: format!("error_rate<={}%", round6(rate * 100.0)),
            endpoint: None,
            metric: Metric::ErrorRate,
            op: Op::Le,
            bound: rate,
            from_fail_on_error_rate: true,
        }
    }

    /// The measured value, in the metric's unit; `None` when there is nothing to measure (no
    /// completed request for a latency, no target rate).
    pub fn measure(&self, run: &RunFigures<'_>) -> Option<f64> {
        let stats = match &self.endpoint {
            Some(label) => run
                .endpoints
                .iter()
                .find(|(l, _)| l == label)
                .map(|(_, stats)| *stats)?,
            None => run.all,
        };
        match self.metric {
            Metric::Quantile(q) => latency_ms(&stats.from_intended, Some(q)),
            Metric::Mean => latency_ms(&stats.from_intended, None),
            Metric::ErrorRate => Some(error_rate(stats)),
            Metric::Rate => run
                .target_rate
                .filter(|t| *t > 0.0)
                .map(|target| run.achieved_rate / target),
            Metric::Dropped => Some(run.dropped as f64),
        }
    }

    /// Checks the run; a value that cannot be measured fails (CI must not pass on no data).
    pub fn check(&self, run: &RunFigures<'_>) -> ThresholdResult {
        let value = self.measure(run);
        ThresholdResult {
            expr: self.expr.clone(),
            passed: value.is_some_and(|v| self.op.holds(v, self.bound)),
            value: value.map(round6),
            display: value.map_or_else(|| "no data".to_owned(), |v| self.format_value(v)),
            from_fail_on_error_rate: self.from_fail_on_error_rate,
        }
    }

    fn format_value(&self, value: f64) -> String {
        match self.metric {
            Metric::Quantile(_) | Metric::Mean => format!("{value:.3} ms"),
            Metric::ErrorRate | Metric::Rate => format!("{:.3}%", value * 100.0),
            Metric::Dropped => format!("{value:.0}"),
        }
    }
}

/// The figures thresholds are checked against.
#[derive(Debug)]
pub struct RunFigures<'a> {
    /// Every endpoint merged.
    pub all: &'a EndpointStats,
    /// Per endpoint, by label.
    pub endpoints: Vec<(String, &'a EndpointStats)>,
    pub achieved_rate: f64,
    pub target_rate: Option<f64>,
    pub dropped: u64,
}

/// One threshold's outcome, as in the `--json` summary's `thresholds` array.
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq)]
pub struct ThresholdResult {
    pub expr: String,
    pub passed: bool,
    /// Measured value: ms for latency, a fraction for error_rate and rate, a count for dropped;
    /// null when there was nothing to measure.
    pub value: Option<f64>,
    /// The value with its unit, for the table.
    #[serde(skip, default)]
    pub display: String,
    #[serde(skip, default)]
    pub from_fail_on_error_rate: bool,
}

fn parse_metric(text: &str) -> anyhow::Result<Metric> {
    Ok(match text {
        "error_rate" => Metric::ErrorRate,
        "rate" => Metric::Rate,
        "dropped" => Metric::Dropped,
        "max" => Metric::Quantile(1.0),
        "mean" => Metric::Mean,
        _ => {
            let quantile = text
                .strip_prefix('p')
                .and_then(quantile_of_percent)
                .with_context(|| {
                    format!(
                        "unknown metric {text:?} (use pNN such as p50, p99, p99.9, max, mean, \
                         error_rate, rate or dropped)"
                    )
                })?;
            Metric::Quantile(quantile)
        }
    })
}

/// The quantile of a percentile's digits: `99` → 0.99, `99.9` and `999` (the summary's p999) →
/// 0.999, `100` → 1. The decimal point is moved in the text, so that `p99.9` is exactly the
/// summary's 0.999 (99.9 / 100 is not, in binary).
fn quantile_of_percent(digits: &str) -> Option<f64> {
    if !digits.chars().all(|c| c.is_ascii_digit() || c == '.') || digits.is_empty() {
        return None;
    }
    let digits = match digits.split_once('.') {
        None if digits.len() > 2 && digits.starts_with("99") => {
            format!("{}.{}", &digits[..2], &digits[2..])
        }
        _ => digits.to_owned(),
    };
    let (whole, fraction) = digits.split_once('.').unwrap_or((&digits, ""));
    let whole = whole.trim_start_matches('0');
    let quantile: f64 = match whole.len() {
        0..=2 => format!("0.{whole:0>2}{fraction}").parse().ok()?,
        3 if whole == "100" && fraction.chars().all(|c| c == '0') => 1.0,
        _ => return None,
    };
    (quantile > 0.0).then_some(quantile)
}

/// `0.01` or `1%`.
fn parse_fraction(text: &str) -> anyhow::Result<f64> {
    let (number, scale) = match text.strip_suffix('%') {
        Some(percent) => (percent.trim(), 0.01),
        None => (text, 1.0),
    };
    number
        .parse::<f64>()
        .ok()
        .filter(|v| v.is_finite() && *v >= 0.0)
        .map(|v| v * scale)
        .with_context(|| format!("expected a fraction (0.01) or a percentage (1%), got {text:?}"))
}

/// Latency in ms at quantile `q` (`None` = the mean), rounded as in the summary.
fn latency_ms(histogram: &Histogram<u64>, quantile: Option<f64>) -> Option<f64> {
    if histogram.is_empty() {
        return None;
    }
    let micros = match quantile {
        Some(q) if q >= 1.0 => histogram.max() as f64,
        Some(q) => histogram.value_at_quantile(q) as f64,
        None => histogram.mean(),
    };
    // Whole µs in ms, as the summary rounds its percentiles.
    Some(micros.round() / 1000.0)
}

/// (errors + 5xx) / completed requests; 0 without requests.
pub fn error_rate(stats: &EndpointStats) -> f64 {
    let server_errors: u64 = stats.statuses.range(500..=599).map(|(_, n)| n).sum();
    if stats.count == 0 {
        0.0
    } else {
        (stats.error_count() + server_errors) as f64 / stats.count as f64
    }
}

fn round6(value: f64) -> f64 {
    (value * 1e6).round() / 1e6
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn parses_the_documented_forms() {
        let t = Threshold::parse("p99<300ms").unwrap();
        assert_eq!(
            (t.metric.clone(), t.op, t.bound),
            (Metric::Quantile(0.99), Op::Lt, 300.0)
        );
        let t = Threshold::parse(" /ep_one:p90 < 200ms ").unwrap();
        assert_eq!(t.endpoint.as_deref(), Some("/ep_one"));
        assert_eq!(t.expr, "/ep_one:p90 < 200ms");
        let t = Threshold::parse("POST /users/1:p99.9<=1.5s").unwrap();
        assert_eq!(t.endpoint.as_deref(), Some("POST /users/1"));
        assert_eq!(
            (t.metric.clone(), t.op, t.bound),
            (Metric::Quantile(0.999), Op::Le, 1500.0)
        );
        assert_eq!(
            Threshold::parse("p999<1s").unwrap().metric,
            Metric::Quantile(0.999)
        );
        let t = Threshold::parse("error_rate<1%").unwrap();
        assert_eq!((t.metric.clone(), t.bound), (Metric::ErrorRate, 0.01));
        let t = Threshold::parse("rate>=99%").unwrap();
        assert_eq!(
            (t.metric.clone(), t.op, t.bound),
            (Metric::Rate, Op::Ge, 0.99)
        );
        let t = Threshold::parse("dropped==0").unwrap();
        assert_eq!(
            (t.metric.clone(), t.op, t.bound),
            (Metric::Dropped, Op::Eq, 0.0)
        );
        assert_eq!(
            Threshold::parse("max<2s").unwrap().metric,
            Metric::Quantile(1.0)
        );
    }

    #[test]
    fn rejects_bad_expressions_naming_them() {
        for bad in [
            "",
            "p99",
            "p99<",
            "p99<300",
            "p0<1s",
            "p101<1s",
            "q99<1s",
            "error_rate<lots",
            "dropped==0.5",
            "/a:rate>99%",
            ":p99<1s",
            "p99=1s",
        ] {
            let err = Threshold::parse(bad).expect_err(bad);
            assert!(
                format!("{err:#}").contains(&format!("{:?}", bad.trim())),
                "{err:#}"
            );
        }
    }

    #[test]
    fn checks_against_run_figures() {
        let mut stats = EndpointStats::new();
        for ms in 1..=100u64 {
            stats
                .from_intended
                .record(Duration::from_millis(ms).as_micros() as u64)
                .unwrap();
            stats.count += 1;
            *stats
                .statuses
                .entry(if ms <= 2 { 500 } else { 200 })
                .or_default() += 1;
        }
        let run = RunFigures {
            all: &stats,
            endpoints: vec![("/a".to_owned(), &stats)],
            achieved_rate: 99.5,
            target_rate: Some(100.0),
            dropped: 0,
        };
        let check = |expr: &str| Threshold::parse(expr).unwrap().check(&run);
        let p99 = check("p99<300ms");
        assert!(p99.passed);
        assert_eq!(p99.value, Some(99.007));
        assert!(!check("/a:p50<10ms").passed);
        assert!(check("error_rate<3%").passed);
        assert!(!check("error_rate<2%").passed);
        assert!(Threshold::error_rate_at_most(0.02).check(&run).passed);
        assert!(check("rate>=99%").passed);
        assert!(!check("rate>=99.9%").passed);
        assert!(check("dropped==0").passed);
        // An endpoint nobody measured, or no target rate: no data, so the check fails.
        assert!(!check("/b:p99<1s").passed);
        let closed = RunFigures {
            target_rate: None,
            ..run
        };
        let result = Threshold::parse("rate>=1%").unwrap().check(&closed);
        assert_eq!((result.passed, result.value), (false, None));
    }
}

//! Small PromQL building blocks shared by rules, alerts, dashboards and rule tests.

use super::naming::MetricNames;
use super::units::{PromDuration, num};

/// A label matcher on `le` that selects the bucket bound `seconds`. Integral bounds are matched
/// both as `1` and as `1.0`, because Prometheus 3 normalises classic-histogram `le` values to
/// float notation while 2.x keeps them as exposed.
pub fn le_matcher(seconds: f64) -> String {
    let text = num(seconds);
    if text.contains('.') {
        format!("le=\"{text}\"")
    } else {
        format!("le=~\"{text}|{text}\\\\.0\"")
    }
}

/// The server-side SLIs of one job, aggregated across its instances.
pub struct Sli<'a> {
    pub names: &'a MetricNames,
    pub job: &'a str,
}

impl Sli<'_> {
    fn selector(&self, extra: &str) -> String {
        if extra.is_empty() {
            format!("{{job=\"{}\"}}", self.job)
        } else {
            format!("{{job=\"{}\", {extra}}}", self.job)
        }
    }

    /// Requests per second, by `by`.
    pub fn requests(&self, by: &str, window: PromDuration) -> String {
        format!(
            "sum by ({by}) (rate({}{}[{window}]))",
            self.names.count(),
            self.selector("")
        )
    }

    /// Server errors (5xx) per second, by `by`.
    pub fn errors(&self, by: &str, window: PromDuration) -> String {
        let status = format!("{}=~\"5..\"", self.names.status);
        format!(
            "sum by ({by}) (rate({}{}[{window}]))",
            self.names.count(),
            self.selector(&status)
        )
    }

    /// Requests per second that finished within `threshold` seconds, by `by`.
    pub fn fast_requests(&self, by: &str, window: PromDuration, threshold: f64) -> String {
        format!(
            "sum by ({by}) (rate({}{}[{window}]))",
            self.names.bucket(),
            self.selector(&le_matcher(threshold))
        )
    }

    /// Seconds spent per second, by `by` (the numerator of the average response time).
    pub fn seconds(&self, by: &str, window: PromDuration) -> String {
        format!(
            "sum by ({by}) (rate({}{}[{window}]))",
            self.names.sum(),
            self.selector("")
        )
    }

    /// Bucket rates by `by` and `le`, the input of histogram_quantile.
    pub fn buckets(&self, by: &str, window: PromDuration) -> String {
        format!(
            "sum by ({by}, le) (rate({}{}[{window}]))",
            self.names.bucket(),
            self.selector("")
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn le_matcher_accepts_both_notations_of_integral_bounds() {
        assert_eq!(le_matcher(0.25), "le=\"0.25\"");
        assert_eq!(le_matcher(1.0), "le=~\"1|1\\\\.0\"");
    }
}

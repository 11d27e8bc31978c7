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
    /// Quantiles read the native histogram rather than the classic buckets.
    pub native: bool,
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

    /// The `quantile` of the request duration over `window`, by `by`: from the native histogram
    /// when it is on (precise to its bucket width, about 9 %, whatever the classic buckets),
    /// from the classic buckets otherwise.
    pub fn quantile(&self, quantile: f64, by: &str, window: PromDuration) -> String {
        let histogram = if self.native {
            format!(
                "sum by ({by}) (rate({}{}[{window}]))",
                self.names.duration,
                self.selector("")
            )
        } else {
            self.buckets(by, window)
        };
        format!("histogram_quantile({}, {histogram})", num(quantile))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn native_quantiles_read_the_histogram_itself() {
        let names = super::super::naming::AppMetrics {
            namespace: None,
            const_labels: Vec::new(),
            duration_buckets: redwatch::DEFAULT_DURATION_BUCKETS.to_vec(),
        }
        .names(redwatch::Naming::Otel);
        let window: PromDuration = "5m".parse().unwrap();
        let classic = Sli {
            names: &names,
            job: "api",
            native: false,
        };
        assert_eq!(
            classic.quantile(0.99, "job, http_route", window),
            "histogram_quantile(0.99, sum by (job, http_route, le) (rate(http_server_request_duration_seconds_bucket{job=\"api\"}[5m])))"
        );
        let native = Sli {
            native: true,
            ..classic
        };
        assert_eq!(
            native.quantile(0.99, "job, http_route", window),
            "histogram_quantile(0.99, sum by (job, http_route) (rate(http_server_request_duration_seconds{job=\"api\"}[5m])))"
        );
    }

    #[test]
    fn le_matcher_accepts_both_notations_of_integral_bounds() {
        assert_eq!(le_matcher(0.25), "le=\"0.25\"");
        assert_eq!(le_matcher(1.0), "le=~\"1|1\\\\.0\"");
    }
}

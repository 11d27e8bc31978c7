//! `--compare-server`: the target's own view of the run next to the client's. The target's
//! `/metrics` is read before and after the run; per endpoint, the server's request count and
//! p50/p99 come from the increase of its duration histogram's buckets, interpolated linearly
//! within a bucket as Prometheus' `histogram_quantile` does.
//!
//! Understood names: redwatch's `otel` preset (`http_server_request_duration_seconds` with
//! `http_request_method`, `http_route`) and its `flask` preset, which are prometheus_flask_exporter's
//! (`flask_http_request_duration_seconds` with `method`, `path`).

use std::collections::BTreeMap;
use std::time::Duration;

use std::sync::Arc;

use anyhow::Context;
use hyper::Uri;
use serde::{Deserialize, Serialize};

use super::client::get_text;

/// The duration histograms this module reads: (metric, method label, route label).
const HISTOGRAMS: [(&str, &str, &str); 2] = [
    (
        "http_server_request_duration_seconds",
        "http_request_method",
        "http_route",
    ),
    ("flask_http_request_duration_seconds", "method", "path"),
];

/// How long one scrape of the target's metrics may take.
const SCRAPE_TIMEOUT: Duration = Duration::from_secs(10);

/// Cumulative bucket counts by upper bound (`+Inf` last), summed over status codes.
type Buckets = Vec<(f64, f64)>;

/// One scrape: per (method, route), the duration histogram's buckets.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ServerView {
    /// The metric the figures come from; `None` when the exposition has no known one.
    pub metric: Option<String>,
    routes: BTreeMap<(String, String), Buckets>,
}

/// The server's figures for one route over the run.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ServerFigures {
    /// The route (template) the server counted the endpoint's requests under.
    pub route: String,
    pub count: u64,
    /// Quantiles in ms from the histogram's buckets; null without requests.
    pub p50_ms: Option<f64>,
    pub p99_ms: Option<f64>,
}

/// The client's figures for one endpoint.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ClientFigures {
    pub count: u64,
    /// Latency from the intended send time, ms.
    pub p50_ms: Option<f64>,
    pub p99_ms: Option<f64>,
}

/// One line of the comparison.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Comparison {
    pub endpoint: String,
    pub client: ClientFigures,
    /// Null when no route of the server matches the endpoint.
    pub server: Option<ServerFigures>,
}

/// What the comparison needs to know about the run's endpoints: (label, method, path as the
/// server sees it) and the client's figures.
pub fn compare(
    endpoints: &[(String, String, String)],
    client: &[ClientFigures],
    server: &ServerView,
) -> Vec<Comparison> {
    endpoints
        .iter()
        .zip(client)
        .map(|((label, method, path), client)| Comparison {
            endpoint: label.clone(),
            client: client.clone(),
            server: server.figures(method, path),
        })
        .collect()
}

/// Where `--compare-server` reads the target's metrics.
#[derive(Debug, Clone)]
pub struct MetricsSource {
    pub url: Uri,
    /// For an https URL: the TLS configuration (the target's, with its --cacert or --insecure).
    pub tls: Option<Arc<rustls::ClientConfig>>,
}

/// Largest exposition read (a server with a million series stays below it).
const MAX_EXPOSITION_BYTES: usize = 256 << 20;

/// Reads the text exposition at `source`.
pub async fn scrape(source: &MetricsSource) -> anyhow::Result<ServerView> {
    let url = &source.url;
    let text = tokio::time::timeout(
        SCRAPE_TIMEOUT,
        // The classic text format: what every exporter serves and the parser reads.
        get_text(
            url,
            source.tls.clone(),
            "text/plain;version=0.0.4",
            MAX_EXPOSITION_BYTES,
        ),
    )
    .await
    .ok()
    .with_context(|| format!("GET {url}: no answer within {SCRAPE_TIMEOUT:?}"))?
    .with_context(|| format!("GET {url}"))?;
    ServerView::parse(&text).with_context(|| format!("GET {url}"))
}

impl ServerView {
    /// The duration histogram of the first known naming the exposition declares.
    pub fn parse(text: &str) -> anyhow::Result<Self> {
        use openmetrics_parser::PrometheusValue;
        let exposition = openmetrics_parser::prometheus::parse_prometheus(text)
            .map_err(|err| anyhow::anyhow!("cannot parse the exposition: {err:?}"))?;
        for (metric, method_label, route_label) in HISTOGRAMS {
            let Some(family) = exposition.families.get(metric) else {
                continue;
            };
            let mut routes: BTreeMap<(String, String), Buckets> = BTreeMap::new();
            for sample in family.iter_samples() {
                let PrometheusValue::Histogram(histogram) = &sample.value else {
                    continue;
                };
                let labels = sample
                    .get_labelset()
                    .map_err(|err| anyhow::anyhow!("{metric}: {err:?}"))?;
                let label = |name| labels.get_label_value(name).unwrap_or_default().to_owned();
                let total = routes
                    .entry((label(method_label), label(route_label)))
                    .or_default();
                let mut add =
                    |le: f64, count: f64| match total.iter_mut().find(|(bound, _)| *bound == le) {
                        Some((_, sum)) => *sum += count,
                        None => total.push((le, count)),
                    };
                let mut has_infinity = false;
                for bucket in &histogram.buckets {
                    has_infinity |= bucket.upper_bound.is_infinite();
                    add(bucket.upper_bound, bucket.count.as_f64());
                }
                if !has_infinity && let Some(count) = histogram.count {
                    add(f64::INFINITY, count as f64);
                }
            }
            for buckets in routes.values_mut() {
                buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
            }
            return Ok(Self {
                metric: Some(metric.to_owned()),
                routes,
            });
        }
        Ok(Self::default())
    }

    /// This scrape minus an earlier one (series new since then count from zero).
    pub fn since(&self, before: &ServerView) -> ServerView {
        let routes = self
            .routes
            .iter()
            .map(|(key, buckets)| {
                let earlier = before.routes.get(key);
                let delta = buckets
                    .iter()
                    .map(|(le, count)| {
                        let was = earlier
                            .and_then(|b| b.iter().find(|(l, _)| l == le))
                            .map_or(0.0, |(_, c)| *c);
                        // A restarted server resets its counters: count from zero, as rate() does.
                        let delta = if *count >= was { count - was } else { *count };
                        (*le, delta)
                    })
                    .collect();
                (key.clone(), delta)
            })
            .collect();
        ServerView {
            metric: self.metric.clone(),
            routes,
        }
    }

    /// The figures of the route that serves `method path` (path as sent, query ignored).
    pub fn figures(&self, method: &str, path: &str) -> Option<ServerFigures> {
        let (route, buckets) = self
            .routes
            .iter()
            .filter(|((m, _), _)| m == method)
            .filter_map(|((_, route), buckets)| {
                route_matches(route, path).map(|wildcards| (wildcards, route, buckets))
            })
            // The most specific route: the fewest parameters.
            .min_by_key(|(wildcards, route, _)| (*wildcards, route.len()))
            .map(|(_, route, buckets)| (route, buckets))?;
        let count = buckets.last().map_or(0.0, |(_, c)| *c);
        let ms = |q: f64| histogram_quantile(q, buckets).map(|s| (s * 1e6).round() / 1e3);
        Some(ServerFigures {
            route: route.clone(),
            count: count.round() as u64,
            p50_ms: ms(0.5),
            p99_ms: ms(0.99),
        })
    }
}

/// `Some(number of parameter segments)` when `route` (a template such as `/users/{id}`,
/// `/users/<int:id>` or `/users/:id`) serves `path`. A client path segment holding a scenario
/// placeholder (`{{ user }}`) matches a parameter.
fn route_matches(route: &str, path: &str) -> Option<usize> {
    let path = path.split('?').next().unwrap_or(path);
    let route_segments: Vec<&str> = route.trim_end_matches('/').split('/').collect();
    let path_segments: Vec<&str> = path.trim_end_matches('/').split('/').collect();
    if route_segments.len() != path_segments.len() {
        return None;
    }
    let mut wildcards = 0;
    for (r, p) in route_segments.iter().zip(&path_segments) {
        let parameter = (r.starts_with('{') && r.ends_with('}'))
            || (r.starts_with('<') && r.ends_with('>'))
            || r.starts_with(':');
        if parameter {
            wildcards += 1;
        } else if r != p {
            return None;
        }
    }
    Some(wildcards)
}

/// Prometheus' `histogram_quantile` over cumulative `buckets` (sorted, `+Inf` last), in the
/// buckets' unit: linear within the bucket holding rank q·count; the highest finite bound when
/// that is the `+Inf` bucket; `None` without observations.
pub fn histogram_quantile(q: f64, buckets: &[(f64, f64)]) -> Option<f64> {
    let total = buckets.last().map(|(_, c)| *c).filter(|c| *c > 0.0)?;
    let rank = q * total;
    let mut previous = (0.0, 0.0);
    for (index, &(le, count)) in buckets.iter().enumerate() {
        if count >= rank {
            if le.is_infinite() {
                // As Prometheus: the upper bound of the highest finite bucket.
                return Some(if index == 0 {
                    0.0
                } else {
                    buckets[index - 1].0
                });
            }
            let (lower, below) = previous;
            if count == below {
                return Some(le);
            }
            return Some(lower + (le - lower) * (rank - below) / (count - below));
        }
        previous = (le, count);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = r#"# HELP http_server_request_duration_seconds Duration.
# TYPE http_server_request_duration_seconds histogram
http_server_request_duration_seconds_bucket{http_request_method="GET",http_route="/users/{id}",http_response_status_code="200",le="0.01"} 6
http_server_request_duration_seconds_bucket{http_request_method="GET",http_route="/users/{id}",http_response_status_code="200",le="0.1"} 8
http_server_request_duration_seconds_bucket{http_request_method="GET",http_route="/users/{id}",http_response_status_code="200",le="+Inf"} 8
http_server_request_duration_seconds_bucket{http_request_method="GET",http_route="/users/{id}",http_response_status_code="500",le="0.01"} 0
http_server_request_duration_seconds_bucket{http_request_method="GET",http_route="/users/{id}",http_response_status_code="500",le="0.1"} 2
http_server_request_duration_seconds_bucket{http_request_method="GET",http_route="/users/{id}",http_response_status_code="500",le="+Inf"} 2
http_server_request_duration_seconds_count{http_request_method="GET",http_route="/users/{id}",http_response_status_code="200"} 8
http_server_request_duration_seconds_sum{http_request_method="GET",http_route="/users/{id}",http_response_status_code="200"} 0.1
http_server_request_duration_seconds_bucket{http_request_method="GET",http_route="/users/me",http_response_status_code="200",le="0.01"} 1
http_server_request_duration_seconds_bucket{http_request_method="GET",http_route="/users/me",http_response_status_code="200",le="0.1"} 1
http_server_request_duration_seconds_bucket{http_request_method="GET",http_route="/users/me",http_response_status_code="200",le="+Inf"} 1
"#;

    #[test]
    fn quantiles_interpolate_like_prometheus() {
        let buckets = [(0.01, 6.0), (0.1, 10.0), (f64::INFINITY, 10.0)];
        // Rank 5 of 10 lies in the first bucket, 5/6 of the way from 0 to 0.01.
        assert!((histogram_quantile(0.5, &buckets).unwrap() - 0.01 * 5.0 / 6.0).abs() < 1e-12);
        // Rank 9.9: 0.01 + 0.09 × (9.9 − 6) / 4.
        let p99 = histogram_quantile(0.99, &buckets).unwrap();
        assert!((p99 - (0.01 + 0.09 * 3.9 / 4.0)).abs() < 1e-12, "{p99}");
        let overflow = [(0.01, 1.0), (0.1, 2.0), (f64::INFINITY, 10.0)];
        assert_eq!(histogram_quantile(0.99, &overflow), Some(0.1));
        assert_eq!(
            histogram_quantile(0.5, &[(0.1, 0.0), (f64::INFINITY, 0.0)]),
            None
        );
    }

    #[test]
    fn reads_routes_over_statuses_and_matches_templates() {
        let view = ServerView::parse(TEXT).unwrap();
        let users = view.figures("GET", "/users/7?x=1").unwrap();
        assert_eq!((users.route.as_str(), users.count), ("/users/{id}", 10));
        assert_eq!(users.p50_ms, Some(8.333));
        // A literal route wins over a template.
        assert_eq!(view.figures("GET", "/users/me").unwrap().route, "/users/me");
        assert_eq!(
            view.figures("GET", "/users/{{ user }}").unwrap().route,
            "/users/{id}"
        );
        assert!(view.figures("POST", "/users/7").is_none());
        assert!(view.figures("GET", "/orders").is_none());
        // Before: 4 of the 200s had been counted (and both 500s).
        let before = TEXT
            .replace("} 8\n", "} 4\n")
            .replace("le=\"0.01\"} 6", "le=\"0.01\"} 2");
        let before = ServerView::parse(&before).unwrap();
        assert_eq!(
            view.since(&before)
                .figures("GET", "/users/7")
                .unwrap()
                .count,
            4
        );
        let none = ServerView::parse("# TYPE other counter\nother 1\n").unwrap();
        assert_eq!(none.metric, None);
    }

    #[test]
    fn flask_names_are_understood() {
        let text = "# TYPE flask_http_request_duration_seconds histogram\n\
            flask_http_request_duration_seconds_bucket{method=\"GET\",path=\"/ep_one\",status=\"200\",le=\"0.005\"} 3\n\
            flask_http_request_duration_seconds_bucket{method=\"GET\",path=\"/ep_one\",status=\"200\",le=\"+Inf\"} 4\n";
        let view = ServerView::parse(text).unwrap();
        assert_eq!(
            view.metric.as_deref(),
            Some("flask_http_request_duration_seconds")
        );
        assert_eq!(view.figures("GET", "/ep_one").unwrap().count, 4);
        assert!(route_matches("/users/<int:id>", "/users/3").is_some());
        assert!(route_matches("/users/:id", "/users/3").is_some());
    }
}

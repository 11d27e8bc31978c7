//! Same numbers as Prometheus, live: `redwatch demo` with a real Prometheus (Debian's
//! `prometheus`), and the page's data endpoint compared with Prometheus evaluating the
//! generated Grafana dashboard's own PromQL on the same run, at the same instant, over the
//! same window.
//!
//! What is compared, per route: requests/s, 5xx errors/s, p50/p90/p99 and the share of
//! requests under the latency threshold — the last point of each of the page's lines against
//! the panel's query evaluated with `time=` that point's timestamp (`times_ms`), with Grafana's
//! variables substituted as Grafana would: `$job` its current value, `$instance` and `$route`
//! "All" (their `allValue`, `.+`), and `$__rate_interval` the page's rate window.
//!
//! Why 5 % holds. Both sides compute `rate()` with the same extrapolation over the same window
//! ending at the same instant, from the same counters; they differ only in *when* the counters
//! were read: the page samples every second, Prometheus scrapes every `--scrape-interval`. So
//! the test runs the demo with a 1 s scrape interval and a 45 s window: the two views then
//! cover the same 45 s but for under a second (half on average) at each end. The open-loop
//! schedule keeps the total rate steady; which route a request goes to is random, so per route
//! only the requests in those edges differ. At 200 req/s the rarest routes of the mix (weight
//! 1 of 11, ~18/s) get ~820 requests per window, of which ~18 lie in the edges: their rates
//! differ by well under 1 % (one standard deviation), and the noisiest figure, the share of
//! /ep_four under 250 ms (about a third), by about 0.8 % — 5 % is over six deviations away.
//! Quantiles are interpolated inside the same buckets from those counts and move less.
//! Grafana's `$__rate_interval` is `max($__interval + scrape interval, 4 × scrape interval)`:
//! which window it picks depends on the zoom; 45 s is one it can pick (at least the minimum,
//! checked at compile time).
//!
//! Without prometheus: a notice and a pass, except in CI (`CI` set), where it fails.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::support::demo_run::{Demo, MIX_ROUTES};
use crate::support::http::{get_async, url_encode};
use crate::support::tools::require_tool;
use crate::support::{self, Group};
use hyper::StatusCode;
use redwatch::Naming;
use redwatch_cli::generate::{GenerateFlags, generate_preset};

/// The demo's flags for the comparison (see the module documentation).
const RATE: &str = "200";
const SCRAPE_INTERVAL_S: u64 = 1;
const RATE_WINDOW_S: u64 = 45;
// A window Grafana can pick: its `$__rate_interval` is at least 4 scrape intervals.
const _: () = assert!(RATE_WINDOW_S >= 4 * SCRAPE_INTERVAL_S);
/// The largest relative difference allowed.
const TOLERANCE: f64 = 0.05;
/// How long Prometheus may take to hold a full window of scrapes and then some.
const FILL_TIMEOUT: Duration = Duration::from_secs(120);

/// The generated Grafana dashboard, as `redwatch generate --naming otel` writes it with the
/// generator's defaults (which the demo's Prometheus rules are written with too).
fn grafana_dashboard() -> serde_json::Value {
    let mut flags = GenerateFlags::defaults().expect("the generator's defaults");
    flags.naming = Some(Naming::Otel);
    let settings = flags.settings().expect("valid settings");
    let files = generate_preset(Naming::Otel, &settings).expect("generated files");
    let file = files
        .iter()
        .find(|file| file.path.ends_with("api-overview.json"))
        .expect("the generator writes api-overview.json");
    serde_json::from_str(&file.content).expect("the dashboard is JSON")
}

/// Every panel, those inside collapsed rows included.
fn panels(dashboard: &serde_json::Value) -> Vec<&serde_json::Value> {
    let mut all = Vec::new();
    for panel in dashboard["panels"].as_array().expect("panels") {
        all.push(panel);
        if let Some(children) = panel["panels"].as_array() {
            all.extend(children);
        }
    }
    all
}

/// The expression of the target of the panel titled as `title` accepts whose legend starts with
/// `legend_prefix`.
fn panel_query(
    dashboard: &serde_json::Value,
    title: impl Fn(&str) -> bool,
    legend_prefix: &str,
) -> String {
    let panel = panels(dashboard)
        .into_iter()
        .find(|panel| panel["title"].as_str().is_some_and(&title))
        .expect("the panel is in the generated dashboard");
    panel["targets"]
        .as_array()
        .expect("targets")
        .iter()
        .find(|target| {
            target["legendFormat"]
                .as_str()
                .is_some_and(|legend| legend.starts_with(legend_prefix))
        })
        .and_then(|target| target["expr"].as_str())
        .unwrap_or_else(|| panic!("no target with legend {legend_prefix:?} in {panel}"))
        .to_owned()
}

/// `expr` with Grafana's variables replaced as Grafana would replace them for this run.
fn substitute(dashboard: &serde_json::Value, expr: &str, rate_interval: &str) -> String {
    let mut expr = expr.replace("$__rate_interval", rate_interval);
    for variable in dashboard["templating"]["list"]
        .as_array()
        .expect("variables")
    {
        let Some(name) = variable["name"].as_str() else {
            continue;
        };
        // "All" where the variable offers it (its allValue), else its current value.
        let value = variable["allValue"]
            .as_str()
            .or_else(|| variable["current"]["value"].as_str());
        if let Some(value) = value {
            expr = expr.replace(&format!("${name}"), value);
        }
    }
    assert!(!expr.contains('$'), "a variable left in {expr}");
    expr
}

/// Prometheus's answer to the instant query `expr` at `time_s`.
async fn query(prometheus: SocketAddr, expr: &str, time_s: f64) -> serde_json::Value {
    let path = format!("/api/v1/query?query={}&time={time_s:.3}", url_encode(expr));
    let response = get_async(prometheus, &path, &[]).await;
    assert_eq!(response.status, StatusCode::OK, "{expr}: {}", response.body);
    let answer: serde_json::Value = serde_json::from_str(&response.body).expect("query JSON");
    assert_eq!(answer["status"], "success", "{expr}: {answer}");
    answer
}

/// An instant query's result per `http_route` (the one value when it has no such label).
async fn by_route(prometheus: SocketAddr, expr: &str, time_s: f64) -> BTreeMap<String, f64> {
    let answer = query(prometheus, expr, time_s).await;
    answer["data"]["result"]
        .as_array()
        .expect("a vector")
        .iter()
        .filter_map(|sample| {
            let route = sample["metric"]["http_route"].as_str().unwrap_or("");
            let value: f64 = sample["value"][1].as_str()?.parse().ok()?;
            value.is_finite().then(|| (route.to_owned(), value))
        })
        .collect()
}

/// The last point of every line of the page's `field`, per route.
fn page_lines(data: &serde_json::Value, field: &str) -> BTreeMap<String, f64> {
    data[field]
        .as_array()
        .expect("lines")
        .iter()
        .filter_map(|line| {
            let value = line["values"].as_array()?.last()?.as_f64()?;
            Some((line["name"].as_str()?.to_owned(), value))
        })
        .collect()
}

/// Waits until Prometheus holds scrapes of the API over more than a window before now: two
/// more than a window holds, counted over a range five intervals longer (so that a late or
/// missed scrape does not keep the count below the mark).
async fn wait_for_a_full_window(prometheus: SocketAddr) {
    let needed = RATE_WINDOW_S / SCRAPE_INTERVAL_S + 2;
    let expr = format!(
        "count_over_time(up{{job=\"redwatch\"}}[{}s])",
        RATE_WINDOW_S + 5 * SCRAPE_INTERVAL_S
    );
    let deadline = Instant::now() + FILL_TIMEOUT;
    loop {
        let now_s = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("a clock after 1970")
            .as_secs_f64();
        let scrapes = by_route(prometheus, &expr, now_s)
            .await
            .values()
            .copied()
            .next()
            .unwrap_or(0.0);
        if scrapes >= needed as f64 {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "only {scrapes} scrapes of {needed} within {FILL_TIMEOUT:?}"
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_agrees_with_prometheus_on_the_grafana_dashboards_queries() {
    let _group = support::shared(Group::Patient);
    let Some(prometheus_binary) = require_tool("prometheus", "prometheus") else {
        return;
    };
    let dashboard = grafana_dashboard();
    let rate_interval = format!("{RATE_WINDOW_S}s");
    let demo = Demo::start(
        &[
            "--prometheus-listen",
            "127.0.0.1:0",
            "--rate",
            RATE,
            "--prometheus",
            prometheus_binary.to_str().expect("UTF-8 path"),
            "--scrape-interval",
            &format!("{SCRAPE_INTERVAL_S}s"),
            "--dashboard-rate-window",
            &rate_interval,
        ],
        &[],
    );
    let prometheus = demo
        .prometheus_addr()
        .unwrap_or_else(|| panic!("Prometheus did not start: {}", demo.stdout()));
    demo.data_with_every_route(Duration::from_secs(30)).await;
    wait_for_a_full_window(prometheus).await;

    let data = demo.data("range=60").await;
    assert_eq!(data["rate_window_s"], RATE_WINDOW_S as f64, "{data}");
    let at_ms = data["times_ms"]
        .as_array()
        .and_then(|times| times.last())
        .and_then(serde_json::Value::as_i64)
        .expect("the page's evaluation times");
    let at_s = at_ms as f64 / 1000.0;
    // Prometheus has stored the scrapes up to that instant (each is stored when it completes).
    tokio::time::sleep(Duration::from_millis(1500)).await;

    let is = |wanted: &'static str| move |title: &str| title == wanted;
    let under = |title: &str| title.starts_with("Requests under ") && title.ends_with(" by route");
    let percentiles = is("Response time percentiles by route (p50 / p90 / p99)");
    let comparisons: [(&str, String); 6] = [
        (
            "requests_per_s",
            panel_query(&dashboard, is("Requests per second by route"), ""),
        ),
        (
            "errors_per_s",
            panel_query(
                &dashboard,
                is("Server errors (5xx) per second by route"),
                "",
            ),
        ),
        ("p50_s", panel_query(&dashboard, percentiles, "p50 ")),
        ("p90_s", panel_query(&dashboard, percentiles, "p90 ")),
        ("p99_s", panel_query(&dashboard, percentiles, "p99 ")),
        ("under_threshold_ratio", panel_query(&dashboard, under, "")),
    ];
    let mut failures = Vec::new();
    let mut compared = 0;
    for (field, expr) in &comparisons {
        let expr = substitute(&dashboard, expr, &rate_interval);
        let expected = by_route(prometheus, &expr, at_s).await;
        let page = page_lines(&data, field);
        assert_eq!(
            page.keys().collect::<Vec<_>>(),
            expected.keys().collect::<Vec<_>>(),
            "{field}: the page's routes differ from Prometheus's for {expr}"
        );
        for (route, &theirs) in &expected {
            let ours = page[route];
            // Relative, and 0 when both are 0 (0/0 would be NaN, which no tolerance rejects).
            let difference = if ours == theirs {
                0.0
            } else {
                (ours - theirs).abs() / ours.abs().max(theirs.abs())
            };
            eprintln!(
                "{field:>22} {route:<10} page {ours:>10.4}  Prometheus {theirs:>10.4}  {:.2} %",
                difference * 100.0
            );
            compared += 1;
            if difference.is_nan() || difference > TOLERANCE {
                failures.push(format!(
                    "{field} {route}: page {ours}, Prometheus {theirs} ({expr})"
                ));
            }
        }
    }
    // Every route's rate, /error's errors, three quantiles and the share under the threshold.
    assert_eq!(compared, MIX_ROUTES.len() * 5 + 1, "{data}");
    assert!(
        failures.is_empty(),
        "more than {} % apart at {at_ms} ms:\n{}",
        TOLERANCE * 100.0,
        failures.join("\n")
    );
}

//! The `dashboard` feature end to end: its routes over HTTP (token, JSON, its own requests
//! left out); its rate and quantile against Prometheus's own (`promtool`); and the page in
//! headless Chromium on a live app with traffic — no script errors, charts with points, the
//! table listing the routes, a route drill-down and alerts read from Prometheus.
//!
//! Chromium is Debian's `chromium` and promtool Debian's `prometheus` (`scripts/test`
//! installs both). Without them those tests print a notice and pass, unless `CI` is set:
//! then they fail.

use crate::support;

use std::net::SocketAddr;
use std::process::Command;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::http::StatusCode;
use axum::routing::get;
use http::{Request, header};
use http_body_util::BodyExt;
use redwatch::Metrics;
use redwatch::dashboard::{Dashboard, DataQuery};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tower::ServiceExt;

fn app(metrics: &Metrics, dashboard: &Dashboard) -> Router {
    Router::new()
        .route("/", get(|| async { "home" }))
        .route(
            "/users/{id}",
            get(|| async {
                tokio::time::sleep(Duration::from_millis(3)).await;
                "user"
            }),
        )
        .route("/fail", get(|| async { StatusCode::INTERNAL_SERVER_ERROR }))
        .merge(metrics.router())
        .merge(dashboard.router())
        .layer(metrics.layer())
}

/// A dashboard that samples fast, so a few seconds of traffic fill its charts.
fn fast_dashboard(metrics: &Metrics) -> Dashboard {
    Dashboard::builder(metrics)
        .resolution(Duration::from_millis(100))
        .rate_window(Duration::from_secs(1))
        .history(Duration::from_secs(60))
        .build()
        .expect("valid dashboard settings")
}

async fn get_status(app: &Router, uri: &str, token: Option<&str>) -> (StatusCode, Vec<u8>) {
    let mut request = Request::get(uri);
    if let Some(token) = token {
        request = request.header(header::AUTHORIZATION, format!("Bearer {token}"));
    }
    let response = app
        .clone()
        .oneshot(request.body(Body::empty()).unwrap())
        .await
        .unwrap();
    let status = response.status();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, body.to_vec())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_and_its_data_share_the_metrics_token() {
    let metrics = Metrics::builder().bearer_token("s3cret").build().unwrap();
    let dashboard = Dashboard::builder(&metrics)
        .path("/ops/live")
        .prometheus_url("http://127.0.0.1:9090/")
        .build()
        .unwrap();
    let app = app(&metrics, &dashboard);
    for uri in ["/ops/live", "/ops/live/data", "/metrics"] {
        assert_eq!(
            get_status(&app, uri, None).await.0,
            StatusCode::UNAUTHORIZED,
            "{uri}"
        );
        assert_eq!(
            get_status(&app, uri, Some("wrong")).await.0,
            StatusCode::UNAUTHORIZED,
            "{uri}"
        );
    }
    let (status, page) = get_status(&app, "/ops/live", Some("s3cret")).await;
    assert_eq!(status, StatusCode::OK);
    let page = String::from_utf8(page).unwrap();
    assert!(
        page.contains("\"/ops/live/data\""),
        "the page reads its own data path"
    );

    let (status, body) = get_status(&app, "/ops/live/data?range=60", Some("s3cret")).await;
    assert_eq!(status, StatusCode::OK);
    let json = String::from_utf8(body).unwrap();
    assert!(json.contains("\"range_s\":60"), "{json}");
    assert!(
        json.contains("\"prometheus_url\":\"http://127.0.0.1:9090\""),
        "{json}"
    );
    let (status, _) = get_status(&app, "/ops/live/data?range=x", Some("s3cret")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, _) = get_status(&app, "/ops/live/data?range=x", None).await;
    assert_eq!(
        status,
        StatusCode::UNAUTHORIZED,
        "the token is checked first"
    );

    // The page's own requests are not recorded, as /metrics is not; the app's are.
    get_status(&app, "/", None).await;
    let snapshot = metrics.snapshot();
    let routes: Vec<&str> = snapshot.series.iter().map(|s| s.route.as_str()).collect();
    assert_eq!(routes, vec!["/"]);
}

#[test]
fn settings_are_checked() {
    let metrics = Metrics::new();
    let refuse = |builder: redwatch::dashboard::DashboardBuilder| builder.build().unwrap_err();
    assert!(
        refuse(Dashboard::builder(&metrics).path("dash"))
            .to_string()
            .contains("path")
    );
    let off_bucket = Dashboard::builder(&metrics).latency_threshold(Duration::from_millis(300));
    assert!(refuse(off_bucket).to_string().contains("bucket"));
    assert!(
        refuse(Dashboard::builder(&metrics).objective(1.0))
            .to_string()
            .contains("objective")
    );
    let endless = Dashboard::builder(&metrics).history(Duration::from_secs(30 * 3600));
    assert!(refuse(endless).to_string().contains("at most"));
    let no_window = Dashboard::builder(&metrics).rate_window(Duration::from_millis(1500));
    assert!(refuse(no_window).to_string().contains("window"));
    assert!(
        refuse(Dashboard::builder(&metrics).prometheus_url("localhost:9090"))
            .to_string()
            .contains("http")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_data_function_serves_what_the_endpoint_serves() {
    let metrics = Metrics::new();
    let dashboard = fast_dashboard(&metrics);
    let app = app(&metrics, &dashboard);
    for _ in 0..5 {
        get_status(&app, "/fail", None).await;
        tokio::time::sleep(Duration::from_millis(120)).await;
    }
    // A sample taken between the two reads changes the table's rates: read both within one
    // sampling interval (the history holds 600 samples, far more than this test takes, so its
    // count grows with every sample).
    let query = DataQuery::new(60, Some("/fail".into()));
    let deadline = Instant::now() + Duration::from_secs(10);
    let (data, served) = loop {
        let samples = dashboard.samples();
        let data = dashboard.data(&query);
        let (_, body) = get_status(&app, "/dashboard/data?range=60&route=%2Ffail", None).await;
        if dashboard.samples() == samples {
            let served: serde_json::Value = serde_json::from_slice(&body).unwrap();
            break (data, served);
        }
        assert!(
            Instant::now() < deadline,
            "no two reads within one sampling interval in 10 s"
        );
    };
    let direct = serde_json::to_value(&data).unwrap();
    // The lines move with each sample; the settings, the scope and the table do not.
    for field in ["range_s", "rate_window_s", "route", "objective", "routes"] {
        assert_eq!(served[field], direct[field], "{field}");
    }
    assert_eq!(data.route.as_deref(), Some("/fail"));
    assert_eq!(data.routes.len(), 1);
    assert_eq!(
        (data.routes[0].route.as_str(), data.routes[0].count),
        ("/fail", 5)
    );
}

/// Stops the server when dropped, also when the test panics.
struct Server {
    address: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        self.task.abort();
    }
}

async fn serve(app: Router) -> Server {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app)
            .with_graceful_shutdown(async {
                let _ = stopped.await;
            })
            .await;
    });
    Server {
        address,
        stop: Some(stop),
        task,
    }
}

/// One HTTP/1.1 GET over a fresh connection; the status line's code.
async fn request(address: SocketAddr, path: &str) -> u16 {
    let exchange = async {
        let mut stream = tokio::net::TcpStream::connect(address).await.ok()?;
        let request = format!("GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await.ok()?;
        let mut response = Vec::new();
        stream.read_to_end(&mut response).await.ok()?;
        let text = String::from_utf8_lossy(&response);
        text.split(' ').nth(1)?.parse().ok()
    };
    tokio::time::timeout(Duration::from_secs(5), exchange)
        .await
        .ok()
        .flatten()
        .unwrap_or(0)
}

/// The number in attribute `attribute` of the element with id `id`.
fn attribute_of(dom: &str, id: &str, attribute: &str) -> Option<u64> {
    let pattern = format!(r#"<[a-z]+ [^>]*id="{id}"[^>]*\b{attribute}="(\d+)""#);
    let regex = regex::Regex::new(&pattern).unwrap();
    regex.captures(dom)?.get(1)?.as_str().parse().ok()
}

/// The `data-route` values of the route table's rows.
fn table_routes(dom: &str) -> Vec<String> {
    let Some(start) = dom.find(r#"<tbody id="routes">"#) else {
        return Vec::new();
    };
    let body = &dom[start
        ..dom[start..]
            .find("</tbody>")
            .map_or(dom.len(), |end| start + end)];
    let regex = regex::Regex::new(r#"<tr data-route="([^"]*)""#).unwrap();
    regex
        .captures_iter(body)
        .map(|c| c[1].replace("&amp;", "&"))
        .collect()
}

/// The markup inside the element with id `id`, up to the first closing `</div>`, `</ul>` or
/// `</pre>` (legends, lists and the error record hold no such element).
fn legend(dom: &str, id: &str) -> String {
    let marker = format!(r#"id="{id}">"#);
    let Some(start) = dom.find(&marker).map(|at| at + marker.len()) else {
        return String::new();
    };
    let end = ["</div>", "</ul>", "</pre>"]
        .iter()
        .filter_map(|close| dom[start..].find(close))
        .min()
        .map_or(dom.len(), |end| start + end);
    dom[start..end].to_owned()
}

fn assert_no_script_errors(dom: &str) {
    let body = regex::Regex::new(r#"<body data-js-errors="(\d+)" data-renders="(\d+)">"#).unwrap();
    let captures = body
        .captures(dom)
        .expect("the body's error and render counts");
    assert_eq!(
        &captures[1],
        "0",
        "script errors: {}",
        legend(dom, "js-errors")
    );
    assert!(
        dom.contains(r#"<pre id="js-errors"></pre>"#),
        "script errors recorded"
    );
    let renders: u32 = captures[2].parse().unwrap();
    assert!(renders >= 1, "the data was never rendered");
}

/// A stand-in for Prometheus's alerts API, answering cross-origin reads as Prometheus does by
/// default: one firing and one pending alert, and one inactive that must not show.
fn fake_prometheus() -> Router {
    const ALERTS: &str = r#"{"status":"success","data":{"alerts":[
        {"labels":{"alertname":"ApiHighErrorRate","severity":"page"},"state":"firing","activeAt":"2026-01-01T00:00:00Z"},
        {"labels":{"alertname":"ApiLatencyHigh","severity":"ticket"},"state":"pending","activeAt":"2026-01-01T00:01:00Z"},
        {"labels":{"alertname":"ApiQuiet"},"state":"inactive","activeAt":"2026-01-01T00:02:00Z"}]}}"#;
    Router::new().route(
        "/api/v1/alerts",
        get(|| async {
            (
                [
                    (header::CONTENT_TYPE, "application/json"),
                    (header::ACCESS_CONTROL_ALLOW_ORIGIN, "*"),
                ],
                ALERTS,
            )
        }),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_works_in_headless_chromium() {
    let Some(chromium) = support::tool("chromium") else {
        return;
    };
    let prometheus = serve(fake_prometheus()).await;
    let metrics = Metrics::new();
    let dashboard = fast_dashboard(&metrics);
    // A second page on the same metrics, reading alerts from the stand-in Prometheus.
    let with_alerts = Dashboard::builder(&metrics)
        .path("/with-alerts")
        .resolution(Duration::from_millis(100))
        .rate_window(Duration::from_secs(1))
        .history(Duration::from_secs(60))
        .prometheus_url(format!("http://{}", prometheus.address))
        .build()
        .unwrap();
    let server = serve(app(&metrics, &dashboard).merge(with_alerts.router())).await;

    // About 3 s of traffic to three routes, one of them failing: at most 60 rounds.
    let started = Instant::now();
    let mut statuses = Vec::new();
    for _round in 0..60 {
        if started.elapsed() > Duration::from_secs(3) {
            break;
        }
        for path in ["/", "/users/7", "/fail"] {
            statuses.push(request(server.address, path).await);
        }
        tokio::time::sleep(Duration::from_millis(40)).await;
    }
    assert!(
        statuses.contains(&200) && statuses.contains(&500),
        "{statuses:?}"
    );
    assert!(dashboard.samples() >= 10, "the sampler ran");

    let base = format!("http://{}/dashboard", server.address);
    let overview = tokio::task::spawn_blocking({
        let (chromium, url) = (chromium.clone(), base.clone());
        move || support::chromium::dump_dom(&chromium, &url)
    })
    .await
    .unwrap();
    assert_no_script_errors(&overview);
    assert!(
        attribute_of(&overview, "c-rps", "data-points").is_some_and(|n| n > 0),
        "no request rates drawn"
    );
    for chart in [
        "c-rps", "c-eps", "c-status", "c-avg", "c-p50", "c-p99", "c-heat", "c-active", "c-mem",
    ] {
        let points = attribute_of(&overview, chart, "data-points");
        assert!(
            points.is_some_and(|n| n > 0),
            "{chart} has no data points ({points:?})"
        );
    }
    let routes = table_routes(&overview);
    for route in ["/", "/fail", "/users/{id}"] {
        assert!(
            routes.iter().any(|r| r == route),
            "{route} missing from the table {routes:?}"
        );
    }
    assert!(
        !routes.iter().any(|r| r.starts_with("/dashboard")),
        "{routes:?}"
    );
    assert!(
        overview.contains("no Prometheus configured"),
        "the alerts line says why it is empty"
    );

    // The drill-down: the fragment selects one route, whose panels alone are drawn, and the
    // range.
    let drill = tokio::task::spawn_blocking({
        let (chromium, url) = (chromium.clone(), format!("{base}#route=%2Ffail&range=60"));
        move || support::chromium::dump_dom(&chromium, &url)
    })
    .await
    .unwrap();
    assert_no_script_errors(&drill);
    assert!(
        drill.contains(r#"<div id="scope" data-route="/fail">"#),
        "no drill-down scope"
    );
    let rps_legend = legend(&drill, "l-rps");
    assert!(
        rps_legend.contains("/fail") && !rps_legend.contains("/users"),
        "{rps_legend}"
    );
    assert!(
        attribute_of(&drill, "c-eps", "data-points").is_some_and(|n| n > 0),
        "the failing route's errors are drawn"
    );
    assert!(
        drill.contains(r#"<tr data-route="/fail" class="selected">"#),
        "the selected row is marked"
    );
    assert!(
        drill.contains(r#"<button data-range="60" class="on">"#),
        "the 1 minute range is on"
    );

    // Alerts read from Prometheus: the firing and the pending one, not the inactive one.
    let alerts = tokio::task::spawn_blocking({
        let url = format!("http://{}/with-alerts", server.address);
        move || support::chromium::dump_dom(&chromium, &url)
    })
    .await
    .unwrap();
    assert_no_script_errors(&alerts);
    let list = legend(&alerts, "alert-list");
    assert!(
        list.contains(r#"<li class="firing">firing: <strong>ApiHighErrorRate</strong> (page)"#),
        "{list}"
    );
    assert!(
        list.contains(r#"<li class="pending">pending: <strong>ApiLatencyHigh</strong>"#),
        "{list}"
    );
    assert!(!list.contains("ApiQuiet"), "{list}");
    drop(server);
    drop(prometheus);
}

/// One input series of the promtool test: its selector and its values every 15 s from 0 s
/// (`None` = no sample).
struct InputSeries {
    selector: &'static str,
    values: [Option<f64>; 5],
}

impl InputSeries {
    /// The samples `(ms, value)`.
    fn samples(&self) -> Vec<(i64, f64)> {
        (0i64..)
            .zip(self.values)
            .filter_map(|(i, value)| Some((i * 15_000, value?)))
            .collect()
    }
}

/// Evaluation time of every expression: the range `(7 s, 67 s]` holds the samples at 15, 30,
/// 45 and 60 s, and none at its start, where Prometheus 2 and 3 differ.
const EVAL_MS: i64 = 67_000;

#[test]
fn rate_and_histogram_quantile_agree_with_prometheus() {
    let Some(promtool) = support::tool("promtool") else {
        return;
    };
    use redwatch::dashboard::promql::{histogram_quantile, rate};
    let counters = [
        (
            "c_steady",
            [Some(0.0), Some(5.0), Some(20.0), Some(35.0), Some(50.0)],
        ),
        (
            "c_reset",
            [Some(90.0), Some(100.0), Some(130.0), Some(10.0), Some(40.0)],
        ),
        // Starts inside the range; ends inside it; never moves; starts far from zero.
        ("c_late", [None, None, None, Some(3.0), Some(13.0)]),
        (
            "c_early",
            [Some(0.0), Some(0.0), Some(10.0), Some(20.0), None],
        ),
        ("c_flat", [Some(7.0); 5]),
        (
            "c_high",
            [
                Some(1000.0),
                Some(1010.0),
                Some(1025.0),
                Some(1030.0),
                Some(1050.0),
            ],
        ),
    ];
    let mut series: Vec<InputSeries> = counters
        .iter()
        .map(|&(selector, values)| InputSeries { selector, values })
        .collect();
    // Two instances of a histogram (bounds 0.1, 0.25, 1), summed by le before the quantile;
    // the second has a decreasing bucket, so that the sum decreases at 0.25 and
    // histogram_quantile flattens it.
    let per_step: [(&str, [f64; 4]); 2] =
        [("a", [4.0, 8.0, 10.0, 10.0]), ("b", [6.0, 1.0, 9.0, 11.0])];
    let bounds = ["0.1", "0.25", "1", "+Inf"];
    let selectors: Vec<&'static str> = per_step
        .iter()
        .flat_map(|(instance, _)| {
            bounds
                .iter()
                .map(move |le| &*format!("h_bucket{{i=\"{instance}\",le=\"{le}\"}}").leak())
        })
        .collect();
    for (n, selector) in selectors.iter().enumerate() {
        let (_, steps) = per_step[n / bounds.len()];
        let step = steps[n % bounds.len()];
        let values = std::array::from_fn(|i| Some(step * i as f64));
        series.push(InputSeries { selector, values });
    }

    // Our values of the expressions, evaluated at 67 s over 1 m.
    let rate_of = |selector: &str| {
        let input = series.iter().find(|s| s.selector == selector).unwrap();
        rate(&input.samples(), EVAL_MS, 60_000)
    };
    let mut expected: Vec<(String, f64)> = counters
        .iter()
        .map(|(name, _)| (format!("rate({name}[1m])"), rate_of(name).unwrap()))
        .collect();
    let summed: Vec<(f64, f64)> = bounds
        .iter()
        .enumerate()
        .map(|(b, le)| {
            let bound = if *le == "+Inf" {
                f64::INFINITY
            } else {
                le.parse().unwrap()
            };
            let total = (0..per_step.len())
                .map(|instance| rate_of(selectors[instance * bounds.len() + b]).unwrap())
                .sum::<f64>();
            (bound, total)
        })
        .collect();
    for q in [0.5, 0.9, 0.99] {
        let expr = format!("histogram_quantile({q}, sum by (le) (rate(h_bucket[1m])))");
        expected.push((expr, histogram_quantile(q, &summed).unwrap()));
    }

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("promql_test.yml");
    let mut yaml =
        String::from("evaluation_interval: 15s\ntests:\n  - interval: 15s\n    input_series:\n");
    for input in &series {
        let values: Vec<String> = input
            .values
            .iter()
            .map(|value| value.map_or("_".to_owned(), |v| v.to_string()))
            .collect();
        yaml += &format!(
            "      - series: '{}'\n        values: '{}'\n",
            input.selector,
            values.join(" ")
        );
    }
    yaml += "    promql_expr_test:\n";
    for (expr, value) in &expected {
        yaml += &format!(
            "      - expr: '{expr}'\n        eval_time: 67s\n        exp_samples:\n          - value: {value:?}\n"
        );
    }
    std::fs::write(&file, yaml).unwrap();
    let output = Command::new(promtool)
        .args(["test", "rules"])
        .arg(&file)
        .output()
        .expect("promtool runs");
    let report = String::from_utf8_lossy(&output.stdout).into_owned()
        + &String::from_utf8_lossy(&output.stderr);
    if output.status.success() {
        return;
    }
    // promtool compares exactly; the last digit may differ with the order of operations.
    // Every mismatch must be a rounding difference, and every expression must have a value.
    let got = got_values(&report);
    assert!(!got.is_empty(), "promtool failed without values:\n{report}");
    for (expr, prometheus) in got {
        let ours = expected
            .iter()
            .find(|(e, _)| *e == expr)
            .map(|(_, v)| *v)
            .unwrap_or_else(|| panic!("unexpected expression {expr} in\n{report}"));
        let prometheus =
            prometheus.unwrap_or_else(|| panic!("Prometheus has no value for {expr}:\n{report}"));
        assert!(
            (ours - prometheus).abs() <= ours.abs() * 1e-12,
            "{expr}: ours {ours}, Prometheus {prometheus}\n{report}"
        );
    }
}

/// The `got` value of each failed expression in promtool's report (`None` when it had none).
fn got_values(report: &str) -> Vec<(String, Option<f64>)> {
    let mut found = Vec::new();
    let mut current: Option<String> = None;
    for line in report.lines().map(str::trim) {
        if let Some(rest) = line.strip_prefix("expr: \"") {
            current = rest.split("\", time:").next().map(str::to_owned);
        } else if let Some(rest) = line.strip_prefix("got:")
            && let Some(expr) = current.take()
        {
            let value = rest.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok());
            found.push((expr, value));
        }
    }
    found
}

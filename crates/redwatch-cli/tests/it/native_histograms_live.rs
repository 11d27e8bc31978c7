//! Native histograms end to end: an in-process axum app instrumented with
//! `MetricsBuilder::native_histograms(true)` answers requests that each take a known, different
//! time; a real Prometheus started with `--enable-feature=native-histograms` scrapes it (in the
//! protobuf format, which only the native histograms need), and `histogram_quantile()` over the
//! native series must be within the histogram's stated error of the true quantile of the
//! durations the handlers measured. Also: `redwatch serve --native-histograms` answers a protobuf
//! scrape with native buckets and a text scrape as before. Fails when CI is set and Prometheus
//! is missing; everything started is stopped on success or panic.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::Path;
use axum::middleware::{self, Next};
use axum::routing::get;

use crate::support;
use crate::support::Group;
use crate::support::http::get as http_get;
use crate::support::live_stack::{daemon, query, tail, wait_ready};
use crate::support::process::{Proc, Server, ServerThread, free_port, loopback};
use crate::support::tools::require_tool;

const JOB: &str = "native-live";
const LIMIT: Duration = Duration::from_secs(60);
/// Requests sent, and how many at a time.
const REQUESTS: usize = 300;
const CLIENTS: usize = 30;
/// Relative width of a schema-3 bucket, 2^(1/8) - 1: a quantile read from a native histogram
/// lies in the same bucket as the true one, so it is off by less than this.
const BUCKET_ERROR: f64 = 0.090_507_732_665_257_66;
/// What the server's duration (from the layer's call to the end of the body) may add to the
/// handler's own measurement: routing, the response head and body, one worker thread shared by
/// thirty connections on a debug build. Requests last 2 to 400 ms.
const SLACK_SECONDS: f64 = 0.002;

/// The handler sleeps the milliseconds of its path; a middleware just inside redwatch's layer
/// measures how long the inner service took, the true duration.
fn app(metrics: &redwatch::Metrics, measured: Arc<Mutex<Vec<f64>>>) -> Router {
    Router::new()
        .route(
            "/sleep/{ms}",
            get(|Path(ms): Path<u64>| async move {
                tokio::time::sleep(Duration::from_millis(ms)).await;
                "slept"
            }),
        )
        .layer(middleware::from_fn(
            move |request: axum::extract::Request, next: Next| {
                let measured = Arc::clone(&measured);
                async move {
                    let start = Instant::now();
                    let response = next.run(request).await;
                    let elapsed = start.elapsed().as_secs_f64();
                    measured
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .push(elapsed);
                    response
                }
            },
        ))
        .merge(metrics.router())
        .layer(metrics.layer())
}

/// The in-process app on an ephemeral loopback port.
fn start_app(
    metrics: &redwatch::Metrics,
    measured: Arc<Mutex<Vec<f64>>>,
) -> (SocketAddr, ServerThread) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.set_nonblocking(true).expect("nonblocking");
    let addr = listener.local_addr().expect("local addr");
    let app = app(metrics, measured);
    let server = ServerThread::spawn(move |stop| async move {
        let listener = tokio::net::TcpListener::from_std(listener).expect("tokio listener");
        let _ = axum::serve(listener, app)
            .with_graceful_shutdown(async {
                let _ = stop.await;
            })
            .await;
    });
    (addr, server)
}

/// Milliseconds of request `i`: spread evenly on a log scale from 2 to 400 ms (a golden-ratio
/// sequence), so the quantiles fall in many different buckets.
fn sleep_ms(i: usize) -> u64 {
    let spread = (i as f64 * 0.618_033_988_749_895).fract();
    (2.0 * 200f64.powf(spread)).round() as u64
}

/// The nearest-rank quantile, as histogram_quantile picks its bucket: the ceil(q·n)-th value.
fn true_quantile(sorted: &[f64], q: f64) -> f64 {
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn one_value(prometheus: SocketAddr, expr: &str) -> Option<f64> {
    let samples = query(prometheus, expr).ok()?;
    samples.first()?.value.parse().ok()
}

#[test]
fn prometheus_quantiles_of_the_native_histogram_are_within_its_error() {
    let _group = support::shared(Group::Patient);
    let Some(prometheus_bin) = require_tool("prometheus", "Debian package prometheus") else {
        return;
    };
    let temp = tempfile::tempdir().expect("temp dir");
    let metrics = redwatch::Metrics::builder()
        .native_histograms(true)
        .build()
        .expect("metrics");
    let measured = Arc::new(Mutex::new(Vec::new()));
    let (app_addr, _app) = start_app(&metrics, Arc::clone(&measured));

    let config = temp.path().join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\nscrape_configs:\n  - job_name: {JOB}\n    static_configs:\n      - targets: ['{app_addr}']\n"
        ),
    )
    .expect("write prometheus.yml");
    let prometheus = loopback(free_port());
    let log = temp.path().join("prometheus.log");
    let _prometheus: Proc = daemon(
        "prometheus",
        std::process::Command::new(&prometheus_bin)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                temp.path().join("data").display()
            ))
            .arg(format!("--web.listen-address={prometheus}"))
            .arg("--enable-feature=native-histograms"),
        &log,
    )
    .expect("start prometheus");
    wait_ready(prometheus, "/-/ready", Duration::from_secs(30))
        .unwrap_or_else(|err| panic!("{err}\n{}", tail(&log, 20)));

    // The requests, CLIENTS at a time.
    let clients: Vec<_> = (0..CLIENTS)
        .map(|client| {
            thread::spawn(move || {
                for i in (client..REQUESTS).step_by(CLIENTS) {
                    let response = http_get(app_addr, &format!("/sleep/{}", sleep_ms(i)), &[]);
                    assert_eq!(response.status, 200);
                }
            })
        })
        .collect();
    for client in clients {
        client.join().expect("client thread");
    }
    let mut durations = measured.lock().unwrap_or_else(|e| e.into_inner()).clone();
    assert_eq!(durations.len(), REQUESTS);
    durations.sort_by(f64::total_cmp);

    // Every request is in the scraped native histogram (its count, not the classic `_count`).
    let selector = format!("http_server_request_duration_seconds{{job=\"{JOB}\"}}");
    let deadline = Instant::now() + LIMIT;
    loop {
        let count = one_value(prometheus, &format!("histogram_count(sum({selector}))"));
        if count == Some(REQUESTS as f64) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the native histogram never counted {REQUESTS} requests (last: {count:?})\n{}",
            tail(&log, 20)
        );
        thread::sleep(Duration::from_millis(500));
    }
    let sum = one_value(prometheus, &format!("histogram_sum(sum({selector}))")).expect("sum");
    let true_sum: f64 = durations.iter().sum();
    assert!(
        sum >= true_sum && sum <= true_sum + SLACK_SECONDS * REQUESTS as f64,
        "sum {sum}, handlers measured {true_sum}"
    );

    let mut report = Vec::new();
    for q in [0.5, 0.75, 0.9, 0.95, 0.99] {
        let estimate = one_value(
            prometheus,
            &format!("histogram_quantile({q}, sum({selector}))"),
        )
        .unwrap_or_else(|| panic!("no quantile {q}\n{}", tail(&log, 20)));
        let truth = true_quantile(&durations, q);
        let allowed = BUCKET_ERROR * truth + SLACK_SECONDS;
        report.push(format!("q{q}: native {estimate:.6} s, true {truth:.6} s"));
        assert!(
            (estimate - truth).abs() <= allowed,
            "quantile {q}: Prometheus says {estimate} s, the handlers measured {truth} s (allowed ±{allowed})\n{}",
            report.join("\n")
        );
    }
    eprintln!("{}", report.join("\n"));
}

/// `redwatch serve --native-histograms` answers Prometheus's protobuf `Accept` with native buckets,
/// and text scrapes with the classic buckets only, as without the flag.
#[test]
fn serve_native_histograms_speaks_protobuf_only_when_asked() {
    use prost::Message;
    use redwatch::prometheus_client::encoding::prometheus_protobuf::prometheus_data_model as pb;

    const PROTOBUF_ACCEPT: &str = "application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited,application/openmetrics-text;version=1.0.0;q=0.8,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
    let _group = support::shared(Group::Timing);
    for native in [true, false] {
        let mut flags = vec!["--latency-scale", "0"];
        if native {
            flags.push("--native-histograms");
        }
        let serve = Server::start(&flags);
        assert_eq!(http_get(serve.addr, "/ep_one", &[]).status, 200);

        let response = http_get(
            serve.metrics_addr,
            "/metrics",
            &[("Accept", PROTOBUF_ACCEPT)],
        );
        assert_eq!(response.status, 200);
        let content_type = response.headers["content-type"]
            .to_str()
            .unwrap_or_default();
        if !native {
            assert!(
                content_type.starts_with("application/openmetrics-text"),
                "{content_type}"
            );
            continue;
        }
        assert_eq!(content_type, redwatch::PROTOBUF_CONTENT_TYPE);
        let mut bytes = response.bytes.as_slice();
        let mut families = Vec::new();
        while !bytes.is_empty() {
            families.push(pb::MetricFamily::decode_length_delimited(&mut bytes).expect("decode"));
        }
        let duration = families
            .iter()
            .find(|f| f.name == "http_server_request_duration_seconds")
            .expect("duration family");
        let histogram = duration.metric[0].histogram.as_ref().expect("histogram");
        assert_eq!((histogram.schema, histogram.sample_count), (3, 1));
        assert_eq!(
            histogram.bucket.len(),
            redwatch::DEFAULT_DURATION_BUCKETS.len() + 1
        );
        assert!(
            families
                .iter()
                .any(|f| f.name == "process_cpu_seconds_total")
        );

        // Text scrapes are unchanged: classic buckets only.
        let text = http_get(serve.metrics_addr, "/metrics", &[]).body;
        assert!(
            text.contains("http_server_request_duration_seconds_bucket{"),
            "{text}"
        );
        let openmetrics = http_get(
            serve.metrics_addr,
            "/metrics",
            &[("Accept", "application/openmetrics-text;version=1.0.0")],
        );
        assert!(openmetrics.body.ends_with("# EOF\n"));
    }
}

/// `redwatch generate --native-histograms` writes latency quantile rules over the native series
/// (no `_bucket`), which `promtool check rules` accepts and `promtool test rules` runs; everything
/// else, and the default output, stays on the classic series.
#[test]
fn generate_native_histograms_quantiles_read_the_native_series() {
    use crate::support::generate::{generate_ok, read, rules_of, run_ok, yaml};

    let temp = tempfile::tempdir().expect("temp dir");
    let native_out = temp.path().join("native");
    let classic_out = temp.path().join("classic");
    generate_ok(&native_out, &["--native-histograms"]);
    generate_ok(&classic_out, &[]);
    for preset in ["otel", "flask"] {
        let duration = match preset {
            "otel" => "http_server_request_duration_seconds",
            _ => "flask_http_request_duration_seconds",
        };
        let rules_file = native_out
            .join(preset)
            .join("prometheus/rules/redwatch.rules.yml");
        let rules = rules_of(&yaml(&rules_file));
        let quantiles: Vec<String> = rules
            .iter()
            .filter_map(|rule| rule["expr"].as_str())
            .filter(|expr| expr.contains("histogram_quantile"))
            .map(str::to_owned)
            .collect();
        assert_eq!(quantiles.len(), 2, "{preset}: {quantiles:?}");
        for expr in &quantiles {
            assert!(
                expr.contains(&format!("rate({duration}{{")) && !expr.contains("_bucket"),
                "{preset}: not over the native series: {expr}"
            );
            assert!(!expr.contains(" le)"), "{preset}: {expr}");
        }
        // The default output's quantiles read the classic buckets.
        let classic = read(
            &classic_out
                .join(preset)
                .join("prometheus/rules/redwatch.rules.yml"),
        );
        assert!(classic.contains(&format!("{duration}_bucket")));
        let native = read(&rules_file);
        assert_eq!(
            classic.lines().filter(|l| l.contains("_bucket")).count(),
            native.lines().filter(|l| l.contains("_bucket")).count() + 2,
            "{preset}: only the two quantile rules change"
        );

        let Some(promtool) = require_tool("promtool", "Debian package prometheus") else {
            continue;
        };
        let prometheus = native_out.join(preset).join("prometheus");
        run_ok(
            std::process::Command::new(&promtool)
                .current_dir(&prometheus)
                .args([
                    "check",
                    "rules",
                    "--lint=all",
                    "--lint-fatal",
                    "rules/redwatch.rules.yml",
                ]),
        );
        // The generated rule unit tests still pass with the native quantile rules loaded.
        for test in ["tests/alerts.test.yml", "tests/slo.test.yml"] {
            run_ok(
                std::process::Command::new(&promtool)
                    .current_dir(&prometheus)
                    .args(["test", "rules", test]),
            );
        }
    }
}

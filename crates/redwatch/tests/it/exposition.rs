//! /metrics: formats, negotiation, gzip, bearer tokens, separate listener, user metrics,
//! process metrics, and promtool's verdict.

use crate::support;

#[cfg(feature = "gzip")]
use std::io::Read;
use std::time::Duration;

use crate::support::exposition::Exposition;
use crate::support::exposition::{find, total};
use crate::support::parse;
use axum::Router;
use axum::body::Body;
use axum::routing::get;
use http::{Request, StatusCode, header};
use http_body_util::BodyExt;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use redwatch::{Format, Metrics, Naming};
use tower::ServiceExt;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct QueueLabels {
    queue: String,
}

/// A metrics instance with traffic, body sizes, constant labels and user metrics.
async fn busy_metrics(naming: Naming) -> Metrics {
    let metrics = Metrics::builder()
        .naming(naming)
        .const_label("service", "shop")
        .body_sizes(true)
        .app_version("2.0.0")
        .environment("test")
        .build()
        .unwrap();
    let jobs: Counter = Counter::default();
    let depth: Gauge = Gauge::default();
    let waits =
        Family::<QueueLabels, Histogram>::new_with_constructor(|| Histogram::new([0.1, 1.0, 10.0]));
    metrics.register("jobs_processed", "Jobs processed.", jobs.clone());
    metrics.register("queue_depth", "Jobs waiting.", depth.clone());
    metrics.register("queue_wait_seconds", "Time jobs wait.", waits.clone());
    jobs.inc_by(3);
    depth.set(7);
    waits
        .get_or_create(&QueueLabels {
            queue: "mail".into(),
        })
        .observe(0.5);

    let app = Router::new()
        .route("/", get(|| async { "home" }))
        .route("/users/{id}", get(|| async { "user" }))
        .route(
            "/error",
            get(|| async { StatusCode::INTERNAL_SERVER_ERROR }),
        )
        .merge(metrics.router())
        .layer(metrics.layer());
    for uri in ["/", "/users/1", "/error", "/missing"] {
        let response = app
            .clone()
            .oneshot(Request::get(uri).body(Body::empty()).unwrap())
            .await
            .unwrap();
        response.into_body().collect().await.unwrap();
    }
    metrics
}

fn text(metrics: &Metrics, format: Format) -> String {
    String::from_utf8(metrics.render(format)).unwrap()
}

#[tokio::test]
async fn prometheus_text_has_every_family_once_and_user_metrics() {
    let metrics = busy_metrics(Naming::Otel).await;
    let text = text(&metrics, Format::Prometheus);
    assert!(!text.contains("# EOF"));
    assert!(!text.contains("# UNIT"));
    let types: Vec<&str> = text.lines().filter(|l| l.starts_with("# TYPE ")).collect();
    let mut names: Vec<&str> = types.iter().map(|l| l.split(' ').nth(2).unwrap()).collect();
    let count = names.len();
    names.sort();
    names.dedup();
    assert_eq!(names.len(), count, "each family appears once: {types:?}");
    for expected in [
        "# TYPE http_server_request_duration_seconds histogram",
        "# TYPE http_server_active_requests gauge",
        "# TYPE http_server_request_body_size_bytes histogram",
        "# TYPE http_server_response_body_size_bytes histogram",
        "# TYPE jobs_processed_total counter",
        "# TYPE queue_depth gauge",
        "# TYPE queue_wait_seconds histogram",
        "# TYPE target_info gauge",
    ] {
        assert!(text.contains(expected), "missing {expected:?} in\n{text}");
    }
    let samples = parse(&text);
    assert_eq!(total(&samples, "jobs_processed_total", &[]), 3.0);
    assert_eq!(total(&samples, "queue_depth", &[]), 7.0);
    assert_eq!(
        total(&samples, "queue_wait_seconds_count", &[("queue", "mail")]),
        1.0
    );
    assert_eq!(
        total(
            &samples,
            "target_info",
            &[
                ("service_version", "2.0.0"),
                ("deployment_environment_name", "test"),
                ("service", "shop")
            ]
        ),
        1.0
    );
    assert!(support::check_histograms(&samples) >= 4);
}

#[tokio::test]
async fn openmetrics_has_family_names_units_and_one_eof() {
    let metrics = busy_metrics(Naming::Flask).await;
    let text = text(&metrics, Format::OpenMetrics);
    assert!(text.ends_with("# EOF\n"));
    assert_eq!(text.matches("# EOF").count(), 1);
    for expected in [
        "# TYPE flask_http_request counter",
        "# TYPE flask_http_request_exceptions counter",
        "# UNIT flask_http_request_duration_seconds seconds",
        "# TYPE flask_exporter info",
        "# TYPE app info",
        "# TYPE jobs_processed counter",
        "jobs_processed_total 3",
    ] {
        assert!(text.contains(expected), "missing {expected:?} in\n{text}");
    }
    assert!(
        text.contains("le=\"1.0\""),
        "OpenMetrics floats carry a decimal point"
    );
    let samples = Exposition::parse_openmetrics(&text).samples;
    assert_eq!(
        total(&samples, "flask_http_request_total", &[("method", "GET")]),
        4.0
    );
}

#[cfg(target_os = "linux")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn process_and_runtime_metrics_are_read_at_scrape_time() {
    let metrics = Metrics::new();
    let samples = parse(&text(&metrics, Format::Prometheus));
    for name in [
        "process_cpu_seconds_total",
        "process_resident_memory_bytes",
        "process_virtual_memory_bytes",
        "process_open_fds",
        "process_start_time_seconds",
        "process_threads",
    ] {
        assert_eq!(find(&samples, name, &[]).len(), 1, "one {name} sample");
        let value = total(&samples, name, &[]);
        // A fresh test process may not have used a clock tick of CPU yet.
        assert!(
            value > 0.0 || (name == "process_cpu_seconds_total" && value == 0.0),
            "{name} = {value}"
        );
    }
    assert_eq!(total(&samples, "tokio_runtime_workers", &[]), 2.0);
    assert_eq!(find(&samples, "tokio_runtime_alive_tasks", &[]).len(), 1);
    // The snapshot carries the same collected values.
    let collected = metrics.snapshot().collected;
    assert_eq!(collected.runtime.map(|runtime| runtime.workers), Some(2));
    assert!(
        collected
            .process
            .is_some_and(|process| process.open_fds > 0)
    );

    // Memory grows by what we hold, as read from /proc at the next scrape.
    let before = total(&samples, "process_resident_memory_bytes", &[]);
    let held = vec![1u8; 64 * 1024 * 1024];
    let after = total(
        &parse(&text(&metrics, Format::Prometheus)),
        "process_resident_memory_bytes",
        &[],
    );
    assert!(
        after - before > 32.0 * 1024.0 * 1024.0,
        "{before} -> {after}"
    );
    drop(held);

    // Outside a runtime the runtime gauges are left out rather than invented.
    let (outside, snapshot) =
        std::thread::spawn(move || (text(&metrics, Format::Prometheus), metrics.snapshot()))
            .join()
            .unwrap();
    assert!(!outside.contains("tokio_runtime_workers"));
    assert_eq!(snapshot.collected.runtime, None);
}

async fn get_metrics(app: Router, headers: &[(header::HeaderName, &str)]) -> http::Response<Body> {
    let mut request = Request::get("/metrics");
    for (name, value) in headers {
        request = request.header(name, *value);
    }
    app.oneshot(request.body(Body::empty()).unwrap())
        .await
        .unwrap()
}

#[tokio::test]
async fn accept_header_picks_the_format_and_content_type() {
    let metrics = busy_metrics(Naming::Otel).await;
    let app: Router = metrics.router();
    let plain = get_metrics(app.clone(), &[]).await;
    assert_eq!(
        plain.headers()[header::CONTENT_TYPE],
        "text/plain; version=0.0.4; charset=utf-8"
    );
    let om = get_metrics(
        app,
        &[(
            header::ACCEPT,
            "application/openmetrics-text;version=1.0.0;q=0.5,text/plain;version=0.0.4;q=0.2",
        )],
    )
    .await;
    assert_eq!(
        om.headers()[header::CONTENT_TYPE],
        "application/openmetrics-text; version=1.0.0; charset=utf-8"
    );
    let body = om.into_body().collect().await.unwrap().to_bytes();
    assert!(body.ends_with(b"# EOF\n"));
}

#[cfg(feature = "gzip")]
#[tokio::test]
async fn gzip_when_the_scraper_accepts_it() {
    let metrics = busy_metrics(Naming::Otel).await;
    let app: Router = metrics.router();
    let response = get_metrics(app, &[(header::ACCEPT_ENCODING, "gzip")]).await;
    assert_eq!(response.headers()[header::CONTENT_ENCODING], "gzip");
    let compressed = response.into_body().collect().await.unwrap().to_bytes();
    let mut decoded = String::new();
    flate2::read::GzDecoder::new(&compressed[..])
        .read_to_string(&mut decoded)
        .unwrap();
    assert!(decoded.contains("# TYPE http_server_request_duration_seconds histogram"));
    assert!(compressed.len() * 3 < decoded.len(), "compression pays off");
}

#[tokio::test]
async fn a_bearer_token_protects_the_endpoint() {
    let metrics = Metrics::builder().bearer_token("s3cret").build().unwrap();
    let app: Router = metrics.router();
    let missing = get_metrics(app.clone(), &[]).await;
    assert_eq!(missing.status(), StatusCode::UNAUTHORIZED);
    assert!(missing.headers().contains_key(header::WWW_AUTHENTICATE));
    let wrong = get_metrics(app.clone(), &[(header::AUTHORIZATION, "Bearer guess")]).await;
    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
    let right = get_metrics(app, &[(header::AUTHORIZATION, "Bearer s3cret")]).await;
    assert_eq!(right.status(), StatusCode::OK);
}

#[tokio::test]
async fn metrics_can_be_served_on_their_own_listener() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let metrics = busy_metrics(Naming::Otel).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(metrics.clone().serve(listener, async {
        let _ = stopped.await;
    }));

    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nhost: test\r\nconnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut response = String::new();
    tokio::time::timeout(Duration::from_secs(5), stream.read_to_string(&mut response))
        .await
        .unwrap()
        .unwrap();
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(response.contains("http_server_request_duration_seconds_count"));

    stop.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(5), server)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
}

#[tokio::test]
async fn promtool_finds_nothing_to_report() {
    let Some(promtool) = support::tool("promtool") else {
        return;
    };
    for naming in Naming::ALL {
        let metrics = busy_metrics(naming).await;
        let exposition = metrics.render(Format::Prometheus);
        if let Err(report) = support::promtool_check_metrics(&promtool, &exposition) {
            panic!("promtool on {naming}: {report}");
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TextLabels {
    text: String,
}

#[test]
fn label_values_that_look_like_exemplars_survive_the_text_format() {
    let metrics = Metrics::new();
    let family = Family::<TextLabels, Counter>::default();
    metrics.register("notes", "Notes seen.", family.clone());
    let values = [
        "a # b",
        "} # {x=\"1\"} 2",
        "quote \" # and \\ # backslash",
        "line\nbreak # here",
    ];
    for value in values {
        family
            .get_or_create(&TextLabels {
                text: value.to_owned(),
            })
            .inc();
    }
    let text = text(&metrics, Format::Prometheus);
    let samples = parse(&text);
    for value in values {
        assert_eq!(
            total(&samples, "notes_total", &[("text", value)]),
            1.0,
            "{value:?} in\n{text}"
        );
    }
}

/// A user collector that notes which thread encodes it.
#[derive(Debug, Clone, Default)]
struct ThreadSpy(std::sync::Arc<std::sync::Mutex<Vec<Encoder>>>);

/// The thread that encoded a scrape.
#[derive(Debug, Clone)]
struct Encoder {
    id: std::thread::ThreadId,
    name: Option<String>,
    /// Linux: its nice value and its `/proc/PID/task/TID` directory.
    nice: Option<i64>,
    task: Option<std::path::PathBuf>,
}

impl prometheus_client::collector::Collector for ThreadSpy {
    fn encode(
        &self,
        _encoder: prometheus_client::encoding::DescriptorEncoder<'_>,
    ) -> Result<(), std::fmt::Error> {
        // The 19th field of /proc/thread-self/stat, counted after the parenthesised name.
        let nice = std::fs::read_to_string("/proc/thread-self/stat")
            .ok()
            .and_then(|stat| {
                stat.rsplit_once(')')?
                    .1
                    .split_whitespace()
                    .nth(16)?
                    .parse()
                    .ok()
            });
        let task = std::fs::canonicalize("/proc/thread-self").ok();
        self.0.lock().unwrap().push(Encoder {
            id: std::thread::current().id(),
            name: std::thread::current().name().map(str::to_owned),
            nice,
            task,
        });
        Ok(())
    }
}

/// Rendering, gzip and the `/proc` reads block; the axum endpoint runs them on a thread of its
/// own, not on the worker that serves requests. In a current-thread runtime the
/// only worker is the test's own thread.
#[tokio::test(flavor = "current_thread")]
async fn the_axum_endpoint_renders_off_the_async_workers() {
    let metrics = Metrics::new();
    let spy = ThreadSpy::default();
    metrics.with_registry(|registry| registry.register_collector(Box::new(spy.clone())));
    let app: Router = metrics.router();
    for headers in [vec![], vec![(header::ACCEPT_ENCODING, "gzip")]] {
        let response = get_metrics(app.clone(), &headers).await;
        assert_eq!(response.status(), StatusCode::OK);
    }
    let threads = spy.0.lock().unwrap().clone();
    assert_eq!(threads.len(), 2);
    let worker = std::thread::current().id();
    assert!(
        threads.iter().all(|thread| thread.id != worker),
        "rendered on the async worker"
    );
}

/// Scrapes through the router render on one thread of the metrics' own, at nice 10 on Linux so
/// that requests get the CPU first, and the thread ends with the last handle to the metrics.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scrapes_render_on_one_low_priority_thread_that_ends_with_the_metrics() {
    let metrics = Metrics::new();
    let spy = ThreadSpy::default();
    metrics.with_registry(|registry| registry.register_collector(Box::new(spy.clone())));
    let app: Router = metrics.router();
    for _ in 0..3 {
        let response = get_metrics(app.clone(), &[]).await;
        assert_eq!(response.status(), StatusCode::OK);
        // The runtime gauges are those of the runtime that took the scrape.
        let body = response.into_body().collect().await.unwrap().to_bytes();
        let text = String::from_utf8_lossy(&body);
        assert!(text.contains("\ntokio_runtime_workers 2\n"), "{text}");
    }
    let encoders = spy.0.lock().unwrap().clone();
    assert_eq!(encoders.len(), 3);
    assert!(
        encoders.iter().all(|e| e.id == encoders[0].id),
        "one thread renders every scrape: {encoders:?}"
    );
    assert_eq!(encoders[0].name.as_deref(), Some("redwatch-scrape"));
    if cfg!(target_os = "linux") {
        let own_nice = std::fs::read_to_string("/proc/thread-self/stat")
            .ok()
            .and_then(|stat| {
                stat.rsplit_once(')')?
                    .1
                    .split_whitespace()
                    .nth(16)?
                    .parse::<i64>()
                    .ok()
            })
            .expect("this thread's nice value");
        assert_eq!(encoders[0].nice, Some(own_nice.max(10)), "{encoders:?}");
        let task = encoders[0]
            .task
            .clone()
            .expect("the thread's /proc directory");
        assert!(task.exists());
        drop(app);
        drop(metrics);
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while task.exists() {
            assert!(
                std::time::Instant::now() < deadline,
                "the scrape thread outlived its metrics"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

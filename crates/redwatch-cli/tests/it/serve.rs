//! `redwatch serve`, end to end: the real binary on an ephemeral loopback port.

use std::io::Write;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use hyper::StatusCode;
use tokio::task::JoinSet;

use crate::support;
use crate::support::Group;
use crate::support::exposition::Exposition;
use crate::support::http::{Response, get_async, try_get_async};
use crate::support::process::{Server, run_to_exit};
use crate::support::tools::require_tool;

/// The four artificial-latency endpoints and their k (sleep is U[0, 0.2·k·scale] s).
const SLEEPY: [(&str, u32); 4] = [
    ("/ep_one", 1),
    ("/ep_two", 2),
    ("/ep_three", 3),
    ("/ep_four", 4),
];

/// Every demo endpoint with the route template it is recorded under and its status.
const ENDPOINTS: [(&str, &str, u16); 11] = [
    ("/", "/", 200),
    ("/ep_one", "/ep_one", 200),
    ("/ep_two", "/ep_two", 200),
    ("/ep_three", "/ep_three", 200),
    ("/ep_four", "/ep_four", 200),
    ("/error", "/error", 500),
    ("/cpu", "/cpu", 200),
    ("/memory", "/memory", 200),
    ("/users/42", "/users/{id}", 200),
    ("/health", "/health", 200),
    ("/no/such/page", "unmatched", 404),
];

/// The number `endpoint k slept X ms` reports.
fn slept_ms(body: &str) -> f64 {
    body.trim()
        .rsplit_once(" slept ")
        .and_then(|(_, ms)| ms.strip_suffix(" ms"))
        .and_then(|ms| ms.parse().ok())
        .unwrap_or_else(|| panic!("unexpected sleep endpoint body {body:?}"))
}

#[tokio::test]
async fn every_endpoint_answers_with_its_status() {
    let _group = support::shared(Group::Timing);
    let server = Server::start(&["--latency-scale", "0"]);
    for (path, _, status) in ENDPOINTS {
        let response = server.get(path).await;
        assert_eq!(response.status.as_u16(), status, "GET {path}");
    }
    assert_eq!(server.get("/").await.body, "home");
    for (path, k) in SLEEPY {
        let body = server.get(path).await.body;
        assert!(
            body.starts_with(&format!("endpoint {k} slept ")),
            "{path}: {body:?}"
        );
    }
    let user = server.get("/users/42").await.body;
    let user: serde_json::Value = serde_json::from_str(&user).expect("/users/{id} returns JSON");
    assert_eq!(user, serde_json::json!({ "id": "42" }));

    let metrics = server.get("/metrics").await;
    assert_eq!(metrics.status, StatusCode::OK);
    let content_type = metrics.headers[hyper::header::CONTENT_TYPE]
        .to_str()
        .unwrap();
    assert!(content_type.starts_with("text/plain"), "{content_type}");
    assert!(
        metrics
            .body
            .contains("# TYPE http_server_request_duration_seconds histogram")
    );
}

#[tokio::test]
async fn latency_scale_zero_turns_the_sleeps_off() {
    let _group = support::shared(Group::Timing);
    const SAMPLES: usize = 5;
    let server = Server::start(&["--latency-scale", "0"]);
    for (path, _) in SLEEPY {
        for _ in 0..SAMPLES {
            let started = Instant::now();
            let response = server.get(path).await;
            let elapsed = started.elapsed();
            assert_eq!(response.status, StatusCode::OK);
            assert_eq!(slept_ms(&response.body), 0.0, "{path} slept at scale 0");
            // Loose: a sleeping /ep_four would average 400 ms at scale 1.
            assert!(elapsed < Duration::from_secs(1), "{path} took {elapsed:?}");
        }
    }
    // The server's own measurement agrees: every request finished within the 1 s bucket (as
    // loose as the client's bound: this shared VM sometimes stalls a process for ~300 ms).
    let metrics = server.metrics().await;
    for (path, _) in SLEEPY {
        let labels = |le| {
            [
                ("http_request_method", "GET"),
                ("http_route", path),
                ("http_response_status_code", "200"),
                ("le", le),
            ]
        };
        let fast = metrics.value_with("http_server_request_duration_seconds_bucket", &labels("1"));
        assert_eq!(fast, Some(SAMPLES as f64), "{path} requests under 1 s");
    }
}

#[tokio::test]
async fn latency_scale_one_sleeps_within_bounds() {
    let _group = support::shared(Group::Timing);
    const SAMPLES: usize = 6;
    const SLACK: Duration = Duration::from_millis(1500);
    let server = Server::start(&["--latency-scale", "1"]);
    let addr = server.addr;
    let mut requests = JoinSet::new();
    for (path, k) in SLEEPY {
        for _ in 0..SAMPLES {
            requests.spawn(async move {
                let started = Instant::now();
                let response = get_async(addr, path, &[]).await;
                (path, k, response, started.elapsed())
            });
        }
    }
    let mut longest_ms = [0.0f64; 4];
    while let Some(joined) = requests.join_next().await {
        let (path, k, response, elapsed) = joined.expect("request task");
        assert_eq!(response.status, StatusCode::OK, "{path}");
        let upper_ms = 200.0 * f64::from(k);
        let slept = slept_ms(&response.body);
        assert!(
            (0.0..=upper_ms).contains(&slept),
            "{path} slept {slept} ms, bound {upper_ms} ms"
        );
        let bound = Duration::from_secs_f64(upper_ms / 1000.0) + SLACK;
        assert!(elapsed <= bound, "{path} took {elapsed:?}, bound {bound:?}");
        let index = k as usize - 1;
        longest_ms[index] = longest_ms[index].max(slept);
    }
    // The sleeps are really on: with 6 uniform samples, the longest is below a tenth of the
    // range with probability 1e-6.
    for ((path, k), longest) in SLEEPY.iter().zip(longest_ms) {
        let tenth = 20.0 * f64::from(*k);
        assert!(
            longest >= tenth,
            "{path}: longest sleep {longest} ms of {SAMPLES}"
        );
    }
}

/// Label names of the request duration series in one preset.
struct Preset {
    flag: &'static str,
    duration: &'static str,
    active: &'static str,
    method: &'static str,
    route: &'static str,
    status: &'static str,
    /// The other preset's duration metric, which must not appear.
    foreign_duration: &'static str,
}

const OTEL: Preset = Preset {
    flag: "otel",
    duration: "http_server_request_duration_seconds",
    active: "http_server_active_requests",
    method: "http_request_method",
    route: "http_route",
    status: "http_response_status_code",
    foreign_duration: "flask_http_request_duration_seconds",
};

const FLASK: Preset = Preset {
    flag: "flask",
    duration: "flask_http_request_duration_seconds",
    active: "flask_http_requests_in_progress",
    method: "method",
    route: "path",
    status: "status",
    foreign_duration: "http_server_request_duration_seconds",
};

/// Starts a server in `preset`, requests every endpoint once and returns the exposition.
async fn scrape_after_every_endpoint(preset: &Preset) -> (Server, Exposition) {
    let server = Server::start(&[
        "--latency-scale",
        "0",
        "--naming",
        preset.flag,
        "--app-version",
        "9.8.7",
        "--environment",
        "staging",
    ]);
    for (path, _, status) in ENDPOINTS {
        assert_eq!(server.get(path).await.status.as_u16(), status, "GET {path}");
    }
    let metrics = server.metrics().await;
    (server, metrics)
}

fn check_request_series(preset: &Preset, metrics: &Exposition) {
    assert!(
        metrics.has_type(preset.duration, "histogram"),
        "{}",
        metrics.text
    );
    assert!(metrics.has_type(preset.active, "gauge"));
    assert_eq!(
        metrics
            .named(&format!("{}_count", preset.foreign_duration))
            .count(),
        0
    );
    for (path, route, status) in ENDPOINTS {
        let status = status.to_string();
        let labels = [
            (preset.method, "GET"),
            (preset.route, route),
            (preset.status, status.as_str()),
        ];
        let count = metrics.value_with(&format!("{}_count", preset.duration), &labels);
        assert_eq!(count, Some(1.0), "{path}: {route} {status} count");
        let mut with_inf = labels.to_vec();
        with_inf.push(("le", "+Inf"));
        let inf = metrics.value_with(&format!("{}_bucket", preset.duration), &with_inf);
        assert_eq!(inf, Some(1.0), "{path}: +Inf bucket");
        let sum = metrics.value_with(&format!("{}_sum", preset.duration), &labels);
        assert!(sum.is_some_and(|s| s >= 0.0), "{path}: sum {sum:?}");
    }
    // /cpu burns about 100 ms, and the histogram saw it.
    let cpu = metrics
        .value_with(
            &format!("{}_sum", preset.duration),
            &[
                (preset.method, "GET"),
                (preset.route, "/cpu"),
                (preset.status, "200"),
            ],
        )
        .unwrap_or_default();
    assert!(cpu >= 0.09, "/cpu took {cpu} s by the histogram");
    // Templates, not raw paths; /metrics itself is not recorded.
    let routes: Vec<&str> = metrics
        .named(&format!("{}_count", preset.duration))
        .map(|s| s.labels[preset.route].as_str())
        .collect();
    assert_eq!(routes.len(), ENDPOINTS.len(), "routes: {routes:?}");
    assert!(
        !routes.contains(&"/users/42") && !routes.contains(&"/metrics"),
        "{routes:?}"
    );
    // Nothing in flight while /metrics is served.
    assert_eq!(
        metrics.value_with(preset.active, &[(preset.method, "GET")]),
        Some(0.0)
    );
}

fn check_process_and_runtime_series(metrics: &Exposition) {
    for name in [
        "process_cpu_seconds_total",
        "process_resident_memory_bytes",
        "process_virtual_memory_bytes",
        "process_open_fds",
        "process_max_fds",
        "process_start_time_seconds",
        "process_threads",
        "tokio_runtime_workers",
        "tokio_runtime_alive_tasks",
        "tokio_runtime_global_queue_depth",
    ] {
        assert!(metrics.value_with(name, &[]).is_some(), "{name} missing");
    }
    assert!(
        metrics
            .value_with("process_resident_memory_bytes", &[])
            .unwrap_or_default()
            > 0.0
    );
    assert!(
        metrics
            .value_with("process_open_fds", &[])
            .unwrap_or_default()
            >= 3.0
    );
    assert!(
        metrics
            .value_with("tokio_runtime_workers", &[])
            .unwrap_or_default()
            >= 1.0
    );
}

#[tokio::test]
async fn otel_preset_shows_a_series_for_every_endpoint() {
    let _group = support::shared(Group::Timing);
    let (_server, metrics) = scrape_after_every_endpoint(&OTEL).await;
    check_request_series(&OTEL, &metrics);
    check_process_and_runtime_series(&metrics);
    let info = [
        ("service_name", "redwatch-demo"),
        ("service_version", "9.8.7"),
        ("deployment_environment_name", "staging"),
    ];
    assert_eq!(
        metrics.value_with("target_info", &info),
        Some(1.0),
        "{}",
        metrics.text
    );
    assert_eq!(metrics.named("flask_http_request_total").count(), 0);
}

#[tokio::test]
async fn flask_preset_shows_a_series_for_every_endpoint() {
    let _group = support::shared(Group::Timing);
    let (_server, metrics) = scrape_after_every_endpoint(&FLASK).await;
    check_request_series(&FLASK, &metrics);
    check_process_and_runtime_series(&metrics);
    // The counter prometheus_flask_exporter dashboards use for rates, by method and status.
    let total = |status| {
        metrics.value_with(
            "flask_http_request_total",
            &[("method", "GET"), ("status", status)],
        )
    };
    let ok = ENDPOINTS
        .iter()
        .filter(|(_, _, status)| *status == 200)
        .count();
    assert_eq!(total("200"), Some(ok as f64));
    assert_eq!(total("500"), Some(1.0));
    assert_eq!(total("404"), Some(1.0));
    assert!(metrics.has_type("flask_http_request_total", "counter"));
    assert!(metrics.has_type("flask_http_request_exceptions_total", "counter"));
    let app_info = [("version", "9.8.7"), ("environment", "staging")];
    assert_eq!(
        metrics.value_with("app_info", &app_info),
        Some(1.0),
        "{}",
        metrics.text
    );
    let exporter: Vec<_> = metrics.named("flask_exporter_info").collect();
    assert_eq!(exporter.len(), 1, "{exporter:?}");
    assert!(exporter[0].labels.contains_key("version"));
    assert_eq!(metrics.named("target_info").count(), 0);
}

#[tokio::test]
async fn metrics_listen_moves_metrics_to_their_own_port() {
    let _group = support::shared(Group::Timing);
    let server = Server::start(&["--latency-scale", "0", "--metrics-listen", "127.0.0.1:0"]);
    assert_ne!(
        server.addr, server.metrics_addr,
        "startup line shows two addresses"
    );
    assert_eq!(server.get("/ep_one").await.status, StatusCode::OK);
    assert_eq!(server.get("/metrics").await.status, StatusCode::NOT_FOUND);
    // The metrics listener serves only /metrics, and sees the API's requests.
    assert_eq!(
        get_async(server.metrics_addr, "/ep_one", &[]).await.status,
        StatusCode::NOT_FOUND
    );
    let metrics = server.metrics().await;
    let labels = [
        ("http_request_method", "GET"),
        ("http_route", "/ep_one"),
        ("http_response_status_code", "200"),
    ];
    assert_eq!(
        metrics.value_with("http_server_request_duration_seconds_count", &labels),
        Some(1.0)
    );
}

/// GET /metrics on the API listener with `Authorization: Bearer TOKEN`.
async fn scrape_with_token(server: &Server, token: &str) -> Response {
    let authorization = format!("Bearer {token}");
    get_async(
        server.addr,
        "/metrics",
        &[("authorization", &authorization)],
    )
    .await
}

#[tokio::test]
async fn metrics_token_is_required_when_set() {
    let _group = support::shared(Group::Timing);
    let server = Server::start(&["--latency-scale", "0", "--metrics-token", "s3cret"]);
    let denied = get_async(server.addr, "/metrics", &[]).await;
    assert_eq!(denied.status, StatusCode::UNAUTHORIZED);
    assert!(denied.headers.contains_key(hyper::header::WWW_AUTHENTICATE));
    assert!(
        !denied.body.contains("http_server"),
        "no metrics without the token"
    );
    let wrong = scrape_with_token(&server, "s3cre").await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
    let allowed = scrape_with_token(&server, "s3cret").await;
    assert_eq!(allowed.status, StatusCode::OK);
    assert!(
        allowed
            .body
            .contains("# TYPE http_server_request_duration_seconds histogram")
    );
    // The API itself stays open.
    assert_eq!(server.get("/health").await.status, StatusCode::OK);
}

#[tokio::test]
async fn environment_variables_mirror_the_flags() {
    let _group = support::shared(Group::Timing);
    let server = Server::start_with_env(
        &["serve"],
        &[
            ("REDWATCH_LISTEN", "127.0.0.1:0"),
            ("REDWATCH_NAMING", "flask"),
            ("REDWATCH_LATENCY_SCALE", "0"),
            ("REDWATCH_METRICS_TOKEN", "from-env"),
            ("REDWATCH_ENVIRONMENT", "env-test"),
        ],
    );
    assert_eq!(slept_ms(&server.get("/ep_four").await.body), 0.0);
    let denied = get_async(server.addr, "/metrics", &[]).await;
    assert_eq!(denied.status, StatusCode::UNAUTHORIZED);
    let allowed = scrape_with_token(&server, "from-env").await;
    assert_eq!(allowed.status, StatusCode::OK);
    let metrics = Exposition::parse(&allowed.body);
    let labels = [("method", "GET"), ("path", "/ep_four"), ("status", "200")];
    assert_eq!(
        metrics.value_with("flask_http_request_duration_seconds_count", &labels),
        Some(1.0)
    );
    let info = metrics.named("app_info").next().expect("app_info");
    assert_eq!(info.labels["environment"], "env-test");
}

/// Waits (bounded, about 5 s) until the server has seen at least `count` GET requests to `route`:
/// in flight (its own gauge) or finished (its request counter).
async fn requests_reached_server(server: &Server, route: &str, count: usize) -> bool {
    for _ in 0..250 {
        let metrics = server.metrics().await;
        let active = metrics
            .value_with(
                "http_server_active_requests",
                &[("http_request_method", "GET")],
            )
            .unwrap_or_default();
        let finished: f64 = metrics
            .named("http_server_request_duration_seconds_count")
            .filter(|s| s.labels.get("http_route").map(String::as_str) == Some(route))
            .map(|s| s.value)
            .sum();
        if active + finished >= count as f64 && active >= 1.0 {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    false
}

/// Polls `GET /health` every 20 ms, at most `tries` times, until the server refuses it with a 503
/// (draining after a signal).
async fn refuses_new_requests(addr: std::net::SocketAddr, tries: u32) -> bool {
    for _ in 0..tries {
        if get_async(addr, "/health", &[]).await.status == StatusCode::SERVICE_UNAVAILABLE {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    false
}

/// `redwatch serve` at latency scale 100 (/ep_four sleeps U[0, 80] s) with `--shutdown-grace
/// grace`, and one /ep_four request in flight: the server and the request's task.
async fn serving_a_slow_request(
    grace: &str,
) -> (Server, tokio::task::JoinHandle<Result<Response, String>>) {
    let server = Server::start(&["--latency-scale", "100", "--shutdown-grace", grace]);
    let addr = server.addr;
    let slow = tokio::spawn(async move { try_get_async(addr, "/ep_four", &[]).await });
    assert!(
        requests_reached_server(&server, "/ep_four", 1).await,
        "the slow request never started"
    );
    (server, slow)
}

#[tokio::test]
async fn graceful_shutdown_lets_requests_in_flight_finish() {
    let _group = support::shared(Group::Timing);
    // At scale 5 /ep_four sleeps U[0, 4] s; with 6 requests, all of them finish within
    // 0.5 s with probability (1/8)^6, so some are still running when SIGTERM arrives.
    const IN_FLIGHT: usize = 6;
    let mut server = Server::start(&["--latency-scale", "5", "--shutdown-grace", "20s"]);
    let addr = server.addr;
    let finished = Arc::new(AtomicUsize::new(0));
    let mut requests = JoinSet::new();
    for _ in 0..IN_FLIGHT {
        let finished = Arc::clone(&finished);
        requests.spawn(async move {
            let response = get_async(addr, "/ep_four", &[]).await;
            finished.fetch_add(1, Ordering::SeqCst);
            (response, Instant::now())
        });
    }
    // Every request must have reached the server before the signal: one still connecting
    // afterwards is refused with a 503, as it should be.
    assert!(
        requests_reached_server(&server, "/ep_four", IN_FLIGHT).await,
        "not every request reached the server"
    );

    server.signal("TERM");
    let signalled = Instant::now();

    // While the accepted requests keep running, new API requests are refused with a 503 and a
    // scrape still succeeds, so the last counts reach Prometheus.
    assert!(
        refuses_new_requests(addr, 250).await,
        "new requests still served after SIGTERM"
    );
    let pending = IN_FLIGHT - finished.load(Ordering::SeqCst);
    assert!(pending >= 1, "every request had finished before the check");
    let scrape = get_async(addr, "/metrics", &[]).await;
    assert_eq!(
        scrape.status,
        StatusCode::OK,
        "a scrape during the grace period"
    );
    assert!(
        scrape
            .body
            .contains("http_route=\"/health\",http_response_status_code=\"503\""),
        "the refused request is counted: {}",
        scrape.body
    );

    let mut completed_after_signal = 0;
    while let Some(joined) = requests.join_next().await {
        let (response, at) = joined.expect("request task");
        assert_eq!(
            response.status,
            StatusCode::OK,
            "in-flight request after SIGTERM"
        );
        assert!(response.body.starts_with("endpoint 4 slept "));
        if at > signalled {
            completed_after_signal += 1;
        }
    }
    assert!(completed_after_signal >= 1);

    let status = server
        .wait_exit(Duration::from_secs(25))
        .await
        .expect("exits after SIGTERM");
    assert_eq!(
        status.code(),
        Some(0),
        "exit status; stderr:\n{}",
        server.stderr()
    );
    assert!(
        try_get_async(addr, "/health", &[]).await.is_err(),
        "still accepting after exit"
    );
    let stderr = server.stderr();
    assert!(stderr.contains("shutting down"), "{stderr}");
    assert!(stderr.contains("SIGTERM"), "{stderr}");
}

#[tokio::test]
async fn a_second_signal_exits_at_once() {
    let _group = support::shared(Group::Timing);
    // The grace period is a minute.
    let (mut server, slow) = serving_a_slow_request("60s").await;
    server.signal("INT");
    // The first signal is being handled: new requests are refused.
    assert!(
        refuses_new_requests(server.addr, 100).await,
        "not draining after the first signal"
    );
    server.signal("INT");
    let status = server
        .wait_exit(Duration::from_secs(5))
        .await
        .expect("exits at once after the second signal");
    assert_eq!(status.code(), Some(130), "stderr:\n{}", server.stderr());
    assert!(
        server.stderr().contains("second signal"),
        "{}",
        server.stderr()
    );
    slow.abort();
}

#[tokio::test]
async fn shutdown_grace_bounds_the_wait_for_slow_requests() {
    let _group = support::shared(Group::Timing);
    // /ep_four sleeps far beyond the 500 ms grace period.
    let (mut server, slow) = serving_a_slow_request("500ms").await;
    server.signal("TERM");
    let signalled = Instant::now();
    let status = server
        .wait_exit(Duration::from_secs(15))
        .await
        .expect("exits after the grace period");
    let waited = signalled.elapsed();
    assert_eq!(status.code(), Some(0), "stderr:\n{}", server.stderr());
    assert!(
        waited >= Duration::from_millis(450),
        "exited after {waited:?}, before the grace period"
    );
    assert!(
        server.stderr().contains("still in flight"),
        "{}",
        server.stderr()
    );
    let outcome = slow.await.expect("request task");
    assert!(
        outcome.is_err(),
        "the slow request was cut off, not answered: {outcome:?}"
    );
}

#[tokio::test]
async fn idle_keep_alive_connections_do_not_hold_up_shutdown() {
    let _group = support::shared(Group::Timing);
    use http_body_util::{BodyExt, Empty};
    use hyper::body::Bytes;

    let mut server = Server::start(&["--latency-scale", "0", "--shutdown-grace", "30s"]);
    let stream = tokio::net::TcpStream::connect(server.addr)
        .await
        .expect("connect");
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .expect("handshake");
    let connection = tokio::spawn(connection);
    let request = hyper::Request::get("/health")
        .header(hyper::header::HOST, server.addr.to_string())
        .body(Empty::<Bytes>::new())
        .expect("request");
    let response = sender.send_request(request).await.expect("response");
    assert_eq!(response.status(), StatusCode::OK);
    response.into_body().collect().await.expect("body");
    // The connection stays open and idle, kept alive by `sender`.
    server.signal("TERM");
    let status = server.wait_exit(Duration::from_secs(10)).await;
    assert_eq!(
        status.and_then(|s| s.code()),
        Some(0),
        "an idle connection delayed the exit; stderr:\n{}",
        server.stderr()
    );
    drop(sender);
    connection.abort();
}

#[tokio::test]
async fn a_signal_right_after_the_startup_line_exits_cleanly() {
    let _group = support::shared(Group::Timing);
    for signal in ["TERM", "INT"] {
        let mut server = Server::start(&[]);
        server.signal(signal);
        let status = server
            .wait_exit(Duration::from_secs(15))
            .await
            .expect("exits");
        assert_eq!(
            status.code(),
            Some(0),
            "SIG{signal}; stderr:\n{}",
            server.stderr()
        );
        let stderr = server.stderr();
        assert!(stderr.contains(&format!("SIG{signal}")), "{stderr}");
        // Logs are structured text, without terminal colour codes when not at a terminal.
        assert!(stderr.contains(" INFO "), "{stderr}");
        assert!(
            !stderr.contains('\u{1b}'),
            "colour codes in piped logs: {stderr:?}"
        );
    }
}

#[tokio::test]
async fn log_level_flag_filters_logs() {
    let _group = support::shared(Group::Timing);
    let mut server = Server::start(&["--log-level", "warn"]);
    server.signal("TERM");
    let status = server
        .wait_exit(Duration::from_secs(15))
        .await
        .expect("exits");
    assert_eq!(status.code(), Some(0));
    let stderr = server.stderr();
    assert!(
        !stderr.contains("INFO"),
        "info logs at --log-level warn: {stderr}"
    );
}

/// Asserts that `redwatch ARGS` fails with one line on stderr containing every `expected` part.
fn assert_one_line_error(args: &[&str], env: &[(&str, &str)], expected: &[&str]) {
    let run = run_to_exit(args, env, Duration::from_secs(20));
    let what = format!("`redwatch {}` with {env:?}", args.join(" "));
    assert_eq!(
        run.status.code(),
        Some(2),
        "{what}: status; stderr {:?}",
        run.stderr
    );
    assert_eq!(run.stdout, "", "{what}: stdout");
    let stderr = run.stderr.trim_end();
    assert_eq!(
        stderr.lines().count(),
        1,
        "{what}: not one line: {stderr:?}"
    );
    assert!(stderr.starts_with("error: "), "{what}: {stderr:?}");
    for part in expected {
        assert!(stderr.contains(part), "{what}: {stderr:?} lacks {part:?}");
    }
    let lower = stderr.to_lowercase();
    assert!(
        !lower.contains("panicked") && !lower.contains("backtrace"),
        "{what}: {stderr:?}"
    );
}

#[test]
fn bad_flags_get_a_one_line_error() {
    let _group = support::shared(Group::Timing);
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a port to occupy");
    let taken = taken.local_addr().expect("local address").to_string();
    assert_one_line_error(
        &["serve", "--listen", &taken],
        &[],
        &[&format!("cannot listen on {taken}"), "in use"],
    );
    assert_one_line_error(
        &[
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--metrics-listen",
            &taken,
        ],
        &[],
        &[&format!("cannot listen for metrics on {taken}"), "in use"],
    );
    assert_one_line_error(
        &["serve", "--listen", "localhost:http"],
        &[],
        &["--listen", "expected IP:PORT", "localhost:http"],
    );
    assert_one_line_error(
        &["serve", "--listen", "127.0.0.1"],
        &[],
        &["--listen", "IP:PORT"],
    );
    assert_one_line_error(
        &["serve", "--naming", "prom"],
        &[],
        &["--naming", "\"prom\"", "otel or flask"],
    );
    assert_one_line_error(
        &["serve"],
        &[("REDWATCH_NAMING", "prom")],
        &["\"prom\"", "otel or flask"],
    );
    assert_one_line_error(
        &["serve", "--latency-scale", "-1"],
        &[],
        &["--latency-scale", ">= 0", "-1"],
    );
    assert_one_line_error(
        &["serve", "--latency-scale=-0.5"],
        &[],
        &["--latency-scale", ">= 0"],
    );
    assert_one_line_error(
        &["serve", "--latency-scale", "NaN"],
        &[],
        &["--latency-scale", ">= 0"],
    );
    assert_one_line_error(
        &["serve", "--shutdown-grace", "5y"],
        &[],
        &["--shutdown-grace", "\"y\""],
    );
    assert_one_line_error(&["serve", "--bogus"], &[], &["--bogus"]);
}

/// Splits clap's long help into (option line, description) pairs.
fn options(help: &str) -> Vec<(String, String)> {
    let mut options: Vec<(String, String)> = Vec::new();
    for line in help.lines() {
        let trimmed = line.trim_start();
        let indent = line.len() - trimmed.len();
        if (1..=6).contains(&indent) && trimmed.starts_with('-') {
            options.push((trimmed.to_owned(), String::new()));
        } else if let Some((_, description)) = options.last_mut().filter(|_| indent > 6) {
            description.push_str(trimmed);
            description.push(' ');
        }
    }
    options
}

#[test]
fn help_states_every_default_and_environment_variable() {
    let _group = support::shared(Group::Timing);
    let run = run_to_exit(&["serve", "--help"], &[], Duration::from_secs(20));
    assert_eq!(run.status.code(), Some(0));
    let help = run.stdout;
    let options = options(&help);
    let flags: Vec<&str> = options.iter().map(|(flag, _)| flag.as_str()).collect();
    for flag in [
        "--listen",
        "--naming",
        "--latency-scale",
        "--app-version",
        "--environment",
        "--metrics-listen",
        "--metrics-token",
        "--shutdown-grace",
        "--log-level",
    ] {
        let Some((_, description)) = options
            .iter()
            .find(|(line, _)| line.starts_with(&format!("{flag} ")))
        else {
            panic!("{flag} missing from serve --help: {flags:?}");
        };
        let env = format!("REDWATCH_{}", flag[2..].replace('-', "_").to_uppercase());
        assert!(
            description.contains(&format!("[env: {env}")),
            "{flag}: {description}"
        );
        assert!(
            description.contains("[default: ") || description.contains("Default: "),
            "{flag} does not state its default: {description}"
        );
    }
    assert!(help.contains("[default: 127.0.0.1:5000]"), "{help}");
    assert!(help.contains("0.0.0.0"), "when to listen on all interfaces");
    assert!(help.contains("RUST_LOG"));

    let run = run_to_exit(&["--help"], &[], Duration::from_secs(20));
    assert_eq!(run.status.code(), Some(0));
    for command in ["serve", "load", "generate", "demo"] {
        assert!(
            run.stdout.contains(command),
            "{command} missing: {}",
            run.stdout
        );
    }
}

#[test]
fn version_prints_the_package_version() {
    let _group = support::shared(Group::Timing);
    let version = env!("CARGO_PKG_VERSION");
    let run = run_to_exit(&["--version"], &[], Duration::from_secs(20));
    assert_eq!(run.status.code(), Some(0));
    assert_eq!(run.stdout.trim(), format!("redwatch {version}"));
    // clap names the subcommand `redwatch-serve`.
    let run = run_to_exit(&["serve", "--version"], &[], Duration::from_secs(20));
    assert_eq!(run.status.code(), Some(0));
    assert_eq!(run.stdout.trim(), format!("redwatch-serve {version}"));
}

#[tokio::test]
async fn promtool_accepts_the_exposition_in_both_presets() {
    let _group = support::shared(Group::Timing);
    let Some(promtool) = require_tool("promtool", "Debian package prometheus") else {
        return;
    };
    for preset in [&OTEL, &FLASK] {
        let (_server, metrics) = scrape_after_every_endpoint(preset).await;
        let mut child = Command::new(&promtool)
            .args(["check", "metrics"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("cannot run promtool");
        let mut stdin = child.stdin.take().expect("stdin is piped");
        stdin
            .write_all(metrics.text.as_bytes())
            .expect("write to promtool");
        drop(stdin);
        let output = child.wait_with_output().expect("promtool output");
        let report = format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        assert!(
            output.status.success(),
            "promtool on {}: {report}",
            preset.flag
        );
        assert_eq!(report.trim(), "", "promtool on {}", preset.flag);
    }
}

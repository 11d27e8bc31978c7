//! The layer records duration, method, route and status, whatever happens to the request.

use std::convert::Infallible;
use std::time::Duration;

use crate::support::exposition::{find, total};
use crate::support::scrape;
use axum::Router;
use axum::body::Body;
use axum::routing::{get, post};
use http::{Request, Response, StatusCode};
use http_body_util::BodyExt;
use redwatch::{ClassifyRoute, Metrics, Naming, UriPathRoute};

/// Requests recorded by the series of `snapshot` that `filter` accepts.
fn requests(metrics: &Metrics, filter: impl Fn(&redwatch::SeriesSnapshot) -> bool) -> u64 {
    metrics.snapshot().requests(filter)
}

fn active(metrics: &Metrics) -> i64 {
    metrics.snapshot().active_requests()
}
use tower::{ServiceBuilder, ServiceExt};

const DURATION: &str = "http_server_request_duration_seconds";
const ACTIVE: &str = "http_server_active_requests";

fn get_request(uri: &str) -> Request<Body> {
    Request::get(uri).body(Body::empty()).unwrap()
}

fn app(metrics: &Metrics) -> Router {
    Router::new()
        .route("/", get(|| async { "home" }))
        .route(
            "/users/{id}",
            get(|| async { "user" }).post(|| async { StatusCode::CREATED }),
        )
        .route("/fail", get(|| async { StatusCode::SERVICE_UNAVAILABLE }))
        .route(
            "/slow",
            get(|| async {
                tokio::time::sleep(Duration::from_secs(30)).await;
                "late"
            }),
        )
        .merge(metrics.router())
        .layer(metrics.layer())
}

#[tokio::test]
async fn axum_router_records_method_route_template_and_status() {
    let metrics = Metrics::new();
    let app = app(&metrics);
    for uri in ["/", "/users/1", "/users/2", "/fail", "/nowhere/42"] {
        app.clone().oneshot(get_request(uri)).await.unwrap();
    }
    let post = Request::post("/users/3").body(Body::empty()).unwrap();
    assert_eq!(
        app.clone().oneshot(post).await.unwrap().status(),
        StatusCode::CREATED
    );

    let snapshot = metrics.snapshot();
    let count = |method: &str, route: &str, status: u16| {
        snapshot.requests(|s| s.method == method && s.route == route && s.status == status)
    };
    assert_eq!(count("GET", "/", 200), 1);
    assert_eq!(
        count("GET", "/users/{id}", 200),
        2,
        "ids collapse into the template"
    );
    assert_eq!(count("POST", "/users/{id}", 201), 1);
    assert_eq!(count("GET", "/fail", 503), 1);
    assert_eq!(
        count("GET", "unmatched", 404),
        1,
        "404s share one route value"
    );
    assert_eq!(snapshot.series.len(), 5, "one series per label set");
    assert_eq!(snapshot.route("/users/1").count(), 0);
    assert_eq!(snapshot.active_requests(), 0);
}

#[derive(Clone)]
struct GrpcMethods;

impl ClassifyRoute for GrpcMethods {
    fn classify<'a, B>(&self, request: &'a Request<B>) -> Option<std::borrow::Cow<'a, str>> {
        let path = request.uri().path();
        path.starts_with("/shop.Orders/").then_some(path.into())
    }
}

#[tokio::test]
async fn plain_tower_services_use_a_classifier() {
    let metrics = Metrics::new();
    let handler = tower::service_fn(|_request: Request<String>| async {
        Ok::<_, Infallible>(Response::new(String::from("ok")))
    });

    let classified = ServiceBuilder::new()
        .layer(metrics.layer().classify_with(GrpcMethods))
        .service(handler);
    classified
        .clone()
        .oneshot(
            Request::post("/shop.Orders/Create")
                .body(String::new())
                .unwrap(),
        )
        .await
        .unwrap();
    classified
        .oneshot(Request::get("/other").body(String::new()).unwrap())
        .await
        .unwrap();
    let by_path = ServiceBuilder::new()
        .layer(metrics.layer().classify_with(UriPathRoute))
        .service(handler);
    by_path
        .oneshot(
            Request::get("/shop.Orders/List")
                .body(String::new())
                .unwrap(),
        )
        .await
        .unwrap();

    let create = requests(&metrics, |s| {
        s.route == "/shop.Orders/Create" && s.method == "POST"
    });
    assert_eq!(create, 1);
    assert_eq!(requests(&metrics, |s| s.route == "unmatched"), 1);
    assert_eq!(requests(&metrics, |s| s.route == "/shop.Orders/List"), 1);
}

/// Closures classify too: one borrows the route from the request, one computes it (here
/// normalising versioned paths), and both may say "no route".
#[tokio::test]
async fn closures_borrow_or_compute_the_route() {
    use std::borrow::Cow;

    let metrics = Metrics::new();
    let handler = tower::service_fn(|_request: Request<String>| async {
        Ok::<_, Infallible>(Response::new(String::from("ok")))
    });
    let borrowed = ServiceBuilder::new()
        .layer(metrics.layer().classify_with(redwatch::classify_fn(|head| {
            let path = head.uri().path();
            path.starts_with("/shop.").then_some(Cow::Borrowed(path))
        })))
        .service(handler);
    let computed = ServiceBuilder::new()
        .layer(metrics.layer().classify_with(redwatch::classify_fn(|head| {
            let rest = head.uri().path().strip_prefix("/v")?;
            let (_version, resource) = rest.split_once('/')?;
            let resource = resource.split('/').next()?;
            let method = head.method().as_str().to_ascii_lowercase();
            Some(Cow::Owned(format!("/{resource}/{{id}} ({method})")))
        })))
        .service(handler);
    let get = |uri: &str| Request::get(uri).body(String::new()).unwrap();
    for uri in ["/shop.Orders/Create", "/elsewhere"] {
        borrowed.clone().oneshot(get(uri)).await.unwrap();
    }
    for uri in ["/v1/users/7", "/v2/users/8", "/health"] {
        computed.clone().oneshot(get(uri)).await.unwrap();
    }
    assert_eq!(requests(&metrics, |s| s.route == "/shop.Orders/Create"), 1);
    assert_eq!(requests(&metrics, |s| s.route == "/users/{id} (get)"), 2);
    assert_eq!(requests(&metrics, |s| s.route == "unmatched"), 2);
    assert_eq!(metrics.snapshot().series.len(), 3);
}

fn streaming_app(metrics: &Metrics) -> Router {
    Router::new()
        .route(
            "/stream",
            get(|| async {
                let chunks = tokio_stream::StreamExt::throttle(
                    tokio_stream::iter(["a", "b", "c"].map(Ok::<_, Infallible>)),
                    Duration::from_millis(150),
                );
                Body::from_stream(chunks)
            }),
        )
        .layer(metrics.layer())
}

#[tokio::test]
async fn streaming_bodies_are_timed_until_fully_sent() {
    let metrics = Metrics::new();
    let response = streaming_app(&metrics)
        .oneshot(get_request("/stream"))
        .await
        .unwrap();
    // The head is out, the body is not: still in flight, nothing recorded yet.
    let snapshot = metrics.snapshot();
    assert_eq!(snapshot.requests(|_| true), 0);
    let get = snapshot.active.iter().find(|gauge| gauge.method == "GET");
    assert_eq!(get.map(|gauge| gauge.value), Some(1));

    let body = response.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(&body[..], b"abc");
    let snapshot = metrics.snapshot();
    let series: Vec<_> = snapshot.route("/stream").collect();
    assert_eq!(series.len(), 1);
    assert_eq!((series[0].status, series[0].duration.count), (200, 1));
    let seconds = series[0].duration.sum;
    assert!(seconds >= 0.28, "duration covers the whole body: {seconds}");
    assert_eq!(snapshot.active_requests(), 0);
}

#[tokio::test]
async fn a_body_dropped_midway_is_recorded_once_with_its_status() {
    let metrics = Metrics::new();
    let response = streaming_app(&metrics)
        .oneshot(get_request("/stream"))
        .await
        .unwrap();
    let mut body = response.into_body();
    let first = body.frame().await.unwrap().unwrap();
    assert_eq!(first.into_data().unwrap(), "a");
    drop(body);

    assert_eq!(
        requests(&metrics, |s| s.route == "/stream" && s.status == 200),
        1
    );
    assert_eq!(requests(&metrics, |_| true), 1);
    assert_eq!(active(&metrics), 0);
}

#[tokio::test]
async fn a_cancelled_request_returns_the_gauge_to_zero_and_records_499() {
    let metrics = Metrics::new();
    let app = app(&metrics);
    let pending = app.oneshot(get_request("/slow"));
    let outcome = tokio::time::timeout(Duration::from_millis(50), pending).await;
    assert!(outcome.is_err(), "the slow handler is still running");

    assert_eq!(active(&metrics), 0);
    assert_eq!(
        requests(&metrics, |s| s.route == "/slow" && s.status == 499),
        1
    );
}

#[tokio::test]
async fn a_tower_timeout_outside_the_layer_returns_the_gauge_to_zero() {
    let metrics = Metrics::new();
    #[allow(deprecated)]
    let app = app(&metrics).layer(tower_http::timeout::TimeoutLayer::new(
        Duration::from_millis(50),
    ));
    let response = app.oneshot(get_request("/slow")).await.unwrap();
    assert_eq!(response.status(), StatusCode::REQUEST_TIMEOUT);
    assert_eq!(active(&metrics), 0);
    assert_eq!(requests(&metrics, |s| s.status == 499), 1);
}

#[tokio::test]
async fn a_client_disconnect_returns_the_gauge_to_zero() {
    use tokio::io::AsyncWriteExt;

    let metrics = Metrics::new();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(axum::serve(listener, app(&metrics)).into_future());

    let mut client = tokio::net::TcpStream::connect(addr).await.unwrap();
    client
        .write_all(b"GET /slow HTTP/1.1\r\nhost: test\r\n\r\n")
        .await
        .unwrap();
    wait_until(|| active(&metrics) == 1).await;
    drop(client);
    wait_until(|| active(&metrics) == 0).await;
    assert_eq!(
        requests(&metrics, |s| s.route == "/slow" && s.status == 499),
        1
    );
    server.abort();
}

/// Polls `condition` every 10 ms for at most 5 s.
async fn wait_until(condition: impl Fn() -> bool) {
    for _ in 0..500 {
        if condition() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("condition not met within 5 s");
}

fn panicking_routes() -> Router {
    Router::new().route(
        "/panic",
        get(|| async {
            if true {
                panic!("handler bug");
            }
            "unreachable"
        }),
    )
}

#[tokio::test]
async fn a_panic_caught_outside_the_layer_is_a_500_and_an_exception() {
    let metrics = Metrics::builder().naming(Naming::Flask).build().unwrap();
    let app = panicking_routes()
        .layer(metrics.layer())
        .layer(tower_http::catch_panic::CatchPanicLayer::new());
    let response = app.oneshot(get_request("/panic")).await.unwrap();
    assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);

    let snapshot = metrics.snapshot();
    assert_eq!(
        snapshot.requests(|s| s.route == "/panic" && s.status == 500),
        1
    );
    let exceptions: Vec<_> = snapshot
        .exceptions
        .iter()
        .map(|e| (e.method, e.status, e.count))
        .collect();
    assert_eq!(exceptions, [("GET", 500, 1)]);
    assert_eq!(snapshot.active_requests(), 0);
    // The flask counters are derived when encoding: read them from the text.
    let samples = scrape(&metrics);
    let labels = [("method", "GET"), ("status", "500")];
    assert_eq!(
        total(&samples, "flask_http_request_exceptions_total", &labels),
        1.0
    );
    assert_eq!(total(&samples, "flask_http_request_total", &labels), 1.0);
}

#[tokio::test]
async fn a_panic_caught_inside_the_layer_is_a_500() {
    let metrics = Metrics::builder().naming(Naming::Flask).build().unwrap();
    let app = panicking_routes()
        .layer(tower_http::catch_panic::CatchPanicLayer::new())
        .layer(metrics.layer());
    let response = app.oneshot(get_request("/panic")).await.unwrap();
    assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
    // Recorded once the response body is done with.
    drop(response);
    let samples = scrape(&metrics);
    assert_eq!(
        total(&samples, "flask_http_request_total", &[("status", "500")]),
        1.0
    );
}

#[tokio::test]
async fn the_metrics_endpoint_is_not_counted_unless_asked() {
    let quiet = Metrics::new();
    let app = app(&quiet);
    app.clone().oneshot(get_request("/metrics")).await.unwrap();
    assert_eq!(quiet.snapshot().route("/metrics").count(), 0);

    let counted = Metrics::builder()
        .count_metrics_endpoint(true)
        .build()
        .unwrap();
    app_with(&counted)
        .oneshot(get_request("/metrics"))
        .await
        .unwrap();
    assert_eq!(requests(&counted, |s| s.route == "/metrics"), 1);
}

fn app_with(metrics: &Metrics) -> Router {
    app(metrics)
}

#[cfg(feature = "regex")]
#[tokio::test]
async fn routes_can_be_excluded_by_template_or_regex() {
    let metrics = Metrics::builder()
        .exclude_route("/")
        .exclude_routes_matching("^/users/")
        .build()
        .unwrap();
    let app = app(&metrics);
    for uri in ["/", "/users/7", "/fail"] {
        app.clone().oneshot(get_request(uri)).await.unwrap();
    }
    let snapshot = metrics.snapshot();
    let routes: Vec<&str> = snapshot.series.iter().map(|s| s.route.as_str()).collect();
    assert_eq!(routes, ["/fail"], "only /fail is recorded");
    assert_eq!(snapshot.requests(|_| true), 1);
}

#[tokio::test]
async fn flask_preset_uses_prometheus_flask_exporter_names() {
    let metrics = Metrics::builder()
        .naming(Naming::Flask)
        .app_version("1.2.3")
        .environment("staging")
        .build()
        .unwrap();
    let app = app(&metrics);
    for uri in ["/", "/users/5", "/fail"] {
        app.clone().oneshot(get_request(uri)).await.unwrap();
    }
    let samples = scrape(&metrics);
    assert_eq!(
        total(
            &samples,
            "flask_http_request_duration_seconds_count",
            &[
                ("method", "GET"),
                ("path", "/users/{id}"),
                ("status", "200")
            ]
        ),
        1.0
    );
    assert_eq!(
        total(
            &samples,
            "flask_http_request_total",
            &[("method", "GET"), ("status", "200")]
        ),
        2.0
    );
    assert_eq!(
        total(&samples, "flask_http_request_total", &[("status", "503")]),
        1.0
    );
    assert_eq!(find(&samples, "flask_exporter_info", &[]).len(), 1);
    assert_eq!(
        total(
            &samples,
            "app_info",
            &[("version", "1.2.3"), ("environment", "staging")]
        ),
        1.0
    );
    assert!(samples.iter().all(|s| !s.name.starts_with("http_server_")));
}

#[tokio::test]
async fn namespace_constant_labels_and_custom_buckets_apply() {
    let metrics = Metrics::builder()
        .namespace("shop")
        .const_label("service", "checkout")
        .const_label("env", "prod")
        .duration_buckets(vec![0.1, 1.0])
        .build()
        .unwrap();
    app(&metrics).oneshot(get_request("/")).await.unwrap();
    let samples = scrape(&metrics);
    let buckets = find(
        &samples,
        &format!("shop_{DURATION}_bucket"),
        &[("service", "checkout"), ("env", "prod")],
    );
    let les: Vec<&str> = buckets.iter().map(|s| s.labels["le"].as_str()).collect();
    assert_eq!(les, ["0.1", "1", "+Inf"]);
    assert_eq!(
        total(
            &samples,
            &format!("shop_{ACTIVE}"),
            &[("service", "checkout")]
        ),
        0.0
    );
    assert!(find(&samples, "process_threads", &[("service", "checkout")]).len() <= 1);
    assert_eq!(find(&samples, "target_info", &[("env", "prod")]).len(), 1);
}

#[tokio::test]
async fn body_sizes_are_recorded_when_enabled() {
    let metrics = Metrics::builder().body_sizes(true).build().unwrap();
    let app = Router::new()
        .route("/echo", post(|body: String| async move { body.repeat(2) }))
        .layer(metrics.layer());
    let request = Request::post("/echo")
        .header("content-length", "5")
        .body(Body::from("hello"))
        .unwrap();
    let response = app.oneshot(request).await.unwrap();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(body.len(), 10);

    let snapshot = metrics.snapshot();
    let echo: Vec<_> = snapshot.route("/echo").collect();
    assert_eq!(echo.len(), 1);
    let (request, response) = (
        echo[0].request_size.as_ref(),
        echo[0].response_size.as_ref(),
    );
    assert_eq!(request.map(|h| (h.count, h.sum)), Some((1, 5.0)));
    assert_eq!(response.map(|h| (h.count, h.sum)), Some((1, 10.0)));
    assert!(
        Metrics::new()
            .snapshot()
            .series
            .iter()
            .all(|s| s.request_size.is_none())
    );

    let without = Metrics::new();
    let text = String::from_utf8(without.render(redwatch::Format::Prometheus)).unwrap();
    assert!(!text.contains("body_size"), "body sizes are opt-in");
}

/// 10,000 requests, a third completed, a third aborted before or while the handler runs, a third
/// whose body is dropped midway. Afterwards nothing is in flight, every completed request is
/// counted exactly once, and an aborted one at most once (as 499).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_aborted_requests_leave_exact_counts() {
    const REQUESTS: usize = 10_000;
    let metrics = Metrics::new();
    // `/hold` says it has started, then never answers: its requests are aborted inside it.
    let (entered_tx, mut entered) = tokio::sync::mpsc::unbounded_channel::<()>();
    let app = Router::new()
        .route("/fast", get(|| async { "fast" }))
        .route(
            "/hold",
            get(move || {
                let entered_tx = entered_tx.clone();
                async move {
                    let _ = entered_tx.send(());
                    std::future::pending::<&str>().await
                }
            }),
        )
        .route(
            "/stream",
            get(|| async {
                let chunks = tokio_stream::StreamExt::throttle(
                    tokio_stream::iter(["a", "b", "c"].map(Ok::<_, Infallible>)),
                    Duration::from_millis(5),
                );
                Body::from_stream(chunks)
            }),
        )
        .layer(metrics.layer());
    let mut completed = 0u64;
    let mut aborted = 0u64;
    let mut streams_cut = 0u64;
    let mut held = 0u64;
    let mut tasks = Vec::with_capacity(REQUESTS);
    for i in 0..REQUESTS {
        let app = app.clone();
        match i % 3 {
            0 => tasks.push((
                0,
                tokio::spawn(async move {
                    let response = app.oneshot(get_request("/fast")).await.unwrap();
                    response.into_body().collect().await.unwrap();
                }),
            )),
            1 => {
                // Aborted at once (usually before the layer sees it) or inside the handler.
                let task = tokio::spawn(async move {
                    let _ = app.oneshot(get_request("/hold")).await;
                });
                if i % 2 == 0 {
                    entered.recv().await.expect("the handler started");
                    held += 1;
                }
                task.abort();
                tasks.push((1, task));
            }
            _ => tasks.push((
                2,
                tokio::spawn(async move {
                    let response = app.oneshot(get_request("/stream")).await.unwrap();
                    let mut body = response.into_body();
                    let _ = body.frame().await;
                    drop(body);
                }),
            )),
        }
    }
    for (kind, task) in tasks {
        let finished = task.await.is_ok();
        match (kind, finished) {
            (0, true) => completed += 1,
            (0, false) => panic!("a plain request failed"),
            (1, true) => completed += 1,
            (1, false) => aborted += 1,
            (_, _) => streams_cut += 1,
        }
    }
    let snapshot = metrics.snapshot();
    assert_eq!(snapshot.active_requests(), 0, "requests still in flight");
    let ok = snapshot.requests(|s| s.status == 200) as f64;
    let abandoned = snapshot.requests(|s| s.status == 499) as f64;
    // Completed requests and cut streams (their status was sent) are 200s, each exactly once.
    assert_eq!(
        ok,
        (completed + streams_cut) as f64,
        "completed {completed}, cut streams {streams_cut}, aborted {aborted}"
    );
    // Requests aborted inside the handler are 499s; those aborted before it may be, once.
    assert!(
        (held as f64..=aborted as f64).contains(&abandoned),
        "{abandoned} abandoned recorded for {held} aborted in the handler, {aborted} in all"
    );
    assert_eq!(
        snapshot.requests(|_| true) as f64,
        ok + abandoned,
        "other statuses"
    );
    assert!(
        held > 1000,
        "only {held} requests were aborted in the handler"
    );
}

//! A label of the user's own per request, capped, and (feature `opt-out`) requests that opt out
//! of recording.

use axum::Router;
use axum::body::Body;
use axum::routing::get;
use axum::{extract::Request as AxumRequest, middleware::Next};
use http::{Request, StatusCode};
use http_body_util::BodyExt;
use redwatch::{Format, Metrics, RequestLabel};
use tower::ServiceExt;

use crate::support::exposition::{Exposition, find};

const COUNT: &str = "http_server_request_duration_seconds_count";

async fn send(app: &Router, uri: &str, tenant: Option<&str>) -> StatusCode {
    let mut request = Request::get(uri);
    if let Some(tenant) = tenant {
        request = request.header("x-tenant", tenant);
    }
    let response = app
        .clone()
        .oneshot(request.body(Body::empty()).unwrap())
        .await
        .unwrap();
    let status = response.status();
    response.into_body().collect().await.unwrap();
    status
}

fn app(metrics: &Metrics) -> Router {
    Router::new()
        .route("/orders", get(|| async { "orders" }))
        .layer(metrics.layer())
}

/// The request count of the series with these labels (and any others), if there is one.
fn count_of(text: &Exposition, labels: &[(&str, &str)]) -> Option<f64> {
    let found = find(&text.samples, COUNT, labels);
    (!found.is_empty()).then(|| found.iter().map(|sample| sample.value).sum())
}

fn count(text: &Exposition, route: &str, tenant: &str) -> Option<f64> {
    count_of(
        text,
        &[
            ("http_request_method", "GET"),
            ("http_route", route),
            ("http_response_status_code", "200"),
            ("tenant", tenant),
        ],
    )
}

#[tokio::test]
async fn a_header_label_keeps_its_values_up_to_the_cap_then_overflow() {
    let metrics = Metrics::builder()
        .request_label(RequestLabel::from_header("tenant", "x-tenant").max_values(3))
        .build()
        .unwrap();
    let app = app(&metrics);
    for tenant in ["acme", "acme", "globex", "initech", "umbrella", "acme"] {
        send(&app, "/orders", Some(tenant)).await;
    }
    send(&app, "/orders", None).await;
    send(&app, "/orders", Some(&"x".repeat(101))).await;

    for format in [Format::Prometheus, Format::OpenMetrics] {
        let text = String::from_utf8(metrics.render(format)).unwrap();
        let exposition = match format {
            Format::Prometheus => Exposition::parse(&text),
            Format::OpenMetrics => Exposition::parse_openmetrics(&text),
        };
        assert_eq!(count(&exposition, "/orders", "acme"), Some(3.0), "{text}");
        assert_eq!(count(&exposition, "/orders", "globex"), Some(1.0));
        assert_eq!(count(&exposition, "/orders", "initech"), Some(1.0));
        // The cap of 3 is reached: umbrella, the missing header's "" and the long value.
        assert_eq!(
            count(&exposition, "/orders", "overflow"),
            Some(3.0),
            "{text}"
        );
        assert_eq!(count(&exposition, "/orders", "umbrella"), None);
    }
    let snapshot = metrics.snapshot();
    let mut values: Vec<&str> = snapshot
        .series
        .iter()
        .filter_map(|series| series.request_label.as_deref())
        .collect();
    values.sort();
    assert_eq!(values, ["acme", "globex", "initech", "overflow"]);
    assert_eq!(snapshot.requests(|_| true), 8);
}

#[tokio::test]
async fn an_extension_from_middleware_labels_the_request() {
    #[derive(Clone)]
    struct Plan(&'static str);
    impl AsRef<str> for Plan {
        fn as_ref(&self) -> &str {
            self.0
        }
    }
    let metrics = Metrics::builder()
        .request_label(RequestLabel::from_extension::<Plan>("plan"))
        .build()
        .unwrap();
    // The "authentication" middleware runs before the metrics layer (it is added after it).
    let app = app(&metrics).layer(axum::middleware::from_fn(
        |mut request: AxumRequest, next: Next| async move {
            let plan = match request.headers().get("x-tenant").map(|v| v.as_bytes()) {
                Some(b"acme") => Plan("enterprise"),
                _ => Plan("free"),
            };
            request.extensions_mut().insert(plan);
            next.run(request).await
        },
    ));
    send(&app, "/orders", Some("acme")).await;
    send(&app, "/orders", Some("acme")).await;
    send(&app, "/orders", None).await;
    let text = String::from_utf8(metrics.render(Format::Prometheus)).unwrap();
    let labels = |plan: &'static str| {
        [
            ("http_request_method", "GET"),
            ("http_route", "/orders"),
            ("http_response_status_code", "200"),
            ("plan", plan),
        ]
    };
    let exposition = Exposition::parse(&text);
    assert_eq!(count_of(&exposition, &labels("enterprise")), Some(2.0));
    assert_eq!(count_of(&exposition, &labels("free")), Some(1.0));
}

#[cfg(feature = "opt-out")]
#[tokio::test]
async fn a_handler_opts_its_request_out() {
    let metrics = Metrics::new();
    let app = Router::new()
        .route("/orders", get(|| async { "orders" }))
        .route(
            "/ready",
            get(|| async { (axum::Extension(redwatch::DisableMetrics), "ready") }),
        )
        .layer(metrics.layer());
    assert_eq!(send(&app, "/ready", None).await, StatusCode::OK);
    send(&app, "/orders", None).await;
    let snapshot = metrics.snapshot();
    assert_eq!(snapshot.requests(|s| s.route == "/ready"), 0);
    assert_eq!(snapshot.requests(|s| s.route == "/orders"), 1);
    assert_eq!(
        snapshot.active_requests(),
        0,
        "the opted-out request left the gauge"
    );
    assert!(snapshot.series.iter().all(|s| s.request_label.is_none()));
}

#[test]
fn bad_request_labels_are_refused_with_a_reason() {
    let refuse = |label: RequestLabel| {
        Metrics::builder()
            .const_label("region", "eu")
            .request_label(label)
            .build()
            .unwrap_err()
            .to_string()
    };
    assert!(refuse(RequestLabel::from_header("http_route", "x-a")).contains("reserved"));
    assert!(refuse(RequestLabel::from_header("region", "x-a")).contains("constant"));
    assert!(refuse(RequestLabel::from_header("1tenant", "x-a")).contains("request label name"));
    assert!(refuse(RequestLabel::from_header("tenant", "bad header")).contains("header name"));
    assert!(
        refuse(RequestLabel::from_header("tenant", "x-a").max_values(0)).contains("at least 1")
    );
}

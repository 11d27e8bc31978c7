//! Exemplars: the trace of a request, on the duration bucket it landed in, in OpenMetrics only.

use std::collections::BTreeSet;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::Body;
use axum::routing::get;
use http::Request;
use http_body_util::BodyExt;
use redwatch::{Format, Metrics, TraceContext};
use tower::ServiceExt;

use crate::support::exposition::{BucketExemplar, bucket_exemplars};

const DURATION: &str = "http_server_request_duration_seconds";

fn traceparent(trace: u128, span: u64, flags: &str) -> String {
    format!("00-{trace:032x}-{span:016x}-{flags}")
}

fn app(metrics: &Metrics) -> Router {
    Router::new()
        .route("/fast", get(|| async { "fast" }))
        .route(
            "/slow",
            get(|| async {
                // 30 ms: past the 0.025 s bound, inside the 0.05 s bucket (default buckets).
                tokio::time::sleep(Duration::from_millis(30)).await;
                "slow"
            }),
        )
        .merge(metrics.router())
        .layer(metrics.layer())
}

async fn send(app: &Router, uri: &str, headers: &[(&str, &str)]) {
    let mut request = Request::get(uri);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = app
        .clone()
        .oneshot(request.body(Body::empty()).unwrap())
        .await
        .unwrap();
    // The request ends when its body has been sent.
    response.into_body().collect().await.unwrap();
}

fn exemplars_of(metrics: &Metrics) -> Vec<BucketExemplar> {
    let text = String::from_utf8(metrics.render(Format::OpenMetrics)).unwrap();
    bucket_exemplars(&text)
        .into_iter()
        .filter(|exemplar| exemplar.family == DURATION)
        .collect()
}

fn route_of(exemplar: &BucketExemplar) -> &str {
    &exemplar.labels["http_route"]
}

#[tokio::test]
async fn each_bucket_shows_the_last_sampled_trace_that_landed_in_it() {
    let metrics = Metrics::builder().exemplars(true).build().unwrap();
    let app = app(&metrics);
    let before = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
    for i in 1..=3u64 {
        let header = traceparent(0xa000 + u128::from(i), 0xb000 + i, "01");
        send(&app, "/fast", &[("traceparent", &header)]).await;
    }
    send(
        &app,
        "/slow",
        &[("traceparent", &traceparent(0xc001, 0xd001, "01"))],
    )
    .await;
    // Not sampled, and no context: neither replaces the exemplars above.
    send(
        &app,
        "/fast",
        &[("traceparent", &traceparent(0xe001, 0xf001, "00"))],
    )
    .await;
    send(&app, "/fast", &[]).await;
    let after = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();

    let exemplars = exemplars_of(&metrics);
    assert_eq!(exemplars.len(), 2, "{exemplars:#?}");
    for exemplar in &exemplars {
        // OpenMetrics: an exemplar's value lies in its bucket.
        assert!(
            exemplar.lower_bound < exemplar.value && exemplar.value <= exemplar.upper_bound,
            "{exemplar:#?}"
        );
        let timestamp = exemplar.timestamp.expect("exemplars carry their time");
        assert!(
            before.as_secs_f64() - 0.001 <= timestamp && timestamp <= after.as_secs_f64() + 0.001,
            "{exemplar:#?}"
        );
    }
    let fast = exemplars.iter().find(|e| route_of(e) == "/fast").unwrap();
    assert_eq!(fast.exemplar_labels["trace_id"], format!("{:032x}", 0xa003));
    assert_eq!(fast.exemplar_labels["span_id"], format!("{:016x}", 0xb003));
    let slow = exemplars.iter().find(|e| route_of(e) == "/slow").unwrap();
    assert_eq!(slow.exemplar_labels["trace_id"], format!("{:032x}", 0xc001));
    assert!(slow.value >= 0.030, "{slow:#?}");
    // At least the 0.05 s bucket (a busy machine may make the sleep longer, never shorter).
    assert!(slow.upper_bound >= 0.05, "{slow:#?}");

    // The 0.0.4 text format has no exemplars.
    let text = String::from_utf8(metrics.render(Format::Prometheus)).unwrap();
    assert!(!text.contains("trace_id"), "{text}");
}

#[tokio::test]
async fn a_trace_context_extension_wins_over_the_header() {
    let metrics = Metrics::builder().exemplars(true).build().unwrap();
    let chosen = TraceContext::new([7; 16], [8; 8]).unwrap();
    let app = app(&metrics).layer(axum::Extension(chosen));
    // axum's Extension layer is outermost here, so the context is in place before redwatch.
    send(
        &app,
        "/fast",
        &[("traceparent", &traceparent(0xa001, 0xb001, "01"))],
    )
    .await;
    let exemplars = exemplars_of(&metrics);
    assert_eq!(exemplars.len(), 1, "{exemplars:#?}");
    assert_eq!(exemplars[0].exemplar_labels["trace_id"], "07".repeat(16));
    assert_eq!(exemplars[0].exemplar_labels["span_id"], "08".repeat(8));
}

#[tokio::test]
async fn without_the_option_no_exemplar_is_kept() {
    let metrics = Metrics::new();
    let app = app(&metrics);
    send(
        &app,
        "/fast",
        &[("traceparent", &traceparent(0xa001, 0xb001, "01"))],
    )
    .await;
    assert_eq!(exemplars_of(&metrics), []);
}

#[tokio::test]
async fn exemplars_of_many_series_name_only_the_traces_sent() {
    let metrics = Metrics::builder().exemplars(true).build().unwrap();
    let app = app(&metrics);
    let mut sent = BTreeSet::new();
    for i in 0..50u64 {
        let trace = 0x1_0000 + u128::from(i);
        sent.insert(format!("{trace:032x}"));
        let uri = if i % 10 == 0 { "/slow" } else { "/fast" };
        send(
            &app,
            uri,
            &[("traceparent", &traceparent(trace, i + 1, "01"))],
        )
        .await;
    }
    let exemplars = exemplars_of(&metrics);
    assert!(!exemplars.is_empty());
    for exemplar in &exemplars {
        assert!(sent.contains(&exemplar.exemplar_labels["trace_id"]));
    }
}

/// With the `opentelemetry` feature, the current span's context (here a remote parent set
/// through `tracing-opentelemetry`) is the exemplar's trace, before the `traceparent` header.
#[cfg(feature = "opentelemetry")]
#[test]
fn the_current_opentelemetry_span_gives_the_trace() {
    use opentelemetry::trace::{
        SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState,
    };
    use std::convert::Infallible;
    use std::future::Future;
    use std::pin::pin;
    use std::task::{Context, Poll, Waker};
    use tower::{Layer, Service};
    use tracing_opentelemetry::OpenTelemetrySpanExt;
    use tracing_subscriber::layer::SubscriberExt;

    let metrics = Metrics::builder().exemplars(true).build().unwrap();
    let bare = tower::service_fn(|_request: Request<()>| {
        std::future::ready(Ok::<_, Infallible>(http::Response::new(
            http_body_util::Empty::<bytes::Bytes>::new(),
        )))
    });
    let mut service = metrics
        .layer()
        .classify_with(redwatch::UriPathRoute)
        .layer(bare);
    let parent = SpanContext::new(
        TraceId::from_bytes([0x11; 16]),
        SpanId::from_bytes([0x22; 8]),
        TraceFlags::SAMPLED,
        true,
        TraceState::default(),
    );
    let subscriber = tracing_subscriber::registry().with(tracing_opentelemetry::layer());
    tracing::subscriber::with_default(subscriber, || {
        let span = tracing::info_span!("request");
        span.set_parent(opentelemetry::Context::new().with_remote_span_context(parent.clone()))
            .unwrap();
        let _entered = span.enter();
        let request = Request::get("/traced")
            .header("traceparent", traceparent(0xa001, 0xb001, "01"))
            .body(())
            .unwrap();
        let mut cx = Context::from_waker(Waker::noop());
        let mut future = pin!(service.call(request));
        let Poll::Ready(Ok(response)) = future.as_mut().poll(&mut cx) else {
            panic!("the service answers at once");
        };
        drop(response);
    });
    let exemplars = exemplars_of(&metrics);
    assert_eq!(exemplars.len(), 1, "{exemplars:#?}");
    assert_eq!(exemplars[0].exemplar_labels["trace_id"], "11".repeat(16));
}

//! The `otel` preset's OpenTelemetry HTTP attributes beyond method, route and status:
//! `url.scheme`, `network.protocol.version`, `error.type`, and the known-method list.

use std::convert::Infallible;

use http::{Method, Request, Response, StatusCode, Version};
use redwatch::{Format, Metrics, Naming, UriPathRoute};
use tower::{Layer, ServiceExt};

use crate::support::exposition::{Exposition, find};

const COUNT: &str = "http_server_request_duration_seconds_count";

/// Sends `request` through the layer to a service that answers `status`.
async fn send(metrics: &Metrics, request: Request<String>, status: StatusCode) {
    let service = tower::service_fn(move |_request: Request<String>| async move {
        let mut response = Response::new(String::new());
        *response.status_mut() = status;
        Ok::<_, Infallible>(response)
    });
    let service = metrics.layer().classify_with(UriPathRoute).layer(service);
    drop(service.oneshot(request).await.unwrap());
}

fn request(method: Method, uri: &str, version: Version) -> Request<String> {
    Request::builder()
        .method(method)
        .uri(uri)
        .version(version)
        .body(String::new())
        .unwrap()
}

fn count(text: &Exposition, labels: &[(&str, &str)]) -> f64 {
    find(&text.samples, COUNT, labels)
        .iter()
        .map(|sample| sample.value)
        .sum()
}

fn scrape(metrics: &Metrics) -> Exposition {
    Exposition::parse(&String::from_utf8(metrics.render(Format::Prometheus)).unwrap())
}

#[tokio::test]
async fn scheme_version_and_error_type_are_labels_of_the_otel_preset() {
    let metrics = Metrics::new();
    send(
        &metrics,
        request(Method::GET, "/a", Version::HTTP_11),
        StatusCode::OK,
    )
    .await;
    // HTTP/2 carries its scheme (`:scheme`) in the URI.
    let h2 = request(Method::GET, "https://api.example/a", Version::HTTP_2);
    send(&metrics, h2, StatusCode::OK).await;
    send(
        &metrics,
        request(Method::GET, "/a", Version::HTTP_10),
        StatusCode::SERVICE_UNAVAILABLE,
    )
    .await;
    send(
        &metrics,
        request(Method::GET, "/a", Version::HTTP_11),
        StatusCode::NOT_FOUND,
    )
    .await;

    let text = scrape(&metrics);
    let route = ("http_route", "/a");
    let http11 = [
        route,
        ("url_scheme", "http"),
        ("network_protocol_version", "1.1"),
    ];
    assert_eq!(
        count(
            &text,
            &[
                http11[0],
                http11[1],
                http11[2],
                ("http_response_status_code", "200")
            ]
        ),
        1.0
    );
    let h2 = [
        route,
        ("url_scheme", "https"),
        ("network_protocol_version", "2"),
    ];
    assert_eq!(count(&text, &h2), 1.0, "{}", text.text);
    // error.type: the status code of a server error, empty (absent to Prometheus) otherwise.
    assert_eq!(
        count(
            &text,
            &[
                route,
                ("error_type", "503"),
                ("network_protocol_version", "1.0")
            ]
        ),
        1.0
    );
    assert_eq!(
        count(
            &text,
            &[
                route,
                ("http_response_status_code", "404"),
                ("error_type", "")
            ]
        ),
        1.0
    );
    assert_eq!(count(&text, &[route, ("error_type", "")]), 3.0);
    // The in-flight gauge has the scheme, as OpenTelemetry's `http.server.active_requests` does.
    let active = find(
        &text.samples,
        "http_server_active_requests",
        &[("url_scheme", "http")],
    );
    assert!(!active.is_empty(), "{}", text.text);

    let snapshot = metrics.snapshot();
    let versions: Vec<_> = snapshot
        .series
        .iter()
        .map(|s| (s.url_scheme, s.protocol_version))
        .collect();
    assert!(
        versions.contains(&(Some("https"), Some("2"))),
        "{versions:?}"
    );
}

#[tokio::test]
async fn the_default_scheme_is_configurable_and_flask_has_no_such_labels() {
    let metrics = Metrics::builder().url_scheme("https").build().unwrap();
    send(
        &metrics,
        request(Method::GET, "/a", Version::HTTP_11),
        StatusCode::OK,
    )
    .await;
    assert_eq!(count(&scrape(&metrics), &[("url_scheme", "https")]), 1.0);
    let refused = Metrics::builder().url_scheme("ftp").build().unwrap_err();
    assert!(refused.to_string().contains("http or https"), "{refused}");

    let flask = Metrics::builder().naming(Naming::Flask).build().unwrap();
    send(
        &flask,
        request(Method::GET, "https://x/a", Version::HTTP_2),
        StatusCode::INTERNAL_SERVER_ERROR,
    )
    .await;
    send(
        &flask,
        request(Method::GET, "/a", Version::HTTP_11),
        StatusCode::INTERNAL_SERVER_ERROR,
    )
    .await;
    let text = String::from_utf8(flask.render(Format::Prometheus)).unwrap();
    for label in ["url_scheme", "network_protocol_version", "error_type"] {
        assert!(
            !text.contains(label),
            "{label} in the flask preset:\n{text}"
        );
    }
    // Both requests share one series: the flask preset does not tell them apart.
    assert!(
        text.contains(
            "flask_http_request_duration_seconds_count{method=\"GET\",path=\"/a\",status=\"500\"} 2"
        ),
        "{text}"
    );
}

#[tokio::test]
async fn the_known_method_list_can_be_replaced() {
    let metrics = Metrics::builder()
        .known_methods(["POST", "QUERY"])
        .build()
        .unwrap();
    let query = Method::from_bytes(b"QUERY").unwrap();
    send(
        &metrics,
        request(query, "/search", Version::HTTP_11),
        StatusCode::OK,
    )
    .await;
    send(
        &metrics,
        request(Method::POST, "/search", Version::HTTP_11),
        StatusCode::OK,
    )
    .await;
    // Not in the list: `_OTHER`, like any method a client invents.
    send(
        &metrics,
        request(Method::GET, "/search", Version::HTTP_11),
        StatusCode::OK,
    )
    .await;
    let purge = Method::from_bytes(b"PURGE").unwrap();
    send(
        &metrics,
        request(purge, "/search", Version::HTTP_11),
        StatusCode::OK,
    )
    .await;
    let text = scrape(&metrics);
    assert_eq!(count(&text, &[("http_request_method", "QUERY")]), 1.0);
    assert_eq!(count(&text, &[("http_request_method", "POST")]), 1.0);
    assert_eq!(count(&text, &[("http_request_method", "_OTHER")]), 2.0);
    assert_eq!(count(&text, &[("http_request_method", "GET")]), 0.0);

    let refuse = |methods: &[&str]| {
        Metrics::builder()
            .known_methods(methods.iter().copied())
            .build()
            .unwrap_err()
            .to_string()
    };
    assert!(refuse(&[]).contains("give 1 to 16"));
    assert!(refuse(&["GET", "GET"]).contains("twice"));
    assert!(refuse(&["GE T"]).contains("not an HTTP method"));
    assert!(refuse(&["_OTHER"]).contains("not an HTTP method"));
    let seventeen: Vec<String> = (0..17).map(|i| format!("M{i}")).collect();
    let refused = Metrics::builder()
        .known_methods(seventeen)
        .build()
        .unwrap_err();
    assert!(refused.to_string().contains("give 1 to 16"));
}

//! Hostile requests: random methods, percent-encoded and invalid-UTF-8 paths, odd headers and very
//! long URIs. The layer never panics, every request gets a response, and the label values stay
//! within the bound the routes, methods and statuses allow, for the axum router and for a
//! classifier that uses the raw path (`UriPathRoute`, capped by `max_routes`).

use std::collections::BTreeSet;
use std::convert::Infallible;
use std::sync::OnceLock;

use axum::Router;
use axum::body::Body;
use axum::routing::get;
use http::{Method, Request, Response};
use proptest::prelude::*;
use redwatch::{Metrics, OVERFLOW_ROUTE, UNMATCHED_ROUTE, UriPathRoute};
use tower::{ServiceBuilder, ServiceExt};

const STANDARD_METHODS: [&str; 9] = [
    "GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH",
];
const MAX_ROUTES: usize = 16;

fn router_metrics() -> &'static Metrics {
    static METRICS: OnceLock<Metrics> = OnceLock::new();
    METRICS.get_or_init(Metrics::new)
}

fn path_metrics() -> &'static Metrics {
    static METRICS: OnceLock<Metrics> = OnceLock::new();
    METRICS.get_or_init(|| {
        Metrics::builder()
            .max_routes(MAX_ROUTES)
            .build()
            .expect("valid settings")
    })
}

fn router() -> Router {
    let metrics = router_metrics();
    Router::new()
        .route("/", get(|| async { "home" }))
        .route(
            "/users/{id}",
            get(|| async { "user" }).post(|| async { "made" }),
        )
        .route("/files/{*rest}", get(|| async { "file" }))
        .layer(metrics.layer())
}

fn method() -> impl Strategy<Value = Method> {
    prop_oneof![
        proptest::sample::select(STANDARD_METHODS.to_vec())
            .prop_map(|m| Method::from_bytes(m.as_bytes()).expect("standard method")),
        "[A-Z!#$%&'*+.^_`|~-]{1,20}"
            .prop_map(|m| Method::from_bytes(m.as_bytes()).unwrap_or(Method::GET)),
    ]
}

/// A path: known routes, random segments, percent-encoded bytes (invalid UTF-8 included),
/// and now and then a very long one.
fn path() -> impl Strategy<Value = String> {
    let segment = prop_oneof![
        "[a-zA-Z0-9._~-]{0,12}",
        proptest::collection::vec(any::<u8>(), 1..8).prop_map(|bytes| {
            bytes
                .iter()
                .map(|b| format!("%{b:02X}"))
                .collect::<String>()
        }),
        Just("{id}".replace(['{', '}'], "%7B")),
        Just("users".to_owned()),
        Just("files".to_owned()),
        Just("..".to_owned()),
    ];
    prop_oneof![
        8 => proptest::collection::vec(segment, 0..6).prop_map(|parts| format!("/{}", parts.join("/"))),
        1 => (1usize..64_000).prop_map(|n| format!("/files/{}", "a".repeat(n))),
        1 => (1usize..2_000).prop_map(|n| format!("/{}", "%FF".repeat(n))),
    ]
}

fn request(
    method: Method,
    path: &str,
    query: &str,
    header: (String, Vec<u8>),
) -> Option<Request<Body>> {
    let uri = if query.is_empty() {
        path.to_owned()
    } else {
        format!("{path}?{query}")
    };
    let mut builder = Request::builder().method(method).uri(uri);
    if let (Ok(name), Ok(value)) = (
        http::HeaderName::from_bytes(header.0.as_bytes()),
        http::HeaderValue::from_bytes(&header.1),
    ) {
        builder = builder.header(name, value);
    }
    // Some generated URIs are not valid request targets; hyper would refuse them before any
    // layer runs, so they are not requests the layer can see.
    builder.body(Body::empty()).ok()
}

/// Label values of `label` on the duration histogram, from the typed snapshot.
fn label_values(metrics: &Metrics, label: &str) -> BTreeSet<String> {
    metrics
        .snapshot()
        .series
        .into_iter()
        .map(|series| match label {
            "http_route" => series.route,
            "http_request_method" => series.method.to_owned(),
            "http_response_status_code" => series.status.to_string(),
            other => panic!("no label {other} on the duration histogram"),
        })
        .collect()
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn hostile_requests_keep_the_label_values_bounded(
        method in method(),
        path in path(),
        query in "[ -~]{0,40}".prop_map(|q| q.replace(['#', ' '], "")),
        header in ("[a-z-]{1,20}", proptest::collection::vec(any::<u8>(), 0..40)),
    ) {
        let Some(request) = request(method.clone(), &path, &query, header.clone()) else {
            return Ok(());
        };
        let path_request = self::request(method, &path, &query, header);
        runtime().block_on(async {
            let response = router().oneshot(request).await.expect("infallible");
            let _ = http_body_util::BodyExt::collect(response.into_body()).await;
            if let Some(path_request) = path_request {
                let service = ServiceBuilder::new()
                    .layer(path_metrics().layer().classify_with(UriPathRoute))
                    .service(tower::service_fn(|_request: Request<Body>| async {
                        Ok::<_, Infallible>(Response::new(Body::from("ok")))
                    }));
                let response = service.oneshot(path_request).await.expect("infallible");
                let _ = http_body_util::BodyExt::collect(response.into_body()).await;
            }
        });

        let known: BTreeSet<String> = ["/", "/users/{id}", "/files/{*rest}", UNMATCHED_ROUTE]
            .map(str::to_owned)
            .into();
        let routes = label_values(router_metrics(), "http_route");
        prop_assert!(routes.is_subset(&known), "router routes {routes:?}");
        let mut methods: BTreeSet<String> = STANDARD_METHODS.map(str::to_owned).into();
        methods.insert("_OTHER".to_owned());
        for metrics in [router_metrics(), path_metrics()] {
            let seen = label_values(metrics, "http_request_method");
            prop_assert!(seen.is_subset(&methods), "methods {seen:?}");
            for status in label_values(metrics, "http_response_status_code") {
                prop_assert!(status.len() == 3 && status.bytes().all(|b| b.is_ascii_digit()), "status {status:?}");
            }
        }
        let paths = label_values(path_metrics(), "http_route");
        prop_assert!(
            paths.len() <= MAX_ROUTES + 1,
            "{} raw-path routes for a cap of {MAX_ROUTES}",
            paths.len()
        );
        prop_assert!(paths.len() <= MAX_ROUTES || paths.contains(OVERFLOW_ROUTE));
    }
}

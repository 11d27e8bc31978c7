//! The cost of the layer per request: a no-op service with and without it, and an axum
//! router bare, with a pass-through layer and with redwatch. Responses are consumed inside
//! the timed section, so recording (which happens when the body ends) is measured.

mod common;

use axum::Router;
use axum::body::Body;
use axum::routing::get;
use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use std::hint::black_box;
use tower::{Layer, ServiceExt};

/// Times `metrics`' layer around the no-op service, `request` building each request (untimed).
fn bench_layer<C: redwatch::ClassifyRoute, St: redwatch::StatusSource>(
    group: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    name: &str,
    layer: redwatch::MetricsLayer<C, St>,
    request: fn() -> http::Request<()>,
) {
    let mut layered = layer.layer(common::noop());
    group.bench_function(name, |b| {
        b.iter_batched(
            request,
            |request| common::serve_one(&mut layered, black_box(request)),
            BatchSize::SmallInput,
        )
    });
}

/// The layer with each optional part off (the default) and on, in one run, so that each part's
/// cost is the difference to `with_redwatch`.
fn noop_service(c: &mut Criterion) {
    let mut group = c.benchmark_group("noop_service");
    let mut bare = common::noop();
    group.bench_function("bare", |b| {
        b.iter_batched(
            common::request,
            |request| common::serve_one(&mut bare, black_box(request)),
            BatchSize::SmallInput,
        )
    });
    let item = common::ItemRoute;
    let default = redwatch::Metrics::new();
    bench_layer(
        &mut group,
        "with_redwatch",
        default.layer().classify_with(item.clone()),
        common::request,
    );

    let labelled = redwatch::Metrics::builder()
        .request_label(redwatch::RequestLabel::from_header("tenant", "x-tenant"))
        .build()
        .unwrap();
    bench_layer(
        &mut group,
        "with_redwatch_request_label",
        labelled.layer().classify_with(item.clone()),
        || {
            http::Request::get("/items/42")
                .header("x-tenant", "acme")
                .body(())
                .unwrap()
        },
    );

    // The gRPC status check on a non-gRPC response: the cost for an HTTP route behind it.
    let grpc = redwatch::Metrics::new();
    bench_layer(
        &mut group,
        "with_redwatch_grpc",
        grpc.layer().grpc(),
        common::request,
    );

    #[cfg(feature = "exemplars")]
    {
        let exemplars = redwatch::Metrics::builder()
            .exemplars(true)
            .build()
            .unwrap();
        bench_layer(
            &mut group,
            "with_redwatch_exemplars",
            exemplars.layer().classify_with(item.clone()),
            common::request,
        );
        bench_layer(
            &mut group,
            "with_redwatch_exemplars_traced",
            exemplars.layer().classify_with(item.clone()),
            || {
                http::Request::get("/items/42")
                    .header(
                        "traceparent",
                        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
                    )
                    .body(())
                    .unwrap()
            },
        );
    }
    #[cfg(feature = "native-histograms")]
    {
        let native = redwatch::Metrics::builder()
            .native_histograms(true)
            .build()
            .unwrap();
        bench_layer(
            &mut group,
            "with_redwatch_native",
            native.layer().classify_with(item),
            common::request,
        );
    }
    group.finish();
}

fn axum_router(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    // `with_state(())` builds each route's middleware stack once, as `axum::serve` does;
    // without it axum would apply the layers again on every request.
    let routes = || Router::new().route("/items/{id}", get(|| async { "item" }));
    let finish = |router: Router| -> Router { router.with_state(()) };
    let mut group = c.benchmark_group("axum_router");
    let bare = finish(routes());
    group.bench_function("bare", |b| {
        b.to_async(&runtime).iter_batched(
            || {
                axum::http::Request::get("/items/42")
                    .body(Body::empty())
                    .unwrap()
            },
            |request| consume(bare.clone().oneshot(request)),
            BatchSize::SmallInput,
        )
    });
    // Any layer added with Router::layer makes axum box the route and the response body once
    // more; a pass-through layer shows that cost, so that redwatch's own is the difference.
    let passthrough = finish(routes().layer(tower::util::MapResponseLayer::new(
        |response: axum::response::Response| response,
    )));
    group.bench_function("passthrough_layer", |b| {
        b.to_async(&runtime).iter_batched(
            || {
                axum::http::Request::get("/items/42")
                    .body(Body::empty())
                    .unwrap()
            },
            |request| consume(passthrough.clone().oneshot(request)),
            BatchSize::SmallInput,
        )
    });
    let metrics = redwatch::Metrics::new();
    let layered = finish(routes().layer(metrics.layer()));
    group.bench_function("with_redwatch", |b| {
        b.to_async(&runtime).iter_batched(
            || {
                axum::http::Request::get("/items/42")
                    .body(Body::empty())
                    .unwrap()
            },
            |request| consume(layered.clone().oneshot(request)),
            BatchSize::SmallInput,
        )
    });
    group.finish();
}

/// Awaits the response and its body, as a server would before the request is done.
async fn consume(
    response: impl std::future::Future<
        Output = Result<axum::response::Response, std::convert::Infallible>,
    >,
) {
    let Ok(response) = response.await;
    let _ = http_body_util::BodyExt::collect(response.into_body()).await;
}

criterion_group!(benches, noop_service, axum_router);
criterion_main!(benches);

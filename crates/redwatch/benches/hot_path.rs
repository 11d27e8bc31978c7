//! The cost of the layer per request: a no-op service with and without it, and an axum
//! router with and without it.

mod common;

use axum::Router;
use axum::body::Body;
use axum::routing::get;
use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use std::hint::black_box;
use tower::{Layer, ServiceExt};

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
    let metrics = redwatch::Metrics::new();
    let mut layered = metrics
        .layer()
        .classify_with(common::ItemRoute)
        .layer(common::noop());
    group.bench_function("with_redwatch", |b| {
        b.iter_batched(
            common::request,
            |request| common::serve_one(&mut layered, black_box(request)),
            BatchSize::SmallInput,
        )
    });
    group.finish();
}

fn axum_router(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let routes = || Router::new().route("/items/{id}", get(|| async { "item" }));
    let mut group = c.benchmark_group("axum_router");
    let bare = routes();
    group.bench_function("bare", |b| {
        b.to_async(&runtime).iter_batched(
            || {
                axum::http::Request::get("/items/42")
                    .body(Body::empty())
                    .unwrap()
            },
            |request| bare.clone().oneshot(request),
            BatchSize::SmallInput,
        )
    });
    let metrics = redwatch::Metrics::new();
    let layered = routes().layer(metrics.layer());
    group.bench_function("with_redwatch", |b| {
        b.to_async(&runtime).iter_batched(
            || {
                axum::http::Request::get("/items/42")
                    .body(Body::empty())
                    .unwrap()
            },
            |request| layered.clone().oneshot(request),
            BatchSize::SmallInput,
        )
    });
    group.finish();
}

criterion_group!(benches, noop_service, axum_router);
criterion_main!(benches);

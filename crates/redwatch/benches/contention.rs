//! 32 threads recording into the same series: redwatch's whole request path against a
//! `prometheus-client` `Family<_, Histogram>` observation alone.

mod common;

use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use tower::Layer;

const THREADS: usize = 32;
const PER_THREAD: u64 = 10_000;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Labels {
    method: &'static str,
    route: &'static str,
    status: u16,
}

/// Runs `work(thread)` on `THREADS` threads at once, `iterations` times, and returns the
/// total wall time.
fn on_all_threads(iterations: u64, work: &(dyn Fn() + Sync)) -> Duration {
    let mut total = Duration::ZERO;
    for _ in 0..iterations {
        let barrier = std::sync::Barrier::new(THREADS);
        let start = Instant::now();
        std::thread::scope(|scope| {
            for _ in 0..THREADS {
                scope.spawn(|| {
                    barrier.wait();
                    work();
                });
            }
        });
        total += start.elapsed();
    }
    total
}

fn same_series(c: &mut Criterion) {
    let mut group = c.benchmark_group("32_threads_same_series");
    group.throughput(criterion::Throughput::Elements(THREADS as u64 * PER_THREAD));

    let metrics = redwatch::Metrics::new();
    let layer = metrics.layer().classify_with(common::ItemRoute);
    group.bench_function("redwatch_layer", |b| {
        b.iter_custom(|iterations| {
            on_all_threads(iterations, &|| {
                let mut service = layer.layer(common::noop());
                for _ in 0..PER_THREAD {
                    common::serve_one(&mut service, common::request());
                }
            })
        })
    });

    let family = Family::<Labels, Histogram>::new_with_constructor(|| {
        Histogram::new(redwatch::DEFAULT_DURATION_BUCKETS.iter().copied())
    });
    let labels = Labels {
        method: "GET",
        route: "/items/{id}",
        status: 200,
    };
    group.bench_function("prometheus_client_family_observe", |b| {
        b.iter_custom(|iterations| {
            on_all_threads(iterations, &|| {
                for i in 0..PER_THREAD {
                    family.get_or_create(&labels).observe(i as f64 * 1e-6);
                }
            })
        })
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20);
    targets = same_series
}
criterion_main!(benches);

//! 32 threads recording into the same series. Three sides: the no-op service bare and behind
//! redwatch's layer (their difference is the layer's cost under contention), and one
//! `prometheus-client` `Family<_, Histogram>` observation, which takes locks.

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

/// Runs `work` on `THREADS` threads at once, `iterations` times, and returns the total wall
/// time from the moment all threads are ready. `prepare` runs first on each thread, untimed.
fn on_all_threads<T>(
    iterations: u64,
    prepare: &(dyn Fn() -> T + Sync),
    work: &(dyn Fn(T) + Sync),
) -> Duration {
    let mut total = Duration::ZERO;
    for _ in 0..iterations {
        // THREADS workers and this thread, which starts the clock once all are prepared.
        let ready = std::sync::Barrier::new(THREADS + 1);
        let elapsed = std::thread::scope(|scope| {
            let workers: Vec<_> = (0..THREADS)
                .map(|_| {
                    scope.spawn(|| {
                        let input = prepare();
                        ready.wait();
                        work(input);
                    })
                })
                .collect();
            ready.wait();
            let start = Instant::now();
            for worker in workers {
                worker.join().expect("worker thread");
            }
            start.elapsed()
        });
        total += elapsed;
    }
    total
}

fn same_series(c: &mut Criterion) {
    let mut group = c.benchmark_group("32_threads_same_series");
    group.throughput(criterion::Throughput::Elements(THREADS as u64 * PER_THREAD));

    group.bench_function("bare_service", |b| {
        b.iter_custom(|iterations| {
            on_all_threads(
                iterations,
                &|| {
                    let requests: Vec<_> = (0..PER_THREAD).map(|_| common::request()).collect();
                    (common::noop(), requests)
                },
                &|(mut service, requests)| {
                    for request in requests {
                        common::serve_one(&mut service, request);
                    }
                },
            )
        })
    });

    let metrics = redwatch::Metrics::new();
    let layer = metrics.layer().classify_with(common::ItemRoute);
    group.bench_function("redwatch_layer", |b| {
        b.iter_custom(|iterations| {
            on_all_threads(
                iterations,
                &|| {
                    let requests: Vec<_> = (0..PER_THREAD).map(|_| common::request()).collect();
                    (layer.layer(common::noop()), requests)
                },
                &|(mut service, requests)| {
                    for request in requests {
                        common::serve_one(&mut service, request);
                    }
                },
            )
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
            on_all_threads(iterations, &|| (), &|()| {
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

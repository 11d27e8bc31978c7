//! Encoding 100,000 series (sample lines): 5,883 histogram label sets of 17 lines each.

mod common;

use criterion::{Criterion, criterion_group, criterion_main};
use redwatch::{Format, Metrics, UriPathRoute};
use tower::Layer;

/// 14 buckets + `+Inf` + `_count` + `_sum`.
const LINES_PER_HISTOGRAM: usize = 17;
const SERIES: usize = 100_000;

fn populated() -> Metrics {
    let label_sets = SERIES.div_ceil(LINES_PER_HISTOGRAM);
    let metrics = Metrics::builder()
        .max_routes(label_sets + 1)
        .build()
        .unwrap();
    let mut service = metrics
        .layer()
        .classify_with(UriPathRoute)
        .layer(common::noop());
    for route in 0..label_sets {
        let request = http::Request::get(format!("/route/{route}"))
            .body(())
            .unwrap();
        common::serve_one(&mut service, request);
    }
    metrics
}

/// One render in the steady state (the output buffer sized from the previous scrape), not
/// inlined, so that `valgrind --tool=callgrind --toggle-collect=encode::steady_render` counts
/// the instructions of exactly one scrape (see docs/BENCHMARKS.md).
#[inline(never)]
fn steady_render(metrics: &Metrics) -> Vec<u8> {
    metrics.render(Format::Prometheus)
}

fn encode(c: &mut Criterion) {
    let metrics = populated();
    // The first render sizes the buffer that later ones reserve at once.
    let _ = metrics.render(Format::Prometheus);
    let text = String::from_utf8(steady_render(&metrics)).unwrap();
    let histogram_lines = text
        .lines()
        .filter(|line| line.starts_with("http_server_request_duration_seconds"))
        .count();
    assert!(histogram_lines >= SERIES, "{histogram_lines} series");
    eprintln!(
        "encoding {histogram_lines} duration series, {} bytes",
        text.len()
    );

    let mut group = c.benchmark_group("encode_100k_series");
    group.bench_function("prometheus_text", |b| {
        b.iter(|| metrics.render(Format::Prometheus))
    });
    group.bench_function("openmetrics", |b| {
        b.iter(|| metrics.render(Format::OpenMetrics))
    });
    // The floor of any encoder of this text: writing its bytes once, into a buffer as fresh as
    // the one a render fills. What a render takes beyond this is the encoder's own work.
    group.bench_function("copy_of_the_text", |b| {
        b.iter(|| {
            let mut out = Vec::with_capacity(text.len() + 1024);
            out.extend_from_slice(text.as_bytes());
            out
        })
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(30);
    targets = encode
}
criterion_main!(benches);

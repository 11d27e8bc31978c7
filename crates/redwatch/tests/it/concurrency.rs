//! Exact counts under concurrency, consistent scrapes under load, and bounded cardinality.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::support::exposition::total;
use crate::support::{check_histograms, check_snapshot, scrape};
use axum::Router;
use axum::body::Body;
use axum::routing::get;
use http::{Method, Request, StatusCode};
use rand::{RngExt, SeedableRng};
use redwatch::Metrics;
use tower::ServiceExt;

fn app(metrics: &Metrics) -> Router {
    Router::new()
        .route("/a", get(|| async { "a" }))
        .route("/b/{id}", get(|| async { StatusCode::ACCEPTED }))
        .route("/c", get(|| async { StatusCode::INTERNAL_SERVER_ERROR }))
        .layer(metrics.layer())
}

/// `tasks` concurrent tasks each send `per_task` requests, spread over `/a`, `/b/{i}` (202) and
/// `/c` (500) in turn.
async fn send_requests(app: &Router, tasks: usize, per_task: usize) {
    let tasks: Vec<_> = (0..tasks)
        .map(|task| {
            let app = app.clone();
            tokio::spawn(async move {
                for i in 0..per_task {
                    let uri = match (task + i) % 3 {
                        0 => "/a".to_owned(),
                        1 => format!("/b/{i}"),
                        _ => "/c".to_owned(),
                    };
                    let request = Request::get(uri).body(Body::empty()).unwrap();
                    app.clone().oneshot(request).await.unwrap();
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn counts_are_exact_and_scrapes_consistent_under_concurrency() {
    const TASKS: usize = 64;
    const PER_TASK: usize = 1_000;
    let metrics = Metrics::new();
    let app = app(&metrics);

    // A scraper checks every exposition it takes while requests are being recorded.
    let running = Arc::new(AtomicBool::new(true));
    let scraper = {
        let (metrics, running) = (metrics.clone(), Arc::clone(&running));
        std::thread::spawn(move || {
            let mut scrapes = 0;
            while running.load(Ordering::Relaxed) && scrapes < 100_000 {
                // The text and the typed snapshot are both consistent in every read.
                check_histograms(&scrape(&metrics));
                check_snapshot(&metrics.snapshot());
                scrapes += 1;
            }
            scrapes
        })
    };

    send_requests(&app, TASKS, PER_TASK).await;
    running.store(false, Ordering::Relaxed);
    let scrapes = scraper.join().unwrap();
    assert!(scrapes > 0);

    let snapshot = metrics.snapshot();
    let all = (TASKS * PER_TASK) as u64;
    assert_eq!(snapshot.requests(|_| true), all);
    let per_route = |route: &str| snapshot.requests(|s| s.route == route);
    let expected = all / 3;
    assert_eq!(
        per_route("/a") + per_route("/b/{id}") + per_route("/c"),
        all
    );
    for route in ["/a", "/b/{id}", "/c"] {
        assert!(
            per_route(route).abs_diff(expected) <= TASKS as u64,
            "{route}"
        );
    }
    assert_eq!(check_snapshot(&snapshot), 3);
    assert_eq!(snapshot.active_requests(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_million_requests_to_unknown_paths_with_random_methods_add_no_series() {
    let metrics = Metrics::new();
    let app = app(&metrics);
    let series_count = |metrics: &Metrics| metrics.snapshot().series.len();

    // Warm up: every standard method and one custom method against an unknown path.
    let standard = [
        "GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH", "FOO",
    ];
    for method in standard {
        let request = Request::builder()
            .method(method)
            .uri("/unknown")
            .body(Body::empty())
            .unwrap();
        app.clone().oneshot(request).await.unwrap();
    }
    let before = series_count(&metrics);

    const REQUESTS: usize = 1_000_000;
    const TASKS: usize = 4;
    let tasks: Vec<_> = (0..TASKS)
        .map(|task| {
            let app = app.clone();
            tokio::spawn(async move {
                let mut rng = rand::rngs::StdRng::seed_from_u64(task as u64);
                for _ in 0..REQUESTS / TASKS {
                    let method = if rng.random_bool(0.5) {
                        let len = rng.random_range(1..12);
                        let token: String = (0..len)
                            .map(|_| char::from(rng.random_range(b'A'..=b'Z')))
                            .collect();
                        Method::from_bytes(token.as_bytes()).unwrap()
                    } else {
                        Method::from_bytes(standard[rng.random_range(0..9)].as_bytes()).unwrap()
                    };
                    let path = format!("/x{}/{}", rng.random::<u64>(), rng.random::<u32>());
                    let request = Request::builder()
                        .method(method)
                        .uri(path)
                        .body(Body::empty())
                        .unwrap();
                    app.clone().oneshot(request).await.unwrap();
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }

    assert_eq!(series_count(&metrics), before, "no new series");
    let snapshot = metrics.snapshot();
    let counted = snapshot.requests(|s| s.route == "unmatched");
    assert_eq!(counted, (REQUESTS + standard.len()) as u64);
    let other = snapshot.requests(|s| s.method == "_OTHER");
    assert!(other > 0, "custom methods are recorded as _OTHER");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flask_request_total_agrees_with_the_histogram_in_every_scrape() {
    let metrics = Metrics::builder()
        .naming(redwatch::Naming::Flask)
        .build()
        .unwrap();
    let app = app(&metrics);
    let running = Arc::new(AtomicBool::new(true));
    let scraper = {
        let (metrics, running) = (metrics.clone(), Arc::clone(&running));
        std::thread::spawn(move || {
            let mut scrapes = 0u32;
            while running.load(Ordering::Relaxed) || scrapes < 10 {
                let samples = scrape(&metrics);
                let counted = total(&samples, "flask_http_request_duration_seconds_count", &[]);
                let totals = total(&samples, "flask_http_request_total", &[]);
                assert_eq!(totals, counted, "scrape {scrapes}: request_total != _count");
                // And per (method, status), as dashboards read it.
                for status in ["200", "202", "500"] {
                    let labels = [("method", "GET"), ("status", status)];
                    assert_eq!(
                        total(&samples, "flask_http_request_total", &labels),
                        total(
                            &samples,
                            "flask_http_request_duration_seconds_count",
                            &labels
                        ),
                        "scrape {scrapes}, status {status}"
                    );
                }
                scrapes += 1;
            }
            scrapes
        })
    };
    send_requests(&app, 16, 5_000).await;
    running.store(false, Ordering::Relaxed);
    let scrapes = scraper.join().unwrap();
    assert!(scrapes >= 10, "{scrapes} scrapes");
}

//! Your own prometheus-client metrics on the same /metrics as the RED metrics.
//!
//! `cargo run -p redwatch --example custom_metrics`, then `curl -X POST localhost:3000/jobs`
//! and `curl localhost:3000/metrics | grep jobs`.

use axum::{Router, extract::State, routing::post};
use redwatch::prometheus_client::metrics::counter::Counter;

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let metrics = redwatch::Metrics::new();
    let jobs: Counter = Counter::default();
    metrics.register(
        "jobs_submitted",
        "Jobs submitted through the API",
        jobs.clone(),
    );

    let app = Router::new()
        .route(
            "/jobs",
            post(|State(jobs): State<Counter>| async move {
                jobs.inc();
                "queued"
            }),
        )
        .with_state(jobs)
        .merge(metrics.router())
        .layer(metrics.layer());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
    axum::serve(listener, app).await
}

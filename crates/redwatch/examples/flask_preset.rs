//! Names compatible with prometheus_flask_exporter, so existing Flask dashboards work as-is,
//! plus constant labels and the app's version and environment in `app_info`.
//!
//! `cargo run -p redwatch --example flask_preset`, then `curl localhost:3000/metrics`.

use axum::{Router, routing::get};
use redwatch::{Metrics, Naming};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let metrics = Metrics::builder()
        .naming(Naming::Flask)
        .const_label("service", "orders")
        .app_version(env!("CARGO_PKG_VERSION"))
        .environment("staging")
        .exclude_route("/health")
        .build()?;
    let app = Router::new()
        .route("/orders/{id}", get(|| async { "an order" }))
        .route("/health", get(|| async { "ok" }))
        .merge(metrics.router())
        .layer(metrics.layer());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
    axum::serve(listener, app).await?;
    Ok(())
}

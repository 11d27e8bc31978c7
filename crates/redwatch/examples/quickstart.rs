//! An axum app with RED metrics on /metrics.
//!
//! `cargo run -p redwatch --example quickstart`, then `curl localhost:3000/users/7` and
//! `curl localhost:3000/metrics`.

use axum::{Router, routing::get};

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let metrics = redwatch::Metrics::new();
    let app = Router::new()
        .route("/", get(|| async { "hello" }))
        .route("/users/{id}", get(|| async { "a user" }))
        .merge(metrics.router())
        .layer(metrics.layer());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
    axum::serve(listener, app).await
}

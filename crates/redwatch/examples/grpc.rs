//! A tonic gRPC server recorded by method and gRPC status, with `/metrics` on its own port.
//!
//! `cargo run -p redwatch --example grpc`, then call it, e.g. with grpcurl:
//! `grpcurl -plaintext -d '{"service":"shop.Missing"}' 127.0.0.1:50051 grpc.health.v1.Health/Check`
//! (a NOT_FOUND, recorded as 404), and `curl 127.0.0.1:9464/metrics`.

use tonic::transport::Server;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let metrics = redwatch::Metrics::new();
    let metrics_listener = tokio::net::TcpListener::bind("127.0.0.1:9464").await?;
    tokio::spawn(
        metrics
            .clone()
            .serve(metrics_listener, std::future::pending()),
    );

    // Any tonic service; here the standard health service.
    let (reporter, health) = tonic_health::server::health_reporter();
    reporter
        .set_service_status("shop.Orders", tonic_health::ServingStatus::Serving)
        .await;

    Server::builder()
        // The route is the method's path; the status is the call's gRPC status.
        .layer(metrics.layer().grpc())
        .add_service(health)
        .serve("127.0.0.1:50051".parse()?)
        .await?;
    Ok(())
}

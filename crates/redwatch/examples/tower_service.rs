//! A plain hyper server (no axum): the route comes from a classifier instead of axum's
//! matched path. Here, a gRPC-style service whose path names the method.
//!
//! `cargo run -p redwatch --example tower_service`, then
//! `curl -X POST localhost:3000/shop.Orders/Create` and `curl localhost:9464/metrics`.

use std::convert::Infallible;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::service::TowerToHyperService;
use redwatch::UriPathRoute;
use tower::ServiceBuilder;

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let metrics = redwatch::Metrics::new();
    let service = ServiceBuilder::new()
        // The path of a gRPC request is its method, a bounded set: safe as a route label.
        .layer(metrics.layer().classify_with(UriPathRoute))
        .service_fn(|_request: Request<Incoming>| async {
            Ok::<_, Infallible>(Response::new(Full::new(Bytes::from("done"))))
        });

    let metrics_listener = tokio::net::TcpListener::bind("127.0.0.1:9464").await?;
    tokio::spawn(metrics.serve(metrics_listener, std::future::pending()));

    let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
    loop {
        let (stream, _) = listener.accept().await?;
        let service = TowerToHyperService::new(service.clone());
        tokio::spawn(async move {
            let connection = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
            if let Err(error) = connection
                .serve_connection(TokioIo::new(stream), service)
                .await
            {
                eprintln!("connection error: {error}");
            }
        });
    }
}

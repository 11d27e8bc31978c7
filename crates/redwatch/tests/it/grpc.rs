//! gRPC: the recorded status is the call's gRPC status, from a trailers-only response's head or
//! from the trailers, and the route is the method's path.

use std::convert::Infallible;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Request, Response};
use http_body::Frame;
use http_body_util::{BodyExt, StreamBody};
use redwatch::Metrics;
use tower::{Layer, ServiceExt};

type Frames = StreamBody<tokio_stream::Iter<std::vec::IntoIter<Result<Frame<Bytes>, Infallible>>>>;

/// A response as a gRPC server sends it: `content_type`, then `head` headers, a message if
/// `message`, and trailers if any.
fn response(
    content_type: &str,
    head: Option<&str>,
    message: bool,
    trailers: Option<&str>,
) -> Response<Frames> {
    let mut frames = Vec::new();
    if message {
        frames.push(Ok(Frame::data(Bytes::from_static(b"\0\0\0\0\x02hi"))));
    }
    if let Some(status) = trailers {
        let mut map = HeaderMap::new();
        map.insert("grpc-status", status.parse().unwrap());
        frames.push(Ok(Frame::trailers(map)));
    }
    let mut response = Response::builder().header("content-type", content_type);
    if let Some(status) = head {
        response = response.header("grpc-status", status);
    }
    response
        .body(StreamBody::new(tokio_stream::iter(frames)))
        .unwrap()
}

/// Sends one call through the gRPC layer to a service answering `answer`, reading the body to
/// its end unless `abandon`.
async fn call(metrics: &Metrics, path: &str, answer: Response<Frames>, abandon: bool) {
    let answer = std::sync::Mutex::new(Some(answer));
    let service = tower::service_fn(move |_request: Request<()>| {
        let answer = answer.lock().unwrap().take().unwrap();
        async move { Ok::<_, Infallible>(answer) }
    });
    let service = metrics.layer().grpc().layer(service);
    let request = Request::post(path)
        .header("content-type", "application/grpc")
        .body(())
        .unwrap();
    let response = service.oneshot(request).await.unwrap();
    if abandon {
        drop(response);
    } else {
        response.into_body().collect().await.unwrap();
    }
}

fn statuses(metrics: &Metrics, route: &str) -> Vec<u16> {
    let mut statuses: Vec<u16> = metrics
        .snapshot()
        .series
        .iter()
        .filter(|series| series.route == route)
        .flat_map(|series| std::iter::repeat_n(series.status, series.duration.count as usize))
        .collect();
    statuses.sort();
    statuses
}

#[tokio::test]
async fn the_grpc_status_is_recorded_not_http_200() {
    let metrics = Metrics::new();
    let grpc = "application/grpc";
    // OK in the trailers, after a message.
    call(
        &metrics,
        "/shop.Orders/Get",
        response(grpc, None, true, Some("0")),
        false,
    )
    .await;
    // INTERNAL in the trailers, after a message: HTTP 200, but the call failed.
    call(
        &metrics,
        "/shop.Orders/Get",
        response(grpc, None, true, Some("13")),
        false,
    )
    .await;
    // NOT_FOUND in a trailers-only response.
    call(
        &metrics,
        "/shop.Orders/Get",
        response(grpc, Some("5"), false, None),
        false,
    )
    .await;
    // UNAVAILABLE, with the +proto content type.
    let proto = "application/grpc+proto";
    call(
        &metrics,
        "/shop.Orders/Get",
        response(proto, Some("14"), false, None),
        false,
    )
    .await;
    // No status at all: UNKNOWN.
    call(
        &metrics,
        "/shop.Orders/Get",
        response(grpc, None, true, None),
        false,
    )
    .await;
    // Abandoned before the trailers: CANCELLED.
    call(
        &metrics,
        "/shop.Orders/Get",
        response(grpc, None, true, Some("0")),
        true,
    )
    .await;
    assert_eq!(
        statuses(&metrics, "/shop.Orders/Get"),
        [200, 404, 499, 500, 500, 503]
    );
    // Not gRPC: the HTTP status stands.
    call(
        &metrics,
        "/health",
        response("text/plain", None, true, None),
        false,
    )
    .await;
    assert_eq!(statuses(&metrics, "/health"), [200]);
    assert_eq!(metrics.snapshot().active_requests(), 0);
}

#[test]
fn grpc_codes_map_to_the_http_statuses_of_googles_api_guide() {
    let expected = [
        200, 499, 500, 400, 504, 404, 409, 403, 429, 400, 409, 400, 501, 500, 503, 500, 401,
    ];
    for (code, http) in expected.into_iter().enumerate() {
        assert_eq!(
            redwatch::grpc_status_as_http(code as u16),
            http,
            "code {code}"
        );
    }
    assert_eq!(redwatch::grpc_status_as_http(99), 500);
}

/// A real tonic server (tonic-health's `grpc.health.v1.Health`) behind the layer, called by a
/// real tonic client over HTTP/2 on a loopback port.
#[tokio::test]
async fn a_tonic_service_is_recorded_by_method_and_grpc_status() {
    use tonic_health::pb::HealthCheckRequest;
    use tonic_health::pb::health_client::HealthClient;

    let metrics = Metrics::new();
    let (reporter, health) = tonic_health::server::health_reporter();
    reporter
        .set_service_status("shop.Orders", tonic_health::ServingStatus::Serving)
        .await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(
        tonic::transport::Server::builder()
            .layer(metrics.layer().grpc())
            .add_service(health)
            .serve_with_incoming_shutdown(
                tokio_stream::wrappers::TcpListenerStream::new(listener),
                async {
                    let _ = stopped.await;
                },
            ),
    );
    let channel = tonic::transport::Endpoint::try_from(format!("http://{addr}"))
        .unwrap()
        .connect_timeout(Duration::from_secs(10));
    let channel = tokio::time::timeout(Duration::from_secs(10), channel.connect())
        .await
        .expect("connect in time")
        .expect("connect");
    let mut client = HealthClient::new(channel);
    for service in ["shop.Orders", "shop.Orders", "shop.Missing"] {
        let request = HealthCheckRequest {
            service: service.into(),
        };
        let _ = client.check(request).await;
    }
    let _ = stop.send(());
    server.await.unwrap().unwrap();

    let route = "/grpc.health.v1.Health/Check";
    assert_eq!(statuses(&metrics, route), [200, 200, 404]);
    let snapshot = metrics.snapshot();
    assert!(
        snapshot.series.iter().all(|series| series.method == "POST"),
        "{snapshot:?}"
    );
}

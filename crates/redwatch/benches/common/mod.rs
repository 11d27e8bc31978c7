//! Driving a tower service without a runtime, for benchmarks of the layer alone.
#![allow(dead_code)]

use std::convert::Infallible;
use std::future::Future;
use std::pin::{Pin, pin};
use std::task::{Context, Poll, Waker};

use bytes::Bytes;
use http::{Request, Response};
use http_body::Body;
use http_body_util::Empty;
use redwatch::ClassifyRoute;
use tower::Service;

/// A route classifier that puts every request on one route template.
#[derive(Clone)]
pub struct ItemRoute;

impl ClassifyRoute for ItemRoute {
    fn classify<'a, B>(&self, _request: &'a Request<B>) -> Option<std::borrow::Cow<'a, str>> {
        Some("/items/{id}".into())
    }
}

/// The service being measured against: answers at once with an empty body.
pub fn noop()
-> impl Service<Request<()>, Response = Response<Empty<Bytes>>, Error = Infallible, Future: Unpin>
+ Clone {
    tower::service_fn(|_request: Request<()>| {
        std::future::ready(Ok::<_, Infallible>(Response::new(Empty::<Bytes>::new())))
    })
}

/// Calls `service` and drives the response body to its end, as a server would.
#[inline]
pub fn serve_one<S, B>(service: &mut S, request: Request<()>)
where
    S: Service<Request<()>, Response = Response<B>, Error = Infallible>,
    B: Body + Unpin,
{
    let mut cx = Context::from_waker(Waker::noop());
    let _ = service.poll_ready(&mut cx);
    let mut future = pin!(service.call(request));
    if let Poll::Ready(Ok(response)) = future.as_mut().poll(&mut cx) {
        let mut body = response.into_body();
        while let Poll::Ready(Some(_)) = Pin::new(&mut body).poll_frame(&mut cx) {}
    }
}

/// A GET request like the ones servers hand to middleware.
pub fn request() -> Request<()> {
    Request::get("/items/42").body(()).unwrap()
}

//! The tower middleware that records RED metrics: [`MetricsLayer`], [`MetricsService`],
//! [`ResponseFuture`] and [`ResponseBody`].

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};

use std::borrow::Cow;

use http::{Extensions, HeaderMap, Method, Request, Response, Uri, Version};
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;
use tower_layer::Layer;
use tower_service::Service;

use crate::naming::{ABANDONED_STATUS, method_index};
use crate::registry::{Core, Exemplar, RouteEntry, offer_exemplar, record_exception};
use crate::trace::{self, TraceContext};

/// Decides which route template a request belongs to.
///
/// The returned value becomes the route label, so it must come from a small, fixed set
/// (a route template, a gRPC method); return `None` for requests that matched no route.
/// Routes beyond [`crate::MetricsBuilder::max_routes`] are recorded as `overflow`.
///
/// Borrow the route from the request where you can ([`Cow::Borrowed`]): an owned route costs an
/// allocation per request. For a closure, see [`classify_fn`].
pub trait ClassifyRoute: Clone + Send + Sync + 'static {
    /// The route template of `request`, or `None` when no route matched.
    fn classify<'a, B>(&self, request: &'a Request<B>) -> Option<Cow<'a, str>>;
}

/// The default classifier: axum's [`MatchedPath`](axum::extract::MatchedPath).
///
/// The layer must be added with `Router::layer` (or `route_layer`), which runs after routing,
/// so the matched path is known. Without the `axum` feature every request is `unmatched`.
#[derive(Debug, Clone, Copy, Default)]
pub struct MatchedPathRoute;

impl ClassifyRoute for MatchedPathRoute {
    #[inline]
    fn classify<'a, B>(&self, _request: &'a Request<B>) -> Option<Cow<'a, str>> {
        #[cfg(feature = "axum")]
        {
            _request
                .extensions()
                .get::<axum::extract::MatchedPath>()
                .map(|matched| Cow::Borrowed(matched.as_str()))
        }
        #[cfg(not(feature = "axum"))]
        {
            None
        }
    }
}

/// Uses the request path as the route: right for gRPC (tonic), where the path names the
/// method, and wrong for REST paths that carry ids.
#[derive(Debug, Clone, Copy, Default)]
pub struct UriPathRoute;

impl ClassifyRoute for UriPathRoute {
    #[inline]
    fn classify<'a, B>(&self, request: &'a Request<B>) -> Option<Cow<'a, str>> {
        Some(Cow::Borrowed(request.uri().path()))
    }
}

/// What a classifier closure sees of a request: everything but its body.
#[derive(Debug, Clone, Copy)]
pub struct RequestHead<'a> {
    method: &'a Method,
    uri: &'a Uri,
    version: Version,
    headers: &'a HeaderMap,
    extensions: &'a Extensions,
}

impl<'a> RequestHead<'a> {
    /// The head of `request`.
    pub fn of<B>(request: &'a Request<B>) -> Self {
        Self {
            method: request.method(),
            uri: request.uri(),
            version: request.version(),
            headers: request.headers(),
            extensions: request.extensions(),
        }
    }

    /// The request method.
    pub fn method(&self) -> &'a Method {
        self.method
    }

    /// The request URI.
    pub fn uri(&self) -> &'a Uri {
        self.uri
    }

    /// The HTTP version.
    pub fn version(&self) -> Version {
        self.version
    }

    /// The request headers.
    pub fn headers(&self) -> &'a HeaderMap {
        self.headers
    }

    /// The request extensions (axum's `MatchedPath`, your auth middleware's types, ...).
    pub fn extensions(&self) -> &'a Extensions {
        self.extensions
    }
}

/// A classifier from a closure: borrow the route from the request, or compute one.
///
/// ```
/// use std::borrow::Cow;
/// use redwatch::{Metrics, classify_fn};
///
/// let metrics = Metrics::new();
/// // Versioned paths share one route per resource: /v1/users/7 and /v2/users/7 are
/// // `/users/{id}`; a computed route is owned (one allocation per request).
/// let layer = metrics.layer().classify_with(classify_fn(|head| {
///     let path = head.uri().path();
///     let rest = path.strip_prefix("/v1").or_else(|| path.strip_prefix("/v2"))?;
///     Some(match rest.split('/').nth(1) {
///         Some("users") => Cow::Borrowed("/users/{id}"),
///         Some(other) => Cow::Owned(format!("/{other}")),
///         None => Cow::Borrowed("/"),
///     })
/// }));
/// # let _ = layer;
/// ```
pub fn classify_fn<F>(classify: F) -> ClassifyFn<F>
where
    F: for<'a, 'b> Fn(&'b RequestHead<'a>) -> Option<Cow<'a, str>> + Clone + Send + Sync + 'static,
{
    ClassifyFn(classify)
}

/// The classifier [`classify_fn`] makes.
#[derive(Clone, Copy)]
pub struct ClassifyFn<F>(F);

impl<F> std::fmt::Debug for ClassifyFn<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("ClassifyFn")
            .field(&std::any::type_name::<F>())
            .finish()
    }
}

impl<F> ClassifyRoute for ClassifyFn<F>
where
    F: for<'a, 'b> Fn(&'b RequestHead<'a>) -> Option<Cow<'a, str>> + Clone + Send + Sync + 'static,
{
    #[inline]
    fn classify<'a, B>(&self, request: &'a Request<B>) -> Option<Cow<'a, str>> {
        (self.0)(&RequestHead::of(request))
    }
}

/// A tower [`Layer`] that records the duration, method, route and status of every request.
///
/// Get one from [`Metrics::layer`](crate::Metrics::layer).
///
/// ```
/// use axum::{Router, routing::get};
///
/// let metrics = redwatch::Metrics::new();
/// let app: Router = Router::new()
///     .route("/users/{id}", get(|| async { "user" }))
///     .merge(metrics.router())
///     .layer(metrics.layer());
/// ```
///
/// The duration runs from the moment the service is called until the response body has been
/// sent to the end or dropped, so streaming responses are timed in full. A request whose
/// future is dropped before a response exists (client gone, timeout) is recorded with status
/// `499`; a handler that panics is recorded as `500` (and, with the `flask` preset, in
/// `flask_http_request_exceptions_total`) before the panic continues to an outer
/// `CatchPanicLayer` or to the server.
#[derive(Clone)]
pub struct MetricsLayer<C = MatchedPathRoute> {
    core: Arc<Core>,
    classifier: C,
}

impl MetricsLayer {
    pub(crate) fn new(core: Arc<Core>) -> Self {
        Self {
            core,
            classifier: MatchedPathRoute,
        }
    }
}

impl<C: std::fmt::Debug> std::fmt::Debug for MetricsLayer<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MetricsLayer")
            .field("classifier", &self.classifier)
            .finish_non_exhaustive()
    }
}

impl<C> MetricsLayer<C> {
    /// Uses `classifier` instead of axum's matched path to find a request's route, for plain
    /// hyper or tonic services.
    pub fn classify_with<D: ClassifyRoute>(self, classifier: D) -> MetricsLayer<D> {
        MetricsLayer {
            core: self.core,
            classifier,
        }
    }
}

impl<S, C: Clone> Layer<S> for MetricsLayer<C> {
    type Service = MetricsService<S, C>;

    fn layer(&self, inner: S) -> Self::Service {
        MetricsService {
            inner,
            core: Arc::clone(&self.core),
            classifier: self.classifier.clone(),
            last_route: Arc::default(),
        }
    }
}

/// The first route a service saw. `Router::layer` wraps each route separately, so with axum
/// every request a service sees has this route and skips the registry's route map.
type RouteCache = OnceLock<(Box<str>, Arc<RouteEntry>)>;

/// The service produced by [`MetricsLayer`].
#[derive(Clone)]
pub struct MetricsService<S, C = MatchedPathRoute> {
    inner: S,
    core: Arc<Core>,
    classifier: C,
    last_route: Arc<RouteCache>,
}

impl<S, C> MetricsService<S, C> {
    /// The wrapped service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The wrapped service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Unwraps the service, which then records nothing.
    ///
    /// ```
    /// use tower::{Layer, service_fn};
    ///
    /// let metrics = redwatch::Metrics::new();
    /// let inner = service_fn(|_: http::Request<()>| async {
    ///     Ok::<_, std::convert::Infallible>(http::Response::new(()))
    /// });
    /// let service = metrics.layer().layer(inner);
    /// let _inner = service.into_inner();
    /// ```
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S: std::fmt::Debug, C: std::fmt::Debug> std::fmt::Debug for MetricsService<S, C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MetricsService")
            .field("inner", &self.inner)
            .field("classifier", &self.classifier)
            .finish_non_exhaustive()
    }
}

impl<S, C, ReqBody, ResBody> Service<Request<ReqBody>> for MetricsService<S, C>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    C: ClassifyRoute,
{
    type Response = Response<ResponseBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        let start = self.core.shared.clock.raw();
        let route = match self.classifier.classify(&request) {
            None => self.core.unmatched(),
            Some(route) => match self.last_route.get() {
                Some((cached, entry)) if **cached == *route => Arc::clone(entry),
                cached => {
                    let entry = self.core.route(&route);
                    // Fill the cache once; building its key on every miss would allocate.
                    if cached.is_none() {
                        let _ = self
                            .last_route
                            .set((route.as_ref().into(), Arc::clone(&entry)));
                    }
                    entry
                }
            },
        };
        let tracker = if route.excluded {
            None
        } else {
            let method = method_index(request.method());
            let config = &route.shared.config;
            let request_size = match config.size_bounds_bytes {
                Some(_) => content_length(&request),
                None => None,
            };
            let trace = if config.exemplars {
                trace::of_request(&request)
            } else {
                None
            };
            route.shared.active[usize::from(method)]
                .0
                .fetch_add(1, Ordering::Relaxed);
            Some(Tracker {
                route,
                method,
                status: ABANDONED_STATUS,
                start,
                request_size,
                response_size: 0,
                trace,
            })
        };
        ResponseFuture {
            inner: self.inner.call(request),
            tracker,
        }
    }
}

fn content_length<B>(request: &Request<B>) -> Option<u64> {
    request
        .headers()
        .get(http::header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .parse()
        .ok()
}

pin_project! {
    /// The response future of [`MetricsService`].
    pub struct ResponseFuture<F> {
        #[pin]
        inner: F,
        tracker: Option<Tracker>,
    }
}

impl<F: std::fmt::Debug> std::fmt::Debug for ResponseFuture<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseFuture")
            .field("inner", &self.inner)
            .field("recording", &self.tracker.is_some())
            .finish()
    }
}

impl<F, B, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = Result<Response<ResponseBody<B>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        // If the inner future panics, this guard is dropped while unwinding and records a 500
        // exception; on a normal return it is defused. Costs nothing when nothing panics,
        // unlike catch_unwind, which would also keep the inner poll from being inlined.
        let mut guard = PanicGuard {
            tracker: this.tracker,
            armed: true,
        };
        let polled = this.inner.poll(cx);
        guard.armed = false;
        let tracker = &mut *guard.tracker;
        match polled {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Ok(response)) => {
                let mut tracker = tracker.take();
                if let Some(tracker) = tracker.as_mut() {
                    tracker.status = response.status().as_u16();
                }
                Poll::Ready(Ok(response.map(|body| ResponseBody {
                    inner: body,
                    tracker,
                })))
            }
            Poll::Ready(Err(error)) => {
                // No response will be sent; the server reports this to the client as a failure.
                if let Some(mut tracker) = tracker.take() {
                    tracker.finish(500, false);
                }
                Poll::Ready(Err(error))
            }
        }
    }
}

/// Records a panic of the inner future; see [`ResponseFuture::poll`].
struct PanicGuard<'a> {
    tracker: &'a mut Option<Tracker>,
    /// Still set when the inner poll did not return.
    armed: bool,
}

impl Drop for PanicGuard<'_> {
    fn drop(&mut self) {
        if self.armed
            && let Some(mut tracker) = self.tracker.take()
        {
            tracker.finish(500, true);
        }
    }
}

pin_project! {
    /// The response body of [`MetricsService`]: the inner body, timed until its end or drop.
    pub struct ResponseBody<B> {
        #[pin]
        inner: B,
        tracker: Option<Tracker>,
    }
}

impl<B: std::fmt::Debug> std::fmt::Debug for ResponseBody<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseBody")
            .field("inner", &self.inner)
            .field("recording", &self.tracker.is_some())
            .finish()
    }
}

impl<B: Body> Body for ResponseBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = self.project();
        let polled = this.inner.poll_frame(cx);
        if let Some(tracker) = this.tracker.as_mut() {
            match &polled {
                Poll::Ready(Some(Ok(frame))) => {
                    if let Some(data) = frame.data_ref() {
                        tracker.response_size += bytes::Buf::remaining(data) as u64;
                    }
                }
                Poll::Ready(None) | Poll::Ready(Some(Err(_))) => {
                    let status = tracker.status;
                    tracker.finish(status, false);
                    *this.tracker = None;
                }
                Poll::Pending => {}
            }
        }
        polled
    }

    #[inline]
    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    #[inline]
    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// What is known of one request while it is in flight; records it exactly once.
struct Tracker {
    route: Arc<RouteEntry>,
    method: u8,
    /// The response status once there is a response, [`ABANDONED_STATUS`] until then.
    status: u16,
    /// Raw clock reading at arrival; see `Shared::clock`.
    start: u64,
    request_size: Option<u64>,
    response_size: u64,
    /// The request's trace, for the duration bucket's exemplar.
    trace: Option<TraceContext>,
}

impl Tracker {
    fn finish(&mut self, status: u16, panicked: bool) {
        let shared = &self.route.shared;
        let nanos = shared.clock.delta_as_nanos(self.start, shared.clock.raw());
        shared.active[usize::from(self.method)]
            .0
            .fetch_sub(1, Ordering::Relaxed);
        let config = &shared.config;
        let (request_size, response_size) = (self.request_size, self.response_size);
        let trace = self.trace;
        self.route.with_series(self.method, status, |series| {
            let bucket = series.observe_duration(&config.duration_bounds_nanos, nanos);
            if let (Some(context), Some(slots)) = (trace, &series.duration_exemplars) {
                offer_exemplar(
                    slots,
                    bucket,
                    Exemplar {
                        context,
                        value_nanos: nanos,
                        unix_nanos: unix_nanos_now(),
                    },
                );
            }
            if let Some(bounds) = &config.size_bounds_bytes {
                if let (Some(histogram), Some(size)) = (&series.request_size, request_size) {
                    histogram.observe(bounds, size);
                }
                if let Some(histogram) = &series.response_size {
                    histogram.observe(bounds, response_size);
                }
            }
        });
        if panicked {
            record_exception(shared, self.method, status);
        }
        // Mark as recorded so that Drop does nothing.
        self.method = u8::MAX;
    }
}

fn unix_nanos_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |since| {
            u64::try_from(since.as_nanos()).unwrap_or(u64::MAX)
        })
}

impl Drop for Tracker {
    fn drop(&mut self) {
        if self.method != u8::MAX {
            // Dropped without an end of body: an abandoned request or a body cut short.
            let status = self.status;
            self.finish(status, false);
        }
    }
}

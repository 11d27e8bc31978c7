//! The tower middleware that records RED metrics: [`MetricsLayer`], [`MetricsService`],
//! [`ResponseFuture`] and [`ResponseBody`].

use std::future::Future;
use std::marker::PhantomData;
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
use crate::registry::{Core, RouteEntry, Series, SeriesKey, record_exception};
#[cfg(feature = "exemplars")]
use crate::registry::{Exemplar, offer_exemplar};
#[cfg(feature = "opt-out")]
use crate::request_label::DisableMetrics;
use crate::request_label::NO_VALUE;
#[cfg(feature = "exemplars")]
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
///
/// `St` is where a response's status comes from: [`HttpStatus`], or [`GrpcStatus`] for the layer
/// [`MetricsLayer::grpc`] makes. A layer for HTTP does not look for a gRPC status, not even to
/// find that there is none (that check cost about 30 instructions per request).
#[derive(Clone)]
pub struct MetricsLayer<C = MatchedPathRoute, St = HttpStatus> {
    core: Arc<Core>,
    classifier: C,
    status: PhantomData<fn() -> St>,
}

impl MetricsLayer {
    pub(crate) fn new(core: Arc<Core>) -> Self {
        Self {
            core,
            classifier: MatchedPathRoute,
            status: PhantomData,
        }
    }
}

impl<C: std::fmt::Debug, St: StatusSource> std::fmt::Debug for MetricsLayer<C, St> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MetricsLayer")
            .field("classifier", &self.classifier)
            .field("status", &St::default())
            .finish_non_exhaustive()
    }
}

impl<C, St> MetricsLayer<C, St> {
    /// Uses `classifier` instead of axum's matched path to find a request's route, for plain
    /// hyper or tonic services.
    pub fn classify_with<D: ClassifyRoute>(self, classifier: D) -> MetricsLayer<D, St> {
        MetricsLayer {
            core: self.core,
            classifier,
            status: PhantomData,
        }
    }

    /// For gRPC services (tonic): the route is the method's path, `/package.Service/Method`,
    /// and a gRPC response is recorded with its gRPC status, from the `grpc-status` header of
    /// a trailers-only response or from the trailers, so that a failed call is not an HTTP 200.
    ///
    /// The status label keeps HTTP's meaning, so that error ratios and dashboards work as they
    /// do for HTTP: each gRPC code is recorded as the HTTP status Google's APIs map it to
    /// (`OK` 200, `CANCELLED` 499, `INVALID_ARGUMENT` 400, `NOT_FOUND` 404, `UNIMPLEMENTED` 501,
    /// `UNAVAILABLE` 503, `DEADLINE_EXCEEDED` 504, `INTERNAL`, `UNKNOWN` and `DATA_LOSS` 500, ...,
    /// see [`grpc_status_as_http`]). The 5xx ones are exactly the codes OpenTelemetry counts as
    /// server errors. A call whose response ends without a status is `UNKNOWN` (500), and one
    /// abandoned before its trailers is `CANCELLED` (499). Responses that are not gRPC (by
    /// `content-type`) keep their HTTP status.
    ///
    /// ```
    /// let metrics = redwatch::Metrics::new();
    /// let layer = metrics.layer().grpc();
    /// // tonic::transport::Server::builder().layer(layer).add_service(...)
    /// # let _ = layer;
    /// ```
    pub fn grpc(self) -> MetricsLayer<UriPathRoute, GrpcStatus> {
        MetricsLayer {
            core: self.core,
            classifier: UriPathRoute,
            status: PhantomData,
        }
    }
}

impl<S, C: Clone, St> Layer<S> for MetricsLayer<C, St> {
    type Service = MetricsService<S, C, St>;

    fn layer(&self, inner: S) -> Self::Service {
        MetricsService {
            inner,
            state: Arc::new(ServiceState {
                core: Arc::clone(&self.core),
                last_route: RouteCache::new(),
            }),
            classifier: self.classifier.clone(),
            status: PhantomData,
        }
    }
}

/// The first route a service saw. `Router::layer` wraps each route separately, so with axum
/// every request a service sees has this route and skips the registry's route map.
type RouteCache = OnceLock<(Box<str>, Arc<RouteEntry>)>;

/// What the clones of one [`MetricsService`] share, behind one `Arc`: axum clones the service
/// for every request, so each `Arc` in it is a reference count written twice per request.
struct ServiceState {
    core: Arc<Core>,
    last_route: RouteCache,
}

/// The service produced by [`MetricsLayer`]; `St` as there.
#[derive(Clone)]
pub struct MetricsService<S, C = MatchedPathRoute, St = HttpStatus> {
    inner: S,
    state: Arc<ServiceState>,
    classifier: C,
    status: PhantomData<fn() -> St>,
}

impl<S, C, St> MetricsService<S, C, St> {
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

impl<S: std::fmt::Debug, C: std::fmt::Debug, St: StatusSource> std::fmt::Debug
    for MetricsService<S, C, St>
{
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MetricsService")
            .field("inner", &self.inner)
            .field("classifier", &self.classifier)
            .field("status", &St::default())
            .finish_non_exhaustive()
    }
}

impl<S, C, ReqBody, ResBody, St: StatusSource> Service<Request<ReqBody>>
    for MetricsService<S, C, St>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    C: ClassifyRoute,
{
    type Response = Response<ResponseBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future, St>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    // Not inlined into the caller: inlined into axum's `MapIntoResponse::call`, the request is
    // moved once more (an extra memcpy; measured with bench/axum-overhead/insn).
    #[inline(never)]
    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        // Reading further takes calls that are handed a pointer into the request; after that
        // the compiler copies the request before passing it on (measured: a 240-byte memcpy).
        // So the common case makes no such call, and the other one is a path of its own.
        if self.state.core.shared.reads_request_further {
            self.track_and_call::<true, _>(request)
        } else {
            self.track_and_call::<false, _>(request)
        }
    }
}

impl<S, C: ClassifyRoute, St: StatusSource> MetricsService<S, C, St> {
    /// [`Service::call`], reading the request further or not (see [`MetricsService::track`]).
    /// Inlined: called, the request is copied once more.
    #[inline(always)]
    fn track_and_call<const FURTHER: bool, ReqBody>(
        &mut self,
        request: Request<ReqBody>,
    ) -> ResponseFuture<S::Future, St>
    where
        S: Service<Request<ReqBody>>,
    {
        let tracker = self.track::<FURTHER, _>(&request);
        ResponseFuture {
            inner: self.inner.call(request),
            tracker,
            status: PhantomData,
        }
    }

    /// What the layer records of `request`, from its arrival; `None` for an excluded route.
    /// Without `FURTHER`, the request is read for its route, method and protocol only.
    #[inline(always)]
    fn track<const FURTHER: bool, B>(&mut self, request: &Request<B>) -> Option<Tracker> {
        let state = &*self.state;
        let start = state.core.shared.clock.raw();
        let route = match self.classifier.classify(request) {
            None => state.core.unmatched(),
            Some(route) => match state.last_route.get() {
                Some((cached, entry)) if **cached == *route => Arc::clone(entry),
                cached => {
                    let entry = state.core.route(&route);
                    // Fill the cache once; building its key on every miss would allocate.
                    if cached.is_none() {
                        let _ = state
                            .last_route
                            .set((route.as_ref().into(), Arc::clone(&entry)));
                    }
                    entry
                }
            },
        };
        if route.excluded {
            None
        } else {
            let config = &route.shared.config;
            let method = if FURTHER {
                config.method_index(request.method())
            } else {
                method_index(request.method())
            };
            let (scheme, version) = config.protocol_of(request);
            let request_size = match &config.size_bounds_bytes {
                Some(_) if FURTHER => content_length(request).unwrap_or(UNKNOWN_SIZE),
                _ => UNKNOWN_SIZE,
            };
            let label = match &route.shared.label_values {
                Some(values) if FURTHER => values.index_of(request),
                _ => NO_VALUE,
            };
            #[cfg(feature = "exemplars")]
            let trace = if FURTHER && config.exemplars {
                trace::of_request(request)
            } else {
                None
            };
            let gauge = route.shared.active_index(scheme, method);
            route
                .shared
                .active_at(gauge)
                .fetch_add(1, Ordering::Relaxed);
            Some(Tracker {
                route,
                gauge,
                method,
                status: ABANDONED_STATUS,
                start,
                request_size,
                response_size: 0,
                #[cfg(feature = "exemplars")]
                trace,
                labels: SeriesKey {
                    method,
                    status: 0,
                    label,
                    scheme,
                    version,
                }
                .packed(),
                grpc: if St::GRPC {
                    GrpcState::Expected
                } else {
                    GrpcState::No
                },
            })
        }
    }
}

/// [`Tracker::request_size`] of a request without a readable `content-length` (one of
/// 2^64 - 1 bytes is taken for one).
const UNKNOWN_SIZE: u64 = u64::MAX;

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
    pub struct ResponseFuture<F, St = HttpStatus> {
        #[pin]
        inner: F,
        tracker: Option<Tracker>,
        status: PhantomData<fn() -> St>,
    }
}

impl<F: std::fmt::Debug, St> std::fmt::Debug for ResponseFuture<F, St> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseFuture")
            .field("inner", &self.inner)
            .field("recording", &self.tracker.is_some())
            .finish()
    }
}

impl<F, B, E, St: StatusSource> Future for ResponseFuture<F, St>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = Result<Response<ResponseBody<B>>, E>;

    // Always inlined: left to the compiler, which keeps it out of line since it has the rare
    // cases below, the response is copied twice more (measured with `--layer-alone`).
    #[inline(always)]
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
                if let Some(recording) = tracker.as_mut() {
                    recording.status = response.status().as_u16();
                    // The rare cases out of line and in place, so that the common one builds
                    // the response straight into its place (measured: a copy of it less).
                    if St::GRPC || may_opt_out(&response) {
                        read_uncommon_head(tracker, &response);
                    }
                }
                let tracker = tracker.take();
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

/// Where a [`MetricsLayer`] takes a response's status from: [`HttpStatus`] or [`GrpcStatus`].
/// Sealed: the layer knows these two.
pub trait StatusSource: sealed::Sealed + Default + std::fmt::Debug {
    /// Whether gRPC responses are recorded with their gRPC status.
    #[doc(hidden)]
    const GRPC: bool;
}

/// The HTTP status, as sent: the status of [`MetricsLayer`] by default.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HttpStatus;

/// A gRPC call's status for a gRPC response, recorded as an HTTP status
/// ([`grpc_status_as_http`]); the HTTP status for other responses: see [`MetricsLayer::grpc`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GrpcStatus;

impl StatusSource for HttpStatus {
    const GRPC: bool = false;
}

impl StatusSource for GrpcStatus {
    const GRPC: bool = true;
}

mod sealed {
    pub trait Sealed {}
    impl Sealed for super::HttpStatus {}
    impl Sealed for super::GrpcStatus {}
}

/// Whether a handler may have opted its request out ([`DisableMetrics`], feature `opt-out`).
/// Without the feature, no response is looked at: the check costs about 30 instructions per
/// request, as the compiler then keeps the response in memory and copies it once more.
#[inline(always)]
fn may_opt_out<B>(_response: &Response<B>) -> bool {
    #[cfg(feature = "opt-out")]
    return !_response.extensions().is_empty();
    #[cfg(not(feature = "opt-out"))]
    false
}

/// A response head that may carry a handler's [`DisableMetrics`], which drops the recording, or
/// one of a gRPC layer, whose status is read.
#[cold]
#[inline(never)]
fn read_uncommon_head<B>(tracker: &mut Option<Tracker>, response: &Response<B>) {
    if let Some(recording) = tracker.as_mut() {
        if opted_out(response) {
            recording.discard();
            *tracker = None;
        } else if recording.grpc == GrpcState::Expected {
            recording.read_grpc_head(response.headers());
        }
    }
}

fn opted_out<B>(_response: &Response<B>) -> bool {
    #[cfg(feature = "opt-out")]
    return _response.extensions().get::<DisableMetrics>().is_some();
    #[cfg(not(feature = "opt-out"))]
    false
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
                    } else if tracker.grpc == GrpcState::AwaitingTrailers
                        && let Some(trailers) = frame.trailers_ref()
                    {
                        tracker.read_grpc_trailers(trailers);
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
    /// The in-flight gauge this request is counted in ([`crate::registry::Shared::active_index`]).
    gauge: u16,
    method: u8,
    /// The response status once there is a response, [`ABANDONED_STATUS`] until then.
    status: u16,
    /// Raw clock reading at arrival; see `Shared::clock`.
    start: u64,
    /// The request's `content-length`, [`UNKNOWN_SIZE`] without one (an `Option` would make
    /// every request's future 8 bytes larger).
    request_size: u64,
    response_size: u64,
    /// The request's trace, for the duration bucket's exemplar. Behind a feature: it makes
    /// every request's future larger, and futures are moved several times per request.
    #[cfg(feature = "exemplars")]
    trace: Option<TraceContext>,
    /// The series key's labels but the status, packed ([`SeriesKey::packed`] with status 0):
    /// packed once on arrival, where the preset's constants fold in.
    labels: u64,
    grpc: GrpcState,
}

/// Where a gRPC call's status is, for [`MetricsLayer::grpc`].
#[derive(Clone, Copy, PartialEq, Eq)]
enum GrpcState {
    /// Not a gRPC layer, or not a gRPC response: the HTTP status stands.
    No,
    /// A gRPC layer, before the response head.
    Expected,
    /// A gRPC response whose status comes in the trailers; until then `UNKNOWN` (500).
    AwaitingTrailers,
    /// The gRPC status is known and recorded in `status`.
    Known,
}

impl Tracker {
    /// Reads a gRPC response's head: a trailers-only response has its `grpc-status` here;
    /// otherwise it comes in the trailers.
    fn read_grpc_head(&mut self, headers: &HeaderMap) {
        let is_grpc = headers
            .get(http::header::CONTENT_TYPE)
            .is_some_and(|value| value.as_bytes().starts_with(b"application/grpc"));
        if !is_grpc {
            self.grpc = GrpcState::No;
            return;
        }
        match grpc_status(headers) {
            Some(status) => {
                self.status = status;
                self.grpc = GrpcState::Known;
            }
            None => {
                self.status = grpc_status_as_http(GRPC_UNKNOWN);
                self.grpc = GrpcState::AwaitingTrailers;
            }
        }
    }

    fn read_grpc_trailers(&mut self, trailers: &HeaderMap) {
        // A status that is missing or unreadable leaves UNKNOWN.
        if let Some(status) = grpc_status(trailers) {
            self.status = status;
        }
        self.grpc = GrpcState::Known;
    }

    /// Forgets the request: it leaves the in-flight gauge and is recorded nowhere.
    fn discard(&mut self) {
        self.route
            .shared
            .active_at(self.gauge)
            .fetch_sub(1, Ordering::Relaxed);
        self.method = u8::MAX;
    }

    fn finish(&mut self, status: u16, panicked: bool) {
        let shared = &self.route.shared;
        let nanos = shared.clock.delta_as_nanos(self.start, shared.clock.raw());
        shared.active_at(self.gauge).fetch_sub(1, Ordering::Relaxed);
        let config = &shared.config;
        let (request_size, response_size) = (self.request_size, self.response_size);
        #[cfg(feature = "exemplars")]
        let trace = self.trace;
        self.route
            .with_series_packed(self.labels | u64::from(status), |series| {
                let _bucket = series.observe_duration(&config.duration_bounds_nanos, nanos);
                #[cfg(feature = "exemplars")]
                if let (Some(context), Some(slots)) = (trace, &series.duration_exemplars) {
                    offer_exemplar(
                        slots,
                        _bucket,
                        Exemplar {
                            context,
                            value_nanos: nanos,
                            unix_nanos: unix_nanos_now(),
                        },
                    );
                }
                if let Some(bounds) = &config.size_bounds_bytes {
                    record_sizes(series, bounds, request_size, response_size);
                }
            });
        if panicked {
            record_exception(shared, self.method, status);
        }
        // Mark as recorded so that Drop does nothing.
        self.method = u8::MAX;
    }
}

/// Records a request's body sizes (`MetricsBuilder::body_sizes`); out of line, so that the
/// recording without them stays small enough to inline.
#[inline(never)]
fn record_sizes(series: &Series, bounds: &[u64], request_size: u64, response_size: u64) {
    if let Some(histogram) = &series.request_size
        && request_size != UNKNOWN_SIZE
    {
        histogram.observe(bounds, request_size);
    }
    if let Some(histogram) = &series.response_size {
        histogram.observe(bounds, response_size);
    }
}

const GRPC_CANCELLED: u16 = 1;
const GRPC_UNKNOWN: u16 = 2;

/// The `grpc-status` in `headers`, as the HTTP status it is recorded as.
fn grpc_status(headers: &HeaderMap) -> Option<u16> {
    let code = headers.get("grpc-status")?.to_str().ok()?.parse().ok()?;
    Some(grpc_status_as_http(code))
}

/// The HTTP status a gRPC status code is recorded as by [`MetricsLayer::grpc`]: the mapping of
/// Google's API design guide (`google.rpc.Code`), with `UNKNOWN` (500) for codes it does not
/// define.
pub fn grpc_status_as_http(code: u16) -> u16 {
    match code {
        0 => 200,  // OK
        1 => 499,  // CANCELLED
        3 => 400,  // INVALID_ARGUMENT
        4 => 504,  // DEADLINE_EXCEEDED
        5 => 404,  // NOT_FOUND
        6 => 409,  // ALREADY_EXISTS
        7 => 403,  // PERMISSION_DENIED
        8 => 429,  // RESOURCE_EXHAUSTED
        9 => 400,  // FAILED_PRECONDITION
        10 => 409, // ABORTED
        11 => 400, // OUT_OF_RANGE
        12 => 501, // UNIMPLEMENTED
        14 => 503, // UNAVAILABLE
        16 => 401, // UNAUTHENTICATED
        // UNKNOWN, INTERNAL, DATA_LOSS, and anything else.
        _ => 500,
    }
}

#[cfg(feature = "exemplars")]
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
            // Dropped without an end of body: an abandoned request or a body cut short; a gRPC
            // call cut short before its status is CANCELLED.
            let status = if self.grpc == GrpcState::AwaitingTrailers {
                grpc_status_as_http(GRPC_CANCELLED)
            } else {
                self.status
            };
            self.finish(status, false);
        }
    }
}

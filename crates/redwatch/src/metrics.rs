//! [`Metrics`], the handle users keep, with every method it has (recording, rendering,
//! snapshots, serving), and its [`MetricsBuilder`].

use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use bytes::Bytes;
use http::header::{CONTENT_ENCODING, CONTENT_TYPE};
use http::{HeaderMap, HeaderValue, Response, StatusCode};
use http_body_util::Full;
#[cfg(feature = "regex")]
use regex::RegexSet;

use crate::encode::escape_label_value;
use crate::encode::{self, Format, LeValues};
use crate::exposition::{accepts_gzip, bearer_matches, gzip, negotiate_format};
use crate::layer::MetricsLayer;
use crate::naming::{
    DEFAULT_DURATION_BUCKETS, DEFAULT_SIZE_BUCKETS, MAX_KNOWN_METHODS, METHODS, Naming,
    OTHER_METHOD, SCHEMES,
};
use crate::registry::{Config, Core, Exclusions};
use crate::request_label::{LabelSource, LabelValues, RequestLabel};
use crate::snapshot::{self, Snapshot};

/// RED metrics for one service: the layer that records them, the registry that holds them
/// and the `/metrics` exposition that serves them.
///
/// ```
/// use axum::{Router, routing::get};
///
/// let metrics = redwatch::Metrics::builder()
///     .naming(redwatch::Naming::Otel)
///     .const_label("service", "checkout")
///     .app_version(env!("CARGO_PKG_VERSION"))
///     .build()
///     .expect("valid metrics configuration");
///
/// let app: Router = Router::new()
///     .route("/orders/{id}", get(|| async { "order" }))
///     .merge(metrics.router()) // GET /metrics
///     .layer(metrics.layer()); // records every route, /metrics excluded
/// ```
///
/// `Metrics` is cheap to clone; clones share the same series.
#[derive(Clone)]
pub struct Metrics {
    inner: Arc<Inner>,
}

pub(crate) struct Inner {
    core: Arc<Core>,
    le: LeValues,
    user: Mutex<prometheus_client::registry::Registry>,
    metrics_path: String,
    bearer_token: Option<String>,
    /// Size of the last exposition, so the next one allocates once.
    last_size: AtomicUsize,
    /// Renders the scrapes of [`Metrics::router`].
    #[cfg(feature = "axum")]
    scrape_thread: crate::scrape_thread::ScrapeThread,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for Metrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Metrics")
            .field("naming", &self.inner.core.shared.config.naming)
            .field("metrics_path", &self.inner.metrics_path)
            .finish_non_exhaustive()
    }
}

impl Metrics {
    /// Metrics with the defaults: `otel` names, OpenTelemetry buckets, `/metrics` excluded.
    pub fn new() -> Self {
        match Self::builder().build() {
            Ok(metrics) => metrics,
            // The default configuration is valid by construction (tested).
            Err(error) => unreachable!("default metrics configuration is invalid: {error}"),
        }
    }

    /// Starts a configuration.
    pub fn builder() -> MetricsBuilder {
        MetricsBuilder::default()
    }

    /// The tower layer that records requests into these metrics.
    pub fn layer(&self) -> MetricsLayer {
        MetricsLayer::new(Arc::clone(&self.inner.core))
    }

    /// The naming preset in use.
    pub fn naming(&self) -> Naming {
        self.inner.core.shared.config.naming
    }

    /// The path the exposition is served on by [`Metrics::router`].
    pub fn metrics_path(&self) -> &str {
        &self.inner.metrics_path
    }

    #[cfg(test)]
    pub(crate) fn inner_core(&self) -> &Arc<Core> {
        &self.inner.core
    }

    /// Stops recording requests to `route` (a template), unless it was already recorded.
    #[cfg_attr(not(feature = "dashboard"), allow(dead_code))]
    pub(crate) fn exclude_route_later(&self, route: &str) {
        self.inner.core.exclude_later(route);
    }

    /// The duration bucket bounds, in seconds.
    #[cfg_attr(not(feature = "dashboard"), allow(dead_code))]
    pub(crate) fn duration_bounds(&self) -> &[f64] {
        &self.inner.core.shared.config.duration_bounds_seconds
    }

    pub(crate) fn bearer_token(&self) -> Option<&str> {
        self.inner.bearer_token.as_deref()
    }

    /// Registers a `prometheus-client` metric (counter, gauge, histogram, family, ...) so that
    /// it appears on the same exposition. `help` may contain any text: it is escaped here
    /// (`prometheus-client` writes it as given, so a line break would end the line).
    ///
    /// ```
    /// use prometheus_client::metrics::counter::Counter;
    ///
    /// let metrics = redwatch::Metrics::new();
    /// let jobs: Counter = Counter::default();
    /// metrics.register("jobs_processed", "Jobs processed by the worker", jobs.clone());
    /// jobs.inc();
    /// let text = String::from_utf8(metrics.render(redwatch::Format::Prometheus)).unwrap();
    /// assert!(text.contains("jobs_processed_total 1"));
    /// ```
    pub fn register(
        &self,
        name: impl Into<String>,
        help: impl Into<String>,
        metric: impl prometheus_client::registry::Metric,
    ) {
        let help = escape_label_value(&help.into());
        self.with_registry(|registry| registry.register(name, help, metric));
    }

    /// Gives access to the underlying `prometheus-client` registry, for sub-registries,
    /// units and collectors. Help texts given to it directly are written as they are, so they
    /// must be escaped for OpenMetrics (`\\`, `\n`, `\"`); [`Metrics::register`] does that.
    pub fn with_registry<T>(
        &self,
        f: impl FnOnce(&mut prometheus_client::registry::Registry) -> T,
    ) -> T {
        let mut registry = self
            .inner
            .user
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        f(&mut registry)
    }

    /// Encodes every metric in `format`. This blocks (it reads `/proc` and renders every
    /// series); see [`Metrics::respond`] for calling it from async code.
    pub fn render(&self, format: Format) -> Vec<u8> {
        let inner = &self.inner;
        let mut out = Vec::with_capacity(inner.last_size.load(Ordering::Relaxed) + 1024);
        encode::encode_core(&inner.core.shared, &inner.le, format, &mut out);

        let mut user = String::new();
        // Writing to a String cannot fail.
        let _ = self.with_registry(|registry| {
            prometheus_client::encoding::text::encode_registry(&mut user, registry)
        });
        match format {
            Format::OpenMetrics => {
                out.extend_from_slice(user.as_bytes());
                out.extend_from_slice(b"# EOF\n");
            }
            Format::Prometheus => encode::openmetrics_to_prometheus(&user, &mut out),
        }
        inner.last_size.store(out.len(), Ordering::Relaxed);
        out
    }

    /// The exposition in the format `request_headers` ask for, and its content type.
    fn render_negotiated(&self, request_headers: &HeaderMap) -> (Vec<u8>, &'static str) {
        #[cfg(feature = "native-histograms")]
        if self.inner.core.shared.config.native_histograms
            && crate::exposition::prefers_protobuf(request_headers)
        {
            return (self.render_protobuf(), crate::protobuf::CONTENT_TYPE);
        }
        let format = negotiate_format(request_headers);
        (self.render(format), format.content_type())
    }

    /// Encodes every metric in the Prometheus protobuf format (length-delimited
    /// `io.prometheus.client.MetricFamily` messages, [`PROTOBUF_CONTENT_TYPE`](crate::PROTOBUF_CONTENT_TYPE)):
    /// redwatch's families, with the native duration histograms when
    /// [`native_histograms`](MetricsBuilder::native_histograms) is on, and the registered ones.
    /// [`Metrics::respond`] serves it to scrapers that prefer it when native histograms are on.
    /// It blocks, like [`Metrics::render`].
    #[cfg(feature = "native-histograms")]
    #[cfg_attr(docsrs, doc(cfg(feature = "native-histograms")))]
    pub fn render_protobuf(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.inner.last_size.load(Ordering::Relaxed) + 1024);
        let user = self.with_registry(|registry| {
            prometheus_client::encoding::prometheus_protobuf::encode(registry)
        });
        crate::protobuf::encode(&self.inner.core.shared, user, &mut out);
        out
    }

    /// A typed, consistent view of every RED series (counts, sums and cumulative buckets,
    /// read as the exposition reads them), the in-flight gauges and the process, runtime and
    /// info values, for code that wants numbers rather than text. It reads `/proc`, like
    /// [`Metrics::render`].
    ///
    /// ```
    /// let metrics = redwatch::Metrics::new();
    /// let snapshot = metrics.snapshot();
    /// assert_eq!(snapshot.requests(|series| series.status >= 500), 0);
    /// ```
    pub fn snapshot(&self) -> Snapshot {
        snapshot::take(&self.inner.core.shared)
    }

    /// The `401` response for a request without the configured bearer token, or `None` when
    /// the request may proceed (or no token is configured).
    pub(crate) fn refuse_unauthorized(&self, headers: &HeaderMap) -> Option<Response<Full<Bytes>>> {
        let token = self.bearer_token()?;
        if bearer_matches(headers, token) {
            return None;
        }
        let mut response = Response::new(Full::new(Bytes::from_static(
            b"missing or wrong bearer token\n",
        )));
        *response.status_mut() = StatusCode::UNAUTHORIZED;
        response.headers_mut().insert(
            http::header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer realm=\"metrics\""),
        );
        Some(response)
    }

    /// Answers a scrape: checks the bearer token, picks the format from `Accept` and
    /// compresses with gzip when `Accept-Encoding` allows it.
    ///
    /// This is the whole `/metrics` endpoint for any HTTP stack; [`Metrics::router`] wraps it
    /// for axum. It blocks (rendering, gzip, `/proc` reads), for milliseconds with many
    /// series: from async code call it through `tokio::task::spawn_blocking` or the like
    /// ([`Metrics::router`] runs it on a low-priority thread of its own).
    pub fn respond(&self, request_headers: &HeaderMap) -> Response<Full<Bytes>> {
        if let Some(refused) = self.refuse_unauthorized(request_headers) {
            return refused;
        }
        let (body, content_type) = self.render_negotiated(request_headers);
        let mut response = Response::builder()
            .header(CONTENT_TYPE, content_type)
            .header(http::header::VARY, "Accept, Accept-Encoding");
        let body = if accepts_gzip(request_headers) {
            response = response.header(CONTENT_ENCODING, "gzip");
            gzip(&body)
        } else {
            body
        };
        response
            .body(Full::new(Bytes::from(body)))
            .unwrap_or_else(|_| Response::new(Full::new(Bytes::new())))
    }

    /// An axum router serving the exposition on [`Metrics::metrics_path`], to `merge` into an
    /// application or to serve on its own listener. Scrapes are rendered on a thread of their
    /// own at a lower CPU priority (nice 10 on Linux), so that a large exposition neither stalls
    /// the workers that serve requests nor takes CPU from them while they have work.
    #[cfg(feature = "axum")]
    #[cfg_attr(docsrs, doc(cfg(feature = "axum")))]
    pub fn router<S>(&self) -> axum::Router<S>
    where
        S: Clone + Send + Sync + 'static,
    {
        let metrics = self.clone();
        axum::Router::new().route(
            self.metrics_path(),
            axum::routing::get(move |headers: HeaderMap| {
                let metrics = metrics.clone();
                async move {
                    if let Some(response) = metrics
                        .inner
                        .scrape_thread
                        .respond(&metrics, headers.clone())
                        .await
                    {
                        return response;
                    }
                    // No thread could be started: Tokio's blocking pool, never the workers.
                    tokio::task::spawn_blocking(move || metrics.respond(&headers))
                        .await
                        .unwrap_or_else(|_panicked| crate::scrape_thread::failed())
                }
            }),
        )
    }

    /// A handle that does not keep the metrics alive, for the scrape thread.
    #[cfg(feature = "axum")]
    pub(crate) fn downgrade(&self) -> std::sync::Weak<Inner> {
        Arc::downgrade(&self.inner)
    }

    /// The metrics again, while any handle to them is alive.
    #[cfg(feature = "axum")]
    pub(crate) fn upgrade(inner: &std::sync::Weak<Inner>) -> Option<Metrics> {
        inner.upgrade().map(|inner| Metrics { inner })
    }

    /// Serves the exposition on its own listener, e.g. a port that only Prometheus can reach,
    /// until `shutdown` completes.
    ///
    /// ```no_run
    /// # async fn run() -> std::io::Result<()> {
    /// let metrics = redwatch::Metrics::new();
    /// let listener = tokio::net::TcpListener::bind("127.0.0.1:9464").await?;
    /// tokio::spawn(metrics.clone().serve(listener, std::future::pending()));
    /// # Ok(()) }
    /// ```
    #[cfg(feature = "axum")]
    #[cfg_attr(docsrs, doc(cfg(feature = "axum")))]
    pub async fn serve(
        self,
        listener: tokio::net::TcpListener,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        axum::serve(listener, self.router::<()>())
            .with_graceful_shutdown(shutdown)
            .await
    }
}

/// Configures [`Metrics`]. Every setting has a default; [`MetricsBuilder::build`] checks them.
#[derive(Debug, Clone)]
pub struct MetricsBuilder {
    naming: Naming,
    namespace: Option<String>,
    const_labels: Vec<(String, String)>,
    duration_buckets: Vec<f64>,
    body_sizes: bool,
    size_buckets: Vec<f64>,
    exclude_exact: Vec<String>,
    #[cfg(feature = "regex")]
    exclude_patterns: Vec<String>,
    count_metrics_endpoint: bool,
    metrics_path: String,
    service_name: String,
    app_version: String,
    environment: String,
    bearer_token: Option<String>,
    max_routes: usize,
    request_metrics: bool,
    exemplars: bool,
    request_label: Option<RequestLabel>,
    known_methods: Option<Vec<String>>,
    url_scheme: String,
    native_histograms: bool,
}

impl Default for MetricsBuilder {
    fn default() -> Self {
        Self {
            naming: Naming::Otel,
            namespace: None,
            const_labels: Vec::new(),
            duration_buckets: DEFAULT_DURATION_BUCKETS.to_vec(),
            body_sizes: false,
            size_buckets: DEFAULT_SIZE_BUCKETS.to_vec(),
            exclude_exact: Vec::new(),
            #[cfg(feature = "regex")]
            exclude_patterns: Vec::new(),
            count_metrics_endpoint: false,
            metrics_path: "/metrics".to_owned(),
            service_name: "unknown_service".to_owned(),
            app_version: String::new(),
            environment: String::new(),
            bearer_token: None,
            max_routes: 1000,
            request_metrics: true,
            exemplars: false,
            request_label: None,
            known_methods: None,
            url_scheme: "http".to_owned(),
            native_histograms: false,
        }
    }
}

impl MetricsBuilder {
    /// The naming preset (default [`Naming::Otel`]).
    pub fn naming(mut self, naming: Naming) -> Self {
        self.naming = naming;
        self
    }

    /// A prefix for the RED metric names, e.g. `shop` gives `shop_http_server_request_duration_seconds`.
    /// Process, runtime and info metrics keep their standard names.
    pub fn namespace(mut self, namespace: impl Into<String>) -> Self {
        self.namespace = Some(namespace.into());
        self
    }

    /// A label with the same value on every redwatch series, e.g. `service` or `env`. Its name
    /// may not be one the preset writes itself (on the RED series or the info metric), start
    /// with `__`, or be given twice: [`MetricsBuilder::build`] refuses that.
    pub fn const_label(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.const_labels.push((name.into(), value.into()));
        self
    }

    /// Upper bounds of the duration buckets, in seconds, ascending (default: the OpenTelemetry
    /// buckets 0.005 … 10).
    pub fn duration_buckets(mut self, bounds: impl Into<Vec<f64>>) -> Self {
        self.duration_buckets = bounds.into();
        self
    }

    /// Also record request and response body sizes (off by default). Request sizes come from
    /// `Content-Length`; response sizes count the bytes actually sent.
    pub fn body_sizes(mut self, enabled: bool) -> Self {
        self.body_sizes = enabled;
        self
    }

    /// Upper bounds of the body size buckets, in bytes (default: powers of 4 from 64 B to 16 MiB).
    pub fn size_buckets(mut self, bounds: impl Into<Vec<f64>>) -> Self {
        self.size_buckets = bounds.into();
        self
    }

    /// Does not record requests to this route template (e.g. `/health`).
    pub fn exclude_route(mut self, template: impl Into<String>) -> Self {
        self.exclude_exact.push(template.into());
        self
    }

    /// Does not record requests to route templates matching this regex (e.g. `^/internal/`).
    /// The regex runs once per distinct route, not per request.
    #[cfg(feature = "regex")]
    #[cfg_attr(docsrs, doc(cfg(feature = "regex")))]
    pub fn exclude_routes_matching(mut self, pattern: impl Into<String>) -> Self {
        self.exclude_patterns.push(pattern.into());
        self
    }

    /// Records requests to the metrics endpoint too (off by default).
    pub fn count_metrics_endpoint(mut self, enabled: bool) -> Self {
        self.count_metrics_endpoint = enabled;
        self
    }

    /// The path of the exposition (default `/metrics`).
    pub fn metrics_path(mut self, path: impl Into<String>) -> Self {
        self.metrics_path = path.into();
        self
    }

    /// The service name in `target_info` (otel preset; default `unknown_service`).
    pub fn service_name(mut self, name: impl Into<String>) -> Self {
        self.service_name = name.into();
        self
    }

    /// The application version shown by the info metric.
    pub fn app_version(mut self, version: impl Into<String>) -> Self {
        self.app_version = version.into();
        self
    }

    /// The deployment environment shown by the info metric (e.g. `production`).
    pub fn environment(mut self, environment: impl Into<String>) -> Self {
        self.environment = environment.into();
        self
    }

    /// Requires `Authorization: Bearer <token>` on the exposition; others get 401.
    pub fn bearer_token(mut self, token: impl Into<String>) -> Self {
        self.bearer_token = Some(token.into());
        self
    }

    /// The most distinct route values kept (default 1000); further routes are recorded as
    /// `overflow`. A guard for classifiers that return unbounded values.
    pub fn max_routes(mut self, max_routes: usize) -> Self {
        self.max_routes = max_routes;
        self
    }

    /// Exposes the request metrics (default `true`). With `false` the exposition and
    /// [`Metrics::snapshot`] leave out every request family — durations, body sizes, the
    /// flask counters and `http_server_active_requests` — and keep the info, process and
    /// runtime metrics and whatever is [registered](Metrics::register). For a process that
    /// serves no HTTP API of its own, such as a load generator or a batch job, whose
    /// `/metrics` would otherwise show empty request families and an in-flight gauge of 0.
    /// Use it without [`Metrics::layer`]: what the layer records is not exposed.
    ///
    /// ```
    /// let metrics = redwatch::Metrics::builder().request_metrics(false).build().unwrap();
    /// let text = String::from_utf8(metrics.render(redwatch::Format::Prometheus)).unwrap();
    /// assert!(!text.contains("http_server"));
    /// ```
    pub fn request_metrics(mut self, enabled: bool) -> Self {
        self.request_metrics = enabled;
        self
    }

    /// Keeps, for each duration bucket, the trace context and duration of the last sampled
    /// traced request that landed in it, and shows it as the bucket's exemplar in OpenMetrics
    /// scrapes (off by default). Grafana then links a latency spike to a trace that caused it.
    /// See [`TraceContext`](crate::TraceContext) for where the context comes from.
    ///
    /// A request without a trace context costs one header lookup more and allocates nothing;
    /// Prometheus keeps exemplars only when started with `--enable-feature=exemplar-storage`.
    ///
    /// ```
    /// use redwatch::{Format, Metrics, TraceContext};
    /// use tower::{Layer, Service, ServiceExt, service_fn};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let metrics = Metrics::builder().exemplars(true).build().unwrap();
    /// let app = service_fn(|_: http::Request<String>| async {
    ///     Ok::<_, std::convert::Infallible>(http::Response::new(String::from("ok")))
    /// });
    /// let mut service = metrics.layer().layer(app);
    /// let request = http::Request::builder()
    ///     .header("traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
    ///     .body(String::new())
    ///     .unwrap();
    /// let response = service.ready().await.unwrap().call(request).await.unwrap();
    /// drop(response); // the request ends with its body
    ///
    /// let text = String::from_utf8(metrics.render(Format::OpenMetrics)).unwrap();
    /// assert!(text.contains("# {trace_id=\"4bf92f3577b34da6a3ce929d0e0e4736\",span_id=\"00f067aa0ba902b7\"}"));
    /// # }
    /// ```
    #[cfg(feature = "exemplars")]
    #[cfg_attr(docsrs, doc(cfg(feature = "exemplars")))]
    pub fn exemplars(mut self, enabled: bool) -> Self {
        self.exemplars = enabled;
        self
    }

    /// Adds a label of your own to the request histograms, valued per request from a header or
    /// a request extension, with its distinct values capped; see [`RequestLabel`].
    ///
    /// A request with a value already seen allocates nothing. Every value multiplies the
    /// series of each (method, route, status), so keep the cap to what dashboards can use.
    pub fn request_label(mut self, label: RequestLabel) -> Self {
        self.request_label = Some(label);
        self
    }

    /// The methods that get their own label value (default: the methods of RFC 9110 and PATCH,
    /// as OpenTelemetry lists them); every other method is recorded as `_OTHER`, so that
    /// clients cannot add series by inventing methods. OpenTelemetry asks for this list to be
    /// configurable: for example to add `QUERY`, or to leave out methods an API never serves.
    /// At most 16, each a valid method token, case-sensitive as HTTP methods are.
    ///
    /// ```
    /// let metrics = redwatch::Metrics::builder()
    ///     .known_methods(["GET", "POST", "QUERY"])
    ///     .build()
    ///     .unwrap();
    /// # let _ = metrics;
    /// ```
    pub fn known_methods<M: Into<String>>(mut self, methods: impl IntoIterator<Item = M>) -> Self {
        self.known_methods = Some(methods.into_iter().map(Into::into).collect());
        self
    }

    /// The `url_scheme` of requests whose URI carries no scheme (`http`, the default, or
    /// `https`), as HTTP/1.1 requests in origin form do: set `https` when the server terminates
    /// TLS itself, or when every client reaches it through HTTPS. HTTP/2 requests carry their
    /// `:scheme`, which is used as it is. `Forwarded` and `X-Forwarded-Proto` are not read:
    /// clients can set them to anything.
    pub fn url_scheme(mut self, scheme: impl Into<String>) -> Self {
        self.url_scheme = scheme.into();
        self
    }

    /// Also keeps each duration series as a native histogram (off by default), served in the
    /// Prometheus protobuf format to scrapers that ask for it, as Prometheus does when started
    /// with `--enable-feature=native-histograms`. The protobuf response carries every family of
    /// the text formats, the registered ones included, and the duration histograms with both
    /// their classic buckets and the native ones; the text formats stay as they are.
    ///
    /// The native histogram has a fixed layout: schema 3 (bucket bounds 2^(1/8) ≈ 1.09 apart,
    /// so a quantile is within about 9 % of the truth), buckets from 1 µs to 2^14 s (4.6 h;
    /// longer requests count in the top bucket) and a zero bucket for the rest. Each series
    /// takes 2.2 KB more; a request costs one relaxed atomic addition more, after a few integer
    /// operations on its duration, and allocates nothing.
    ///
    /// ```
    /// use redwatch::Metrics;
    /// use http::header::{ACCEPT, CONTENT_TYPE, HeaderMap, HeaderValue};
    ///
    /// let metrics = Metrics::builder().native_histograms(true).build().unwrap();
    /// let mut headers = HeaderMap::new();
    /// headers.insert(ACCEPT, HeaderValue::from_static(
    ///     "application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited",
    /// ));
    /// let response = metrics.respond(&headers);
    /// assert_eq!(response.headers()[CONTENT_TYPE], redwatch::PROTOBUF_CONTENT_TYPE);
    /// ```
    #[cfg(feature = "native-histograms")]
    #[cfg_attr(docsrs, doc(cfg(feature = "native-histograms")))]
    pub fn native_histograms(mut self, enabled: bool) -> Self {
        self.native_histograms = enabled;
        self
    }

    /// Checks the configuration and builds the metrics.
    pub fn build(self) -> Result<Metrics, BuildError> {
        let names = self.naming.names();
        let namespace = match &self.namespace {
            Some(namespace) => {
                check_name("namespace", namespace)?;
                format!("{namespace}_")
            }
            None => String::new(),
        };
        // Every label the preset writes on a series that also carries the constant labels (the
        // RED series, the in-flight gauge, the info metrics): a second label of the same name
        // would make the whole exposition invalid.
        let reserved: Vec<&str> = [
            names.method_label,
            names.route_label,
            names.status_label,
            names.version_label,
            names.environment_label,
            "le",
        ]
        .into_iter()
        .chain(names.scheme_label)
        .chain(names.protocol_version_label)
        .chain(names.error_type_label)
        .chain((self.naming == Naming::Otel).then_some("service_name"))
        .collect();
        let mut const_labels = String::new();
        for (index, (name, value)) in self.const_labels.iter().enumerate() {
            check_name("label name", name)?;
            if name.starts_with("__") || reserved.contains(&name.as_str()) {
                return Err(BuildError(format!(
                    "constant label {name:?} is reserved by the {} preset or by Prometheus",
                    self.naming
                )));
            }
            if self.const_labels[..index]
                .iter()
                .any(|(earlier, _)| earlier == name)
            {
                return Err(BuildError(format!(
                    "constant label {name:?} is given twice"
                )));
            }
            const_labels.push_str(&format!(",{name}=\"{}\"", escape_label_value(value)));
        }
        let label_values = match self.request_label {
            None => None,
            Some(label) => {
                check_name("request label name", &label.name)?;
                if label.name.starts_with("__")
                    || reserved.contains(&label.name.as_str())
                    || self
                        .const_labels
                        .iter()
                        .any(|(name, _)| *name == label.name)
                {
                    return Err(BuildError(format!(
                        "request label {:?} is reserved or already a constant label",
                        label.name
                    )));
                }
                if let LabelSource::Header(Err(error)) = &label.source {
                    return Err(BuildError(error.clone()));
                }
                if label.max_values == 0 {
                    return Err(BuildError(
                        "request label max_values must be at least 1".into(),
                    ));
                }
                Some(LabelValues::new(label))
            }
        };
        let (methods, default_methods) = match &self.known_methods {
            None => (&METHODS[..], true),
            Some(methods) => (known_methods(methods)?, false),
        };
        let default_scheme = match SCHEMES.iter().position(|scheme| *scheme == self.url_scheme) {
            Some(index) => index as u8,
            None => {
                return Err(BuildError(format!(
                    "url scheme {:?} must be http or https",
                    self.url_scheme
                )));
            }
        };
        check_bounds("duration", &self.duration_buckets)?;
        let size_bounds_bytes = if self.body_sizes {
            check_bounds("body size", &self.size_buckets)?;
            if self.size_buckets.iter().any(|bound| bound.fract() != 0.0) {
                return Err(BuildError("body size buckets must be whole bytes".into()));
            }
            Some(
                self.size_buckets
                    .iter()
                    .map(|&bound| bound as u64)
                    .collect(),
            )
        } else {
            None
        };
        if !self.metrics_path.starts_with('/') {
            return Err(BuildError(format!(
                "metrics path {:?} must start with '/'",
                self.metrics_path
            )));
        }
        if let Some(token) = &self.bearer_token
            && (token.is_empty() || token.chars().any(|c| c.is_whitespace() || c.is_control()))
        {
            return Err(BuildError(
                "bearer token must be non-empty and contain no whitespace".into(),
            ));
        }
        if self.max_routes == 0 {
            return Err(BuildError("max_routes must be at least 1".into()));
        }

        let mut exact = self.exclude_exact;
        if !self.count_metrics_endpoint {
            exact.push(self.metrics_path.clone());
        }
        #[cfg(feature = "regex")]
        let patterns =
            if self.exclude_patterns.is_empty() {
                None
            } else {
                Some(RegexSet::new(&self.exclude_patterns).map_err(|error| {
                    BuildError(format!("invalid route exclusion pattern: {error}"))
                })?)
            };

        let config = Config {
            naming: self.naming,
            namespace,
            const_labels,
            duration_bounds_nanos: self
                .duration_buckets
                .iter()
                .map(|&seconds| (seconds * 1e9).round() as u64)
                .collect(),
            duration_bounds_seconds: self.duration_buckets,
            size_bounds_bytes,
            info: vec![
                ("version".to_owned(), self.app_version),
                ("environment".to_owned(), self.environment),
            ],
            service_name: self.service_name,
            request_metrics: self.request_metrics,
            exemplars: self.exemplars,
            methods,
            default_methods,
            default_scheme,
            native_histograms: self.native_histograms,
        };
        let le = LeValues::new(&config);
        let core = Core::new(
            config,
            Exclusions {
                exact,
                #[cfg(feature = "regex")]
                patterns,
            },
            self.max_routes,
            label_values,
        );
        Ok(Metrics {
            inner: Arc::new(Inner {
                core: Arc::new(core),
                le,
                user: Mutex::new(prometheus_client::registry::Registry::default()),
                metrics_path: self.metrics_path,
                bearer_token: self.bearer_token,
                last_size: AtomicUsize::new(0),
                #[cfg(feature = "axum")]
                scrape_thread: Default::default(),
            }),
        })
    }
}

fn check_name(what: &str, name: &str) -> Result<(), BuildError> {
    let mut chars = name.chars();
    let valid = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
    if valid {
        Ok(())
    } else {
        Err(BuildError(format!(
            "invalid {what} {name:?}: use letters, digits and '_', not starting with a digit"
        )))
    }
}

/// The method label values of a [`MetricsBuilder::known_methods`] list, `_OTHER` last. They live
/// as long as the process: series and snapshots hand them out as `&'static str`, and a process
/// builds its metrics once or a few times.
fn known_methods(methods: &[String]) -> Result<&'static [&'static str], BuildError> {
    if methods.is_empty() || methods.len() > MAX_KNOWN_METHODS {
        return Err(BuildError(format!(
            "known methods: give 1 to {MAX_KNOWN_METHODS}, not {}",
            methods.len()
        )));
    }
    for (index, method) in methods.iter().enumerate() {
        if http::Method::from_bytes(method.as_bytes()).is_err() || method == OTHER_METHOD {
            return Err(BuildError(format!(
                "known method {method:?} is not an HTTP method token"
            )));
        }
        if methods[..index].contains(method) {
            return Err(BuildError(format!(
                "known method {method:?} is listed twice"
            )));
        }
    }
    let names: Vec<&'static str> = methods
        .iter()
        .map(|method| &*Box::leak(method.clone().into_boxed_str()))
        .chain(std::iter::once(OTHER_METHOD))
        .collect();
    Ok(Box::leak(names.into_boxed_slice()))
}

fn check_bounds(what: &str, bounds: &[f64]) -> Result<(), BuildError> {
    if bounds.is_empty() {
        return Err(BuildError(format!("{what} buckets must not be empty")));
    }
    if bounds
        .iter()
        .any(|bound| !bound.is_finite() || *bound <= 0.0)
    {
        return Err(BuildError(format!(
            "{what} buckets must be finite and positive (+Inf is added automatically)"
        )));
    }
    if bounds.windows(2).any(|pair| pair[0] >= pair[1]) {
        return Err(BuildError(format!(
            "{what} buckets must be strictly ascending"
        )));
    }
    Ok(())
}

/// A configuration [`MetricsBuilder::build`] refused, with the reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuildError(String);

impl fmt::Display for BuildError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for BuildError {}

#[cfg(test)]
mod tests {
    use super::*;

    /// The `_sum` sample of the first series of `family` in `text`.
    fn first_sum(text: &str, family: &str) -> f64 {
        let prefix = format!("{family}_sum{{");
        let line = text
            .lines()
            .find(|line| line.starts_with(&prefix))
            .unwrap_or_else(|| panic!("no {prefix} in\n{text}"));
        let (_, value) = line.rsplit_once(' ').unwrap();
        value.parse().unwrap()
    }

    #[test]
    fn histogram_sums_pass_2_pow_64_without_wrapping() {
        let metrics = Metrics::builder().body_sizes(true).build().unwrap();
        let core = &metrics.inner.core;
        let entry = core.route("/stream");
        let config = &core.shared.config;
        let size_bounds = config.size_bounds_bytes.as_deref().unwrap();
        // 2^62 ns is 146 years: a few such observations stand for weeks of many long streams.
        let step = 1u64 << 62;
        let mut last = [0.0f64; 6];
        for i in 1..=12u32 {
            entry.with_series(0, 200, |series| {
                series.duration.observe(&config.duration_bounds_nanos, step);
                let response = series.response_size.as_ref().unwrap();
                response.observe(size_bounds, step);
            });
            let exact = f64::from(i) * step as f64;
            let mut sums = Vec::new();
            for format in [Format::Prometheus, Format::OpenMetrics] {
                let text = String::from_utf8(metrics.render(format)).unwrap();
                sums.push((
                    first_sum(&text, "http_server_request_duration_seconds"),
                    exact / 1e9,
                ));
                sums.push((
                    first_sum(&text, "http_server_response_body_size_bytes"),
                    exact,
                ));
            }
            // The typed snapshot reads the same sums.
            let snapshot = metrics.snapshot();
            let series = &snapshot.series[0];
            let response = series.response_size.as_ref().unwrap();
            sums.push((series.duration.sum, exact / 1e9));
            sums.push((response.sum, exact));
            for (index, (sum, expected)) in sums.into_iter().enumerate() {
                assert!(
                    (sum - expected).abs() <= expected * 1e-12,
                    "after {i} observations of 2^62: sum {sum}, expected {expected}"
                );
                assert!(sum > last[index], "the sum never decreases");
                last[index] = sum;
            }
        }
    }

    #[test]
    fn a_new_series_does_not_wait_for_an_encode_in_progress() {
        use std::sync::mpsc;
        use std::time::Duration;

        let metrics = Metrics::new();
        let core = Arc::clone(&metrics.inner.core);
        for route in 0..1_000 {
            core.route(&format!("/old/{route}"))
                .with_series(0, 200, |_| {});
        }
        // Halfway through the encode, a request records the first series of a new route
        // on another thread; it must finish while the encoder is still held there.
        let mut encoded = 0;
        let (done, finished) = mpsc::channel();
        let hook_core = Arc::clone(&core);
        crate::encode::test_hook::set(move || {
            encoded += 1;
            if encoded != 500 {
                return;
            }
            let (core, done) = (Arc::clone(&hook_core), done.clone());
            std::thread::spawn(move || {
                core.route("/new").with_series(0, 200, |_| {});
                let _ = done.send(());
            });
            // Generous: a request that is not blocked finishes in microseconds, and one that
            // is blocked waits for this hook to return, so the outcome is not a matter of timing.
            let waited = finished.recv_timeout(Duration::from_secs(10));
            assert!(waited.is_ok(), "creating a series waited for the encoder");
        });
        let text = String::from_utf8(metrics.render(Format::Prometheus));
        crate::encode::test_hook::clear();
        assert!(text.unwrap().contains("http_route=\"/old/999\""));
    }

    #[test]
    fn default_configuration_builds() {
        assert!(Metrics::builder().build().is_ok());
    }

    #[test]
    fn bad_configurations_are_refused_with_a_reason() {
        let refuse = |builder: MetricsBuilder| builder.build().unwrap_err().to_string();
        assert!(refuse(Metrics::builder().namespace("1x")).contains("namespace"));
        assert!(refuse(Metrics::builder().const_label("le", "x")).contains("reserved"));
        // Each label the preset writes itself, on the RED series or the info metrics.
        for name in [
            "http_route",
            "url_scheme",
            "network_protocol_version",
            "error_type",
            "service_name",
            "service_version",
            "deployment_environment_name",
        ] {
            assert!(
                refuse(Metrics::builder().const_label(name, "x")).contains("reserved"),
                "{name}"
            );
        }
        for name in ["path", "status", "version", "environment"] {
            let builder = Metrics::builder()
                .naming(Naming::Flask)
                .const_label(name, "x");
            assert!(refuse(builder).contains("reserved"), "{name}");
        }
        // Names that only the other preset uses are free.
        assert!(
            Metrics::builder()
                .naming(Naming::Flask)
                .const_label("url_scheme", "x")
                .build()
                .is_ok()
        );
        let twice = Metrics::builder()
            .const_label("team", "a")
            .const_label("team", "b");
        assert!(refuse(twice).contains("twice"));
        assert!(refuse(Metrics::builder().duration_buckets(vec![1.0, 0.5])).contains("ascending"));
        assert!(refuse(Metrics::builder().duration_buckets(vec![])).contains("empty"));
        #[cfg(feature = "regex")]
        assert!(refuse(Metrics::builder().exclude_routes_matching("(")).contains("pattern"));
        assert!(refuse(Metrics::builder().metrics_path("metrics")).contains("start with"));
        assert!(refuse(Metrics::builder().bearer_token("a b")).contains("whitespace"));
    }

    #[test]
    fn without_request_metrics_only_info_process_and_registered_metrics_are_exposed() {
        let metrics = Metrics::builder()
            .request_metrics(false)
            .naming(Naming::Flask)
            .build()
            .unwrap();
        // Even a recorded request (the layer is not meant to be used then) stays out.
        let core = metrics.inner_core();
        core.route("/x").with_series(0, 500, |series| {
            series
                .duration
                .observe(&core.shared.config.duration_bounds_nanos, 1_000);
        });
        let jobs = prometheus_client::metrics::counter::Counter::<u64>::default();
        metrics.register("jobs", "Jobs done", jobs.clone());
        jobs.inc();
        for format in [Format::Prometheus, Format::OpenMetrics] {
            let text = String::from_utf8(metrics.render(format)).unwrap();
            for family in [
                "flask_http_request_duration_seconds",
                "flask_http_request_total",
                "flask_http_request_exceptions_total",
                "http_server_active_requests",
                "/x",
            ] {
                assert!(!text.contains(family), "{family} exposed:\n{text}");
            }
            assert!(text.contains("jobs_total 1"), "{text}");
            assert!(text.contains("flask_exporter_info"), "{text}");
            #[cfg(all(target_os = "linux", feature = "process"))]
            assert!(text.contains("process_cpu_seconds_total"), "{text}");
        }
        let snapshot = metrics.snapshot();
        assert!(snapshot.series.is_empty() && snapshot.active.is_empty());
        assert!(snapshot.exceptions.is_empty());

        // The default exposes them: the same recording shows up.
        let metrics = Metrics::builder().naming(Naming::Flask).build().unwrap();
        let core = metrics.inner_core();
        core.route("/x").with_series(0, 500, |series| {
            series
                .duration
                .observe(&core.shared.config.duration_bounds_nanos, 1_000);
        });
        let text = String::from_utf8(metrics.render(Format::Prometheus)).unwrap();
        assert!(
            text.contains("flask_http_request_total{method=\"GET\",status=\"500\"} 1"),
            "{text}"
        );
        assert_eq!(metrics.snapshot().series.len(), 1);
    }
}

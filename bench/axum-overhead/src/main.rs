//! An axum hello-world served bare, with redwatch, or with axum-prometheus, so that `./run` can
//! measure what each metrics middleware costs in real HTTP throughput.
//!
//! Usage: `axum-overhead --variant bare|noop-layer|redwatch|redwatch-flask|redwatch-body-sizes|
//! redwatch-request-label|redwatch-exemplars|redwatch-native|redwatch-opt-out|axum-prometheus
//! [--count-allocations]`
//!
//! With `--in-process N` it sends N requests through the router in process instead (see
//! `serve_in_process`), for exact instruction counts of the router and its layers alone. With
//! `--layer-alone N`, through the variant's layer around a service that answers at once, no
//! axum (see `serve_layer_alone`): the shape of the criterion bench `hot_path/noop_service`.
//!
//! The server binds 127.0.0.1:0, prints `listening on http://ADDR` and serves until killed.
//! It runs on a multi-thread Tokio runtime with one worker thread, so that the load generator can
//! have the other core to itself.
//!
//! With `--count-allocations`, every heap allocation in the process is counted, and each SIGUSR1
//! prints `allocations N` (the running total) on stdout; the driver reads the total before and
//! after a run of known length and divides by its request count.

use std::alloc::{GlobalAlloc, Layout, System};
use std::io::Write;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};

use axum::{Router, extract::Path, routing::get};

/// Counts allocations only while [`COUNT_ALLOCATIONS`] is set; otherwise it costs one relaxed
/// load per allocation, the same in every variant.
///
/// In the in-process modes it also serves every allocation from an arena, by bumping an offset,
/// and ignores frees into it (see [`use_arena`]): the system allocator's instructions depend on
/// the state of its heap, which differs between builds and variants (by up to 100 instructions
/// per request in the router count), while a bump costs the same every time. The allocations
/// column says how many allocations each variant makes.
struct CountingAllocator;

static COUNT_ALLOCATIONS: AtomicBool = AtomicBool::new(false);
static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

/// The arena's bounds and next free byte; all zero until [`use_arena`].
static ARENA_START: AtomicUsize = AtomicUsize::new(0);
static ARENA_END: AtomicUsize = AtomicUsize::new(0);
static ARENA_NEXT: AtomicUsize = AtomicUsize::new(0);

/// Enough for the in-process runs' requests (about 2 KB each) to never free anything.
const ARENA_BYTES: usize = 1 << 30;

/// Serves allocations from a fresh arena from now on (the pages are touched only when used).
fn use_arena() -> Result<(), String> {
    let layout = Layout::from_size_align(ARENA_BYTES, 4096).map_err(|error| error.to_string())?;
    // SAFETY: the layout has a non-zero size.
    let start = unsafe { System.alloc(layout) } as usize;
    if start == 0 {
        return Err("cannot reserve the allocation arena".to_owned());
    }
    ARENA_END.store(start + ARENA_BYTES, Ordering::Relaxed);
    ARENA_NEXT.store(start, Ordering::Relaxed);
    ARENA_START.store(start, Ordering::Release);
    Ok(())
}

impl CountingAllocator {
    fn count(&self) {
        if COUNT_ALLOCATIONS.load(Ordering::Relaxed) {
            ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// A block from the arena, if it is in use and has room.
    fn bump(layout: Layout) -> Option<*mut u8> {
        if ARENA_START.load(Ordering::Acquire) == 0 {
            return None;
        }
        let end = ARENA_END.load(Ordering::Relaxed);
        let mut next = ARENA_NEXT.load(Ordering::Relaxed);
        loop {
            let start = next.checked_next_multiple_of(layout.align())?;
            let after = start.checked_add(layout.size())?;
            if after > end {
                return None;
            }
            match ARENA_NEXT.compare_exchange_weak(
                next,
                after,
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => return Some(start as *mut u8),
                Err(current) => next = current,
            }
        }
    }

    fn in_arena(ptr: *mut u8) -> bool {
        let address = ptr as usize;
        let start = ARENA_START.load(Ordering::Acquire);
        start != 0 && address >= start && address < ARENA_END.load(Ordering::Relaxed)
    }
}

// SAFETY: every block is either the system allocator's, to which calls for it are forwarded
// unchanged, or a fresh, suitably aligned and sized range of the arena, handed out once and
// never reused (frees into the arena do nothing).
unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        self.count();
        if let Some(block) = Self::bump(layout) {
            return block;
        }
        // SAFETY: the caller upholds `GlobalAlloc::alloc`'s contract, which we pass on.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        self.count();
        if let Some(block) = Self::bump(layout) {
            // SAFETY: the block is `layout.size()` bytes of the arena, ours alone.
            unsafe { block.write_bytes(0, layout.size()) };
            return block;
        }
        // SAFETY: as for `alloc`.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        self.count();
        if Self::in_arena(ptr) || ARENA_START.load(Ordering::Acquire) != 0 {
            let Ok(new_layout) = Layout::from_size_align(new_size, layout.align()) else {
                return std::ptr::null_mut();
            };
            let Some(block) = Self::bump(new_layout) else {
                return std::ptr::null_mut();
            };
            // SAFETY: both blocks are valid for the copied length and do not overlap (the new
            // one is fresh).
            unsafe { std::ptr::copy_nonoverlapping(ptr, block, layout.size().min(new_size)) };
            // SAFETY: `ptr` and `layout` describe a live block of this allocator.
            unsafe { self.dealloc(ptr, layout) };
            return block;
        }
        // SAFETY: `ptr` and `layout` came from this allocator, i.e. from `System`.
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if Self::in_arena(ptr) {
            return;
        }
        // SAFETY: `ptr` and `layout` came from this allocator, and not from the arena: from
        // `System`.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: CountingAllocator = CountingAllocator;

#[derive(Clone, Copy, Debug)]
enum Variant {
    Bare,
    /// A layer that does nothing, to separate what axum charges for any `Router::layer` (it boxes
    /// the layered service and its future) from what a metrics middleware adds.
    NoopLayer,
    /// redwatch as `Metrics::new()` sets it up: the `otel` preset, body sizes off.
    Redwatch,
    /// The `flask` preset, which also counts `flask_http_request_total`.
    RedwatchFlask,
    /// The `otel` preset with the request and response body size histograms.
    RedwatchBodySizes,
    /// A request label from the `x-tenant` header (every request carries `acme`).
    RedwatchRequestLabel,
    /// Exemplars on: every request's `traceparent` is parsed and replaces its bucket's exemplar.
    RedwatchExemplars,
    /// Native histograms on: each request is also counted in its native duration bucket.
    RedwatchNative,
    /// `Metrics::new()` with the `opt-out` feature: every response is looked at for a handler's
    /// `DisableMetrics` (none here opts out).
    RedwatchOptOut,
    AxumPrometheus,
}

struct Options {
    variant: Variant,
    count_allocations: bool,
    /// Serve this many `GET /` in process (no sockets, one thread) instead of listening.
    in_process: Option<u64>,
    layer_alone: Option<u64>,
}

const USAGE: &str = "usage: axum-overhead --variant bare|noop-layer|redwatch|redwatch-flask|redwatch-body-sizes|redwatch-request-label|redwatch-exemplars|redwatch-native|redwatch-opt-out|axum-prometheus [--count-allocations] [--in-process N | --layer-alone N]";

/// The request count that follows `flag`.
fn request_count(flag: &str, value: Option<String>) -> Result<u64, String> {
    let value = value.ok_or(format!("{flag} needs a request count"))?;
    value
        .parse()
        .map_err(|_| format!("{flag}: not a request count: {value:?}"))
}

fn parse_options() -> Result<Options, String> {
    let mut variant = None;
    let mut count_allocations = false;
    let mut in_process = None;
    let mut layer_alone = None;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--variant" => {
                let value = args.next().ok_or("--variant needs a value")?;
                variant = Some(match value.as_str() {
                    "bare" => Variant::Bare,
                    "noop-layer" => Variant::NoopLayer,
                    "redwatch" => Variant::Redwatch,
                    "redwatch-flask" => Variant::RedwatchFlask,
                    "redwatch-body-sizes" => Variant::RedwatchBodySizes,
                    "redwatch-request-label" => Variant::RedwatchRequestLabel,
                    "redwatch-exemplars" => Variant::RedwatchExemplars,
                    "redwatch-native" => Variant::RedwatchNative,
                    "redwatch-opt-out" => Variant::RedwatchOptOut,
                    "axum-prometheus" => Variant::AxumPrometheus,
                    other => return Err(format!("unknown variant {other:?}")),
                });
            }
            "--count-allocations" => count_allocations = true,
            "--in-process" => in_process = Some(request_count("--in-process", args.next())?),
            "--layer-alone" => layer_alone = Some(request_count("--layer-alone", args.next())?),
            "-h" | "--help" => return Err(USAGE.to_owned()),
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    Ok(Options {
        variant: variant.ok_or("--variant is required")?,
        count_allocations,
        in_process,
        layer_alone,
    })
}

/// The application under test: the same two routes in every variant.
fn hello_world() -> Router {
    Router::new()
        .route("/", get(|| async { "Hello, World!" }))
        .route(
            "/users/{id}",
            get(|Path(id): Path<u64>| async move { if id == 0 { "nobody" } else { "a user" } }),
        )
}

fn app(variant: Variant) -> Router {
    match variant {
        Variant::Bare => hello_world(),
        Variant::NoopLayer => hello_world().layer(tower_layer::Identity::new()),
        Variant::AxumPrometheus => {
            // The setup from axum-prometheus's README.
            let (prometheus_layer, metric_handle) = axum_prometheus::PrometheusMetricLayer::pair();
            hello_world()
                .route("/metrics", get(|| async move { metric_handle.render() }))
                .layer(prometheus_layer)
        }
        redwatch_variant => match metrics(redwatch_variant) {
            Some(metrics) => with_redwatch(metrics),
            None => unreachable!("every other variant is one of redwatch's"),
        },
    }
}

/// The metrics of a redwatch variant, `None` for the others.
fn metrics(variant: Variant) -> Option<redwatch::Metrics> {
    let builder = redwatch::Metrics::builder();
    let builder = match variant {
        Variant::Bare | Variant::NoopLayer | Variant::AxumPrometheus => return None,
        Variant::Redwatch => return Some(redwatch::Metrics::new()),
        Variant::RedwatchFlask => builder.naming(redwatch::Naming::Flask),
        Variant::RedwatchBodySizes => builder.body_sizes(true),
        Variant::RedwatchRequestLabel => {
            builder.request_label(redwatch::RequestLabel::from_header("tenant", "x-tenant"))
        }
        #[cfg(feature = "exemplars")]
        Variant::RedwatchExemplars => builder.exemplars(true),
        #[cfg(not(feature = "exemplars"))]
        Variant::RedwatchExemplars => {
            panic!("the exemplar variants need a build with --features exemplars")
        }
        #[cfg(feature = "native-histograms")]
        Variant::RedwatchNative => builder.native_histograms(true),
        #[cfg(not(feature = "native-histograms"))]
        Variant::RedwatchNative => {
            panic!("the native variant needs a build with --features native-histograms")
        }
        #[cfg(feature = "opt-out")]
        Variant::RedwatchOptOut => return Some(redwatch::Metrics::new()),
        #[cfg(not(feature = "opt-out"))]
        Variant::RedwatchOptOut => panic!("the opt-out variant needs a build with --features opt-out"),
    };
    Some(builder.build().expect("a valid configuration"))
}

fn with_redwatch(metrics: redwatch::Metrics) -> Router {
    hello_world().merge(metrics.router()).layer(metrics.layer())
}

async fn serve(options: Options) -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let address = listener.local_addr()?;
    let app = app(options.variant);
    if options.count_allocations {
        let mut report_signal =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::user_defined1())?;
        tokio::spawn(async move {
            while report_signal.recv().await.is_some() {
                let total = ALLOCATIONS.load(Ordering::Relaxed);
                let mut stdout = std::io::stdout().lock();
                // The driver reads this line; a failed write only loses one sample.
                let _ = writeln!(stdout, "allocations {total}");
                let _ = stdout.flush();
            }
        });
        COUNT_ALLOCATIONS.store(true, Ordering::Relaxed);
    }
    {
        let mut stdout = std::io::stdout().lock();
        writeln!(stdout, "listening on http://{address}")?;
        stdout.flush()?;
    }
    axum::serve(listener, app).await
}

/// Request `n`: `GET /` with an `x-tenant` header and a sampled `traceparent` of its own. Every
/// variant gets the same requests, as `./insn` sends over HTTP, read only by the variants that
/// use them, so that carrying the headers cancels out of every comparison. Built inside the
/// counted loop, as a server builds each request, for the same steady state of the allocator in
/// every variant (prebuilt header maps freed in the loop made the counts depend on the heap).
fn request(n: u64) -> Result<axum::http::Request<axum::body::Body>, String> {
    axum::http::Request::get("/")
        .header("traceparent", format!("00-{n:032x}-{n:016x}-01"))
        .header("x-tenant", "acme")
        .body(axum::body::Body::empty())
        .map_err(|error| error.to_string())
}

/// Sends `requests` [`request`]s through `app` on `runtime`, each response body read to its end.
/// Not inlined, so that `valgrind --toggle-collect=axum_overhead::serve_in_process` counts
/// exactly this: the router and its layers, without sockets, hyper or start-up.
#[inline(never)]
fn serve_in_process(
    runtime: &tokio::runtime::Runtime,
    app: Router,
    requests: u64,
) -> Result<(), String> {
    use tower_service::Service;
    // As `axum::serve` does (through `into_make_service`): with the state given, axum builds each
    // route's layered service once; an app called without it would layer them on every call.
    let mut app: Router = app.with_state(());
    runtime.block_on(async move {
        for n in 1..=requests {
            let request = request(n)?;
            std::future::poll_fn(|cx| {
                Service::<axum::http::Request<axum::body::Body>>::poll_ready(&mut app, cx)
            })
            .await
            .map_err(|error| error.to_string())?;
            let response = app.call(request).await.map_err(|error| error.to_string())?;
            let body = axum::body::to_bytes(response.into_body(), usize::MAX)
                .await
                .map_err(|error| error.to_string())?;
            if &body[..] != b"Hello, World!" {
                return Err(format!("unexpected body {body:?}"));
            }
        }
        Ok(())
    })
}

/// The service the layer wraps in `serve_layer_alone`: answers every request at once, with an
/// empty body (the criterion bench's `common::noop`).
#[derive(Clone, Copy)]
struct AnswerAtOnce;

impl tower_service::Service<axum::http::Request<()>> for AnswerAtOnce {
    type Response = axum::http::Response<http_body_util::Empty<bytes::Bytes>>;
    type Error = std::convert::Infallible;
    type Future = std::future::Ready<Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _: axum::http::Request<()>) -> Self::Future {
        std::future::ready(Ok(axum::http::Response::new(http_body_util::Empty::new())))
    }
}

/// Puts every request on one route template (the criterion bench's `common::ItemRoute`).
#[derive(Clone, Copy)]
struct ItemRoute;

impl redwatch::ClassifyRoute for ItemRoute {
    fn classify<'a, B>(&self, _: &'a axum::http::Request<B>) -> Option<std::borrow::Cow<'a, str>> {
        Some("/items/{id}".into())
    }
}

/// Sends `requests` [`item_request`]s through `variant`'s layer around [`AnswerAtOnce`] (or
/// through that service alone, for the variants without redwatch), polled in place as a server
/// would, each response body read to its end: the criterion bench `hot_path/noop_service`, its
/// types and its requests. The layer is built and has served a first request before counting
/// starts.
fn serve_layer_alone(variant: Variant, requests: u64) -> Result<(), String> {
    match metrics(variant) {
        Some(metrics) => {
            let mut service =
                tower_layer::Layer::layer(&metrics.layer().classify_with(ItemRoute), AnswerAtOnce);
            serve_one(&mut service, item_request()?)?;
            use_arena()?;
            serve_counted(&mut service, requests)
        }
        None => {
            use_arena()?;
            serve_counted(&mut AnswerAtOnce, requests)
        }
    }
}

/// The counted part of [`serve_layer_alone`]: not inlined, so that
/// `valgrind --toggle-collect=axum_overhead::serve_counted` counts exactly this.
#[inline(never)]
fn serve_counted<S, B>(service: &mut S, requests: u64) -> Result<(), String>
where
    S: tower_service::Service<
            axum::http::Request<()>,
            Response = axum::http::Response<B>,
            Error = std::convert::Infallible,
        >,
    B: axum::body::HttpBody + Unpin,
{
    (0..requests).try_for_each(|_| serve_one(service, item_request()?))
}

/// `GET /items/42` without headers, built as the criterion bench builds it.
fn item_request() -> Result<axum::http::Request<()>, String> {
    axum::http::Request::get("/items/42")
        .body(())
        .map_err(|error| error.to_string())
}

/// Calls `service` with `request` and reads the response body to its end, without a runtime.
#[inline(always)]
fn serve_one<S, R, B>(service: &mut S, request: axum::http::Request<R>) -> Result<(), String>
where
    S: tower_service::Service<
            axum::http::Request<R>,
            Response = axum::http::Response<B>,
            Error = std::convert::Infallible,
        >,
    B: axum::body::HttpBody + Unpin,
{
    let mut cx = Context::from_waker(std::task::Waker::noop());
    if service.poll_ready(&mut cx).is_pending() {
        return Err("the service was not ready".to_owned());
    }
    let mut future = std::pin::pin!(service.call(request));
    let Poll::Ready(Ok(response)) = future.as_mut().poll(&mut cx) else {
        return Err("the response was not ready".to_owned());
    };
    let mut body = response.into_body();
    while let Poll::Ready(Some(frame)) = std::pin::Pin::new(&mut body).poll_frame(&mut cx) {
        if frame.is_err() {
            return Err("the body failed".to_owned());
        }
    }
    Ok(())
}

/// Builds a runtime with every driver on, or says why not.
fn runtime(builder: &mut tokio::runtime::Builder) -> Result<tokio::runtime::Runtime, ExitCode> {
    builder.enable_all().build().map_err(|error| {
        eprintln!("error: cannot start the Tokio runtime: {error}");
        ExitCode::from(2)
    })
}

fn main() -> ExitCode {
    let options = match parse_options() {
        Ok(options) => options,
        Err(message) => {
            eprintln!("error: {message}");
            return ExitCode::from(2);
        }
    };
    if let Some(requests) = options.layer_alone {
        return match serve_layer_alone(options.variant, requests) {
            Ok(()) => ExitCode::SUCCESS,
            Err(error) => {
                eprintln!("error: {error}");
                ExitCode::FAILURE
            }
        };
    }
    if let Some(requests) = options.in_process {
        let runtime = match runtime(&mut tokio::runtime::Builder::new_current_thread()) {
            Ok(runtime) => runtime,
            Err(code) => return code,
        };
        // axum-prometheus spawns its upkeep task while the app is built.
        let app = {
            let _runtime = runtime.enter();
            app(options.variant)
        };
        if let Err(error) = use_arena() {
            eprintln!("error: {error}");
            return ExitCode::FAILURE;
        }
        return match serve_in_process(&runtime, app, requests) {
            Ok(()) => ExitCode::SUCCESS,
            Err(error) => {
                eprintln!("error: {error}");
                ExitCode::FAILURE
            }
        };
    }
    let runtime = match runtime(tokio::runtime::Builder::new_multi_thread().worker_threads(1)) {
        Ok(runtime) => runtime,
        Err(code) => return code,
    };
    match runtime.block_on(serve(options)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::from(2)
        }
    }
}

//! An axum hello-world served bare, with redwatch, or with axum-prometheus, so that `./run` can
//! measure what each metrics middleware costs in real HTTP throughput.
//!
//! Usage: `axum-overhead --variant bare|noop-layer|redwatch|redwatch-flask|redwatch-body-sizes|
//! redwatch-request-label|redwatch-exemplars|redwatch-native|axum-prometheus
//! [--count-allocations]`
//!
//! With `--in-process N` it sends N requests through the router in process instead (see
//! `serve_in_process`), for exact instruction counts of the router and its layers alone.
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
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use axum::{Router, extract::Path, routing::get};

/// Counts allocations only while [`COUNT_ALLOCATIONS`] is set; otherwise it costs one relaxed
/// load per allocation, the same in every variant.
struct CountingAllocator;

static COUNT_ALLOCATIONS: AtomicBool = AtomicBool::new(false);
static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

impl CountingAllocator {
    fn count(&self) {
        if COUNT_ALLOCATIONS.load(Ordering::Relaxed) {
            ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        }
    }
}

// SAFETY: every call is forwarded unchanged to the system allocator.
unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        self.count();
        // SAFETY: the caller upholds `GlobalAlloc::alloc`'s contract, which we pass on.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        self.count();
        // SAFETY: as for `alloc`.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        self.count();
        // SAFETY: `ptr` and `layout` came from this allocator, i.e. from `System`.
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` and `layout` came from this allocator, i.e. from `System`.
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
    AxumPrometheus,
}

struct Options {
    variant: Variant,
    count_allocations: bool,
    /// Serve this many `GET /` in process (no sockets, one thread) instead of listening.
    in_process: Option<u64>,
}

const USAGE: &str = "usage: axum-overhead --variant bare|noop-layer|redwatch|redwatch-flask|redwatch-body-sizes|redwatch-request-label|redwatch-exemplars|redwatch-native|axum-prometheus [--count-allocations] [--in-process N]";

fn parse_options() -> Result<Options, String> {
    let mut variant = None;
    let mut count_allocations = false;
    let mut in_process = None;
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
                    "axum-prometheus" => Variant::AxumPrometheus,
                    other => return Err(format!("unknown variant {other:?}")),
                });
            }
            "--count-allocations" => count_allocations = true,
            "--in-process" => {
                let value = args.next().ok_or("--in-process needs a request count")?;
                let count = value
                    .parse()
                    .map_err(|_| format!("--in-process: not a request count: {value:?}"))?;
                in_process = Some(count);
            }
            "-h" | "--help" => return Err(USAGE.to_owned()),
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    Ok(Options {
        variant: variant.ok_or("--variant is required")?,
        count_allocations,
        in_process,
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
        Variant::Redwatch => with_redwatch(redwatch::Metrics::new()),
        Variant::RedwatchFlask => with_redwatch(
            redwatch::Metrics::builder()
                .naming(redwatch::Naming::Flask)
                .build()
                .expect("a valid configuration"),
        ),
        Variant::RedwatchBodySizes => with_redwatch(
            redwatch::Metrics::builder()
                .body_sizes(true)
                .build()
                .expect("a valid configuration"),
        ),
        Variant::RedwatchRequestLabel => with_redwatch(
            redwatch::Metrics::builder()
                .request_label(redwatch::RequestLabel::from_header("tenant", "x-tenant"))
                .build()
                .expect("a valid configuration"),
        ),
        #[cfg(feature = "exemplars")]
        Variant::RedwatchExemplars => with_redwatch(
            redwatch::Metrics::builder()
                .exemplars(true)
                .build()
                .expect("a valid configuration"),
        ),
        #[cfg(not(feature = "exemplars"))]
        Variant::RedwatchExemplars => {
            panic!("the exemplar variants need a build with --features exemplars")
        }
        #[cfg(feature = "native-histograms")]
        Variant::RedwatchNative => with_redwatch(
            redwatch::Metrics::builder()
                .native_histograms(true)
                .build()
                .expect("a valid configuration"),
        ),
        #[cfg(not(feature = "native-histograms"))]
        Variant::RedwatchNative => {
            panic!("the native variant needs a build with --features native-histograms")
        }
        Variant::AxumPrometheus => {
            // The setup from axum-prometheus's README.
            let (prometheus_layer, metric_handle) = axum_prometheus::PrometheusMetricLayer::pair();
            hello_world()
                .route("/metrics", get(|| async move { metric_handle.render() }))
                .layer(prometheus_layer)
        }
    }
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

//! The request path allocates nothing once its series exist: proven with a counting allocator.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::convert::Infallible;
use std::future::Future;
use std::pin::pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll, Waker};

use bytes::Bytes;
use http::{Request, Response};
use http_body::Body;
use http_body_util::Empty;
use redwatch::{ClassifyRoute, Metrics, Naming};
use tower::{Layer, Service};

struct CountingAllocator;

static ALLOCATIONS: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    /// Only allocations made by the measuring thread count; the test harness's don't.
    static COUNTING: Cell<bool> = const { Cell::new(false) };
}

unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if COUNTING.with(Cell::get) {
            ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        }
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if COUNTING.with(Cell::get) {
            ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        }
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: CountingAllocator = CountingAllocator;

#[derive(Clone)]
struct ItemRoute;

impl ClassifyRoute for ItemRoute {
    fn classify<'a, B>(&self, _request: &'a Request<B>) -> Option<&'a str> {
        Some("/items/{id}")
    }
}

/// Calls the service with `request` and drives the response body to its end, the way a
/// server does, without any runtime (the no-op service is always ready).
fn serve_one<S, B>(service: &mut S, request: Request<()>)
where
    S: Service<Request<()>, Response = Response<B>, Error = Infallible>,
    B: Body + Unpin,
{
    let mut cx = Context::from_waker(Waker::noop());
    assert!(service.poll_ready(&mut cx).is_ready());
    let mut future = pin!(service.call(request));
    let Poll::Ready(Ok(response)) = future.as_mut().poll(&mut cx) else {
        panic!("the no-op service answers at once");
    };
    let mut body = response.into_body();
    while let Poll::Ready(Some(_)) = std::pin::Pin::new(&mut body).poll_frame(&mut cx) {}
}

fn allocations_per_request(metrics: &Metrics) -> usize {
    let bare = tower::service_fn(|_request: Request<()>| {
        std::future::ready(Ok::<_, Infallible>(Response::new(Empty::<Bytes>::new())))
    });
    let mut service = metrics.layer().classify_with(ItemRoute).layer(bare);
    const WARM_UP: usize = 1_000;
    const MEASURED: usize = 10_000;
    let methods = [http::Method::GET, http::Method::POST];
    let mut requests: Vec<Request<()>> = (0..WARM_UP + MEASURED)
        .map(|i| {
            Request::builder()
                .method(methods[i % 2].clone())
                .uri("/items/42")
                .header("content-length", "0")
                .body(())
                .unwrap()
        })
        .collect();
    let measured = requests.split_off(WARM_UP);
    for request in requests {
        serve_one(&mut service, request);
    }
    ALLOCATIONS.store(0, Ordering::Relaxed);
    COUNTING.with(|counting| counting.set(true));
    let mut measured = measured.into_iter();
    for request in measured.by_ref() {
        serve_one(&mut service, request);
    }
    COUNTING.with(|counting| counting.set(false));
    // Request values are freed outside the measured loop's count: dealloc is not counted.
    ALLOCATIONS.load(Ordering::Relaxed)
}

#[test]
fn no_heap_allocation_per_request_after_warm_up() {
    let metrics = Metrics::new();
    assert_eq!(allocations_per_request(&metrics), 0, "otel preset");

    let flask_with_sizes = Metrics::builder()
        .naming(Naming::Flask)
        .body_sizes(true)
        .const_label("service", "shop")
        .build()
        .unwrap();
    assert_eq!(
        allocations_per_request(&flask_with_sizes),
        0,
        "flask preset with body sizes"
    );

    // The counter does see allocations: creating the series for a new route allocates.
    let fresh = Metrics::new();
    let counted = allocations_per_request(&fresh);
    assert_eq!(counted, 0);
    COUNTING.with(|counting| counting.set(true));
    let text = fresh.render(redwatch::Format::Prometheus);
    COUNTING.with(|counting| counting.set(false));
    assert!(!text.is_empty());
    assert!(
        ALLOCATIONS.load(Ordering::Relaxed) > 0,
        "the counting allocator counts"
    );
}

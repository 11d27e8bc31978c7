//! The request path allocates nothing once its series exist: proven with a counting allocator.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::convert::Infallible;
use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

use axum::routing::get;
use bytes::Bytes;
use http::{Request, Response};
use http_body::Body;
use http_body_util::Empty;
use redwatch::{ClassifyRoute, Metrics, Naming, UriPathRoute};
use tower::{Layer, Service};

struct CountingAllocator;

thread_local! {
    /// Only allocations made by the measuring thread count; the test harness's and other
    /// tests' (which run on threads of their own) don't.
    static COUNTING: Cell<bool> = const { Cell::new(false) };
    static ALLOCATIONS: Cell<usize> = const { Cell::new(0) };
}

fn count_allocation() {
    if COUNTING.with(Cell::get) {
        ALLOCATIONS.with(|count| count.set(count.get() + 1));
    }
}

unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count_allocation();
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count_allocation();
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: CountingAllocator = CountingAllocator;

#[derive(Clone)]
struct ItemRoute;

impl ClassifyRoute for ItemRoute {
    fn classify<'a, B>(&self, _request: &'a Request<B>) -> Option<std::borrow::Cow<'a, str>> {
        Some("/items/{id}".into())
    }
}

/// Calls the service with `request` and drives the response body to its end, the way a
/// server does, without any runtime (the services here are always ready and answer at once).
fn serve_one<S, Req, B>(service: &mut S, request: Req)
where
    S: Service<Req, Response = Response<B>, Error = Infallible>,
    B: Body + Unpin,
{
    let mut cx = Context::from_waker(Waker::noop());
    assert!(service.poll_ready(&mut cx).is_ready());
    let mut future = pin!(service.call(request));
    let Poll::Ready(Ok(response)) = future.as_mut().poll(&mut cx) else {
        panic!("the service answers at once");
    };
    let mut body = response.into_body();
    while let Poll::Ready(Some(_)) = std::pin::Pin::new(&mut body).poll_frame(&mut cx) {}
}

/// Allocations made while `service` answers `measured`, after it has answered `warm_up`.
/// Requests are built beforehand and deallocations are not counted, so only what serving
/// allocates is.
fn allocations_serving<S, Req, B>(service: &mut S, warm_up: Vec<Req>, measured: Vec<Req>) -> usize
where
    S: Service<Req, Response = Response<B>, Error = Infallible>,
    B: Body + Unpin,
{
    for request in warm_up {
        serve_one(service, request);
    }
    ALLOCATIONS.with(|count| count.set(0));
    COUNTING.with(|counting| counting.set(true));
    for request in measured {
        serve_one(service, request);
    }
    COUNTING.with(|counting| counting.set(false));
    ALLOCATIONS.with(Cell::get)
}

/// `count` requests cycling through `paths` and the methods GET and POST.
fn requests<B>(paths: &[String], count: usize, body: impl Fn() -> B) -> Vec<Request<B>> {
    let methods = [http::Method::GET, http::Method::POST];
    (0..count)
        .map(|i| {
            Request::builder()
                .method(methods[i / paths.len() % 2].clone())
                .uri(&paths[i % paths.len()])
                .header("content-length", "0")
                .body(body())
                .unwrap()
        })
        .collect()
}

fn bare_service()
-> impl Service<Request<()>, Response = Response<Empty<Bytes>>, Error = Infallible> + Clone {
    tower::service_fn(|_request: Request<()>| {
        std::future::ready(Ok::<_, Infallible>(Response::new(Empty::<Bytes>::new())))
    })
}

fn allocations_per_request(metrics: &Metrics) -> usize {
    let mut service = metrics
        .layer()
        .classify_with(ItemRoute)
        .layer(bare_service());
    let paths = ["/items/42".to_owned()];
    allocations_serving(
        &mut service,
        requests(&paths, 1_000, || ()),
        requests(&paths, 10_000, || ()),
    )
}

fn configurations() -> Vec<(&'static str, Metrics)> {
    #[allow(unused_mut)]
    let mut configurations = vec![
        ("otel preset", Metrics::new()),
        (
            "flask preset with body sizes",
            Metrics::builder()
                .naming(Naming::Flask)
                .body_sizes(true)
                .const_label("service", "shop")
                .build()
                .unwrap(),
        ),
    ];
    #[cfg(feature = "native-histograms")]
    configurations.push((
        "native histograms",
        Metrics::builder().native_histograms(true).build().unwrap(),
    ));
    configurations
}

#[test]
fn no_heap_allocation_per_request_after_warm_up() {
    for (name, metrics) in configurations() {
        assert_eq!(allocations_per_request(&metrics), 0, "{name}");
    }

    // The counter does see allocations: creating the series for a new route allocates.
    let fresh = Metrics::new();
    let counted = allocations_per_request(&fresh);
    assert_eq!(counted, 0);
    COUNTING.with(|counting| counting.set(true));
    let text = fresh.render(redwatch::Format::Prometheus);
    COUNTING.with(|counting| counting.set(false));
    assert!(!text.is_empty());
    assert!(
        ALLOCATIONS.with(Cell::get) > 0,
        "the counting allocator counts"
    );
}

#[cfg(feature = "exemplars")]
/// With exemplars on, neither a request without a trace context nor one with a sampled
/// `traceparent` (whose exemplar replaces the bucket's last) allocates.
#[test]
fn exemplars_allocate_nothing_with_or_without_a_trace_context() {
    let metrics = Metrics::builder().exemplars(true).build().unwrap();
    let mut service = metrics
        .layer()
        .classify_with(ItemRoute)
        .layer(bare_service());
    let paths = ["/items/42".to_owned()];
    let traced = |count: usize| {
        let mut requests = requests(&paths, count, || ());
        for (i, request) in requests.iter_mut().enumerate() {
            let header = format!("00-{:032x}-{:016x}-01", i + 1, i + 1);
            request
                .headers_mut()
                .insert("traceparent", header.parse().unwrap());
        }
        requests
    };
    let untraced = allocations_serving(
        &mut service,
        requests(&paths, 1_000, || ()),
        requests(&paths, 10_000, || ()),
    );
    let with_context = allocations_serving(&mut service, traced(1_000), traced(10_000));
    assert_eq!((untraced, with_context), (0, 0));
    let text = String::from_utf8(metrics.render(redwatch::Format::OpenMetrics)).unwrap();
    assert!(
        text.contains(&format!("trace_id=\"{:032x}\"", 10_000)),
        "{text}"
    );
}

/// With a request label, a request whose value was seen before allocates nothing.
#[test]
fn a_request_label_allocates_nothing_once_its_values_exist() {
    let metrics = Metrics::builder()
        .request_label(redwatch::RequestLabel::from_header("tenant", "x-tenant").max_values(4))
        .build()
        .unwrap();
    let mut service = metrics
        .layer()
        .classify_with(ItemRoute)
        .layer(bare_service());
    let paths = ["/items/42".to_owned()];
    // Six tenants against a cap of four: values past it are `overflow`, also without allocating.
    let tenanted = |count: usize| {
        let mut requests = requests(&paths, count, || ());
        for (i, request) in requests.iter_mut().enumerate() {
            let tenant = format!("tenant-{}", i % 6);
            request
                .headers_mut()
                .insert("x-tenant", tenant.parse().unwrap());
        }
        requests
    };
    assert_eq!(
        allocations_serving(&mut service, tenanted(100), tenanted(10_000)),
        0
    );
    // Even requests are GETs with tenants 0, 2, 4 (overflow), odd ones POSTs with 1, 3, 5.
    assert_eq!(metrics.snapshot().series.len(), 6);
}

/// A closure that borrows its route from the request allocates nothing either.
#[test]
fn a_borrowing_closure_classifier_allocates_nothing() {
    let metrics = Metrics::new();
    let mut service = metrics
        .layer()
        .classify_with(redwatch::classify_fn(|head| {
            Some(std::borrow::Cow::Borrowed(head.uri().path()))
        }))
        .layer(bare_service());
    let paths: Vec<String> = (0..8).map(|i| format!("/shop.v1.Catalog/M{i}")).collect();
    let allocations = allocations_serving(
        &mut service,
        requests(&paths, 100, || ()),
        requests(&paths, 10_000, || ()),
    );
    assert_eq!(allocations, 0);
}

/// gRPC-style paths: every request whose route is not the one a service saw first misses the
/// service's route cache and looks the route up in the registry.
#[test]
fn uri_path_routes_allocate_nothing_on_cache_misses() {
    let paths: Vec<String> = (0..64)
        .map(|i| format!("/shop.v1.Catalog/Method{i}"))
        .collect();
    for (name, metrics) in configurations() {
        let mut service = metrics
            .layer()
            .classify_with(UriPathRoute)
            .layer(bare_service());
        let warm_up = requests(&paths, paths.len() * 2, || ());
        let measured = requests(&paths, paths.len() * 100, || ());
        assert_eq!(
            allocations_serving(&mut service, warm_up, measured),
            0,
            "{name}"
        );
    }
}

/// With axum's `MatchedPath`, redwatch adds no allocation to what axum itself does per
/// request, with many routes, whether each route has its own layered service
/// (`Router::layer`) or one layered service serves every route (cache misses).
#[test]
fn matched_path_routes_add_no_allocation_to_axums() {
    use axum::Router;
    use axum::body::Body as AxumBody;
    use http_body_util::BodyExt;
    use tower::ServiceExt;
    use tower::util::MapResponseLayer;

    let paths: Vec<String> = (0..32).map(|i| format!("/r{i}/42")).collect();
    // A handler with state, like redwatch's service: axum boxes a clone of the service per
    // request, which allocates for any service that is not zero-sized.
    let state = std::sync::Arc::new(());
    let handler = tower::service_fn(move |_request: Request<AxumBody>| {
        let _state = &state;
        std::future::ready(Ok::<_, Infallible>(Response::new(AxumBody::from("ok"))))
    });
    let measure = |router: Router| {
        let mut router = router.with_state::<()>(());
        let warm_up = requests(&paths, paths.len() * 2, AxumBody::empty);
        let measured = requests(&paths, paths.len() * 50, AxumBody::empty);
        allocations_serving(&mut router, warm_up, measured)
    };
    let per_route =
        |router: Router, i: usize| router.route(&format!("/r{i}/{{id}}"), get(|| async { "ok" }));

    // The baselines wrap the response body in another body type, as redwatch does, so that
    // axum boxes it once more in both cases (an allocation any body-wrapping layer causes).
    let rewrap = |response: Response<AxumBody>| response.map(|body| body.map_err(|error| error));
    for (name, metrics) in configurations() {
        // Each route wrapped separately: every service sees one route.
        let plain = (0..paths.len()).fold(Router::new(), per_route);
        let baseline = measure(plain.clone().layer(MapResponseLayer::new(rewrap)));
        let layered = measure(plain.layer(metrics.layer()));
        assert_eq!(layered, baseline, "{name}, Router::layer");

        // One layered service behind every route: its route cache misses all but one route.
        let shared = metrics.layer().layer(handler.clone());
        let rewrapped = handler.clone().map_response(rewrap);
        let baseline = measure((0..paths.len()).fold(Router::new(), |router, i| {
            router.route_service(&format!("/r{i}/{{id}}"), rewrapped.clone())
        }));
        let layered = measure((0..paths.len()).fold(Router::new(), |router, i| {
            router.route_service(&format!("/r{i}/{{id}}"), shared.clone())
        }));
        assert_eq!(layered, baseline, "{name}, one service for every route");
    }
}

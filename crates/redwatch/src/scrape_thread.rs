//! The thread that renders scrapes for [`Metrics::router`]: one per [`Metrics`], started by the
//! first scrape, running at a lower CPU priority than the threads that serve requests.
//!
//! A large exposition costs tens of milliseconds of CPU (100,000 series: about 30 ms). On a
//! blocking-pool thread at normal priority that CPU is taken from the requests being served at the
//! same moment, which shows in their tail latency. At a lower priority the scheduler gives the
//! request threads the CPU first whenever they have work, and the scrape uses what is left; under
//! full saturation a scrape still gets about a tenth of a core (nice 10), far from Prometheus's
//! scrape timeout. A second thread of its own, rather than lowering the priority of a thread of
//! Tokio's blocking pool, because an unprivileged process cannot raise a priority again: a pool
//! thread would keep it for whatever blocking work the application gives it later.

use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Mutex, PoisonError, Weak};

use bytes::Bytes;
use http::{HeaderMap, Response, StatusCode};
use http_body_util::Full;
use tokio::sync::oneshot;

use crate::metrics::{Inner, Metrics};

/// The nice value of the scrape thread (0 is the default; 19 the lowest priority).
pub(crate) const SCRAPE_NICE: i32 = 10;
/// The scrape thread's name, as `ps -T` and `/proc/PID/task/*/comm` show it.
pub(crate) const SCRAPE_THREAD_NAME: &str = "redwatch-scrape";

/// A scrape's headers, the runtime it arrived on (whose gauges it reports) and where to answer.
type Job = (
    HeaderMap,
    Option<tokio::runtime::Handle>,
    oneshot::Sender<Response<Full<Bytes>>>,
);

/// The sending end of a [`Metrics`]' scrape thread; the thread ends when it is dropped.
#[derive(Debug, Default)]
pub(crate) struct ScrapeThread {
    jobs: Mutex<Option<Sender<Job>>>,
}

impl ScrapeThread {
    /// Renders the answer to a scrape on the scrape thread, starting it if needed. `None` when
    /// no thread could be started; the caller then renders elsewhere.
    pub(crate) async fn respond(
        &self,
        metrics: &Metrics,
        headers: HeaderMap,
    ) -> Option<Response<Full<Bytes>>> {
        let (reply, answer) = oneshot::channel();
        {
            let mut jobs = self.jobs.lock().unwrap_or_else(PoisonError::into_inner);
            if jobs.is_none() {
                *jobs = start(metrics.downgrade());
            }
            let runtime = tokio::runtime::Handle::try_current().ok();
            jobs.as_ref()?.send((headers, runtime, reply)).ok()?;
        }
        Some(answer.await.unwrap_or_else(|_| failed()))
    }
}

fn start(metrics: Weak<Inner>) -> Option<Sender<Job>> {
    let (jobs, received) = mpsc::channel();
    std::thread::Builder::new()
        .name(SCRAPE_THREAD_NAME.to_owned())
        .spawn(move || run(metrics, received))
        .ok()?;
    Some(jobs)
}

fn run(metrics: Weak<Inner>, jobs: Receiver<Job>) {
    lower_priority();
    // Ends when the last `Metrics` is dropped: the sender goes with it.
    while let Ok((headers, runtime, reply)) = jobs.recv() {
        let Some(metrics) = Metrics::upgrade(&metrics) else {
            return;
        };
        // The runtime gauges are read from the current runtime: the one that took the scrape.
        let _runtime = runtime.as_ref().map(tokio::runtime::Handle::enter);
        let response =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| metrics.respond(&headers)))
                .unwrap_or_else(|_| failed());
        let _ = reply.send(response);
    }
}

/// Lowers this thread's priority; where that is not possible it stays as it is.
fn lower_priority() {
    #[cfg(target_os = "linux")]
    {
        // On Linux the nice value belongs to a thread: this leaves the others as they are.
        let thread = Some(rustix::thread::gettid());
        if let Ok(current) = rustix::process::getpriority_process(thread) {
            let _ = rustix::process::setpriority_process(thread, current.max(SCRAPE_NICE));
        }
    }
}

/// The answer when rendering panicked (a user collector, say).
pub(crate) fn failed() -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from_static(
        b"rendering the exposition failed\n",
    )));
    *response.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
    response
}

//! The two ways of driving load: an open-loop schedule and closed-loop workers.

use std::pin::{Pin, pin};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::{Semaphore, watch};

use super::client::{Connection, ConnectionPool, ErrorKind, RequestTemplate, Transport};
use super::mix::Mix;
use super::record::Recorder;
use super::schedule::RateProfile;

/// What every driver needs to know.
pub struct Plan {
    /// One template per mix entry, in mix order.
    pub templates: Vec<RequestTemplate>,
    /// The mix, for picking each request's endpoint.
    pub mix: Mix,
    /// Seed for the pick sequence.
    pub seed: u64,
    /// Per-request timeout.
    pub timeout: Duration,
    /// Stop sending after this long (from the start).
    pub duration: Option<Duration>,
    /// Stop after this many requests.
    pub request_limit: Option<u64>,
}

/// How a run ended.
pub struct RunEnd {
    /// The send window: from the start until the schedule (or the last worker) finished.
    pub elapsed: Duration,
    /// Ctrl-C ended the run early.
    pub interrupted: bool,
    /// Requests still unfinished when the run gave up waiting (only after Ctrl-C).
    pub unfinished: u64,
}

/// Resolves when `stop` turns true.
async fn stopped(stop: &mut watch::Receiver<bool>) {
    if stop.wait_for(|stopped| *stopped).await.is_err() {
        // No sender means nobody can ask us to stop any more.
        std::future::pending::<()>().await;
    }
}

/// Horizon used when only `--requests` bounds an open-loop run (≈ 31 years).
const NO_HORIZON_SECS: f64 = 1e9;

/// How long to wait for in-flight requests after Ctrl-C before summarising without them.
const INTERRUPT_GRACE: Duration = Duration::from_secs(1);

/// Open loop: request `n` is due at the schedule's time for `n`, whatever happened to the others.
/// Every request due when the timer fires is sent at once; none is sent early.
pub async fn open_loop(
    plan: Arc<Plan>,
    profile: RateProfile,
    client: Arc<ConnectionPool>,
    max_in_flight: usize,
    recorder: Arc<Recorder>,
    mut stop: watch::Receiver<bool>,
) -> RunEnd {
    let slots = Arc::new(Semaphore::new(max_in_flight));
    let dispatcher = Dispatcher {
        plan: Arc::clone(&plan),
        profile: profile.clone(),
        client,
        slots: Arc::clone(&slots),
        recorder: Arc::clone(&recorder),
        stop: stop.clone(),
        runtime: tokio::runtime::Handle::current(),
    };
    // The dispatcher paces sends on its own thread: the OS sleep wakes within tens of µs, where
    // the async timer rounds every wake-up to the next millisecond.
    let start = Instant::now();
    let outcome = tokio::task::spawn_blocking(move || dispatcher.run(start)).await;
    let Ok(Dispatched {
        sent,
        window_end,
        mut interrupted,
        backlogged,
    }) = outcome
    else {
        // The dispatcher panicked: report what was recorded rather than nothing.
        return RunEnd {
            elapsed: start.elapsed(),
            interrupted: true,
            unfinished: u64::try_from(recorder.in_flight.load(Ordering::Relaxed)).unwrap_or(0),
        };
    };
    let horizon = plan.duration.map_or(NO_HORIZON_SECS, |d| d.as_secs_f64());
    // Requests due inside the window but never sent were dropped.
    let window_secs = window_end.saturating_duration_since(start).as_secs_f64();
    let due_in_window = if interrupted {
        // Ctrl-C while sleeping towards the next request drops nothing; while queued at the
        // in-flight limit, it drops the queue.
        if backlogged {
            due_count(&profile, window_secs, plan.request_limit)
        } else {
            sent
        }
    } else {
        // Count strictly before the window end (a request due exactly at the deadline is not in it).
        let exact = profile.cumulative(window_secs.min(horizon));
        let count = (exact - 1e-9).ceil().max(0.0) as u64;
        plan.request_limit.map_or(count, |limit| count.min(limit))
    };
    recorder.on_dropped(due_in_window.saturating_sub(sent));
    // Wait for the stragglers: each ends within --timeout (plus scheduling slack).
    let grace = if interrupted {
        INTERRUPT_GRACE
    } else {
        plan.timeout + Duration::from_secs(1)
    };
    let all_slots = u32::try_from(max_in_flight).unwrap_or(u32::MAX);
    let drained = tokio::select! {
        result = tokio::time::timeout(grace, slots.acquire_many(all_slots)) => result.is_ok(),
        _ = stopped(&mut stop), if !interrupted => { interrupted = true; false }
    };
    let unfinished = if drained {
        0
    } else {
        u64::try_from(recorder.in_flight.load(Ordering::Relaxed)).unwrap_or(0)
    };
    RunEnd {
        elapsed: window_end.saturating_duration_since(start),
        interrupted,
        unfinished,
    }
}

/// The open-loop sender, run on a blocking thread.
struct Dispatcher {
    plan: Arc<Plan>,
    profile: RateProfile,
    client: Arc<ConnectionPool>,
    slots: Arc<Semaphore>,
    recorder: Arc<Recorder>,
    stop: watch::Receiver<bool>,
    runtime: tokio::runtime::Handle,
}

struct Dispatched {
    sent: u64,
    /// The moment the send window closed: the deadline, or when request `limit` would be due.
    window_end: Instant,
    interrupted: bool,
    /// The run ended while requests were queued at the in-flight limit.
    backlogged: bool,
}

/// Longest single sleep, so that Ctrl-C is noticed promptly.
const MAX_SLEEP: Duration = Duration::from_millis(50);

impl Dispatcher {
    fn stopped(&self) -> bool {
        *self.stop.borrow()
    }

    /// Sleeps until `until`; false if Ctrl-C came first.
    fn sleep_until(&self, until: Instant) -> bool {
        loop {
            if self.stopped() {
                return false;
            }
            let now = Instant::now();
            if now >= until {
                return true;
            }
            std::thread::sleep((until - now).min(MAX_SLEEP));
        }
    }

    fn run(self, start: Instant) -> Dispatched {
        let plan = &self.plan;
        let horizon = plan.duration.map_or(NO_HORIZON_SECS, |d| d.as_secs_f64());
        let deadline = start + Duration::from_secs_f64(horizon);
        let mut sent: u64 = 0;
        let mut previous_due = 0.0;
        loop {
            let due = if plan.request_limit.is_some_and(|limit| sent >= limit) {
                None
            } else {
                self.profile.due_time(sent, previous_due, horizon)
            };
            let Some(due) = due else {
                // Nothing more to send: the window closes when the next request would have been
                // due, so that achieved rate = count / window compares like with like.
                let end = self
                    .profile
                    .due_time(sent, previous_due, horizon)
                    .map_or(deadline, |t| {
                        (start + Duration::from_secs_f64(t)).min(deadline)
                    });
                let completed = self.sleep_until(end);
                return Dispatched {
                    sent,
                    window_end: end.min(Instant::now()),
                    interrupted: !completed,
                    backlogged: false,
                };
            };
            previous_due = due;
            let intended = start + Duration::from_secs_f64(due);
            if !self.sleep_until(intended) {
                return Dispatched {
                    sent,
                    window_end: Instant::now(),
                    interrupted: true,
                    backlogged: false,
                };
            }
            let permit = match Arc::clone(&self.slots).try_acquire_owned() {
                Ok(permit) => permit,
                Err(_) => match self.wait_for_slot(start, sent, intended, deadline) {
                    Ok(permit) => permit,
                    Err(interrupted) => {
                        return Dispatched {
                            sent,
                            window_end: Instant::now().min(deadline),
                            interrupted,
                            backlogged: true,
                        };
                    }
                },
            };
            let endpoint = plan.mix.pick(plan.seed, sent);
            // Rendered here, in schedule order, so that sequences follow the schedule.
            let prepared = plan.templates[endpoint].prepare(plan.seed, sent);
            sent += 1;
            let (plan, client, recorder) = (
                Arc::clone(plan),
                self.client.clone(),
                Arc::clone(&self.recorder),
            );
            self.runtime.spawn(async move {
                let _slot = permit;
                let send_at = Instant::now();
                recorder.on_send(Some(send_at.saturating_duration_since(intended)));
                let outcome = match prepared {
                    Ok(prepared) => client.send(&plan.templates[endpoint], &prepared).await,
                    Err(kind) => Err(kind),
                };
                let done = Instant::now();
                recorder.on_complete(endpoint, outcome, done - intended, done - send_at);
            });
        }
    }

    /// At --max-in-flight: this request (and those falling due meanwhile) queue. They keep their
    /// intended times, so the wait shows up in their latency. `Err(interrupted)` when the window
    /// closed (false) or Ctrl-C came (true) before a slot freed.
    fn wait_for_slot(
        &self,
        start: Instant,
        sent: u64,
        intended: Instant,
        deadline: Instant,
    ) -> Result<tokio::sync::OwnedSemaphorePermit, bool> {
        loop {
            if self.stopped() {
                return Err(true);
            }
            if Instant::now() >= deadline {
                return Err(false);
            }
            let due_now = due_count(
                &self.profile,
                start.elapsed().as_secs_f64(),
                self.plan.request_limit,
            );
            self.recorder
                .on_backlog(due_now.saturating_sub(sent), Some(intended));
            let wait =
                Instant::now() + MAX_SLEEP.min(deadline.saturating_duration_since(Instant::now()));
            let acquired = self.runtime.block_on(async {
                tokio::select! {
                    permit = Arc::clone(&self.slots).acquire_owned() => permit.ok(),
                    _ = tokio::time::sleep_until(wait.into()) => None,
                }
            });
            if let Some(permit) = acquired {
                return Ok(permit);
            }
        }
    }
}

/// Requests due at or before `secs`: those with Λ(t_n) = n ≤ Λ(secs).
fn due_count(profile: &RateProfile, secs: f64, limit: Option<u64>) -> u64 {
    let count = (profile.cumulative(secs) + 1e-9).floor() as u64 + 1;
    limit.map_or(count, |limit| count.min(limit))
}

/// Closed loop: `concurrency` workers, each with its own connection, send back to back.
pub async fn closed_loop(
    plan: Arc<Plan>,
    transport: Transport,
    concurrency: usize,
    recorder: Arc<Recorder>,
    stop: watch::Receiver<bool>,
) -> RunEnd {
    let start = Instant::now();
    let deadline = plan.duration.map(|d| start + d);
    let next_request = Arc::new(AtomicU64::new(0));
    let abandoned = Arc::new(AtomicU64::new(0));
    let new_worker = || Worker {
        plan: Arc::clone(&plan),
        transport: transport.clone(),
        deadline,
        next_request: Arc::clone(&next_request),
        abandoned: Arc::clone(&abandoned),
        recorder: Arc::clone(&recorder),
        stop: stop.clone(),
    };
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..concurrency {
        workers.spawn(new_worker().run());
    }
    while workers.join_next().await.is_some() {}
    RunEnd {
        elapsed: start.elapsed(),
        interrupted: *stop.borrow(),
        unfinished: abandoned.load(Ordering::Relaxed),
    }
}

struct Worker {
    plan: Arc<Plan>,
    transport: Transport,
    deadline: Option<Instant>,
    next_request: Arc<AtomicU64>,
    abandoned: Arc<AtomicU64>,
    recorder: Arc<Recorder>,
    stop: watch::Receiver<bool>,
}

/// First back-off after a failure; doubles per consecutive failure up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(10);
const MAX_BACKOFF: Duration = Duration::from_secs(1);

/// A worker's per-request timeout, on one timer for all its requests. A worker's requests end
/// in order and their deadlines only grow, so the timer may keep an earlier request's
/// deadline: when it fires before the current request's, it is moved on to it. A timer is thus
/// re-armed once per timeout period at most, rather than set and cancelled for every request.
struct Deadlines {
    timer: Pin<Box<tokio::time::Sleep>>,
}

impl Deadlines {
    fn new() -> Self {
        Self {
            timer: Box::pin(tokio::time::sleep_until(
                tokio::time::Instant::now() + Duration::from_secs(86_400 * 365),
            )),
        }
    }

    /// Resolves at `deadline` (as `tokio::time::timeout` would for it).
    async fn expire(&mut self, deadline: Instant) {
        let deadline = tokio::time::Instant::from_std(deadline);
        if self.timer.deadline() > deadline {
            self.timer.as_mut().reset(deadline);
        }
        loop {
            self.timer.as_mut().await;
            if self.timer.deadline() >= deadline {
                return;
            }
            self.timer.as_mut().reset(deadline);
        }
    }
}

impl Worker {
    async fn run(self) {
        let mut connection: Option<Connection> = None;
        let mut backoff: Option<Duration> = None;
        let mut deadlines = Deadlines::new();
        let mut stop_rx = self.stop.clone();
        // Waits on the stop signal across requests, rather than registering anew for each.
        let mut stop_signal = pin!(stopped(&mut stop_rx));
        loop {
            if *self.stop.borrow() || self.deadline.is_some_and(|d| Instant::now() >= d) {
                return;
            }
            let n = self.next_request.fetch_add(1, Ordering::Relaxed);
            if self.plan.request_limit.is_some_and(|limit| n >= limit) {
                return;
            }
            let endpoint = self.plan.mix.pick(self.plan.seed, n);
            let template = &self.plan.templates[endpoint];
            let prepared = template.prepare(self.plan.seed, n);
            let send_at = Instant::now();
            self.recorder.on_send(None);
            let outcome = {
                let exchange = pin!(async {
                    let prepared = prepared?;
                    // A pooled connection the server has closed is replaced before sending, so an
                    // idle-timeout close is not counted against the target.
                    if let Some(conn) = connection.as_mut()
                        && !conn.ready().await
                    {
                        connection = None;
                    }
                    if connection.is_none() {
                        connection =
                            Some(Connection::open(&self.transport, self.plan.timeout).await?);
                    }
                    match connection.as_mut() {
                        Some(conn) => conn.send(template, &prepared).await,
                        None => Err(ErrorKind::Other),
                    }
                });
                tokio::select! {
                    biased;
                    outcome = exchange => outcome,
                    () = deadlines.expire(send_at + self.plan.timeout) => Err(ErrorKind::Timeout),
                    () = &mut stop_signal => {
                        self.abandoned.fetch_add(1, Ordering::Relaxed);
                        return;
                    }
                }
            };
            let elapsed = send_at.elapsed();
            self.recorder
                .on_complete(endpoint, outcome, elapsed, elapsed);
            if outcome.is_ok() {
                backoff = None;
                continue;
            }
            // The connection's state is unknown after a failure: start afresh, after a pause
            // that grows while the target keeps failing (no busy loop against a dead target).
            connection = None;
            let pause = backoff.map_or(FIRST_BACKOFF, |b| (b * 2).min(MAX_BACKOFF));
            backoff = Some(pause);
            let wake = self
                .deadline
                .map_or(Instant::now() + pause, |d| d.min(Instant::now() + pause));
            tokio::select! {
                _ = tokio::time::sleep_until(wake.into()) => {}
                () = &mut stop_signal => return,
            }
        }
    }
}

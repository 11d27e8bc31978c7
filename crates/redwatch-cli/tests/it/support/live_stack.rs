//! A live monitoring stack for the tests that run generated files for real (`alerts_live`,
//! `generate_live`): `redwatch serve` instances that can be restarted on the same port,
//! `redwatch load` runs, external daemons with their logs, a webhook receiver that records what
//! Alertmanager delivers, the Prometheus and Alertmanager APIs, and stop-aware polling.
//! Everything listens on and talks to 127.0.0.1 only.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant};

use hyper::StatusCode;
use serde_json::Value;

use super::http::{get_json, try_get, url_encode};
use super::process::{Proc, Server, loopback, redwatch};

/// How often a restart on a fixed port is tried (the port may briefly still be held).
const RESTART_TRIES: u32 = 20;

/// One `redwatch serve` instance. Its port stays the same across restarts, because the
/// Prometheus targets are fixed in the configuration.
pub struct Serve {
    pub port: u16,
    pub naming: String,
    pub latency_scale: f64,
    server: Option<Server>,
}

impl Serve {
    /// Starts an instance on `127.0.0.1:0` and learns its port from the startup line.
    pub fn start(naming: &str, latency_scale: f64) -> Result<Serve, String> {
        let server = spawn_serve(0, naming, latency_scale)?;
        Ok(Serve {
            port: server.addr.port(),
            naming: naming.to_owned(),
            latency_scale,
            server: Some(server),
        })
    }

    pub fn addr(&self) -> SocketAddr {
        loopback(self.port)
    }

    /// `running`, `stopped by the test` or how the process ended.
    pub fn status(&mut self) -> String {
        match self.server.as_mut() {
            None => "stopped by the test".to_owned(),
            Some(server) => server.proc.exited().unwrap_or_else(|| "running".to_owned()),
        }
    }

    /// Kills the instance (SIGKILL) and reaps it.
    pub fn kill(&mut self) {
        self.server = None;
    }

    /// Kills the instance if it runs and starts it again on the same port with other flags.
    pub fn restart(&mut self, naming: &str, latency_scale: f64) -> Result<(), String> {
        self.kill();
        let mut last = String::new();
        for _ in 0..RESTART_TRIES {
            match spawn_serve(self.port, naming, latency_scale) {
                Ok(server) => {
                    self.server = Some(server);
                    self.naming = naming.to_owned();
                    self.latency_scale = latency_scale;
                    return Ok(());
                }
                Err(err) => last = err,
            }
            // Retry back-off: the kernel may still hold the port for a moment.
            thread::sleep(Duration::from_millis(250));
        }
        Err(format!(
            "cannot restart redwatch serve on port {}: {last}",
            self.port
        ))
    }
}

fn spawn_serve(port: u16, naming: &str, latency_scale: f64) -> Result<Server, String> {
    let scale = latency_scale.to_string();
    let listen = format!("127.0.0.1:{port}");
    Server::try_start(
        &[
            "serve",
            "--listen",
            &listen,
            "--naming",
            naming,
            "--latency-scale",
            &scale,
        ],
        &[],
    )
}

/// `redwatch load` at a constant open-loop `rate` against one instance; it stops by itself
/// after `duration`. The timeout is generous so that deliberately slow responses are still
/// recorded by the server instead of being cut off by the client.
pub fn load(target: SocketAddr, rate: f64, duration: Duration, mix: &str) -> Result<Proc, String> {
    Proc::spawn(
        format!("redwatch load {target} {mix} at {rate}/s"),
        redwatch()
            .args(["load", "--target", &format!("http://{target}")])
            .args(["--rate", &rate.to_string()])
            .args(["--duration", &format!("{}s", duration.as_secs().max(1))])
            .args(["--mix", mix, "--timeout", "10s"])
            .stdout(Stdio::null())
            .stderr(Stdio::null()),
    )
}

/// Starts an external daemon with its stderr (and stdout) appended to `log`.
pub fn daemon(name: &str, command: &mut Command, log: &Path) -> Result<Proc, String> {
    let file = File::create(log).map_err(|err| format!("create {}: {err}", log.display()))?;
    let copy = file
        .try_clone()
        .map_err(|err| format!("{}: {err}", log.display()))?;
    Proc::spawn(
        name,
        command
            .stdin(Stdio::null())
            .stdout(Stdio::from(copy))
            .stderr(Stdio::from(file)),
    )
}

/// The last `lines` lines of a log file.
pub fn tail(path: &Path, lines: usize) -> String {
    match std::fs::read_to_string(path) {
        Ok(text) => {
            let all: Vec<&str> = text.lines().collect();
            all[all.len().saturating_sub(lines)..].join("\n")
        }
        Err(err) => format!("(cannot read {}: {err})", path.display()),
    }
}

/// Sets a stop flag when dropped: threads that poll it end soon after.
pub struct StopOnDrop(pub Arc<AtomicBool>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

/// Sleeps `duration` in small steps; `Err` as soon as `stop` is set.
pub fn pause(stop: &AtomicBool, duration: Duration) -> Result<(), String> {
    let until = Instant::now() + duration;
    loop {
        if stop.load(Ordering::SeqCst) {
            return Err("stopped: another part of the test failed or panicked".to_owned());
        }
        let now = Instant::now();
        if now >= until {
            return Ok(());
        }
        thread::sleep((until - now).min(Duration::from_millis(100)));
    }
}

// ------------------------------------------------------------------------------------------
// Webhook receiver
// ------------------------------------------------------------------------------------------

/// One alert of one webhook POST.
#[derive(Debug, Clone)]
pub struct Delivery {
    /// When the POST arrived.
    pub at: Instant,
    /// `firing` or `resolved`.
    pub status: String,
    pub fingerprint: String,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
}

impl Delivery {
    pub fn label(&self, name: &str) -> &str {
        self.labels
            .get(name)
            .map(String::as_str)
            .unwrap_or_default()
    }
}

#[derive(Default)]
struct Received {
    deliveries: Vec<Delivery>,
    errors: Vec<String>,
}

/// Everything the webhook received, shared with the receiving thread.
#[derive(Clone, Default)]
pub struct WebhookLog(Arc<Mutex<Received>>);

impl WebhookLog {
    fn lock(&self) -> MutexGuard<'_, Received> {
        self.0.lock().unwrap_or_else(|err| err.into_inner())
    }

    /// Every delivered alert so far, in arrival order.
    pub fn deliveries(&self) -> Vec<Delivery> {
        self.lock().deliveries.clone()
    }

    /// Requests that were not a well-formed webhook POST.
    pub fn errors(&self) -> Vec<String> {
        self.lock().errors.clone()
    }
}

/// A tiny HTTP/1.1 server on 127.0.0.1:0 that records every POSTed Alertmanager webhook
/// payload. Each response closes its connection, so one thread serves the connections one
/// after the other. Dropping it stops and joins the thread.
pub struct Webhook {
    pub addr: SocketAddr,
    pub log: WebhookLog,
    stop: Arc<AtomicBool>,
    thread: Option<thread::JoinHandle<()>>,
}

impl Webhook {
    pub fn start() -> Result<Webhook, String> {
        let listener = TcpListener::bind("127.0.0.1:0").map_err(|err| err.to_string())?;
        let addr = listener.local_addr().map_err(|err| err.to_string())?;
        listener
            .set_nonblocking(true)
            .map_err(|err| err.to_string())?;
        let log = WebhookLog::default();
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (log, stop) = (log.clone(), stop.clone());
            thread::spawn(move || {
                while !stop.load(Ordering::SeqCst) {
                    match listener.accept() {
                        Ok((stream, _)) => {
                            if let Err(err) = receive(stream, &log) {
                                log.lock().errors.push(err);
                            }
                        }
                        Err(err) if err.kind() == ErrorKind::WouldBlock => {
                            thread::sleep(Duration::from_millis(20));
                        }
                        Err(err) => {
                            log.lock().errors.push(format!("accept: {err}"));
                            thread::sleep(Duration::from_millis(20));
                        }
                    }
                }
            })
        };
        Ok(Webhook {
            addr,
            log,
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for Webhook {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Reads one request from `stream`, answers it and records its alerts.
fn receive(mut stream: TcpStream, log: &WebhookLog) -> Result<(), String> {
    let at = Instant::now();
    stream
        .set_nonblocking(false)
        .and_then(|()| stream.set_read_timeout(Some(Duration::from_secs(5))))
        .and_then(|()| stream.set_write_timeout(Some(Duration::from_secs(5))))
        .map_err(|err| format!("socket setup: {err}"))?;
    let mut data = Vec::new();
    let mut chunk = [0u8; 8192];
    let header_end = loop {
        if let Some(end) = data.windows(4).position(|w| w == b"\r\n\r\n") {
            break end + 4;
        }
        if data.len() > 1 << 20 {
            return Err("request head larger than 1 MiB".to_owned());
        }
        let n = stream
            .read(&mut chunk)
            .map_err(|err| format!("read head: {err}"))?;
        if n == 0 {
            return Err("connection closed before the end of the request head".to_owned());
        }
        data.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&data[..header_end]).into_owned();
    let request_line = head.lines().next().unwrap_or_default().to_owned();
    let length: usize = head
        .lines()
        .filter_map(|line| line.split_once(':'))
        .find(|(name, _)| name.trim().eq_ignore_ascii_case("content-length"))
        .and_then(|(_, value)| value.trim().parse().ok())
        .ok_or_else(|| format!("{request_line}: no Content-Length"))?;
    if length > 16 << 20 {
        return Err(format!("{request_line}: body of {length} bytes"));
    }
    let mut body = data[header_end..].to_vec();
    while body.len() < length {
        let n = stream
            .read(&mut chunk)
            .map_err(|err| format!("read body: {err}"))?;
        if n == 0 {
            return Err(format!("{request_line}: body cut off"));
        }
        body.extend_from_slice(&chunk[..n]);
    }
    let _ = stream.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
    if !request_line.starts_with("POST ") {
        return Err(format!("unexpected request {request_line:?}"));
    }
    let payload: Value = serde_json::from_slice(&body[..length])
        .map_err(|err| format!("{request_line}: body is not JSON: {err}"))?;
    let alerts = payload["alerts"]
        .as_array()
        .ok_or_else(|| format!("webhook payload without alerts[]: {payload}"))?;
    let mut received = log.lock();
    for alert in alerts {
        received.deliveries.push(Delivery {
            at,
            status: alert["status"].as_str().unwrap_or_default().to_owned(),
            fingerprint: alert["fingerprint"].as_str().unwrap_or_default().to_owned(),
            labels: strings(&alert["labels"]),
            annotations: strings(&alert["annotations"]),
        });
    }
    Ok(())
}

// ------------------------------------------------------------------------------------------
// HTTP APIs of Prometheus and Alertmanager
// ------------------------------------------------------------------------------------------

/// One sample of an instant query: its labels and value.
#[derive(Debug, Clone)]
pub struct Sample {
    pub labels: BTreeMap<String, String>,
    pub value: String,
}

impl Sample {
    pub fn label(&self, name: &str) -> &str {
        self.labels
            .get(name)
            .map(String::as_str)
            .unwrap_or_default()
    }
}

impl std::fmt::Display for Sample {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let labels: Vec<String> = self
            .labels
            .iter()
            .map(|(name, value)| format!("{name}={value:?}"))
            .collect();
        write!(f, "{{{}}} {}", labels.join(", "), self.value)
    }
}

/// An instant query through Prometheus' HTTP API.
pub fn query(prometheus: SocketAddr, expr: &str) -> Result<Vec<Sample>, String> {
    let body = get_json(
        prometheus,
        &format!("/api/v1/query?query={}", url_encode(expr)),
    )?;
    if body["status"] != "success" {
        return Err(format!("query {expr} failed: {body}"));
    }
    let result = body["data"]["result"]
        .as_array()
        .ok_or_else(|| format!("query {expr}: no result array: {body}"))?;
    Ok(result
        .iter()
        .map(|sample| Sample {
            labels: strings(&sample["metric"]),
            value: sample["value"][1].as_str().unwrap_or_default().to_owned(),
        })
        .collect())
}

/// The string values of a JSON object (labels, annotations); other values as empty strings.
pub fn strings(value: &Value) -> BTreeMap<String, String> {
    value
        .as_object()
        .map(|object| {
            object
                .iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_owned()))
                .collect()
        })
        .unwrap_or_default()
}

/// Polls `GET path` until it answers 200, at most `limit`.
pub fn wait_ready(addr: SocketAddr, path: &str, limit: Duration) -> Result<(), String> {
    let deadline = Instant::now() + limit;
    let mut last = String::new();
    while Instant::now() < deadline {
        match try_get(addr, path, &[]) {
            Ok(response) if response.status == StatusCode::OK => return Ok(()),
            Ok(response) => last = format!("HTTP {}: {}", response.status, response.body),
            Err(err) => last = err,
        }
        thread::sleep(Duration::from_millis(200));
    }
    Err(format!("{addr}{path} not ready within {limit:?}: {last}"))
}

/// Polls an instance's /metrics until it has counted a request (a `_count` series), at most
/// `limit`.
pub fn wait_traffic(addr: SocketAddr, limit: Duration) -> Result<(), String> {
    let deadline = Instant::now() + limit;
    let mut last = String::new();
    while Instant::now() < deadline {
        match try_get(addr, "/metrics", &[]) {
            Ok(response)
                if response.status == StatusCode::OK && response.body.contains("_count{") =>
            {
                return Ok(());
            }
            Ok(response) => last = format!("HTTP {}, no request counted yet", response.status),
            Err(err) => last = err,
        }
        thread::sleep(Duration::from_millis(200));
    }
    Err(format!(
        "{addr}: no request served within {limit:?}: {last}"
    ))
}

/// Labels of an alert and its state in Alertmanager (`active`, `suppressed`, `unprocessed`).
pub type HeldAlert = (BTreeMap<String, String>, String);

/// The alerts Alertmanager holds for `job` (active, silenced and inhibited).
pub fn alertmanager_alerts(alertmanager: SocketAddr, job: &str) -> Result<Vec<HeldAlert>, String> {
    let filter = url_encode(&format!("job=\"{job}\""));
    let alerts = get_json(
        alertmanager,
        &format!("/api/v2/alerts?filter={filter}&silenced=true&inhibited=true&active=true"),
    )?;
    Ok(alerts
        .as_array()
        .into_iter()
        .flatten()
        .map(|alert| {
            let labels = strings(&alert["labels"]);
            let state = alert["status"]["state"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            (labels, state)
        })
        .collect())
}

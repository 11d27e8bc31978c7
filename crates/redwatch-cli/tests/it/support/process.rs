//! Child processes: the binary under test with a clean environment, the one guard that stops a
//! child on drop, `redwatch serve` on an ephemeral port, and commands that must exit in time.

use std::io::{BufRead, BufReader, Read};
use std::net::{SocketAddr, TcpListener};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hyper::StatusCode;

use super::exposition::Exposition;
use super::http::{Response, get_async};

/// Path of the binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_redwatch");

/// How long a fresh (possibly cold, debug-built, contended) server may take to print its
/// startup line.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(30);

/// The binary, without `RUST_LOG` or any `REDWATCH_*` of the caller's environment (so that each
/// test sees the defaults it expects) and with stdin closed.
pub fn redwatch() -> Command {
    let mut command = Command::new(BIN);
    command.env_remove("RUST_LOG");
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("REDWATCH_") {
            command.env_remove(name);
        }
    }
    command.stdin(Stdio::null());
    command
}

/// A child process that is stopped and reaped when dropped, so nothing outlives the test,
/// whether it passes, fails or panics. A child the test has stopped (SIGSTOP) is resumed first,
/// so that it is never left frozen.
pub struct Proc {
    name: String,
    pub child: Child,
}

impl Proc {
    /// Spawns `command`; `name` says what it is in messages.
    pub fn spawn(name: impl Into<String>, command: &mut Command) -> Result<Proc, String> {
        let name = name.into();
        let child = command
            .spawn()
            .map_err(|err| format!("cannot start {name}: {err}"))?;
        Ok(Proc { name, child })
    }

    /// Spawns `command`, failing the test if it cannot start.
    pub fn start(name: impl Into<String>, command: &mut Command) -> Proc {
        Proc::spawn(name, command).unwrap_or_else(|err| panic!("{err}"))
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The process id, for signals.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends `SIG<name>` (`STOP`, `CONT`, `INT`, `TERM`, …) to the process.
    pub fn signal(&self, name: &str) {
        signal(self.pid(), name);
    }

    /// `Some(description)` once the process has exited.
    pub fn exited(&mut self) -> Option<String> {
        match self.child.try_wait() {
            Ok(Some(status)) => Some(format!("{} exited: {status}", self.name)),
            Ok(None) => None,
            Err(err) => Some(format!("{}: cannot poll: {err}", self.name)),
        }
    }

    /// Waits up to `limit` for the process to exit.
    pub fn wait_within(&mut self, limit: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().expect("cannot wait for a child") {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits for the process to exit, collecting what it writes to the pipes the test has not
    /// taken; fails the test (and kills the process) if that takes longer than `limit`.
    pub fn finish(mut self, limit: Duration) -> Finished {
        let started = Instant::now();
        let stdout = read_all(self.child.stdout.take());
        let stderr = read_all(self.child.stderr.take());
        let status = self
            .wait_within(limit)
            .unwrap_or_else(|| panic!("{} did not exit within {limit:?}", self.name));
        Finished {
            status,
            stdout: stdout.join().unwrap_or_default(),
            stderr: stderr.join().unwrap_or_default(),
            elapsed: started.elapsed(),
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            // SIGKILL works on a stopped process too, but resume it first so that nothing is
            // left frozen should the kill fail.
            if let Ok(pid) = libc::pid_t::try_from(self.child.id()) {
                // SAFETY: kill(2) on our own child, not yet reaped.
                unsafe { libc::kill(pid, libc::SIGCONT) };
            }
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

/// Reads a pipe to its end on a thread of its own.
fn read_all(pipe: Option<impl Read + Send + 'static>) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut text = String::new();
        if let Some(mut pipe) = pipe {
            let _ = pipe.read_to_string(&mut text);
        }
        text
    })
}

/// Sends `SIG<name>` to process `pid`.
pub fn signal(pid: u32, name: &str) {
    let status = Command::new("kill")
        .arg(format!("-{name}"))
        .arg(pid.to_string())
        .status()
        .expect("cannot run kill");
    assert!(status.success(), "kill -{name} {pid} failed: {status}");
}

/// The result of a command that exited by itself.
#[derive(Debug)]
pub struct Finished {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
    /// From the start of the wait to the exit.
    pub elapsed: Duration,
}

impl Finished {
    /// Stdout as JSON (e.g. `redwatch load --json -`).
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|err| {
            panic!(
                "stdout is not JSON ({err}):\n{}\nstderr:\n{}",
                self.stdout, self.stderr
            )
        })
    }
}

/// Starts the binary with `args` (clean environment plus `env`), stdout and stderr piped.
pub fn spawn(args: &[&str], env: &[(&str, &str)]) -> Proc {
    Proc::start(
        format!("redwatch {}", args.join(" ")),
        redwatch()
            .args(args)
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped()),
    )
}

/// Runs the binary with `args` and extra environment, killing it if it has not exited within
/// `limit` (which fails the test).
pub fn run_to_exit(args: &[&str], env: &[(&str, &str)], limit: Duration) -> Finished {
    spawn(args, env).finish(limit)
}

/// Appends everything `pipe` produces to `sink`, line by line, on a thread of its own (so the
/// child never blocks on a full pipe and a failing test can show what it printed).
pub fn collect_into(pipe: impl Read + Send + 'static, sink: Arc<Mutex<String>>) {
    std::thread::spawn(move || {
        let mut reader = BufReader::new(pipe);
        let mut line = String::new();
        while reader.read_line(&mut line).is_ok_and(|n| n > 0) {
            sink.lock()
                .unwrap_or_else(|e| e.into_inner())
                .push_str(&line);
            line.clear();
        }
    });
}

/// A loopback port that was free a moment ago.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .expect("free loopback port")
}

pub fn loopback(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// A running `redwatch serve`; dropping it stops the process.
pub struct Server {
    pub proc: Proc,
    /// The API address from the startup line.
    pub addr: SocketAddr,
    /// The /metrics URL's address from the startup line.
    pub metrics_addr: SocketAddr,
    /// Everything the process wrote to stderr so far.
    stderr: Arc<Mutex<String>>,
}

impl Server {
    /// Starts `redwatch serve --listen 127.0.0.1:0 EXTRA...` and waits for its startup line.
    pub fn start(extra: &[&str]) -> Server {
        let mut args = vec!["serve", "--listen", "127.0.0.1:0"];
        args.extend_from_slice(extra);
        Self::start_with(&args)
    }

    /// Starts the binary with exactly `args` and waits for the `serve` startup line.
    pub fn start_with(args: &[&str]) -> Server {
        Self::start_with_env(args, &[])
    }

    /// Starts the binary with exactly `args` and extra environment variables, and waits for
    /// the `serve` startup line.
    pub fn start_with_env(args: &[&str], env: &[(&str, &str)]) -> Server {
        Self::try_start(args, env).unwrap_or_else(|err| panic!("{err}"))
    }

    /// Like [`Server::start_with_env`], but returns what went wrong instead of failing.
    pub fn try_start(args: &[&str], env: &[(&str, &str)]) -> Result<Server, String> {
        let mut proc = spawn(args, env);
        let stdout = proc.child.stdout.take().expect("stdout is piped");
        let stderr_pipe = proc.child.stderr.take().expect("stderr is piped");
        let stderr = Arc::new(Mutex::new(String::new()));
        collect_into(stderr_pipe, Arc::clone(&stderr));
        let (lines_tx, lines_rx) = mpsc::channel();
        std::thread::spawn(move || {
            // Keeps draining stdout after the startup line so the child never blocks on it.
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if lines_tx.send(line).is_err() {
                    break;
                }
            }
        });
        let stderr_now = || stderr.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let line = match lines_rx.recv_timeout(STARTUP_TIMEOUT) {
            Ok(line) => line,
            Err(_) => {
                let exit = proc.exited().unwrap_or_default();
                return Err(format!(
                    "{}: no startup line within {STARTUP_TIMEOUT:?} {exit}; stderr: {}",
                    proc.name(),
                    stderr_now()
                ));
            }
        };
        let (addr, metrics_addr) = parse_startup_line(&line)
            .ok_or_else(|| format!("{}: unexpected startup line {line:?}", proc.name()))?;
        Ok(Server {
            proc,
            addr,
            metrics_addr,
            stderr,
        })
    }

    /// Sends `signal` (e.g. `TERM`, `INT`) to the process.
    pub fn signal(&self, signal: &str) {
        self.proc.signal(signal);
    }

    /// Waits up to `limit` for the process to exit.
    pub async fn wait_exit(&mut self, limit: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.proc.child.try_wait() {
                return Some(status);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        None
    }

    /// What the process wrote to stderr so far.
    pub fn stderr(&self) -> String {
        self.stderr
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// `http://ADDR` of the API.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// GET `path` on the API listener.
    pub async fn get(&self, path: &str) -> Response {
        get_async(self.addr, path, &[]).await
    }

    /// GET /metrics on the metrics address, as plain Prometheus text.
    pub async fn metrics(&self) -> Exposition {
        let response = get_async(self.metrics_addr, "/metrics", &[]).await;
        assert_eq!(response.status, StatusCode::OK, "GET /metrics");
        Exposition::parse(&response.body)
    }

    /// GET /metrics, blocking, for tests that are not async.
    pub fn metrics_now(&self) -> Exposition {
        let response = super::http::get(self.metrics_addr, "/metrics", &[]);
        assert_eq!(response.status, StatusCode::OK, "GET /metrics");
        Exposition::parse(&response.body)
    }

    /// The server's own request counts per route (summed over methods and statuses), from the
    /// `_count` series of its duration histogram.
    pub fn request_counts(&self) -> std::collections::HashMap<String, u64> {
        self.metrics_now()
            .sum_by("http_server_request_duration_seconds_count", "http_route")
    }
}

/// Reads `redwatch serve listening on http://ADDR (metrics: http://ADDR/metrics)`.
pub fn parse_startup_line(line: &str) -> Option<(SocketAddr, SocketAddr)> {
    let rest = line.strip_prefix("redwatch serve listening on http://")?;
    let (api, rest) = rest.split_once(" (metrics: http://")?;
    let metrics = rest.strip_suffix("/metrics)")?;
    Some((api.parse().ok()?, metrics.parse().ok()?))
}

/// An in-process test server's thread: on drop, tells it to stop and waits for it, so that a
/// failing test leaves nothing running.
#[derive(Debug)]
pub struct ServerThread {
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl ServerThread {
    /// Runs `serve` on a thread of its own with a one-worker Tokio runtime; `serve` gets the
    /// receiver that resolves when the guard is dropped, and should return then.
    pub fn spawn<F, Fut>(serve: F) -> Self
    where
        F: FnOnce(tokio::sync::oneshot::Receiver<()>) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = ()>,
    {
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .enable_all()
                .build()
                .expect("runtime");
            runtime.block_on(serve(stopped));
        });
        Self {
            stop: Some(stop),
            thread: Some(thread),
        }
    }
}

impl Drop for ServerThread {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

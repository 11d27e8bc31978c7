//! A running `redwatch demo`: the real binary with its API on an ephemeral loopback port, its
//! startup block parsed, stopped when dropped (SIGTERM first, so that it stops its Prometheus and
//! removes its directory), also when the test panics.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hyper::StatusCode;

use crate::support::exposition::Exposition;
use crate::support::http::get_async;
use crate::support::process::{Proc, collect_into, redwatch};

/// How long a (possibly cold, debug-built) demo may take to print its startup block, including
/// Prometheus becoming ready.
pub const STARTUP_TIMEOUT: Duration = Duration::from_secs(45);
/// The routes of the load generator's default mix.
pub const MIX_ROUTES: [&str; 5] = ["/ep_one", "/ep_two", "/ep_three", "/ep_four", "/error"];

/// A running `redwatch demo`. Drop sends SIGTERM (so the demo stops its Prometheus), then kills
/// it if it has not exited within 15 s.
pub struct Demo {
    pub proc: Proc,
    stdout: Arc<Mutex<Vec<String>>>,
    stderr: Arc<Mutex<String>>,
    pub api: SocketAddr,
    /// Prometheus address and its temporary directory, when the demo started one.
    pub prometheus: Option<(SocketAddr, PathBuf)>,
}

impl Demo {
    /// Starts `redwatch demo --listen 127.0.0.1:0 EXTRA...` with a clean environment plus `env`,
    /// and waits for the startup block.
    pub fn start(extra: &[&str], env: &[(&str, &str)]) -> Demo {
        let proc = Proc::start(
            "redwatch demo",
            redwatch()
                .envs(env.iter().copied())
                .args(["demo", "--listen", "127.0.0.1:0"])
                .args(extra)
                .stdout(Stdio::piped())
                .stderr(Stdio::piped()),
        );
        let mut demo = Demo {
            proc,
            stdout: Arc::default(),
            stderr: Arc::default(),
            api: SocketAddr::from(([0, 0, 0, 0], 0)),
            prometheus: None,
        };
        let stdout_pipe = demo.proc.child.stdout.take().expect("stdout is piped");
        let stderr_pipe = demo.proc.child.stderr.take().expect("stderr is piped");
        let lines = Arc::clone(&demo.stdout);
        std::thread::spawn(move || {
            for line in BufReader::new(stdout_pipe).lines() {
                let Ok(line) = line else { break };
                lines.lock().unwrap_or_else(|e| e.into_inner()).push(line);
            }
        });
        collect_into(stderr_pipe, Arc::clone(&demo.stderr));
        let deadline = Instant::now() + STARTUP_TIMEOUT;
        while !demo.stdout().contains("\n  load:") {
            assert!(
                Instant::now() < deadline,
                "no startup block within {STARTUP_TIMEOUT:?}; stdout: {}; stderr: {}",
                demo.stdout(),
                demo.stderr()
            );
            if let Ok(Some(status)) = demo.proc.child.try_wait() {
                panic!("demo exited early ({status}); stderr: {}", demo.stderr());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let stdout = demo.stdout();
        let field = |label: &str| {
            stdout
                .lines()
                .find_map(|line| line.strip_prefix(&format!("  {label}:")))
                .map(str::trim)
                .unwrap_or_else(|| panic!("no {label:?} line in {stdout}"))
                .to_owned()
        };
        demo.api = url_addr(&field("API"));
        assert_eq!(
            field("dashboard"),
            format!("http://{}/dashboard", demo.api),
            "{stdout}"
        );
        let prometheus = field("Prometheus");
        if prometheus.starts_with("http://") {
            let dir = prometheus
                .split_once("(config and data in ")
                .and_then(|(_, rest)| rest.split_once(", removed on exit)"))
                .map(|(dir, _)| PathBuf::from(dir))
                .unwrap_or_else(|| panic!("unexpected Prometheus line {prometheus:?}"));
            demo.prometheus = Some((url_addr(&prometheus), dir));
        }
        demo
    }

    pub fn stdout(&self) -> String {
        let lines = self.stdout.lock().unwrap_or_else(|e| e.into_inner());
        let mut text = lines.join("\n");
        text.push('\n');
        text
    }

    pub fn stderr(&self) -> String {
        self.stderr
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub fn signal(&self, signal: libc::c_int) {
        let pid = libc::pid_t::try_from(self.proc.pid()).expect("pid fits");
        // SAFETY: kill(2) on our own, not yet reaped, child.
        let result = unsafe { libc::kill(pid, signal) };
        assert_eq!(result, 0, "kill({pid}, {signal}) failed");
    }

    /// Waits up to `limit` for the process to exit, and for its output to be read.
    pub fn wait_exit(&mut self, limit: Duration) -> ExitStatus {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self
                .proc
                .child
                .try_wait()
                .expect("cannot wait for the demo")
            {
                // Let the reader threads take the last lines.
                std::thread::sleep(Duration::from_millis(100));
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "demo did not exit within {limit:?}; stdout: {}; stderr: {}",
                self.stdout(),
                self.stderr()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The last minute of the dashboard's data (one point a second).
    pub async fn dashboard_data(&self) -> serde_json::Value {
        let response = get_async(self.api, "/dashboard/data?range=60", &[]).await;
        assert_eq!(response.status, StatusCode::OK, "GET /dashboard/data");
        serde_json::from_str(&response.body).expect("/dashboard/data is JSON")
    }

    pub async fn metrics(&self) -> Exposition {
        let response = get_async(self.api, "/metrics", &[]).await;
        assert_eq!(response.status, StatusCode::OK, "GET /metrics");
        Exposition::parse(&response.body)
    }

    /// Prometheus's address, when the demo started one.
    pub fn prometheus_addr(&self) -> Option<SocketAddr> {
        self.prometheus.as_ref().map(|(addr, _)| *addr)
    }

    /// `/dashboard/data?QUERY` as JSON.
    pub async fn data(&self, query: &str) -> serde_json::Value {
        let response = get_async(self.api, &format!("/dashboard/data?{query}"), &[]).await;
        assert_eq!(response.status, StatusCode::OK, "GET /dashboard/data");
        serde_json::from_str(&response.body).expect("/dashboard/data is JSON")
    }

    /// Waits (bounded by `limit`) until the page has a request rate for every route of the
    /// mix over a minute's range, and returns that data.
    pub async fn data_with_every_route(&self, limit: Duration) -> serde_json::Value {
        let deadline = Instant::now() + limit;
        loop {
            let data = self.data("range=60").await;
            let missing: Vec<&str> = MIX_ROUTES
                .into_iter()
                .filter(|route| last_value(&data["requests_per_s"], route).is_none())
                .collect();
            if missing.is_empty() {
                return data;
            }
            assert!(
                Instant::now() < deadline,
                "no rate for {missing:?} within {limit:?}; stderr: {}",
                self.stderr()
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
}

impl Drop for Demo {
    /// SIGTERM first, so that the demo stops its Prometheus; the guard kills what is left.
    fn drop(&mut self) {
        if self.proc.exited().is_none() {
            if let Ok(pid) = libc::pid_t::try_from(self.proc.pid()) {
                // SAFETY: kill(2) on our own, not yet reaped, child.
                unsafe { libc::kill(pid, libc::SIGTERM) };
            }
            self.proc.wait_within(Duration::from_secs(15));
        }
    }
}

fn url_addr(url: &str) -> SocketAddr {
    url.strip_prefix("http://")
        .and_then(|rest| rest.split(['/', ' ']).next())
        .and_then(|addr| addr.parse().ok())
        .unwrap_or_else(|| panic!("no address in {url:?}"))
}

/// The last value of the line named `name` in a list of `{name, values}` lines.
pub fn last_value(lines: &serde_json::Value, name: &str) -> Option<f64> {
    lines.as_array()?.iter().find(|line| line["name"] == name)?["values"]
        .as_array()?
        .last()?
        .as_f64()
}

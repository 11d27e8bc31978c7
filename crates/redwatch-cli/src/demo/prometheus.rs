//! Prometheus for `redwatch demo`: found on PATH or given with `--prometheus`, configured with the
//! generator's own `prometheus.yml` and rules, run from a temporary directory and stopped on exit
//! (the directory with it).

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use http_body_util::Empty;
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tempfile::TempDir;

use redwatch::Naming;

use crate::generate::{GenerateFlags, List, Optional, PromDuration, Settings, generate_preset};

/// How long Prometheus may take to report ready.
const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// How long Prometheus may take to exit after SIGTERM before it is killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);

/// What `--prometheus` asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PrometheusChoice {
    /// `prometheus` from PATH when there is one.
    Auto,
    /// `--prometheus none`.
    Off,
    /// An explicit binary (a bare name is looked up on PATH).
    Binary(String),
}

impl PrometheusChoice {
    /// Interprets the flag's value.
    pub fn from_flag(flag: Option<&str>) -> Self {
        match flag.map(str::trim) {
            None | Some("") => Self::Auto,
            Some("none") => Self::Off,
            Some(path) => Self::Binary(path.to_owned()),
        }
    }

    /// The binary to run (`Ok(Ok)`), why the demo runs without Prometheus (`Ok(Err)`), or an
    /// error for a `--prometheus` that is not a working Prometheus.
    pub async fn locate(&self) -> anyhow::Result<Result<PathBuf, String>> {
        let binary = match self {
            Self::Off => return Ok(Err("off (--prometheus none)".to_owned())),
            Self::Auto => match find_on_path("prometheus") {
                Some(binary) => binary,
                None => {
                    return Ok(Err(
                        "no `prometheus` on PATH (install it, or give --prometheus PATH)"
                            .to_owned(),
                    ));
                }
            },
            Self::Binary(name) if !name.contains('/') => find_on_path(name)
                .with_context(|| format!("--prometheus {name:?}: not found on PATH"))?,
            Self::Binary(path) => {
                let path = PathBuf::from(path);
                let metadata = std::fs::metadata(&path)
                    .with_context(|| format!("--prometheus {}", path.display()))?;
                if !metadata.is_file() || !is_executable(&metadata) {
                    bail!("--prometheus {}: not an executable file", path.display());
                }
                path
            }
        };
        check_version(&binary).await?;
        Ok(Ok(binary))
    }
}

fn find_on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|candidate| {
            std::fs::metadata(candidate).is_ok_and(|m| m.is_file() && is_executable(&m))
        })
}

#[cfg(unix)]
fn is_executable(metadata: &std::fs::Metadata) -> bool {
    use std::os::unix::fs::PermissionsExt;
    metadata.permissions().mode() & 0o111 != 0
}

#[cfg(not(unix))]
fn is_executable(_: &std::fs::Metadata) -> bool {
    true
}

/// Refuses a binary that is not Prometheus, with the reason, before anything starts.
async fn check_version(binary: &Path) -> anyhow::Result<()> {
    let output = tokio::time::timeout(
        Duration::from_secs(10),
        tokio::process::Command::new(binary)
            .arg("--version")
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .output(),
    )
    .await
    .with_context(|| {
        format!(
            "--prometheus {}: `--version` did not answer",
            binary.display()
        )
    })?
    .with_context(|| format!("--prometheus {}: cannot run it", binary.display()))?;
    let text = String::from_utf8_lossy(&output.stdout) + String::from_utf8_lossy(&output.stderr);
    if !output.status.success() || !text.starts_with("prometheus, version") {
        let first = text.lines().next().unwrap_or("").trim();
        bail!(
            "--prometheus {}: not a Prometheus server (`--version` printed {first:?})",
            binary.display()
        );
    }
    Ok(())
}

/// A running Prometheus; dropping it kills the process and removes its directory.
pub struct Prometheus {
    child: Child,
    addr: SocketAddr,
    /// Config, rules, TSDB and log; declared last so it is removed after the process is gone.
    dir: TempDir,
}

impl Prometheus {
    /// Writes the configuration and rules generated with `rules` (see [`rule_settings`]), starts
    /// `binary` listening on `listen` (or a free port on its IP when that is taken) and waits
    /// until it is ready.
    pub async fn start(
        binary: &Path,
        rules: &Settings,
        listen: SocketAddr,
    ) -> anyhow::Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix("redwatch-demo-")
            .tempdir()
            .context("cannot create a temporary directory for Prometheus")?;
        let config = write_config(dir.path(), rules)?;
        let addr = free_addr(listen)?;
        let log_path = dir.path().join("prometheus.log");
        let log = std::fs::File::create(&log_path)
            .with_context(|| format!("cannot create {}", log_path.display()))?;
        let mut command = Command::new(binary);
        command
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address={addr}"))
            // Keep the API's exemplars (trace ids on latency buckets) for Grafana to link.
            .arg("--enable-feature=exemplar-storage")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log);
        detach_from_terminal_signals(&mut command);
        let child = command
            .spawn()
            .with_context(|| format!("cannot start {}", binary.display()))?;
        // From here on, Drop stops the process whatever happens.
        let mut prometheus = Self { child, addr, dir };
        prometheus.wait_ready(&log_path).await?;
        Ok(prometheus)
    }

    /// The address Prometheus listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The temporary directory with its config, rules and data.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    async fn wait_ready(&mut self, log_path: &Path) -> anyhow::Result<()> {
        let client = Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
        let url: hyper::Uri = format!("http://{}/-/ready", self.addr)
            .parse()
            .context("Prometheus readiness URL")?;
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                bail!(
                    "Prometheus exited during startup ({status}): {}",
                    last_log_line(log_path)
                );
            }
            let probe = tokio::time::timeout(Duration::from_secs(1), client.get(url.clone()));
            if let Ok(Ok(response)) = probe.await
                && response.status().is_success()
            {
                return Ok(());
            }
            if Instant::now() >= deadline {
                bail!(
                    "Prometheus was not ready within {} s: {}",
                    READY_TIMEOUT.as_secs(),
                    last_log_line(log_path)
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Asks Prometheus to shut down (SIGTERM) and waits a bounded time; says how it ended.
    /// Killed if still running then; its directory is removed either way.
    pub async fn stop(mut self) -> String {
        #[cfg(unix)]
        if let Ok(pid) = libc::pid_t::try_from(self.child.id()) {
            // SAFETY: kill(2) with a pid of a child we have not yet reaped (it cannot be reused).
            unsafe {
                libc::kill(pid, libc::SIGTERM);
            }
        }
        let deadline = Instant::now() + STOP_TIMEOUT;
        while Instant::now() < deadline {
            match self.child.try_wait() {
                Ok(Some(status)) => return format!("stopped ({status})"),
                Ok(None) => tokio::time::sleep(Duration::from_millis(50)).await,
                Err(err) => return format!("could not be waited for ({err}); killed"),
            }
        }
        format!("did not stop within {} s; killed", STOP_TIMEOUT.as_secs())
        // Drop kills it if it is still running and removes the directory.
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

/// Runs Prometheus in its own process group, so that Ctrl-C in the terminal reaches only the
/// demo, which then stops Prometheus in order; on Linux it is also killed if the demo dies
/// without cleaning up (SIGKILL).
fn detach_from_terminal_signals(command: &mut Command) {
    #[cfg(unix)]
    {
        use std::os::unix::process::CommandExt;
        command.process_group(0);
    }
    #[cfg(target_os = "linux")]
    {
        use std::os::unix::process::CommandExt;
        let parent = std::process::id();
        // SAFETY: `die_with_parent` makes only async-signal-safe calls (prctl, getppid) and
        // does not allocate (a unit test checks), as required between fork and exec in a
        // multithreaded process. The death signal is tied to the thread that forks: the demo
        // starts Prometheus from the main thread, which lives as long as the process.
        unsafe {
            command.pre_exec(move || die_with_parent(parent));
        }
    }
}

/// Asks the kernel to SIGTERM this process when its parent dies; fails if `parent` is already
/// gone. Runs between fork and exec: no allocation (an error built from an errno does not
/// allocate).
#[cfg(target_os = "linux")]
fn die_with_parent(parent: u32) -> std::io::Result<()> {
    // SAFETY: prctl(PR_SET_PDEATHSIG) takes plain integers and touches no memory of ours.
    if unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // The demo died before prctl took effect: nobody would stop us.
    // SAFETY: getppid(2) has no arguments and cannot fail.
    if u32::try_from(unsafe { libc::getppid() }).ok() != Some(parent) {
        return Err(std::io::Error::from_raw_os_error(libc::ESRCH));
    }
    Ok(())
}

/// `listen`, or a free port on the same IP when `listen`'s port is taken.
fn free_addr(listen: SocketAddr) -> anyhow::Result<SocketAddr> {
    // Probing and releasing leaves a short window for someone else to take the port; then
    // Prometheus fails to start and says so.
    let probe = TcpListener::bind(listen)
        .or_else(|_| TcpListener::bind(SocketAddr::new(listen.ip(), 0)))
        .with_context(|| format!("no free port for Prometheus on {}", listen.ip()))?;
    probe
        .local_addr()
        .context("cannot read the probed Prometheus address")
}

/// The generator's settings for the demo: its defaults (not the environment, which configures
/// the demo's own flags), the demo's targets, no Alertmanager, and `scrape_interval` (short, so
/// the graphs fill quickly) for scrapes and rule evaluation.
pub fn rule_settings(
    api: SocketAddr,
    load_metrics: SocketAddr,
    scrape_interval: PromDuration,
) -> anyhow::Result<Settings> {
    let mut flags = GenerateFlags::defaults()
        .map_err(|err| anyhow::anyhow!("{}", crate::clap_error_line(&err)))
        .context("Prometheus configuration")?;
    flags.naming = Some(Naming::Otel);
    flags.scrape_interval = scrape_interval;
    flags.evaluation_interval = scrape_interval;
    flags.api_targets = List(vec![api.to_string()]);
    flags.load_targets = List(vec![load_metrics.to_string()]);
    flags.extra_targets = List(Vec::new());
    flags.alertmanager = Optional(None);
    flags
        .settings()
        .map_err(|err| anyhow::anyhow!("Prometheus configuration: {err}"))
}

/// Writes `prometheus.yml` and the rule file exactly as `redwatch generate --naming otel` would
/// with `settings`; returns the config's path.
fn write_config(dir: &Path, settings: &Settings) -> anyhow::Result<PathBuf> {
    let mut config = None;
    for file in generate_preset(Naming::Otel, settings)? {
        // Only what Prometheus itself reads: the config and the rules (not the rule tests).
        let Ok(relative) = file.path.strip_prefix("prometheus") else {
            continue;
        };
        if relative.starts_with("tests") {
            continue;
        }
        let path = dir.join(relative);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("cannot create {}", parent.display()))?;
        }
        std::fs::write(&path, &file.content)
            .with_context(|| format!("cannot write {}", path.display()))?;
        if relative == Path::new("prometheus.yml") {
            config = Some(path);
        }
    }
    config.context("the generator wrote no prometheus.yml")
}

/// The last non-empty line Prometheus logged, shortened, for error messages.
fn last_log_line(log_path: &Path) -> String {
    let text = std::fs::read_to_string(log_path).unwrap_or_default();
    let line = text
        .lines()
        .rev()
        .find(|line| !line.trim().is_empty())
        .unwrap_or("(nothing logged)");
    line.chars().take(300).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Counts the allocations of the current thread, so `die_with_parent` can be shown not to
    /// allocate.
    #[cfg(target_os = "linux")]
    mod counting {
        use std::alloc::{GlobalAlloc, Layout, System};
        use std::cell::Cell;

        pub struct Counting;

        thread_local! {
            pub static ALLOCATIONS: Cell<usize> = const { Cell::new(0) };
        }

        // SAFETY: forwards to the system allocator; only counts.
        unsafe impl GlobalAlloc for Counting {
            unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
                let _ = ALLOCATIONS.try_with(|count| count.set(count.get() + 1));
                // SAFETY: the caller's contract is passed on unchanged.
                unsafe { System.alloc(layout) }
            }
            unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
                // SAFETY: the caller's contract is passed on unchanged.
                unsafe { System.dealloc(ptr, layout) }
            }
        }

        #[global_allocator]
        static GLOBAL: Counting = Counting;
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn die_with_parent_does_not_allocate() {
        // Run on a thread of its own: the death signal would follow that thread, which is
        // harmless for the test process. Parent 1 is not ours, so the error path runs too.
        std::thread::spawn(|| {
            let before = counting::ALLOCATIONS.with(|count| count.get());
            let result = die_with_parent(1);
            let after = counting::ALLOCATIONS.with(|count| count.get());
            // SAFETY: prctl with plain integers: this test process asks for no death signal again.
            unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, 0) };
            assert!(result.is_err(), "parent 1 accepted");
            assert_eq!(after - before, 0, "allocated between fork and exec");
        })
        .join()
        .expect("test thread");
    }

    #[test]
    fn flag_values() {
        assert_eq!(PrometheusChoice::from_flag(None), PrometheusChoice::Auto);
        assert_eq!(
            PrometheusChoice::from_flag(Some("none")),
            PrometheusChoice::Off
        );
        assert_eq!(
            PrometheusChoice::from_flag(Some("/opt/prometheus")),
            PrometheusChoice::Binary("/opt/prometheus".to_owned())
        );
    }

    #[test]
    fn the_config_scrapes_the_demo_and_loads_the_rules() {
        let dir = tempfile::tempdir().unwrap();
        let api: SocketAddr = "127.0.0.1:5123".parse().unwrap();
        let load: SocketAddr = "127.0.0.1:5124".parse().unwrap();
        let config = write_config(
            dir.path(),
            &rule_settings(api, load, PromDuration::from_millis(5_000)).unwrap(),
        )
        .unwrap();
        let text = std::fs::read_to_string(&config).unwrap();
        let yaml: serde_yaml_ng::Value = serde_yaml_ng::from_str(&text).unwrap();
        let jobs = yaml["scrape_configs"].as_sequence().unwrap();
        let targets: Vec<(&str, &str)> = jobs
            .iter()
            .map(|job| {
                (
                    job["job_name"].as_str().unwrap(),
                    job["static_configs"][0]["targets"][0].as_str().unwrap(),
                )
            })
            .collect();
        assert_eq!(
            targets,
            [
                ("redwatch", "127.0.0.1:5123"),
                ("redwatch-load", "127.0.0.1:5124")
            ]
        );
        assert_eq!(yaml["global"]["scrape_interval"].as_str(), Some("5s"));
        assert!(
            yaml.get("alerting").is_none(),
            "no Alertmanager in the demo"
        );
        assert!(dir.path().join("rules/redwatch.rules.yml").is_file());
        assert!(!dir.path().join("tests").exists());
    }

    #[test]
    fn a_taken_port_is_replaced_by_a_free_one() {
        let taken = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = taken.local_addr().unwrap();
        let chosen = free_addr(addr).unwrap();
        assert_eq!(chosen.ip(), addr.ip());
        assert_ne!(chosen.port(), addr.port());
    }
}

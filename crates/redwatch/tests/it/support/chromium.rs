//! Headless Chromium for the dashboard's page tests, shared by the library's and the CLI's test
//! binaries (the CLI includes this file with `#[path]`): one runner, one set of flags, one check
//! of the page's console.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long Chromium may take to load, run and dump (or photograph) a page.
const BROWSER_TIMEOUT: Duration = Duration::from_secs(90);

/// Kills the browser when dropped, also when the test panics.
struct Browser(Child);

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Runs headless Chromium on `url` with a fresh profile and `output` (`--dump-dom` or
/// `--screenshot=PATH`), letting the page run for `budget_ms` of virtual time; returns stdout.
/// Fails on any message in the page's console: Chromium logs each one (error, warning or log)
/// as an `INFO:CONSOLE` line on stderr, and the page itself writes none.
pub fn headless(binary: &Path, url: &str, output: &str, budget_ms: u32) -> String {
    let profile = tempfile::tempdir().expect("temporary profile");
    let out_path = profile.path().join("stdout");
    let log_path = profile.path().join("stderr");
    let out = std::fs::File::create(&out_path).expect("chromium's stdout file");
    let log = std::fs::File::create(&log_path).expect("chromium's stderr file");
    let child = Command::new(binary)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-dev-shm-usage",
            "--no-first-run",
            "--hide-scrollbars",
            "--window-size=1400,1500",
            "--enable-logging=stderr",
            "--v=0",
            output,
        ])
        .arg(format!("--virtual-time-budget={budget_ms}"))
        .arg(format!(
            "--user-data-dir={}",
            profile.path().join("profile").display()
        ))
        .arg(url)
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(log)
        .spawn()
        .expect("chromium starts");
    let mut browser = Browser(child);
    let deadline = Instant::now() + BROWSER_TIMEOUT;
    loop {
        match browser.0.try_wait().expect("wait for chromium") {
            Some(status) => {
                assert!(status.success(), "chromium exited with {status}");
                break;
            }
            None => {
                assert!(
                    Instant::now() < deadline,
                    "chromium took over {BROWSER_TIMEOUT:?}"
                );
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }
    let log = std::fs::read_to_string(log_path).expect("chromium's log");
    let console: Vec<&str> = log
        .lines()
        .filter(|line| line.contains(":CONSOLE"))
        .collect();
    assert!(console.is_empty(), "the page's console: {console:#?}");
    std::fs::read_to_string(out_path).expect("chromium's output")
}

/// The DOM of `url` once the page has fetched and drawn its data (four seconds of virtual time).
pub fn dump_dom(binary: &Path, url: &str) -> String {
    headless(binary, url, "--dump-dom", 4000)
}

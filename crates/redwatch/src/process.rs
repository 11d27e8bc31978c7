//! Process metrics read from `/proc` at scrape time (Linux only, with the `process` feature;
//! otherwise they are omitted).

use crate::collect::ProcessStats;

/// Reads the current process's metrics; `None` where `/proc` is unavailable.
#[cfg(all(target_os = "linux", feature = "process"))]
pub(crate) fn read() -> Option<ProcessStats> {
    use procfs::process::{LimitValue, Process};

    let process = Process::myself().ok()?;
    let stat = process.stat().ok()?;
    let ticks = procfs::ticks_per_second() as f64;
    let boot_time = procfs::boot_time_secs().ok()? as f64;
    let max_fds = process
        .limits()
        .ok()
        .and_then(|limits| match limits.max_open_files.soft_limit {
            LimitValue::Value(value) => Some(value),
            LimitValue::Unlimited => None,
        });
    Some(ProcessStats {
        cpu_seconds: (stat.utime + stat.stime) as f64 / ticks,
        resident_memory_bytes: stat.rss * procfs::page_size(),
        virtual_memory_bytes: stat.vsize,
        open_fds: process.fd_count().ok()? as u64,
        max_fds,
        start_time_seconds: boot_time + stat.starttime as f64 / ticks,
        threads: u64::try_from(stat.num_threads).unwrap_or(0),
    })
}

/// Without `/proc` (or the `process` feature), no process metrics.
#[cfg(not(all(target_os = "linux", feature = "process")))]
pub(crate) fn read() -> Option<ProcessStats> {
    None
}

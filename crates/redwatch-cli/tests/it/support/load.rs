//! `redwatch load` runs and the server they are aimed at. Everything binds 127.0.0.1 only.

use std::time::Duration;

use super::process::{Finished, Proc, Server, run_to_exit, spawn};

/// `redwatch serve --latency-scale 0 --listen 127.0.0.1:0`, logging warnings only: a target that
/// answers at once.
pub fn demo_server() -> Server {
    Server::start_with_env(
        &["serve", "--latency-scale", "0", "--listen", "127.0.0.1:0"],
        &[("REDWATCH_LOG_LEVEL", "warn")],
    )
}

/// Starts `redwatch load ARGS` with piped output.
pub fn spawn_load(args: &[&str]) -> Proc {
    spawn(&[&["load"], args].concat(), &[])
}

/// Runs `redwatch load ARGS` to completion; panics (after killing it) if it exceeds `limit`.
pub fn run_load(args: &[&str], limit: Duration) -> Finished {
    run_to_exit(&[&["load"], args].concat(), &[], limit)
}

/// Weights of the default mix, by path.
pub const DEFAULT_WEIGHTS: [(&str, u64); 5] = [
    ("/ep_one", 4),
    ("/ep_two", 3),
    ("/ep_three", 2),
    ("/ep_four", 1),
    ("/error", 1),
];

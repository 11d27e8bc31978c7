//! The CLI's integration tests, in one binary so that the crates and their dependencies (tokio,
//! hyper, axum) are linked once. Each module holds the tests of one former test file; `support`
//! holds what they share, one module per concern (child processes, HTTP, the exposition, external
//! tools, generated files, load runs, the live stack).
//!
//! # Parallelism
//!
//! The tests run as threads of one process, all at once (up to `--test-threads`). Each former
//! test binary used to run alone, so a heavy test never shared this two-core machine with
//! another binary's tests. To keep that property:
//!
//! - a **heavy** test takes `let _heavy = support::exclusive();` first: the live stacks
//!   (`alerts_live`, `generate_live`), the `demo` tests, the long load runs (`load_accuracy`,
//!   `load_pause`) and promtool over simulated days (`generate_promtool`). No other heavy or
//!   timing-sensitive test runs while it does;
//! - a **timing-sensitive** test takes `let _timing = support::timing();` first: tests that
//!   measure rates, latencies or deadlines (`load_cli`, `serve`, `bad_config`). They run alongside
//!   each other, as they did within their own binaries, but never beside a heavy test;
//! - everything else (checks of generated files, settings, help texts) runs freely beside both.
//!
//! Both guards are one `RwLock<()>` that tolerates poisoning, so one failing test does not fail
//! the others. Several demo and live tests also look for leftover processes by name, which only
//! works when no other test starts the same programs meanwhile: one more reason for `exclusive`.

mod alerts_live;
mod bad_config;
mod demo;
mod generate_configured;
mod generate_files;
mod generate_live;
mod generate_promtool;
mod load_accuracy;
mod load_cli;
mod load_pause;
mod serve;
mod support;

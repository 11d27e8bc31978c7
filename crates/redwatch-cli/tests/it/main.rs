//! The CLI's integration tests, in one binary so that the crates and their dependencies (tokio,
//! hyper, axum) are linked once. Each module holds the tests of one former test file; `support`
//! holds what they share, one module per concern (child processes, HTTP, the exposition, external
//! tools, generated files, load runs, the live stack).
//!
//! # Parallelism
//!
//! The tests run as threads of one process, two at a time on this two-core machine (libtest's
//! default, one per core). Each former test binary used to run alone, so a heavy or
//! timing-sensitive test never shared the machine with another binary's tests. `support` keeps
//! them apart with one guard, taken first thing by every such test:
//!
//! - `let _heavy = support::exclusive();` — alone: the live alerting stack (`alerts_live`, four
//!   minutes of real-time alert windows) and the long load runs that measure rates and
//!   coordinated omission (`load_accuracy`, `load_pause`);
//! - `let _group = support::shared(Group::…);` — beside the tests of the same group only:
//!   `Patient`, heavy tests whose checks have generous bounds and measure no time (`demo`,
//!   `generate_live`, `generate_promtool`, `remote_write_live`: they slow each other down, but cannot fail each other;
//!   the demo's checks for leftover processes look for its own children and temporary directory
//!   only, not for any Prometheus), and `Timing`, light tests that measure rates, latencies or
//!   deadlines (`load_cli`, `serve`, `bad_config`), as they did within their former binaries;
//! - everything else (generated files, settings) takes no guard and runs beside anything.
//!
//! The guard is a mutex and a condition variable; dropping it (also while a test panics) lets the
//! next group in, so one failing test neither fails nor blocks the others. Tests of a module are
//! adjacent in libtest's order, so a group's tests mostly meet each other rather than wait.

mod alerts_live;
mod bad_config;
mod dashboard_truth_live;
mod demo;
mod demo_agrees_with_prometheus;
mod demo_dashboard;
mod exemplars_live;
mod generate_configured;
mod generate_files;
mod generate_grafana_types;
mod generate_live;
mod generate_node_live;
mod generate_promtool;
mod k8s_without_operator;
mod load_accuracy;
mod load_cli;
mod load_compare;
mod load_merge;
mod load_pause;
mod load_scenario;
mod load_tls;
mod native_histograms_live;
mod remote_write_live;
mod serve;
mod support;

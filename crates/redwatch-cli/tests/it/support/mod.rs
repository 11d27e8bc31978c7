//! What the CLI's tests share, one module per concern:
//!
//! - [`process`]: the binary under test with a clean environment, the one child-process guard,
//!   `redwatch serve` started on an ephemeral port, commands run to their exit with a limit;
//! - [`http`]: the one HTTP client (blocking, with an async wrapper for the async tests);
//! - [`demo_run`]: `redwatch demo` running, its startup block read, stopped on drop;
//! - [`exposition`]: the one reader of exposition text (openmetrics-parser, shared with the
//!   library's tests);
//! - [`tools`]: the one check for an external tool (a failure in CI, a notice elsewhere);
//! - [`generate`]: `redwatch generate` runs and the files it writes;
//! - [`load`]: `redwatch load` runs;
//! - [`live_stack`]: a real Prometheus and Alertmanager with restartable instances and a
//!   webhook receiver;
//! - [`remote_write`]: edge Prometheus servers remote-writing to a central one with the rules;
//!
//! and here, the serialisation of the heavy and timing-sensitive tests (see `main.rs`).

/// Headless Chromium, shared with the library's tests.
#[path = "../../../../redwatch/tests/it/support/chromium.rs"]
pub mod chromium;
pub mod demo_run;
/// The exposition reader, shared with the library's tests.
#[path = "../../../../redwatch/tests/it/support/exposition.rs"]
pub mod exposition;
pub mod generate;
pub mod http;
pub mod live_stack;
pub mod load;
pub mod process;
pub mod remote_write;
pub mod tls;
pub mod tools;

use std::sync::{Condvar, Mutex, PoisonError};

/// The groups of tests that may run beside each other, but never beside another group's tests
/// or an [`exclusive`] test.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Group {
    /// Heavy tests whose checks do not depend on timing, only on generous bounds: the demo end to
    /// end (`demo`), the generated set under a real Prometheus (`generate_live`), promtool over
    /// days of simulated time (`generate_promtool`). They slow each other down, but do not make
    /// each other fail; a timing-sensitive test beside them could.
    Patient,
    /// Light tests that measure time: rates, latencies, deadlines (`load_cli`, `serve`,
    /// `bad_config`).
    Timing,
}

/// Who holds the machine: nobody, one exclusive test, or tests of one group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Holder {
    Nobody,
    Exclusive,
    Group(Group, usize),
}

static HOLDER: Mutex<Holder> = Mutex::new(Holder::Nobody);
static RELEASED: Condvar = Condvar::new();

/// Holds the machine for one test (or one group) until dropped; a test that panics while
/// holding it releases it too, so one failure does not fail or block the others.
#[must_use = "the machine is released when the guard is dropped"]
pub struct MachineGuard(());

impl Drop for MachineGuard {
    fn drop(&mut self) {
        let mut holder = HOLDER.lock().unwrap_or_else(PoisonError::into_inner);
        *holder = match *holder {
            Holder::Group(group, n) if n > 1 => Holder::Group(group, n - 1),
            _ => Holder::Nobody,
        };
        RELEASED.notify_all();
    }
}

/// Waits until `enter` accepts the current holder, and records the new one.
fn acquire(enter: impl Fn(Holder) -> Option<Holder>) -> MachineGuard {
    let mut holder = HOLDER.lock().unwrap_or_else(PoisonError::into_inner);
    loop {
        if let Some(next) = enter(*holder) {
            *holder = next;
            return MachineGuard(());
        }
        holder = RELEASED
            .wait(holder)
            .unwrap_or_else(PoisonError::into_inner);
    }
}

/// The whole machine for one heavy test (the live alerting stack, the long load runs): no other
/// guarded test runs meanwhile.
pub fn exclusive() -> MachineGuard {
    acquire(|holder| (holder == Holder::Nobody).then_some(Holder::Exclusive))
}

/// The machine for `group`: its tests run beside each other, never beside another group's or an
/// exclusive test.
pub fn shared(group: Group) -> MachineGuard {
    acquire(|holder| match holder {
        Holder::Nobody => Some(Holder::Group(group, 1)),
        Holder::Group(held, n) if held == group => Some(Holder::Group(group, n + 1)),
        _ => None,
    })
}

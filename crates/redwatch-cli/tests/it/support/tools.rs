//! External tools the tests run (promtool, prometheus, amtool, validators): found on PATH, or a
//! notice and a skip, except in CI, where a missing tool fails the test.

use std::path::PathBuf;

/// Whether tests run in CI (`CI` set and non-empty), where a missing external tool is a failure,
/// not a skip.
pub fn in_ci() -> bool {
    std::env::var_os("CI").is_some_and(|value| !value.is_empty())
}

/// The path of `name` on PATH, if any (no notice, no failure: for optional extras).
pub fn find_tool(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
}

/// Finds an external tool on PATH; `package` says where it comes from (e.g. `Debian package
/// prometheus`). Without it: a failure in CI, a notice and `None` elsewhere (the caller then
/// returns early).
pub fn require_tool(name: &str, package: &str) -> Option<PathBuf> {
    let found = find_tool(name);
    if found.is_none() {
        assert!(
            !in_ci(),
            "{name} is required in CI ({package}); ./scripts/test installs it"
        );
        eprintln!("notice: {name} not found ({package}); skipping this check");
    }
    found
}

//! The `redwatch` binary: everything lives in the `redwatch_cli` library.

fn main() -> std::process::ExitCode {
    redwatch_cli::main()
}

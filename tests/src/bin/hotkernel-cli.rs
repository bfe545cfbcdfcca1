//! The `hotkernel` command, built in this package so the integration tests can run the
//! real CLI as a separate process (`CARGO_BIN_EXE_hotkernel-cli`): the coldpatch tests
//! crash it in the middle of an install.

fn main() -> std::process::ExitCode {
    hotkernel::cli::main()
}

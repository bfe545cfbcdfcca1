//! The `hotkernel` command, built in this package so the integration tests can run the
//! real CLI as a separate process (`CARGO_BIN_EXE_hotkernel-cli`): the coldpatch tests
//! crash it in the middle of an install. Its swaps default to a 1 s health window
//! (as the tests' `Guest` swaps): the test VMs share 2 host cores.

fn main() -> std::process::ExitCode {
    hotkernel::update::set_default_health_window(1000);
    hotkernel::cli::main()
}

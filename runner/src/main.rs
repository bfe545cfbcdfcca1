//! The `hotkernel` command; everything is in the library's `cli` module.

fn main() -> std::process::ExitCode {
    hotkernel::cli::main()
}

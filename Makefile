# hotkernel — `make run` boots the kernel in QEMU, `make test` runs every test.
# Both first install what is missing (scripts/setup.sh: the pinned Rust toolchain, QEMU).

.DEFAULT_GOAL := run
.PHONY: run test lint setup build clean

# Boot the default kernel on 4 CPUs; Ctrl-C stops it.
run: setup
	cargo run --release -- run --cpus 4

# The lints, the host unit tests and the integration tests (which boot QEMU).
test: setup lint
	cargo test

# Formatting, and clippy on the host crates and on the kernel (for its own target,
# with the kernel profile the runner builds it with), warnings denied.
lint: setup
	cargo fmt --all -- --check
	cargo clippy --workspace --exclude kernel --all-targets -- -D warnings
	cargo clippy -p kernel --target x86_64-unknown-none --profile kernel \
		--target-dir target/clippy-kernel -- -D warnings

# Install the pinned toolchain and QEMU if they are missing.
setup:
	@scripts/setup.sh

# Build the default kernel and its boot image.
build: setup
	cargo run --release -- build

clean:
	cargo clean

# hotkernel — `make run` boots the kernel in QEMU, `make test` runs every test.
# Both first install what is missing (scripts/setup.sh: the pinned Rust toolchain, QEMU).

.DEFAULT_GOAL := run
.PHONY: run test setup build clean

# Boot the default kernel on 4 CPUs; Ctrl-C stops it.
run: setup
	cargo run --release -- run --cpus 4

# Host unit tests and the integration tests (which boot QEMU).
test: setup
	cargo test

# Install the pinned toolchain and QEMU if they are missing.
setup:
	@scripts/setup.sh

# Build the default kernel and its boot image.
build: setup
	cargo run --release -- build

clean:
	cargo clean

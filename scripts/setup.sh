#!/usr/bin/env bash
# Installs what building and booting hotkernel needs, when it is missing: the Rust
# toolchain pinned by rust-toolchain.toml (with rust-src, llvm-tools and the
# x86_64-unknown-none target), QEMU and GDB (`hotkernel gdb`). Quick and silent when
# everything is there.
# Machines here set RUSTUP_AUTO_INSTALL=0, so nothing else installs the toolchain.
set -euo pipefail
cd "$(dirname "$0")/.."

as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

if ! command -v qemu-system-x86_64 >/dev/null 2>&1; then
    echo "setup: installing QEMU (Debian package qemu-system-x86)"
    as_root apt-get update -q
    as_root env DEBIAN_FRONTEND=noninteractive \
        apt-get install -y -q --no-install-recommends qemu-system-x86
fi

if ! command -v gdb >/dev/null 2>&1; then
    echo "setup: installing GDB (Debian package gdb)"
    as_root apt-get update -q
    as_root env DEBIAN_FRONTEND=noninteractive \
        apt-get install -y -q --no-install-recommends gdb
fi

if ! command -v rustup >/dev/null 2>&1; then
    echo "setup: rustup not found: install rustup, then run make again" >&2
    exit 2
fi

channel=$(sed -n 's/^channel *= *"\(.*\)".*/\1/p' rust-toolchain.toml)
if [ -z "$channel" ]; then
    echo "setup: rust-toolchain.toml has no channel" >&2
    exit 2
fi

# Prints what the pinned toolchain lacks, one item a line.
missing() {
    if ! rustup toolchain list | grep -q "^$channel-"; then
        echo toolchain
        return
    fi
    local installed
    installed=$(rustup component list --installed --toolchain "$channel")
    grep -qx 'rust-src' <<<"$installed" || echo rust-src
    grep -q '^llvm-tools-' <<<"$installed" || echo llvm-tools-preview
    grep -qx 'rust-std-x86_64-unknown-none' <<<"$installed" || echo target
}

if [ -n "$(missing)" ]; then
    echo "setup: installing Rust $channel as pinned by rust-toolchain.toml"
    # Without arguments rustup installs the toolchain the file names, with its
    # components and targets; an existing install may still lack some, hence the adds.
    rustup toolchain install
    rustup component add rust-src llvm-tools-preview --toolchain "$channel"
    rustup target add x86_64-unknown-none --toolchain "$channel"
    still=$(missing | tr "\n" " ")
    if [ -n "$still" ]; then
        echo "setup: still missing from $channel: $still" >&2
        exit 2
    fi
fi

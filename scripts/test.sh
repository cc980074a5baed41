#!/usr/bin/env bash
# Runs every test of mcr: unit tests and end-to-end tests over network namespaces.
# Needs root (namespaces, AF_PACKET). Installs the Debian packages it needs when missing.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" -ne 0 ]; then
    echo "scripts/test.sh: run as root (the end-to-end tests create network namespaces)" >&2
    exit 1
fi

need=()
command -v ip >/dev/null || need+=(iproute2)
command -v sysctl >/dev/null || need+=(procps)
command -v cc >/dev/null || need+=(gcc)
command -v tcpdump >/dev/null || need+=(tcpdump)
command -v nft >/dev/null || need+=(nftables)
command -v setpriv >/dev/null || need+=(util-linux)
command -v curl >/dev/null || need+=(curl)
command -v ethtool >/dev/null || need+=(ethtool)
command -v python3 >/dev/null || need+=(python3)
command -v keepalived >/dev/null || need+=(keepalived)
if [ ${#need[@]} -gt 0 ]; then
    echo "installing: ${need[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq "${need[@]}" >/dev/null
fi
if ! command -v cargo >/dev/null; then
    echo "scripts/test.sh: cargo not found; install Rust (https://rustup.rs) first" >&2
    exit 1
fi

# --no-fail-fast: one failing suite must not hide the others. fault-injection compiles in
# the test-only hook that tests/faults.rs uses to make a worker fail; packages never have it.
cargo test --release --no-fail-fast --features fault-injection "$@"

#!/bin/sh
# Builds nuage's host-local (release) and the IPAM benchmark, then runs it:
# in-process ADD/CHECK/DEL in an empty /16 vs one holding 50,000 leases, and
# the host-local executable vs the reference /usr/lib/cni/host-local.
# Extra arguments go to the benchmark (--leases N --samples N --dir PATH ...).
# Results are also written to bench/out/ipam.txt. Exit status 1 if a bound fails.
set -eu
root=$(cd "$(dirname "$0")/../.." && pwd)
target=${CARGO_TARGET_DIR:-$root/target}
cd "$root"
CARGO_TARGET_DIR=$target cargo build --release -q -p nuage-ipam -p nuage-ipam-bench
mkdir -p "$root/bench/out"
rel=$target/x86_64-unknown-linux-musl/release
"$rel/ipam-bench" --ours "$rel/host-local" "$@" | tee "$root/bench/out/ipam.txt"

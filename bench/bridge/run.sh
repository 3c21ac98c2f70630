#!/bin/sh
# Builds our bridge plugin and the benchmark (release), then runs it as root:
# ours vs the reference /usr/lib/cni/bridge, each in its own throwaway host
# namespace. Extra arguments go to the benchmark (--samples N --fill N
# --parallel N --jobs N --only a,b,c,d). Exit status 1 if a target is missed.
set -eu
root=$(cd "$(dirname "$0")/../.." && pwd)
target=${CARGO_TARGET_DIR:-$root/target}
cd "$root"
CARGO_TARGET_DIR=$target cargo build --release -q -p bridge -p bench-bridge
rel=$target/x86_64-unknown-linux-musl/release
exec "$rel/bridge-bench" --ours "$rel/bridge" "$@"

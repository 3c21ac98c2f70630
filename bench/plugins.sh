#!/bin/sh
# ADD and DEL latency of nuage's macvlan, host-device and ptp against the
# reference plugins (/usr/lib/cni, Debian containernetworking-plugins), in
# the same run, with host-local IPAM (in-process for nuage, an exec for the
# reference), measured by hyperfine (each ADD after a DEL, each DEL after an
# ADD; hyperfine subtracts the shell's own start-up).
#
# Everything happens in throwaway namespaces (a "host", a "lan" behind it,
# one container per implementation) and a temporary directory, removed on
# exit: the machine's own namespace and /var/lib/cni are not touched.
#
# Usage: bench/plugins.sh [RUNS]   (default 200; root; needs hyperfine)
# Prints medians and ratios, also to bench/out/plugins.txt. Exit status 1 if
# an ADD median of ours is above 1/5 of the reference's.
set -eu
runs=${1:-200}
root=$(cd "$(dirname "$0")/.." && pwd)
target=${CARGO_TARGET_DIR:-$root/target}
ref=/usr/lib/cni
for tool in hyperfine ip; do
  command -v $tool >/dev/null || { echo "bench/plugins.sh needs $tool" >&2; exit 2; }
done
[ -x $ref/macvlan ] || { echo "the reference plugins are missing from $ref" >&2; exit 2; }

cd "$root"
CARGO_TARGET_DIR=$target cargo build --release -q -p macvlan -p host-device -p ptp
ours=$target/x86_64-unknown-linux-musl/release

tag=nuage-bench-$$
host=$tag-host
lan=$tag-lan
tmp=$(mktemp -d /tmp/$tag.XXXXXX)
cleanup() {
  for ns in $host $lan $tag-ours $tag-ref; do ip netns del $ns 2>/dev/null || true; done
  rm -rf "$tmp"
}
trap cleanup EXIT INT TERM
for ns in $host $lan $tag-ours $tag-ref; do ip netns add $ns; done
ip -n $host link set lo up
# The "physical" NICs: veth ends in the host, peers in the lan.
ip -n $host link add name phy0 type veth peer name phy0-lan netns $lan
ip -n $host link add name hd0 type veth peer name hd0-lan netns $lan
ip -n $host link add name hd1 type veth peer name hd1-lan netns $lan
for l in phy0 hd0 hd1; do ip -n $host link set $l up; ip -n $lan link set $l-lan up; done
ip -n $host addr add 10.90.0.1/24 dev phy0

# conf <file> <type> <ipam dataDir> <subnet> [extra keys]
conf() {
  printf '{"cniVersion":"1.0.0","name":"bench","type":"%s",%s"ipam":{"type":"host-local","subnet":"%s","dataDir":"%s"}}\n' \
    "$2" "${5:-}" "$4" "$3" >"$1"
}
conf $tmp/macvlan-ours.json macvlan $tmp/ipam-mv-ours 10.90.0.0/24 '"master":"phy0",'
conf $tmp/macvlan-ref.json macvlan $tmp/ipam-mv-ref 10.90.0.0/24 '"master":"phy0",'
conf $tmp/host-device-ours.json host-device $tmp/ipam-hd-ours 10.91.0.0/24 "\"device\":\"hd0\",\"dataDir\":\"$tmp/hd-records\","
conf $tmp/host-device-ref.json host-device $tmp/ipam-hd-ref 10.91.0.0/24 '"device":"hd1",'
conf $tmp/ptp-ours.json ptp $tmp/ipam-ptp-ours 10.92.0.0/24
conf $tmp/ptp-ref.json ptp $tmp/ipam-ptp-ref 10.93.0.0/24

# call <impl> <plugin> <verb>: one invocation, as a shell command line.
call() {
  bin=$ours/$2
  [ "$1" = ref ] && bin=$ref/$2
  echo "CNI_COMMAND=$3 CNI_CONTAINERID=bench-$1 CNI_NETNS=/run/netns/$tag-$1 CNI_IFNAME=eth0 CNI_PATH=$ref $bin <$tmp/$2-$1.json"
}

mkdir -p "$root/bench/out"
out=$root/bench/out/plugins.txt
: >"$out"
say() { echo "$*" | tee -a "$out"; }
median() { awk -F, -v n="$2" 'NR > 1 && $1 == n { print $4 * 1e6 }' "$1"; }

rounds=5
per=$(( (runs + rounds - 1) / rounds ))
say "== ADD and DEL, nuage (release) vs $ref, host-local IPAM: $rounds rounds of $per runs each, alternating which goes first; median of the round medians (hyperfine)"
say "$(printf '%-12s %-4s %12s %12s %8s' plugin verb nuage reference ratio)"
status=0
for p in macvlan host-device ptp; do
  for verb in ADD DEL; do
    undo=DEL
    [ $verb = DEL ] && undo=ADD
    : >$tmp/medians
    for round in $(seq 1 $rounds); do
      a=ours b=ref
      [ $((round % 2)) = 0 ] && a=ref b=ours
      # The reference host-device fails a DEL with nothing to give back.
      ip netns exec $host hyperfine -w 3 -r "$per" --style none --export-csv $tmp/run.csv \
        -p "$(call $a $p $undo) >/dev/null 2>&1 || true" -p "$(call $b $p $undo) >/dev/null 2>&1 || true" \
        -n $a "$(call $a $p $verb)" -n $b "$(call $b $p $verb)" >/dev/null 2>&1 || {
        echo "hyperfine failed for $p $verb; try by hand: ip netns exec $host sh -c '$(call ours $p $verb)'" >&2
        exit 1
      }
      echo "$(median $tmp/run.csv ours) $(median $tmp/run.csv ref)" >>$tmp/medians
    done
    o=$(cut -d' ' -f1 $tmp/medians | sort -n | sed -n "$(( (rounds + 1) / 2 ))p")
    r=$(cut -d' ' -f2 $tmp/medians | sort -n | sed -n "$(( (rounds + 1) / 2 ))p")
    ratio=$(awk -v o="$o" -v r="$r" 'BEGIN { printf "%.3f", o / r }')
    say "$(printf '%-12s %-4s %9.0f us %9.0f us %7sx' $p $verb "$o" "$r" "$ratio")"
    if [ $verb = ADD ] && ! awk -v x="$ratio" 'BEGIN { exit !(x <= 0.2) }'; then status=1; fi
    # Leave nothing allocated for the next plugin.
    ip netns exec $host sh -c "$(call ours $p DEL); $(call ref $p DEL)" >/dev/null 2>&1 || true
  done
done
if [ $status = 0 ]; then say "ADD median nuage / reference <= 0.2 for each plugin: PASS"; else say "ADD median nuage / reference <= 0.2 for each plugin: FAIL"; fi
exit $status

#!/usr/bin/env bash
# mcr end to end in one command: builds mcr, creates three network namespaces
#   gen (up0) ── (mcr-in) relay (mcr-out) ── (down0) sink
# runs `mcr run -c examples/demo.toml` in the relay namespace, sends two streams with
# `mcr gen`, receives the relayed streams with `mcr sink`, prints what arrived and mcr's own
# counters, and removes everything it created. Needs root. Traffic stays inside the namespaces.
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" -eq 0 ] || { echo "demo: run as root (network namespaces)" >&2; exit 1; }
command -v ip >/dev/null || { apt-get update -qq && apt-get install -y -qq iproute2 >/dev/null; }

COUNT=${COUNT:-50000}
RATE=${RATE:-20000}
cargo build --release --quiet
MCR=$PWD/target/release/mcr

id=$$
GEN=mcr-demo-gen-$id RELAY=mcr-demo-relay-$id SINK=mcr-demo-sink-$id
work=$(mktemp -d)
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
    for ns in "$GEN" "$RELAY" "$SINK"; do ip netns del "$ns" 2>/dev/null || true; done
    rm -rf "$work"
}
trap cleanup EXIT

for ns in "$GEN" "$RELAY" "$SINK"; do
    ip netns add "$ns"
    ip -n "$ns" link set lo up
done
ip -n "$GEN" link add up0 type veth peer name mcr-in netns "$RELAY"
ip -n "$RELAY" link add mcr-out type veth peer name down0 netns "$SINK"
ip -n "$GEN" addr add 10.1.0.1/24 dev up0
ip -n "$RELAY" addr add 10.1.0.2/24 dev mcr-in
ip -n "$RELAY" addr add 10.2.0.1/24 dev mcr-out
ip -n "$SINK" addr add 10.2.0.2/24 dev down0
ip -n "$GEN" link set up0 up; ip -n "$RELAY" link set mcr-in up
ip -n "$RELAY" link set mcr-out up; ip -n "$SINK" link set down0 up

echo "== mcr check -c examples/demo.toml"
"$MCR" check -c examples/demo.toml

echo "== starting mcr in namespace $RELAY"
ip netns exec "$RELAY" "$MCR" run -c examples/demo.toml >"$work/relay.out" 2>"$work/relay.err" &
relay=$!; pids+=("$relay")
for _ in $(seq 100); do grep -q "ready:" "$work/relay.err" && break; sleep 0.1; done
grep "ready:" "$work/relay.err" || { cat "$work/relay.err"; exit 1; }

echo "== sink joins 239.9.9.9 and 239.9.9.10 :5099 on down0"
ip netns exec "$SINK" "$MCR" sink --interface down0 --group 239.9.9.9 --group-count 2 --port 5099 \
    --count $((2 * COUNT)) --ready-file "$work/ready" >"$work/sink.out" 2>&1 &
sink=$!; pids+=("$sink")
for _ in $(seq 100); do [ -e "$work/ready" ] && break; sleep 0.1; done

echo "== gen sends $COUNT packets to each of 239.1.1.1 and 239.1.1.2 :5001 at $RATE pps"
ip netns exec "$GEN" "$MCR" gen --interface up0 --group 239.1.1.1 --group-count 2 --port 5001 \
    --count "$COUNT" --rate "$RATE" --size 1024
wait "$sink"
echo "== sink received:"
cat "$work/sink.out"
echo "== mcr stats (over the control socket):"
"$MCR" stats

kill -TERM "$relay"; wait "$relay" || true
echo "== mcr log and final counters:"
cat "$work/relay.err" "$work/relay.out"

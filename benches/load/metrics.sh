#!/usr/bin/env bash
# The cost of observability: `wrk` against `wasmfn serve` (hello, fresh instances) with metrics
# recorded (the default) and with `--no-metrics`, in alternating rounds on the same machine,
# while Prometheus-style scrapes hit the admin listener's /metrics once a second. The medians
# and their ratio are printed (target >= 0.97).
#
#   benches/load/metrics.sh                      # 5 rounds x 10 s, 16 wrk connections
#   ROUNDS=7 DURATION=15s benches/load/metrics.sh
source "$(dirname "${BASH_SOURCE[0]}")/../../scripts/lib.sh"

ROUNDS="${ROUNDS:-5}"
DURATION="${DURATION:-10s}"
CONNS="${CONNS:-16}"
ON=3131
OFF=3132

apt_install wrk
ensure_guest_toolchain
build_wasmfn
build_guests

WORK="$(mktemp -d)"
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$WORK"; }
trap cleanup EXIT

export WASMFN_LOG=warn
start() { # PORT NAME ARGS...
    local port="$1" name="$2"; shift 2
    mkdir -p "$WORK/$name"
    cp "$ROOT/guests/hello/hello.wasm" "$WORK/$name/hello.wasm"
    "$WASMFN" serve "$WORK/$name" --listen "127.0.0.1:$port" \
        --admin-listen "127.0.0.1:$((port + 100))" "$@" >"$WORK/$name.log" 2>&1 &
    PIDS+=($!)
    for _ in $(seq 1 100); do curl -sf "http://127.0.0.1:$port/hello" >/dev/null && break; sleep 0.1; done
}
start "$ON" on
start "$OFF" off --no-metrics
TOKEN="$(cat "$WORK/on/.wasmfn/admin-token")"
# A scraper, as Prometheus would be, once a second for the whole run.
( while true; do
    curl -sf -H "Authorization: Bearer $TOKEN" "http://127.0.0.1:$((ON + 100))/metrics" >/dev/null
    sleep 1
  done ) & PIDS+=($!)

rps() { wrk -t2 -c"$CONNS" -d"$DURATION" "http://127.0.0.1:$1/hello" | awk '/Requests\/sec/ {print $2}'; }
median() { sort -n | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }

WITH=(); WITHOUT=()
for round in $(seq 1 "$ROUNDS"); do
    WITH+=("$(rps "$ON")")
    WITHOUT+=("$(rps "$OFF")")
    echo "round $round: metrics on ${WITH[-1]} req/s, off ${WITHOUT[-1]} req/s"
done
A="$(printf '%s\n' "${WITH[@]}" | median)"
B="$(printf '%s\n' "${WITHOUT[@]}" | median)"
echo "median: metrics on $A req/s, off $B req/s, ratio $(awk -v a="$A" -v b="$B" 'BEGIN {printf "%.3f", a / b}')"
curl -sf -H "Authorization: Bearer $TOKEN" "http://127.0.0.1:$((ON + 100))/metrics" \
    | grep -E '^wasmfn_invocations_total\{function="hello".*outcome="ok"' || true

#!/usr/bin/env bash
# Throughput under hostile clients: `wrk` against `wasmfn serve` (hello, fresh instances)
# alone, then again while 2,000 idle connections and 200 slowloris clients (a header byte per
# second; every connection the server closes is opened again) press on the same listener.
# Rounds alternate the two; the medians, their ratio (target >= 0.8), the host's peak open
# descriptors against its limit, and how many hostile connections the server closed are
# printed.
#
#   benches/load/hostile.sh                      # 3 rounds x 10 s, 16 wrk connections
#   ROUNDS=5 DURATION=15s IDLE=4000 benches/load/hostile.sh
source "$(dirname "${BASH_SOURCE[0]}")/../../scripts/lib.sh"

ROUNDS="${ROUNDS:-3}"
DURATION="${DURATION:-10s}"
CONNS="${CONNS:-16}"
IDLE="${IDLE:-2000}"
TRICKLE="${TRICKLE:-200}"
PORT=3121

apt_install wrk
ensure_guest_toolchain
build_wasmfn
build_guests

bench_scratch
# The attacker holds 2,200 sockets itself.
ulimit -n "$(ulimit -Hn)"

mkdir -p "$WORK/fn"
cp "$ROOT/guests/hello/hello.wasm" "$WORK/fn/hello.wasm"
export WASMFN_LOG=warn
"$WASMFN" serve "$WORK/fn" --listen "127.0.0.1:$PORT" --admin-listen 127.0.0.1:0 >"$WORK/host.log" 2>&1 & HOST=$!
PIDS+=($HOST)
for _ in $(seq 1 100); do curl -sf "http://127.0.0.1:$PORT/hello" >/dev/null && break; sleep 0.1; done
LIMIT="$(awk '/Max open files/ {print $4}' "/proc/$HOST/limits")"

rps() { wrk -t2 -c"$CONNS" -d"$DURATION" "http://127.0.0.1:$PORT/hello" | awk '/Requests\/sec/ {print $2}'; }
fds() { ls "/proc/$HOST/fd" | wc -l; }
median() { sort -n | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }

ALONE=(); ATTACKED=(); PEAK=0; STATS=()
for round in $(seq 1 "$ROUNDS"); do
    ALONE+=("$(rps)")
    python3 "$ROOT/benches/load/slow_clients.py" --port "$PORT" --idle "$IDLE" --trickle "$TRICKLE" \
        --seconds 600 >"$WORK/attack.json" & ATTACKER=$!
    PIDS+=($ATTACKER)
    sleep 3 # let the hostile connections open
    ( while kill -0 "$ATTACKER" 2>/dev/null; do fds; sleep 0.5; done ) >"$WORK/fds.txt" & SAMPLER=$!
    ATTACKED+=("$(rps)")
    kill "$ATTACKER"; wait "$ATTACKER" 2>/dev/null || true
    kill "$SAMPLER" 2>/dev/null || true; wait "$SAMPLER" 2>/dev/null || true
    STATS+=("$(cat "$WORK/attack.json")")
    PEAK="$(sort -n "$WORK/fds.txt" | tail -1 | awk -v p="$PEAK" '{print ($1 > p ? $1 : p)}')"
    echo "round $round: alone ${ALONE[-1]} req/s, under attack ${ATTACKED[-1]} req/s; attacker ${STATS[-1]}"
done
A="$(printf '%s\n' "${ALONE[@]}" | median)"
B="$(printf '%s\n' "${ATTACKED[@]}" | median)"
echo "median: alone $A req/s, with $IDLE idle + $TRICKLE trickling connections $B req/s, ratio $(awk -v a="$A" -v b="$B" 'BEGIN {printf "%.2f", b / a}')"
echo "host descriptors: peak $PEAK open, limit $LIMIT"
if ! kill -0 "$HOST" 2>/dev/null; then echo "the host died"; exit 1; fi

#!/usr/bin/env bash
# Side-by-side HTTP load test on loopback: `wasmfn serve` against `wasmtime serve` (wasmtime-cli
# 48.0.8, the same engine version) on the very same hello component, plus a bare native hyper
# server as the ceiling. Servers are measured one at a time, alternating, for several rounds;
# the medians and their ratios are printed.
#
#   benches/load/compare.sh                 # 3 rounds x 10 s at 16 connections
#   ROUNDS=5 DURATION=15s CONNS=32 benches/load/compare.sh
#
# Installs what it lacks: wrk (Debian) and wasmtime-cli (cargo install, ~20 min once, cached in
# ~/.cache/wasmfn/tools).
source "$(dirname "${BASH_SOURCE[0]}")/../../scripts/lib.sh"

ROUNDS="${ROUNDS:-3}"
DURATION="${DURATION:-10s}"
CONNS="${CONNS:-16}"
TOOLS="$CACHE/tools"
WASMTIME="$TOOLS/bin/wasmtime"

apt_install wrk
if ! "$WASMTIME" --version 2>/dev/null | grep -q '^wasmtime 48\.0\.8'; then
    say "installing wasmtime-cli 48.0.8 (the peer; one-time, ~20 minutes on 2 cores)"
    CARGO_TARGET_DIR="$CACHE/tools-target" cargo install wasmtime-cli --version 48.0.8 --locked --root "$TOOLS"
fi
ensure_guest_toolchain
build_wasmfn
build_guests
(cd "$ROOT" && cargo build --release --locked --example native_hello)

bench_scratch

HELLO="$ROOT/guests/hello/hello.wasm"
mkdir -p "$WORK/fresh" "$WORK/reuse"
cp "$HELLO" "$WORK/fresh/hello.wasm"
cp "$HELLO" "$WORK/reuse/hello.wasm"
printf '[functions.hello]\ninstances = "reuse"\nmax-uses = 1000\n' > "$WORK/reuse/wasmfn.toml"

# Same logging stance for every server: errors only, so no one pays for per-request log lines.
export WASMFN_LOG=warn RUST_LOG=warn
"$WASMFN" serve "$WORK/fresh" --listen 127.0.0.1:3101 --admin-listen 127.0.0.1:0 >"$WORK/fresh.log" 2>&1 & PIDS+=($!)
"$WASMFN" serve "$WORK/reuse" --listen 127.0.0.1:3102 --admin-listen 127.0.0.1:0 >"$WORK/reuse.log" 2>&1 & PIDS+=($!)
"$WASMTIME" serve -Scli --addr 127.0.0.1:3103 "$HELLO" >"$WORK/wt.log" 2>&1 & PIDS+=($!)
"$WASMTIME" serve -Scli --max-instance-reuse-count 1000 --addr 127.0.0.1:3104 "$HELLO" >"$WORK/wt-reuse.log" 2>&1 & PIDS+=($!)
"$CARGO_TARGET_DIR/release/examples/native_hello" 127.0.0.1:3105 >"$WORK/native.log" 2>&1 & PIDS+=($!)

for port in 3101 3102 3103 3104 3105; do
    for _ in $(seq 1 100); do curl -sf "http://127.0.0.1:$port/hello" >/dev/null && break; sleep 0.1; done
    curl -sf "http://127.0.0.1:$port/hello" >/dev/null || { say "server on port $port did not start"; cat "$WORK"/*.log; exit 1; }
done

NAMES=(wasmfn-fresh wasmfn-reuse wasmtime-serve wasmtime-serve-reuse native-hyper)
PORTS=(3101 3102 3103 3104 3105)
RESULTS="$WORK/results.txt"
: > "$RESULTS"
say "load: $ROUNDS rounds x $DURATION, wrk -t1 -c$CONNS, servers alternating"
for round in $(seq 1 "$ROUNDS"); do
    for i in "${!NAMES[@]}"; do
        out="$(wrk -t1 -c"$CONNS" -d"$DURATION" --latency "http://127.0.0.1:${PORTS[$i]}/hello")"
        rps="$(awk '/^Requests\/sec/ {print $2}' <<<"$out")"
        p99="$(awk '$1 == "99%" {print $2}' <<<"$out")"
        errors="$(awk '/Non-2xx|Socket errors/ {print}' <<<"$out")"
        echo "${NAMES[$i]} $rps $p99" >> "$RESULTS"
        printf '  round %s  %-22s %10s req/s  p99 %8s %s\n' "$round" "${NAMES[$i]}" "$rps" "$p99" "$errors" >&2
    done
done

python3 - "$RESULTS" "$CONNS" <<'PY'
import statistics, sys
rows = [l.split() for l in open(sys.argv[1]) if l.strip()]
def us(t):
    for unit, f in (("us", 1), ("ms", 1e3), ("s", 1e6)):
        if t.endswith(unit):
            return float(t[: -len(unit)]) * f
    return float(t)
rps, p99 = {}, {}
for name, r, p in rows:
    rps.setdefault(name, []).append(float(r))
    p99.setdefault(name, []).append(us(p))
med = {k: statistics.median(v) for k, v in rps.items()}
lat = {k: statistics.median(v) for k, v in p99.items()}
print(f"\nmedians over {len(rps['native-hyper'])} rounds, {sys.argv[2]} connections:")
print(f"{'server':<22}{'req/s':>12}{'p99':>12}")
for k in rps:
    print(f"{k:<22}{med[k]:>12,.0f}{lat[k]/1000:>10.2f}ms")
print("\nratios:")
print(f"  fresh instance per request: wasmfn / wasmtime serve         = {med['wasmfn-fresh']/med['wasmtime-serve']:.2f}x  (target >= 2x)")
print(f"  warm reuse (1000 uses):     wasmfn / wasmtime serve --reuse = {med['wasmfn-reuse']/med['wasmtime-serve-reuse']:.2f}x  (target >= 1.5x)")
print(f"  ceiling:                    wasmfn fresh / native hyper     = {med['wasmfn-fresh']/med['native-hyper']:.2f}x")
print(f"                              wasmfn reuse / native hyper     = {med['wasmfn-reuse']/med['native-hyper']:.2f}x")
PY

#!/usr/bin/env bash
# Side-by-side HTTP load test on loopback: `wasmfn serve` against `wasmtime serve` (wasmtime-cli
# 48.0.8, the same engine version) on the very same components, plus a bare native hyper server
# as the ceiling. The WASI 0.2 hello (`guests/hello`) runs fresh per request and with warm reuse;
# `wasmtime serve` runs it with its defaults, with its pooling knobs tuned (its best fresh
# setting), and with reuse. The WASI 0.3 hello (`tests/guests/http-p3`) runs fresh and
# concurrent on wasmfn and with `wasmtime serve`'s default 0.3 reuse (16 at once, 128 uses).
# Servers are measured one at a time, alternating, for several rounds; the medians and their
# ratios are printed.
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
HELLO_P3="$ROOT/tests/guests/http-p3/http-p3.wasm"
mkdir -p "$WORK/fresh" "$WORK/reuse" "$WORK/p3-fresh" "$WORK/p3-concurrent"
cp "$HELLO" "$WORK/fresh/hello.wasm"
cp "$HELLO" "$WORK/reuse/hello.wasm"
printf '[functions.hello]\ninstances = "reuse"\nmax-uses = 1000\n' > "$WORK/reuse/wasmfn.toml"
cp "$HELLO_P3" "$WORK/p3-fresh/hello.wasm"
cp "$HELLO_P3" "$WORK/p3-concurrent/hello.wasm"
# The same bounds as `wasmtime serve`'s 0.3 defaults.
printf '[functions.hello]\ninstances = "concurrent"\nmax-concurrent = 16\nmax-uses = 128\n' > "$WORK/p3-concurrent/wasmfn.toml"
# wasmtime serve's best fresh-instance setting found here (benches/README: each knob tried).
WT_TUNED="pooling-allocator=y,pooling-pagemap-scan=y,pooling-memory-keep-resident=2097152,pooling-table-keep-resident=65536,pooling-decommit-batch-size=64"

# Same logging stance for every server: errors only, so no one pays for per-request log lines.
export WASMFN_LOG=warn RUST_LOG=warn
"$WASMFN" serve "$WORK/fresh" --listen 127.0.0.1:3101 --admin-listen 127.0.0.1:0 >"$WORK/fresh.log" 2>&1 & PIDS+=($!)
"$WASMFN" serve "$WORK/reuse" --listen 127.0.0.1:3102 --admin-listen 127.0.0.1:0 >"$WORK/reuse.log" 2>&1 & PIDS+=($!)
"$WASMTIME" serve -Scli --addr 127.0.0.1:3103 "$HELLO" >"$WORK/wt.log" 2>&1 & PIDS+=($!)
"$WASMTIME" serve -Scli --max-instance-reuse-count 1000 --addr 127.0.0.1:3104 "$HELLO" >"$WORK/wt-reuse.log" 2>&1 & PIDS+=($!)
"$CARGO_TARGET_DIR/release/examples/native_hello" 127.0.0.1:3105 >"$WORK/native.log" 2>&1 & PIDS+=($!)
"$WASMTIME" serve -Scli -O "$WT_TUNED" --addr 127.0.0.1:3106 "$HELLO" >"$WORK/wt-tuned.log" 2>&1 & PIDS+=($!)
"$WASMFN" serve "$WORK/p3-fresh" --listen 127.0.0.1:3107 --admin-listen 127.0.0.1:0 >"$WORK/p3-fresh.log" 2>&1 & PIDS+=($!)
"$WASMFN" serve "$WORK/p3-concurrent" --listen 127.0.0.1:3108 --admin-listen 127.0.0.1:0 >"$WORK/p3-concurrent.log" 2>&1 & PIDS+=($!)
"$WASMTIME" serve -Scli -Sconfig --addr 127.0.0.1:3109 "$HELLO_P3" >"$WORK/wt-p3.log" 2>&1 & PIDS+=($!)

for port in 3101 3102 3103 3104 3105 3106 3107 3108 3109; do
    for _ in $(seq 1 100); do curl -sf "http://127.0.0.1:$port/hello" >/dev/null && break; sleep 0.1; done
    curl -sf "http://127.0.0.1:$port/hello" >/dev/null || { say "server on port $port did not start"; cat "$WORK"/*.log; exit 1; }
done

NAMES=(wasmfn-fresh wasmfn-reuse wasmtime-serve wasmtime-serve-reuse native-hyper wasmtime-serve-tuned p3-wasmfn-fresh p3-wasmfn-concurrent p3-wasmtime-serve)
PORTS=(3101 3102 3103 3104 3105 3106 3107 3108 3109)
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
def ratio(a, b):
    return med[a] / med[b]
print(f"  0.2 fresh per request:  wasmfn / wasmtime serve (defaults)      = {ratio('wasmfn-fresh', 'wasmtime-serve'):.2f}x")
print(f"                          wasmfn / wasmtime serve (tuned pooling) = {ratio('wasmfn-fresh', 'wasmtime-serve-tuned'):.2f}x  (target >= 2.5x)")
print(f"  0.2 warm reuse (1000):  wasmfn / wasmtime serve --reuse 1000    = {ratio('wasmfn-reuse', 'wasmtime-serve-reuse'):.2f}x  (target >= 1.5x)")
print(f"  0.3 concurrent reuse:   wasmfn / wasmtime serve (0.3 defaults)  = {ratio('p3-wasmfn-concurrent', 'p3-wasmtime-serve'):.2f}x  (target >= 1.5x)")
print(f"                          wasmfn / native hyper                   = {ratio('p3-wasmfn-concurrent', 'native-hyper'):.2f}x  (target >= 0.5x)")
print(f"  0.3 fresh per request:  wasmfn 0.3 / wasmfn 0.2 fresh           = {ratio('p3-wasmfn-fresh', 'wasmfn-fresh'):.2f}x")
print(f"  ceiling:                wasmfn 0.2 fresh / native hyper         = {ratio('wasmfn-fresh', 'native-hyper'):.2f}x")
print(f"                          wasmfn 0.2 reuse / native hyper         = {ratio('wasmfn-reuse', 'native-hyper'):.2f}x")
PY

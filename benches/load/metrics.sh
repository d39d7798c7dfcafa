#!/usr/bin/env bash
# The cost of observability: `wrk` against three `wasmfn serve` hosts (hello, fresh instances):
# metrics recorded (the default), metrics recorded and every request traced (exported over
# OTLP/HTTP to a sink on loopback that reads and acknowledges each batch), and neither
# (`--no-metrics`, no exporter); in alternating rounds on the same machine, while
# Prometheus-style scrapes hit the admin listeners' /metrics once a second. The medians and
# their ratios to the plain host are printed (targets >= 0.97 with metrics, >= 0.90 traced).
#
#   benches/load/metrics.sh                      # 5 rounds x 10 s, 16 wrk connections
#   ROUNDS=7 DURATION=15s benches/load/metrics.sh
source "$(dirname "${BASH_SOURCE[0]}")/../../scripts/lib.sh"

ROUNDS="${ROUNDS:-5}"
DURATION="${DURATION:-10s}"
CONNS="${CONNS:-16}"
ON=3131
OFF=3132
TRACED=3133
SINK=3134

apt_install wrk
ensure_guest_toolchain
build_wasmfn
build_guests

bench_scratch

export WASMFN_LOG=warn
# An OTLP/HTTP sink: reads every batch and answers 200 (an empty ExportTraceServiceResponse).
python3 - "$SINK" >"$WORK/sink.log" 2>&1 <<'PY' &
import http.server, sys
class Sink(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    batches = 0
    def do_POST(self):
        self.rfile.read(int(self.headers.get("content-length", 0)))
        Sink.batches += 1
        self.send_response(200)
        self.send_header("content-length", "0")
        self.end_headers()
    def do_GET(self):
        body = str(Sink.batches).encode()
        self.send_response(200)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass
http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Sink).serve_forever()
PY
PIDS+=($!)
serve_hello "$ON" on
serve_hello "$OFF" off --no-metrics
OTEL_EXPORTER_OTLP_ENDPOINT="http://127.0.0.1:$SINK" serve_hello "$TRACED" traced
# A scraper, as Prometheus would be, once a second for the whole run.
( while true; do
    for host in on traced; do
        port="$ON"; [ "$host" = traced ] && port="$TRACED"
        curl -sf -H "Authorization: Bearer $(cat "$WORK/$host/.wasmfn/admin-token")" \
            "http://127.0.0.1:$((port + 100))/metrics" >/dev/null
    done
    sleep 1
  done ) & PIDS+=($!)

rps() { wrk -t2 -c"$CONNS" -d"$DURATION" "http://127.0.0.1:$1/hello" | awk '/Requests\/sec/ {print $2}'; }
median() { sort -n | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }

WITH=(); WITHOUT=(); TRACING=()
for round in $(seq 1 "$ROUNDS"); do
    WITH+=("$(rps "$ON")")
    TRACING+=("$(rps "$TRACED")")
    WITHOUT+=("$(rps "$OFF")")
    echo "round $round: metrics ${WITH[-1]} req/s, metrics+traces ${TRACING[-1]} req/s, neither ${WITHOUT[-1]} req/s"
done
A="$(printf '%s\n' "${WITH[@]}" | median)"
T="$(printf '%s\n' "${TRACING[@]}" | median)"
B="$(printf '%s\n' "${WITHOUT[@]}" | median)"
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.3f", a / b}'; }
echo "median: metrics $A req/s (ratio $(ratio "$A" "$B")), metrics+traces $T req/s (ratio $(ratio "$T" "$B")), neither $B req/s"
echo "OTLP batches received by the sink: $(curl -sf "http://127.0.0.1:$SINK/")"
curl -sf -H "Authorization: Bearer $(cat "$WORK/traced/.wasmfn/admin-token")" "http://127.0.0.1:$((TRACED + 100))/metrics" \
    | grep -E '^wasmfn_invocations_total\{function="hello".*outcome="ok"' || true

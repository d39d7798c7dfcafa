#!/usr/bin/env bash
# The cost of coordination: 1, 2 and 3 `wasmfn serve` hosts of one app sharing PostgreSQL (the
# `[cluster]` database) and NATS JetStream (the queues), all on this machine, so the figures
# show what sharing costs, not a speed-up (the hosts split the same cores). For each count:
#   - HTTP: wrk against every host at once (CONNS connections split over them), req/s summed;
#   - queue: MESSAGES messages sent through the hosts in turn to a queue whose function logs
#     and returns, msg/s from the first send to an empty queue;
# then the schedule failover: an every-second schedule on 3 hosts, the host that fired the
# last tick killed with SIGKILL, and the longest gap between two firings around the kill.
#
#   benches/load/cluster.sh                   # 8 s of wrk, 20,000 messages
#   DURATION=15s MESSAGES=50000 benches/load/cluster.sh
source "$(dirname "${BASH_SOURCE[0]}")/../../scripts/lib.sh"

DURATION="${DURATION:-8s}"
CONNS="${CONNS:-16}"
MESSAGES="${MESSAGES:-20000}"

apt_install wrk
ensure_test_servers
ensure_guest_toolchain
build_wasmfn
build_guests
bench_scratch

# PostgreSQL and NATS of the run's own, on loopback.
PG_PORT=55432 NATS_PORT=54222
# PostgreSQL refuses to run as root: then it runs as `postgres`, in a folder of its own.
PG="$WORK/pg"
mkdir -p "$PG"
pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$(pg_bindir)/$1" "${@:2}"; else "$(pg_bindir)/$1" "${@:2}"; fi; }
if [ "$(id -u)" = 0 ]; then chmod 755 "$WORK"; chown postgres "$PG"; fi
pg initdb -D "$PG/data" -U postgres -A trust --no-sync >/dev/null
pg pg_ctl -D "$PG/data" -o "-p $PG_PORT -k $PG -c listen_addresses=127.0.0.1 -c fsync=off" -l "$PG/log" start >/dev/null
trap 'pg pg_ctl -D "$PG/data" stop -m fast >/dev/null 2>&1 || true; for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null; rm -rf "$WORK"' EXIT
nats-server -js -a 127.0.0.1 -p "$NATS_PORT" -sd "$WORK/nats" >"$WORK/nats.log" 2>&1 & PIDS+=($!)
sleep 1

# app N: a fresh database and queue (jobsN) per host count, so runs do not share a backlog.
app() {
    local n="$1" dir="$WORK/app$1"
    mkdir -p "$dir"
    cp "$ROOT/guests/hello/hello.wasm" "$ROOT/guests/queue-worker/queue-worker.wasm" "$ROOT/guests/cron-job/cron-job.wasm" "$dir/"
    psql -h 127.0.0.1 -p "$PG_PORT" -U postgres -qc "CREATE DATABASE bench$n" >/dev/null
    cat >"$dir/wasmfn.toml" <<EOF
[cluster]
url = "postgres://postgres@127.0.0.1:$PG_PORT/bench$n"

[queue-backend]
kind = "nats"
url = "nats://127.0.0.1:$NATS_PORT"

[queues.jobs$n]
function = "queue-worker"
batch-size = 10
concurrency = 4

[schedules.tick]
function = "cron-job"
expression = "* * * * * *"
EOF
    "$WASMFN" compile --cache-dir "$WORK/compiled" "$dir"/*.wasm >/dev/null 2>&1
}

# host N I: host I of the N-host app, on port 3200+10N+I (admin on +100).
host() {
    local n="$1" i="$2" port=$((3200 + 10 * $1 + $2))
    WASMFN_LOG=warn,guest=info "$WASMFN" serve "$WORK/app$n" --listen "127.0.0.1:$port" \
        --admin-listen "127.0.0.1:$((port + 100))" --state-dir "$WORK/state$n-$i" \
        --cache-dir "$WORK/compiled" --read-only-cache >"$WORK/host$n-$i.log" 2>&1 &
    PIDS+=($!)
    HOST_PID=$!
    for _ in $(seq 1 100); do curl -sf "http://127.0.0.1:$port/hello" >/dev/null && return; sleep 0.1; done
    echo "host $n-$i did not start:" >&2; cat "$WORK/host$n-$i.log" >&2; exit 1
}

token() { cat "$WORK/state$1-$2/admin-token"; }

# waiting N: messages waiting or in flight in `jobsN`, as host N-0 sees them.
waiting() {
    curl -sf -H "Authorization: Bearer $(token "$1" 0)" "http://127.0.0.1:$((3300 + 10 * $1))/_wasmfn/queues" |
        python3 -c 'import json,sys; q=[q for q in json.load(sys.stdin)["queues"] if q["name"]=="jobs'"$1"'"][0]; print(q["waiting"]+q["inFlight"])'
}

now() { date +%s.%N; }

echo "hosts  http req/s  queue msg/s"
for n in 1 2 3; do
    app "$n"
    for i in $(seq 0 $((n - 1))); do host "$n" "$i"; done
    # HTTP: one wrk per host at once, the connections split over them.
    wrks=()
    for i in $(seq 0 $((n - 1))); do
        wrk -t1 -c$((CONNS / n)) -d"$DURATION" "http://127.0.0.1:$((3200 + 10 * n + i))/hello" >"$WORK/wrk$n-$i.txt" &
        wrks+=($!)
    done
    wait "${wrks[@]}"
    rps=$(cat "$WORK"/wrk$n-*.txt | awk '/Requests\/sec/ {s += $2} END {printf "%.0f", s}')
    # Queue: batches of 200 through the hosts in turn, then wait for the queue to empty.
    start=$(now)
    python3 - "$n" "$MESSAGES" "$WORK" <<'PY'
import json, sys, urllib.request
n, total, work = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
tokens = [open(f"{work}/state{n}-{i}/admin-token").read().strip() for i in range(n)]
for b, first in enumerate(range(0, total, 200)):
    i = b % n
    body = json.dumps({"messages": [{"body": f"m-{k}"} for k in range(first, min(first + 200, total))]}).encode()
    req = urllib.request.Request(f"http://127.0.0.1:{3300 + 10 * n + i}/_wasmfn/queues/jobs{n}/batch", body,
                                 {"Authorization": f"Bearer {tokens[i]}", "Content-Type": "application/json"})
    assert urllib.request.urlopen(req).status == 202
PY
    while [ "$(waiting "$n")" != 0 ]; do sleep 0.2; done
    msgs=$(awk -v s="$start" -v e="$(now)" -v m="$MESSAGES" 'BEGIN {printf "%.0f", m / (e - s)}')
    printf '%5d  %11s  %11s\n' "$n" "$rps" "$msgs"
    [ "$n" = 3 ] || { for i in $(seq 0 $((n - 1))); do pkill -f "state$n-$i" || true; done; }
done

# Schedule failover on the 3-host app: kill the host whose log has the newest firing.
sleep 3
newest=$(for i in 0 1 2; do printf '%s %s\n' "$(grep -h 'tick (\* \* \* \* \* \*) ran' "$WORK/host3-$i.log" | tail -1 | cut -c1-27)" "$i"; done | sort | tail -1 | awk '{print $2}')
[ -n "$newest" ] || { echo "no host logged a firing" >&2; exit 1; }
pkill -9 -f "state3-$newest " || true
killed=$(date -u +%Y-%m-%dT%H:%M:%S.%N)
sleep 5
python3 - "$WORK" "$killed" <<'PY'
import re, sys, glob
from datetime import datetime
work, killed = sys.argv[1], sys.argv[2][:26]
times = []
for f in glob.glob(f"{work}/host3-*.log"):
    for line in open(f):
        if "tick (* * * * * *) ran" in line:
            m = re.match(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d+)", re.sub(r"\x1b\[[0-9;]*m", "", line))
            if m:
                times.append(datetime.fromisoformat(m.group(1)[:26]))
times.sort()
k = datetime.fromisoformat(killed)
around = [t for t in times if abs((t - k).total_seconds()) < 4]
gaps = [(b - a).total_seconds() for a, b in zip(around, around[1:])]
print(f"schedule failover: longest gap between firings around the kill {max(gaps):.2f} s "
      f"({len(around)} firings within 4 s of it; an every-second schedule, so 1.00 s is no delay)")
PY

#!/usr/bin/env bash
# The cost of watching: `wrk` against two identical `wasmfn serve` hosts (hello, fresh
# instances, the default log level), one with the web console open in headless Chromium on
# its Logs view (tailing every invocation's log line over /_wasmfn/logs and polling the
# functions API), one without; in alternating rounds on the same machine. Each round's ratio,
# the medians and the median of the rounds' ratios (the headline; target >= 0.95) are printed. `CLIENT=curl` tails with curl instead of the
# browser, asking for the same sample as the page (`rate=50`), which separates the host's cost
# from the browser's (both share this machine's cores).
#
#   benches/load/console.sh                      # 15 rounds x 4 s, 16 wrk connections
#   ROUNDS=7 DURATION=15s benches/load/console.sh
#   CLIENT=curl benches/load/console.sh
#   NICE=19 benches/load/console.sh             # the browser at the lowest CPU priority
source "$(dirname "${BASH_SOURCE[0]}")/../../scripts/lib.sh"

ROUNDS="${ROUNDS:-15}"
DURATION="${DURATION:-4s}"
CONNS="${CONNS:-16}"
WATCHED=3141
PLAIN=3142

apt_install wrk
{ command -v chromium >/dev/null 2>&1; } || apt_install chromium
ensure_guest_toolchain
build_wasmfn
build_guests

bench_scratch

serve_hello "$WATCHED" watched
serve_hello "$PLAIN" plain
TOKEN="$(cat "$WORK/watched/.wasmfn/admin-token")"
# NICE=19 runs the browser at the lowest CPU priority: what the host keeps when the browser's
# drawing does not compete with it for this machine's two cores (as on an operator's laptop).
if [ "${CLIENT:-chromium}" = curl ]; then curl -sN -H "Authorization: Bearer $TOKEN" "http://127.0.0.1:$((WATCHED + 100))/_wasmfn/logs?rate=50" >/dev/null & else nice -n "${NICE:-0}" chromium --headless=new --no-sandbox --disable-gpu --no-first-run --disable-background-networking \
    --user-data-dir="$WORK/profile" \
    "http://127.0.0.1:$((WATCHED + 100))/ui/#token=$TOKEN&/logs" >/dev/null 2>&1 & fi
PIDS+=($!)
sleep 3

# CPU seconds every process of the browser has used so far (user + system, from /proc).
browser_cpu() {
    local total=0 pid
    for pid in $(pgrep -f "user-data-dir=$WORK/profile" || true); do
        total=$((total + $(awk '{print $14 + $15}' "/proc/$pid/stat" 2>/dev/null || echo 0)))
    done
    awk -v t="$total" -v hz="$(getconf CLK_TCK)" 'BEGIN {printf "%.2f", t / hz}'
}
rps() { wrk -t2 -c"$CONNS" -d"$DURATION" "http://127.0.0.1:$1/hello" | awk '/Requests\/sec/ {print $2}'; }
median() { sort -n | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }

WITH=(); WITHOUT=(); RATIOS=(); SPENT=()
for round in $(seq 1 "$ROUNDS"); do
    # The order flips every round, so a drift of the machine's speed (other tenants, heat)
    # during a pair of runs favours neither side.
    before="$(browser_cpu)"
    if [ $((round % 2)) = 1 ]; then
        W="$(rps "$WATCHED")"; after="$(browser_cpu)"; P="$(rps "$PLAIN")"
    else
        P="$(rps "$PLAIN")"; before="$(browser_cpu)"; W="$(rps "$WATCHED")"; after="$(browser_cpu)"
    fi
    SPENT+=("$(awk -v a="$after" -v b="$before" 'BEGIN {printf "%.2f", a - b}')")
    WITH+=("$W"); WITHOUT+=("$P")
    RATIOS+=("$(awk -v a="$W" -v b="$P" 'BEGIN {printf "%.3f", a / b}')")
    echo "round $round: console open $W req/s, no console $P req/s, ratio ${RATIOS[-1]}, browser CPU ${SPENT[-1]} s"
done
A="$(printf '%s\n' "${WITH[@]}" | median)"
B="$(printf '%s\n' "${WITHOUT[@]}" | median)"
echo "median: console open $A req/s, no console $B req/s, ratio of medians $(awk -v a="$A" -v b="$B" 'BEGIN {printf "%.3f", a / b}')"
# The headline: each round's two runs are seconds apart, so their ratio cancels most of this
# machine's drift; the median of those ratios is the figure to compare with the target.
echo "median of the rounds' ratios: $(printf '%s\n' "${RATIOS[@]}" | median)"
echo "browser CPU per $DURATION round with the console open (median): $(printf '%s\n' "${SPENT[@]}" | median) s"
# The tail really was open: the watched host's log ring kept lines for it.
curl -sf -m 2 -H "Authorization: Bearer $TOKEN" "http://127.0.0.1:$((WATCHED + 100))/_wasmfn/logs?since=0" \
    | grep -c '^id: ' | sed 's/^/log lines the tail could resume from: /' || true

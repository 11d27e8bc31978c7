#!/usr/bin/env bash
# Peak resident memory of `redwatch load` over one-million-request runs against
# `redwatch serve --latency-scale 0` on loopback: closed loop, then open loop. The peak is the
# kernel's VmHWM (high-water mark) of the load process, read until it exits. A third run holds
# 1000 connections, the default --max-in-flight, as the worst case for connection memory.
#
# Usage: bench/load/rss_1m.sh    (env: REQUESTS=1000000 CONCURRENCY=50 OPEN_RATE=10000)
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

REQUESTS="${REQUESTS:-1000000}"
CONCURRENCY="${CONCURRENCY:-50}"
OPEN_RATE="${OPEN_RATE:-10000}"
LIMIT_KB=$((50 * 1024))

build_release
start_server
echo "target: $SERVER_URL (default mix), $REQUESTS requests per run"

# measure NAME ARGS...: runs one load, samples VmHWM, prints the summary line and the peak.
status=0
measure() {
    local name="$1"
    shift
    local out peak=0 hwm
    out="$(mktemp)"
    "$REDWATCH" load --target "$SERVER_URL" --requests "$REQUESTS" --json "$out" "$@" >/dev/null 2>&1 &
    local pid=$!
    BENCH_PIDS+=("$pid")
    while kill -0 "$pid" 2>/dev/null; do
        hwm="$(awk '/^VmHWM:/ { print $2 }' "/proc/$pid/status" 2>/dev/null || true)"
        if [ -n "$hwm" ] && [ "$hwm" -gt "$peak" ]; then peak="$hwm"; fi
        sleep 0.2
    done
    wait "$pid"
    local requests rate
    requests="$(jq '.requests' "$out")"
    rate="$(jq '.achieved_rate' "$out")"
    rm -f "$out"
    printf '%-12s %s requests at %.0f req/s, peak RSS %.1f MB\n' "$name" "$requests" "$rate" "$(awk -v k="$peak" 'BEGIN { print k / 1024 }')"
    if [ "$requests" -ne "$REQUESTS" ] || [ "$peak" -ge "$LIMIT_KB" ]; then status=1; fi
}

measure closed --concurrency "$CONCURRENCY"
measure open --rate "$OPEN_RATE"
# Memory grows with open connections (about 11 KB each), so also measure as many connections
# as an open-loop run holds by default (--max-in-flight 1000), here with the closed loop's.
measure closed-1000 --concurrency 1000
if [ "$status" -eq 0 ]; then echo "PASS: every run completed under 50 MB"; else echo "FAIL"; fi
exit "$status"

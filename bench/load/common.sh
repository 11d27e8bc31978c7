# Shared by the redwatch load bench scripts: build, start the demo API, clean up.
# shellcheck shell=bash

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
REDWATCH="$REPO_ROOT/target/release/redwatch"
BENCH_PIDS=()

cleanup() {
    for pid in "${BENCH_PIDS[@]}"; do
        kill -CONT "$pid" 2>/dev/null || true
        kill "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
}
trap cleanup EXIT

build_release() {
    (cd "$REPO_ROOT" && cargo build --release -p redwatch-cli --quiet)
}

# start_server: runs `redwatch serve --latency-scale 0` on an ephemeral loopback port and sets
# SERVER_PID and SERVER_URL from its startup line.
start_server() {
    local log
    log="$(mktemp)"
    "$REDWATCH" serve --latency-scale 0 --listen 127.0.0.1:0 --log-level warn >"$log" 2>&1 &
    SERVER_PID=$!
    BENCH_PIDS+=("$SERVER_PID")
    for _ in $(seq 1 100); do
        SERVER_URL="$(sed -n 's/^redwatch serve listening on \(http:\/\/[^ ]*\).*/\1/p' "$log")"
        [ -n "$SERVER_URL" ] && break
        sleep 0.1
    done
    rm -f "$log"
    if [ -z "$SERVER_URL" ]; then
        echo "redwatch serve did not start" >&2
        exit 1
    fi
}

# median of the numbers given as arguments
median() {
    printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

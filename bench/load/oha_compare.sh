#!/usr/bin/env bash
# Closed-loop throughput of `redwatch load` against oha, measured in the same run, alternating,
# against `redwatch serve --latency-scale 0` on loopback. Prints each round and the median ratio.
#
# Usage: bench/load/oha_compare.sh            (env: ROUNDS=5 SECONDS_PER_RUN=10 CONCURRENCY=50
#                                              ENDPOINT=/ep_one)
# Needs jq; installs oha with `cargo install oha --locked` when it is not on PATH.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

ROUNDS="${ROUNDS:-5}"
SECONDS_PER_RUN="${SECONDS_PER_RUN:-10}"
CONCURRENCY="${CONCURRENCY:-50}"
ENDPOINT="${ENDPOINT:-/ep_one}"

command -v jq >/dev/null || { echo "jq is required" >&2; exit 1; }
if ! command -v oha >/dev/null; then
    cargo install oha --locked --quiet
fi
OHA="$(command -v oha || echo "$HOME/.cargo/bin/oha")"
build_release
start_server
echo "target: $SERVER_URL$ENDPOINT, $CONCURRENCY connections, ${SECONDS_PER_RUN}s per run, $ROUNDS rounds"
echo "redwatch: $("$REDWATCH" --version); oha: $("$OHA" --version)"

# Warm-up, not recorded: the first seconds against a fresh server are slower for whoever runs first.
"$REDWATCH" load --target "$SERVER_URL" --mix "$ENDPOINT=1" --concurrency "$CONCURRENCY" --duration 2s >/dev/null 2>&1
"$OHA" --no-tui -z 2s -c "$CONCURRENCY" "$SERVER_URL$ENDPOINT" >/dev/null

ours=()
theirs=()
ratios=()
for round in $(seq 1 "$ROUNDS"); do
    # Alternate which tool goes first so that warm-up and drift do not favour one side.
    order=(redwatch oha)
    if [ $((round % 2)) -eq 0 ]; then order=(oha redwatch); fi
    for tool in "${order[@]}"; do
        if [ "$tool" = redwatch ]; then
            rps="$("$REDWATCH" load --target "$SERVER_URL" --mix "$ENDPOINT=1" --concurrency "$CONCURRENCY" \
                --duration "${SECONDS_PER_RUN}s" --json - 2>/dev/null | jq '.achieved_rate')"
            ours+=("$rps")
        else
            rps="$("$OHA" --no-tui --output-format json -z "${SECONDS_PER_RUN}s" -c "$CONCURRENCY" \
                "$SERVER_URL$ENDPOINT" | jq '.summary.requestsPerSec')"
            theirs+=("$rps")
        fi
    done
    ratio="$(awk -v a="${ours[-1]}" -v b="${theirs[-1]}" 'BEGIN { printf "%.3f", a / b }')"
    ratios+=("$ratio")
    printf 'round %d: redwatch %.0f req/s, oha %.0f req/s, ratio %s\n' "$round" "${ours[-1]}" "${theirs[-1]}" "$ratio"
done
printf 'median: redwatch %.0f req/s, oha %.0f req/s, median ratio %s\n' \
    "$(median "${ours[@]}")" "$(median "${theirs[@]}")" "$(median "${ratios[@]}")"

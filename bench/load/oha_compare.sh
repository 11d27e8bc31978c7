#!/usr/bin/env bash
# Closed-loop throughput of `redwatch load` against oha, measured in the same run, alternating.
# Prints each round and the median ratio.
#
# Usage: bench/load/oha_compare.sh            (env: ROUNDS=5 SECONDS_PER_RUN=10 CONCURRENCY=50
#                                              ENDPOINT=/ep_one PROTOCOL=http)
# PROTOCOL=http:  `redwatch serve --latency-scale 0` on loopback, GET $ENDPOINT, HTTP/1.1.
# PROTOCOL=https: nginx over TLS (self-signed, both clients told to accept it), HTTP/1.1.
# PROTOCOL=h2:    nginx over TLS, HTTP/2 chosen by ALPN (oha needs --http2 for it).
# Each client opens CONCURRENCY connections and keeps one request in flight on each.
# Needs jq (and for https and h2: nginx, openssl, curl); installs oha with
# `cargo install oha --locked` when it is not on PATH.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

ROUNDS="${ROUNDS:-5}"
SECONDS_PER_RUN="${SECONDS_PER_RUN:-10}"
CONCURRENCY="${CONCURRENCY:-50}"
ENDPOINT="${ENDPOINT:-/ep_one}"
PROTOCOL="${PROTOCOL:-http}"

command -v jq >/dev/null || { echo "jq is required" >&2; exit 1; }
if ! command -v oha >/dev/null; then
    cargo install oha --locked --quiet
fi
OHA="$(command -v oha || echo "$HOME/.cargo/bin/oha")"
build_release
OURS_FLAGS=()
THEIR_FLAGS=()
case "$PROTOCOL" in
    http) start_server ;;
    https) start_tls_server; SERVER_URL="$TLS_URL"; ENDPOINT=/
           OURS_FLAGS=(--insecure); THEIR_FLAGS=(--insecure) ;;
    h2) start_tls_server; SERVER_URL="$H2_URL"; ENDPOINT=/
        OURS_FLAGS=(--insecure); THEIR_FLAGS=(--insecure --http2) ;;
    *) echo "PROTOCOL must be http, https or h2" >&2; exit 2 ;;
esac
echo "target: $SERVER_URL$ENDPOINT, $CONCURRENCY connections, ${SECONDS_PER_RUN}s per run, $ROUNDS rounds"
echo "redwatch: $("$REDWATCH" --version); oha: $("$OHA" --version)"

# Warm-up, not recorded: the first seconds against a fresh server are slower for whoever runs first.
"$REDWATCH" load --target "$SERVER_URL" "${OURS_FLAGS[@]}" --mix "$ENDPOINT=1" --concurrency "$CONCURRENCY" --duration 2s >/dev/null 2>&1
"$OHA" --no-tui "${THEIR_FLAGS[@]}" -z 2s -c "$CONCURRENCY" "$SERVER_URL$ENDPOINT" >/dev/null

ours=()
theirs=()
ratios=()
for round in $(seq 1 "$ROUNDS"); do
    # Alternate which tool goes first so that warm-up and drift do not favour one side.
    order=(redwatch oha)
    if [ $((round % 2)) -eq 0 ]; then order=(oha redwatch); fi
    for tool in "${order[@]}"; do
        if [ "$tool" = redwatch ]; then
            summary="$("$REDWATCH" load --target "$SERVER_URL" "${OURS_FLAGS[@]}" --mix "$ENDPOINT=1" \
                --concurrency "$CONCURRENCY" --duration "${SECONDS_PER_RUN}s" --json - 2>/dev/null)"
            # Every response must be a 200, or the rate would count failures.
            [ "$(jq '[.endpoints[].status | to_entries[] | select(.key != "200") | .value] | add // 0' <<<"$summary")" = 0 ] ||
                { echo "redwatch load got responses other than 200" >&2; exit 1; }
            rps="$(jq '.achieved_rate' <<<"$summary")"
            ours+=("$rps")
        else
            rps="$("$OHA" --no-tui "${THEIR_FLAGS[@]}" --output-format json -z "${SECONDS_PER_RUN}s" \
                -c "$CONCURRENCY" "$SERVER_URL$ENDPOINT" | jq '.summary.requestsPerSec')"
            theirs+=("$rps")
        fi
    done
    ratio="$(awk -v a="${ours[-1]}" -v b="${theirs[-1]}" 'BEGIN { printf "%.3f", a / b }')"
    ratios+=("$ratio")
    printf 'round %d: redwatch %.0f req/s, oha %.0f req/s, ratio %s\n' "$round" "${ours[-1]}" "${theirs[-1]}" "$ratio"
done
printf 'median: redwatch %.0f req/s, oha %.0f req/s, median ratio %s\n' \
    "$(median "${ours[@]}")" "$(median "${theirs[@]}")" "$(median "${ratios[@]}")"

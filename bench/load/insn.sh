#!/usr/bin/env bash
# Instructions per request of the load generator itself, `redwatch load` against oha, exact:
# each client runs under valgrind (callgrind, no cache simulation), closed loop with 4
# keep-alive connections against `redwatch serve --latency-scale 0` on loopback (not under
# valgrind), once for N1 and once for N2 requests; (Ir(N2) - Ir(N1)) / (N2 - N1) is the cost of
# one request with start-up, connection set-up and the final report cancelled out.
#
# Usage: bench/load/insn.sh     (env: N1=2000 N2=10000 ENDPOINT=/users/7 CONCURRENCY=4)
#        BASELINE=/path/to/other/redwatch also measures that build, in the same run (before/after).
# Needs valgrind; installs oha with `cargo install oha --locked` when it is not on PATH.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

N1="${N1:-2000}"
N2="${N2:-10000}"
ENDPOINT="${ENDPOINT:-/users/7}"
CONCURRENCY="${CONCURRENCY:-4}"
BASELINE="${BASELINE:-}"

command -v valgrind >/dev/null || { echo "valgrind is required (Debian package valgrind)" >&2; exit 1; }
if ! command -v oha >/dev/null; then
    cargo install oha --locked --quiet
fi
OHA="$(command -v oha || echo "$HOME/.cargo/bin/oha")"
build_release
start_server
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"; cleanup' EXIT

# instructions CLIENT N: total instructions of one client run of N requests.
instructions() {
    local client=$1 requests=$2 command
    case "$client" in
        redwatch | baseline)
            local binary="$REDWATCH"
            [ "$client" = baseline ] && binary="$BASELINE"
            command=("$binary" load --target "$SERVER_URL" --mix "$ENDPOINT=1"
                     --concurrency "$CONCURRENCY" --requests "$requests" --json "$WORK/summary.json") ;;
        oha) command=("$OHA" --no-tui -n "$requests" -c "$CONCURRENCY" "$SERVER_URL$ENDPOINT") ;;
    esac
    valgrind --tool=callgrind --cache-sim=no --callgrind-out-file="$WORK/callgrind.out" \
        "${command[@]}" >"$WORK/out" 2>"$WORK/err" || { cat "$WORK/err" >&2; return 1; }
    if [ "$client" != oha ]; then
        [ "$(jq '.errors' "$WORK/summary.json")" = 0 ] || { echo "$client load saw errors" >&2; return 1; }
    fi
    grep -E '^(summary|totals):' "$WORK/callgrind.out" | head -1 | awk '{print $2}'
}

echo "target: $SERVER_URL$ENDPOINT, $CONCURRENCY connections, $N1 and $N2 requests"
echo "redwatch: $("$REDWATCH" --version); oha: $("$OHA" --version)"
declare -A per_request
clients=(redwatch oha)
[ -n "$BASELINE" ] && clients=(baseline redwatch oha)
for client in "${clients[@]}"; do
    a=$(instructions "$client" "$N1")
    b=$(instructions "$client" "$N2")
    per_request[$client]=$(((b - a) / (N2 - N1)))
    echo "$client: ${per_request[$client]} instructions per request"
done
for client in "${clients[@]}"; do
    [ "$client" = oha ] && continue
    awk -v name="$client" -v a="${per_request[$client]}" -v b="${per_request[oha]}" \
        'BEGIN { printf "%s / oha: %.2f\n", name, a / b }'
done

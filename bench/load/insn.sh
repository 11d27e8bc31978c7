#!/usr/bin/env bash
# Instructions per request of the load generator itself, `redwatch load` against oha, exact:
# each client runs under valgrind (callgrind, no cache simulation), closed loop with 4
# keep-alive connections against `redwatch serve --latency-scale 0` on loopback (not under
# valgrind), once for N1 and once for N2 requests; (Ir(N2) - Ir(N1)) / (N2 - N1) is the cost of
# one request with start-up, connection set-up and the final report cancelled out.
#
# Usage: bench/load/insn.sh     (env: N1=2000 N2=10000 ENDPOINT=/users/7 CONCURRENCY=4)
# Needs valgrind; installs oha with `cargo install oha --locked` when it is not on PATH.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

N1="${N1:-2000}"
N2="${N2:-10000}"
ENDPOINT="${ENDPOINT:-/users/7}"
CONCURRENCY="${CONCURRENCY:-4}"

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
        redwatch) command=("$REDWATCH" load --target "$SERVER_URL" --mix "$ENDPOINT=1"
                           --concurrency "$CONCURRENCY" --requests "$requests" --json "$WORK/summary.json") ;;
        oha) command=("$OHA" --no-tui -n "$requests" -c "$CONCURRENCY" "$SERVER_URL$ENDPOINT") ;;
    esac
    valgrind --tool=callgrind --cache-sim=no --callgrind-out-file="$WORK/callgrind.out" \
        "${command[@]}" >"$WORK/out" 2>"$WORK/err" || { cat "$WORK/err" >&2; return 1; }
    if [ "$client" = redwatch ]; then
        [ "$(jq '.errors' "$WORK/summary.json")" = 0 ] || { echo "redwatch load saw errors" >&2; return 1; }
    fi
    grep -E '^(summary|totals):' "$WORK/callgrind.out" | head -1 | awk '{print $2}'
}

echo "target: $SERVER_URL$ENDPOINT, $CONCURRENCY connections, $N1 and $N2 requests"
echo "redwatch: $("$REDWATCH" --version); oha: $("$OHA" --version)"
declare -A per_request
for client in redwatch oha; do
    a=$(instructions "$client" "$N1")
    b=$(instructions "$client" "$N2")
    per_request[$client]=$(((b - a) / (N2 - N1)))
    echo "$client: ${per_request[$client]} instructions per request"
done
awk -v a="${per_request[redwatch]}" -v b="${per_request[oha]}" \
    'BEGIN { printf "redwatch / oha: %.2f\n", a / b }'

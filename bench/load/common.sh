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

# start_tls_server: nginx (Debian package nginx or nginx-light) on two ephemeral loopback ports
# with a self-signed certificate made here, answering every request with a 3-byte body: HTTP/1.1
# over TLS at $TLS_URL and HTTP/2 (chosen by ALPN) at $H2_URL. The clients, not a backend, are
# what these runs measure.
start_tls_server() {
    command -v nginx >/dev/null || { echo "nginx is required (Debian package nginx-light)" >&2; exit 1; }
    command -v openssl >/dev/null || { echo "openssl is required" >&2; exit 1; }
    local dir port_h1 port_h2
    dir="$(mktemp -d)"
    openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj "/CN=localhost" \
        -addext "subjectAltName=IP:127.0.0.1" -keyout "$dir/key.pem" -out "$dir/cert.pem" 2>/dev/null
    port_h1="$(free_port)"
    port_h2="$(free_port)"
    cat >"$dir/nginx.conf" <<CONF
worker_processes 1;
daemon off;
pid $dir/nginx.pid;
error_log $dir/error.log;
events { worker_connections 4096; }
http {
    access_log off;
    client_body_temp_path $dir; proxy_temp_path $dir; fastcgi_temp_path $dir;
    uwsgi_temp_path $dir; scgi_temp_path $dir;
    keepalive_requests 100000000;
    ssl_certificate $dir/cert.pem;
    ssl_certificate_key $dir/key.pem;
    server { listen 127.0.0.1:$port_h1 ssl; location / { return 200 "ok\\n"; } }
    server { listen 127.0.0.1:$port_h2 ssl http2; location / { return 200 "ok\\n"; } }
}
CONF
    nginx -c "$dir/nginx.conf" -p "$dir" &
    BENCH_PIDS+=("$!")
    TLS_URL="https://127.0.0.1:$port_h1"
    H2_URL="https://127.0.0.1:$port_h2"
    for _ in $(seq 1 100); do
        curl -skf "$TLS_URL/" >/dev/null 2>&1 && return 0
        sleep 0.1
    done
    echo "nginx did not start:" >&2
    cat "$dir/error.log" >&2
    exit 1
}

# free_port: a TCP port on 127.0.0.1 that was free a moment ago.
free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

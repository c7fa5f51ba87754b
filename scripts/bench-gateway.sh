#!/usr/bin/env bash
# bench-gateway.sh: persona-gate in the shape a deployment runs it, next to nginx, in one run of
# interleaved rounds. A benchmark, not a test: it prints figures and judges nothing but whether
# the answers were the expected 200s. The helpers (nginx, wrk rounds, medians, RSS) are
# scripts/bench-proxy.sh's; BENCHMARKS.md says how to read the output.
#
# The gateway here has what a deployment configures: RS256 and ES256 keys bound to kids, iss and
# aud checked, a claim header, a per-user rate-limit policy on `/` and the get-or-create policy,
# [persona] (a `persona-gate emulator` process: no request of the load reaches it), [inquiry],
# [webhook], a [gate] on a prefix the load does not hit. The load is wrk's `GET /` over $USERS
# users' tokens. The pairs, each an nginx case run just before its gateway case:
#   prod log ALG     the access log at info, written to a file, against nginx with its access log
#                    (RS256 and ES256 tokens);
#   prod ALG         the gateway at warn, nginx with no access log;
#   tls keep-alive   HTTPS, $CONNECTIONS keep-alive connections, against nginx terminating TLS with
#                    the same certificate and protocols (TLS 1.2 and 1.3);
#   tls handshake    HTTPS, one request per connection (`Connection: close`; wrk never resumes a
#                    session, so every one is a full handshake);
#   h2               h2load, $H2_CONNECTIONS connections x $H2_STREAMS streams over TLS, one token,
#                    against nginx's HTTP/2 proxy;
#   10k idle         the steady wrk load while $IDLE idle keep-alive connections (one request
#                    each, then quiet; scripts/hold-idle.py) sit on the same server;
#   unpinned         both cores for everyone: the gateway's multi-threaded runtime, nginx with 2
#                    workers, wrk with 2 threads.
# Every case but `prod log` runs at warn with no access log; every one but `prod log ES256` uses
# RS256 tokens. wrk runs on CPU $LOAD_CPU and every server on CPU $SERVER_CPU (the app too, in
# every case), except in `unpinned`.
#
# Printed: each round's figures as it runs; then per case the medians (req/s, p50, p99; h2load
# gives no percentiles, so its mean is printed as p50; the server's CPU microseconds per request,
# the figure to read where wrk is the one saturated), each server's RSS, the ratios to the nginx
# case of the pair, and for `10k idle` the RSS of each server before and while it holds the idle
# connections, and its p99 next to the same server's without them (`prod RS256`).
#
# Usage: scripts/bench-gateway.sh   (needs 2+ CPUs; about 9 minutes with the defaults)
# Knobs: DURATION=6s WARMUP=2s ROUNDS=3 CONNECTIONS=64 USERS=1000 IDLE=10000 H2_CONNECTIONS=64
#        H2_STREAMS=10 LOAD_CPU=0 SERVER_CPU=1 KEEP=1 (keep the temp dir)
#        GATEWAY_BIN=path (measure that persona-gate binary, e.g. an older build, instead of
#        building this tree's)
#        INSTRUCTIONS=1 (no timed rounds: instructions per request of `prod RS256` and
#        `prod log RS256` under callgrind, at INSTR_CONNECTIONS connections, as bench-proxy.sh)
# Needs, beyond bench-proxy.sh's tools, h2load (nghttp2-client) and python3; missing ones are
# installed with apt-get.

set -euo pipefail

DURATION=${DURATION:-6s}
WARMUP=${WARMUP:-2s}
ROUNDS=${ROUNDS:-3}
IDLE=${IDLE:-10000}
H2_CONNECTIONS=${H2_CONNECTIONS:-64}
H2_STREAMS=${H2_STREAMS:-10}
export DURATION WARMUP ROUNDS

# shellcheck source=scripts/bench-proxy.sh
source "$(dirname "${BASH_SOURCE[0]}")/bench-proxy.sh"

ISSUER=https://idp.bench.example
AUDIENCE=bench-app
EMULATOR_KEY=emulator_demo_key_not_a_persona_key
GATEWAY=${GATEWAY_BIN:-$ROOT/target/release/persona-gate}

install_h2load() {
    local missing=()
    command -v h2load >/dev/null 2>&1 || missing+=(nghttp2-client)
    command -v python3 >/dev/null 2>&1 || missing+=(python3)
    [[ ${#missing[@]} -eq 0 ]] || apt_install "${missing[@]}"
}

# gateway_config HTTP-PORT HTTPS-PORT LEVEL: the production-shaped config (HTTPS-PORT may be empty).
gateway_config() {
    local http=$1 https=$2 level=$3
    cat <<EOF
[server]
http = "127.0.0.1:$http"
EOF
    [[ -n "$https" ]] && cat <<EOF
https = "127.0.0.1:$https"
tls_cert = "$ROOT/certs/dev-cert.pem"
tls_key = "$ROOT/certs/dev-key.pem"
EOF
    cat <<EOF

[limits]
# The idle connections of the \`10k idle\` case stay for the whole run.
max_connections = 20000
idle_timeout = "900s"

[log]
format = "json"
level = "$level"

[upstream]
url = "http://127.0.0.1:$UP_PORT"

[identity]
user_header = "x-user-id"
forward_token = false

[identity.claim_headers]
email = "x-user-email"

[auth]
sources = ["header"]
issuers = ["$ISSUER"]
audiences = ["$AUDIENCE"]
public_paths = ["/healthz", "/readyz"]

[[auth.keys]]
kid = "bench-rs"
algorithms = ["RS256"]
public_key_pem = "$WORK/rs256.pub.pem"

[[auth.keys]]
kid = "bench-es"
algorithms = ["ES256"]
public_key_pem = "$WORK/es256.pub.pem"

[[rate_limit.policies]]
name = "get-or-create"
rate = "10/m"
burst = 5
key = "user"
routes = ["/api/inquiries/get-or-create"]
headers = true

# Per user. A decision costs the same at any rate; this one never refuses the load, not even
# h2load's, which is all one user.
[[rate_limit.policies]]
name = "user"
rate = "100000/s"
burst = 100000
key = "user"
routes = ["/"]

[webhook]
path = "/webhooks/persona"
secrets = [{ value = "wbhsec_bench_$(openssl rand -hex 8)" }]
forward_path = "/persona/events"

[persona]
base_url = "http://127.0.0.1:$EMU_PORT/api/v1"
api_key = { value = "$EMULATOR_KEY" }
version = "2025-10-27"
template_id = "itmpl_emulator_kyc"

[inquiry]
path = "/api/inquiries/get-or-create"
allowed_origins = ["https://app.bench.example"]

[inquiry.fields]
given_name = "name_first"

[gate]
paths = ["/verified/"]
require = ["approved"]
EOF
}

# start_prod NAME LEVEL CPUS [HTTPS-PORT]: a production-shaped gateway on CPUS, its log (stdout) in
# $WORK/gateway-NAME.log; sets GATEWAY_PID and GATEWAY_URL.
start_prod() {
    local name=$1 level=$2 cpus=$3 https=${4:-} port config="$WORK/gateway-$1.toml"
    port=$(free_port $((NEXT_PORT)))
    NEXT_PORT=$((port + 1))
    gateway_config "$port" "$https" "$level" >"$config"
    "$GATEWAY" check --config "$config" >/dev/null \
        || die "the bench gateway config is invalid: $("$GATEWAY" check --config "$config" 2>&1)"
    taskset -c "$cpus" "$GATEWAY" --config "$config" >>"$WORK/gateway-$name.log" 2>&1 &
    STARTED_PIDS+=($!)
    GATEWAY_PID=$!
    GATEWAY_URL="http://127.0.0.1:$port/"
    wait_for_200 "${GATEWAY_URL}readyz"
}

# The proxy server block of nginx: a plain reverse proxy to the app with the gateway's headers.
nginx_location() {
    cat <<EOF
        location / {
            proxy_pass http://app;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host \$host;
            proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for;
            proxy_set_header X-Forwarded-Proto \$scheme;
            proxy_set_header X-Forwarded-Host \$host;
            proxy_set_header X-Request-Id \$request_id;
        }
EOF
}

# start_proxy_nginx NAME LISTEN-LINES [EXTRA]: nginx as the plain reverse proxy; sets NGINX_PID.
start_proxy_nginx() {
    local name=$1 listen=$2 extra=${3:-}
    start_nginx "$name" "    upstream app { server 127.0.0.1:$UP_PORT; keepalive 256; }
    keepalive_timeout 900s;
    server {
$listen
$extra
$(nginx_location)
    }"
}

# measure_h2 NAME URL TOKEN PIDS: one round of h2load (warm-up, then the measured run), as `measure`.
measure_h2() {
    local name=$1 url=$2 token=$3 pids=$4 out ticks
    local secs=${DURATION%s} warm=${WARMUP%s}
    # The warm-up is a run of its own, so the CPU time read around the measured run is of its
    # requests only (its 64 handshakes are noise beside them).
    taskset -c "$LOAD_CPU" h2load -t1 -c"$H2_CONNECTIONS" -m"$H2_STREAMS" -D "$warm" \
        -H "Authorization: Bearer $token" "$url" >/dev/null 2>&1
    # shellcheck disable=SC2086 # a space-separated list
    ticks=$(cpu_ticks $pids)
    out=$(taskset -c "$LOAD_CPU" h2load -t1 -c"$H2_CONNECTIONS" -m"$H2_STREAMS" -D "$secs" \
        -H "Authorization: Bearer $token" "$url" 2>&1)
    # shellcheck disable=SC2086
    ticks=$(($(cpu_ticks $pids) - ticks))
    echo "$out" >>"$WORK/h2load-${name// /-}.txt"
    local rps mean failed non2xx cpu
    rps=$(awk '/^finished in/ { print $4 }' <<<"$out")
    mean=$(to_ms "$(awk '/^time for request:/ { print $6 }' <<<"$out")")
    failed=$(awk '/^requests:/ { print $10 + $12 + $14 }' <<<"$out")
    non2xx=$(awk '/^status codes:/ { print $5 + $7 + $9 }' <<<"$out")
    [[ -z "$rps" ]] && INVALID+=("$name: h2load printed no result")
    [[ "${failed:-0}" != 0 ]] && INVALID+=("$name: $failed requests failed, errored or timed out")
    [[ "${non2xx:-0}" != 0 ]] && INVALID+=("$name: $non2xx answers were not 2xx")
    cpu=$(cpu_us_per_request "$ticks" "$(awk '/^requests:/ { print $8 }' <<<"$out")")
    printf '   %-28s %10.0f req/s  mean %5s ms  %6s us CPU/req\n' "$name" "${rps:-0}" "$mean" "$cpu" >&2
    ROUND_LINES[$name]+="${rps:-0} $mean $mean $cpu"$'\n'
}

# hold_idle NAME URL: $IDLE idle keep-alive connections to URL, from the load CPU, for the whole run.
hold_idle() {
    local name=$1 url=$2 port out="$WORK/hold-${1// /-}.out"
    port=${url##*:}
    port=${port%/}
    : >"$out"
    taskset -c "$LOAD_CPU" python3 "$ROOT/scripts/hold-idle.py" 127.0.0.1 "$port" "$IDLE" "$WORK/rs256.tokens" \
        >"$out" 2>&1 &
    STARTED_PIDS+=($!)
    local i
    for i in $(seq 600); do
        grep -q '^held' "$out" && return
        kill -0 "${STARTED_PIDS[-1]}" 2>/dev/null || die "$name: holding idle connections failed: $(cat "$out")"
        sleep 0.2
    done
    die "$name: $IDLE idle connections not held within 2 minutes"
}

main() {
    install_missing
    install_h2load
    [[ $(nproc) -ge 2 ]] || die "needs at least 2 CPUs (load on one, servers on another)"
    [[ $(ulimit -n) -ge $((IDLE + 1000)) ]] || ulimit -n $((IDLE + 1000)) 2>/dev/null \
        || die "needs $((IDLE + 1000)) open files (ulimit -n) for $IDLE idle connections"

    say "building persona-gate (release) and the token minter (dev)"
    (cd "$ROOT" && cargo build --quiet --example bench_tokens)
    if [[ -z "${GATEWAY_BIN:-}" ]]; then
        (cd "$ROOT" && cargo build --release --quiet --bin persona-gate)
    fi

    say "keys and $USERS tokens per algorithm in $WORK"
    openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$WORK/rs256.pem" 2>/dev/null
    openssl pkey -in "$WORK/rs256.pem" -pubout -out "$WORK/rs256.pub.pem"
    openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$WORK/es256.pem" 2>/dev/null
    openssl pkey -in "$WORK/es256.pem" -pubout -out "$WORK/es256.pub.pem"
    local mint="$ROOT/target/debug/examples/bench_tokens"
    "$mint" RS256 "$WORK/rs256.pem" bench-rs "$USERS" "$ISSUER" "$AUDIENCE" >"$WORK/rs256.tokens"
    "$mint" ES256 "$WORK/es256.pem" bench-es "$USERS" "$ISSUER" "$AUDIENCE" >"$WORK/es256.tokens"
    write_rotate_lua

    UP_PORT=$(free_port 18500)
    start_nginx upstream "    server {
        listen 127.0.0.1:$UP_PORT backlog=4096;
        location / { default_type text/plain; return 200 \"hello from the app\\n\"; }
    }"
    wait_for_200 "http://127.0.0.1:$UP_PORT/"
    EMU_PORT=$(free_port $((UP_PORT + 1)))
    taskset -c "$SERVER_CPU" "$GATEWAY" emulator --listen "127.0.0.1:$EMU_PORT" \
        >>"$WORK/emulator.log" 2>&1 &
    STARTED_PIDS+=($!)
    NEXT_PORT=$((EMU_PORT + 1))

    if [[ -n "$INSTRUCTIONS" ]]; then
        count_gateway_instructions
        report_invalid
        return
    fi

    local -A url tokens pid
    local port tls_port
    # nginx: with its access log; without; terminating TLS (HTTP/1.1 and h2); for the idle
    # connections; with 2 workers, unpinned. Its TLS protocols are the gateway's: Debian 12's
    # nginx 1.22 leaves TLS 1.3 out by default (nginx's own default has it since 1.23.4), and
    # wrk's OpenSSL completes TLS 1.2 handshakes about 1.7 times as fast as 1.3 ones on one core,
    # which the handshake case would otherwise measure.
    port=$(free_port $NEXT_PORT)
    start_proxy_nginx proxy-log "        listen 127.0.0.1:$port backlog=4096;" "        access_log $WORK/nginx-access.log;"
    wait_for_200 "http://127.0.0.1:$port/"
    url["nginx prod log RS256"]="http://127.0.0.1:$port/"
    pid["nginx prod log RS256"]=$(nginx_pids "$NGINX_PID")
    port=$(free_port $((port + 1)))
    tls_port=$(free_port $((port + 1)))
    start_proxy_nginx proxy "        listen 127.0.0.1:$port backlog=4096;
        listen 127.0.0.1:$tls_port ssl http2 backlog=4096;
        ssl_certificate $ROOT/certs/dev-cert.pem;
        ssl_certificate_key $ROOT/certs/dev-key.pem;
        ssl_protocols TLSv1.2 TLSv1.3;"
    wait_for_200 "http://127.0.0.1:$port/"
    url["nginx prod RS256"]="http://127.0.0.1:$port/"
    url["nginx tls keep-alive"]="https://127.0.0.1:$tls_port/"
    pid["nginx prod RS256"]=$(nginx_pids "$NGINX_PID")
    port=$(free_port $((tls_port + 1)))
    start_proxy_nginx proxy-idle "        listen 127.0.0.1:$port backlog=4096;"
    wait_for_200 "http://127.0.0.1:$port/"
    url["nginx 10k idle"]="http://127.0.0.1:$port/"
    pid["nginx 10k idle"]=$(nginx_pids "$NGINX_PID")
    port=$(free_port $((port + 1)))
    NGINX_WORKERS=2 NGINX_CPUS=0,1 start_proxy_nginx proxy-smp "        listen 127.0.0.1:$port backlog=4096;"
    wait_for_200 "http://127.0.0.1:$port/"
    url["nginx unpinned"]="http://127.0.0.1:$port/"
    pid["nginx unpinned"]=$(nginx_pids "$NGINX_PID")
    NEXT_PORT=$((port + 1))

    # The gateways, the same four shapes.
    start_prod log info "$SERVER_CPU"
    url["gateway prod log RS256"]=$GATEWAY_URL
    pid["gateway prod log RS256"]=$GATEWAY_PID
    tls_port=$(free_port $((NEXT_PORT + 20)))
    start_prod plain warn "$SERVER_CPU" "$tls_port"
    IDLE_BEFORE_KB=$(mem_kb VmRSS "$GATEWAY_PID")
    url["gateway prod RS256"]=$GATEWAY_URL
    url["gateway tls keep-alive"]="https://127.0.0.1:$tls_port/"
    pid["gateway prod RS256"]=$GATEWAY_PID
    NEXT_PORT=$((tls_port + 1))
    start_prod idle warn "$SERVER_CPU"
    url["gateway 10k idle"]=$GATEWAY_URL
    pid["gateway 10k idle"]=$GATEWAY_PID
    start_prod smp warn 0,1
    url["gateway unpinned"]=$GATEWAY_URL
    pid["gateway unpinned"]=$GATEWAY_PID

    # The same servers under other names: ES256 tokens, handshakes, h2.
    local side
    for side in nginx gateway; do
        url["$side prod log ES256"]=${url["$side prod log RS256"]}
        pid["$side prod log ES256"]=${pid["$side prod log RS256"]}
        url["$side prod ES256"]=${url["$side prod RS256"]}
        pid["$side prod ES256"]=${pid["$side prod RS256"]}
        url["$side tls handshake"]=${url["$side tls keep-alive"]}
        url["$side h2"]=${url["$side tls keep-alive"]}
        pid["$side tls keep-alive"]=${pid["$side prod RS256"]}
        pid["$side tls handshake"]=${pid["$side prod RS256"]}
        pid["$side h2"]=${pid["$side prod RS256"]}
    done

    PAIRS=("prod log RS256" "prod log ES256" "prod RS256" "prod ES256" "tls keep-alive" "tls handshake" "h2"
        "10k idle" "unpinned")
    local pair name
    for pair in "${PAIRS[@]}"; do
        for side in nginx gateway; do
            name="$side $pair"
            case $pair in *ES256) tokens[$name]="$WORK/es256.tokens" ;; *) tokens[$name]="$WORK/rs256.tokens" ;; esac
            check_sample "$name" "${url[$name]}" "${tokens[$name]}"
        done
    done
    # A webhook signed with a wrong secret and a gated path: both answered by the gateway itself,
    # so the features are live, not just configured.
    local gated
    gated=$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $(head -n1 "$WORK/rs256.tokens")" \
        "${url["gateway prod RS256"]}verified/x")
    say "gated path /verified/x: $gated (403 expected: no user of the load is verified)"
    [[ "$gated" == 403 ]] || INVALID+=("gateway prod RS256: the gate answered $gated, not 403")

    say "holding $IDLE idle connections on each of nginx and the gateway"
    local -A rss_before rss_held
    for side in nginx gateway; do
        name="$side 10k idle"
        # One warm-up first, so both RSS figures are of a server that has served the load.
        BENCH_TOKENS=${tokens[$name]} taskset -c "$LOAD_CPU" wrk -t1 -c"$CONNECTIONS" -d2s -s "$WORK/rotate.lua" "${url[$name]}" >/dev/null
        # shellcheck disable=SC2086 # a case's pids are a space-separated list
        rss_before[$name]=$(mem_kb VmRSS ${pid[$name]})
        hold_idle "$name" "${url[$name]}"
    done
    # The gateway releases an idle connection's buffers after header_read_timeout (10 s) of quiet.
    sleep 12
    for side in nginx gateway; do
        name="$side 10k idle"
        # shellcheck disable=SC2086
        rss_held[$name]=$(mem_kb VmRSS ${pid[$name]})
        say "$name: RSS ${rss_before[$name]} kB before, ${rss_held[$name]} kB with $IDLE idle connections"
    done

    local round
    for round in $(seq "$ROUNDS"); do
        say "round $round of $ROUNDS"
        for pair in "${PAIRS[@]}"; do
            for side in nginx gateway; do
                name="$side $pair"
                case $pair in
                    h2) measure_h2 "$name" "${url[$name]}" "$(head -n1 "${tokens[$name]}")" "${pid[$name]}" ;;
                    "tls handshake") BENCH_CLOSE=1 measure "$name" "${url[$name]}" "${tokens[$name]}" "${pid[$name]}" ;;
                    unpinned) WRK_CPUS=0,1 WRK_THREADS=2 measure "$name" "${url[$name]}" "${tokens[$name]}" "${pid[$name]}" ;;
                    *) measure "$name" "${url[$name]}" "${tokens[$name]}" "${pid[$name]}" ;;
                esac
            done
        done
    done
    for side in nginx gateway; do
        name="$side 10k idle"
        # shellcheck disable=SC2086
        rss_after[$name]=$(mem_kb VmRSS ${pid[$name]})
    done
    report_gateway
}

declare -A rss_after

# INSTRUCTIONS=1: bench-proxy.sh's `count_instructions` for the production shape, with and without
# the access log (RS256 tokens).
count_gateway_instructions() {
    local shape level port config
    printf '\ninstructions per request (callgrind; wrk: 1 thread, %s connections, %s users)\n\n' "$INSTR_CONNECTIONS" "$USERS"
    printf '%-24s %12s %10s\n' case "instr/req" requests
    for shape in "prod RS256:warn" "prod log RS256:info"; do
        level=${shape##*:}
        port=$(free_port $((NEXT_PORT + 40)))
        config="$WORK/gateway-instructions-$level.toml"
        gateway_config "$port" "" "$level" >"$config"
        callgrind_count "$level" "gateway ${shape%:*}" "$GATEWAY" "$config" "$port" "$WORK/rs256.tokens"
        printf '%-24s %12d %10d\n' "gateway ${shape%:*}" $((CG_TOTAL / CG_REQUESTS)) "$CG_REQUESTS"
    done
}

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2fx", a / b; else print "-" }'; }
mb() { awk -v k="$1" 'BEGIN { printf "%.1f", k / 1024 }'; }

report_gateway() {
    local pair side name rps p50 p99 cpu nrps np99 ncpu
    printf '\nwrk: 1 thread on CPU %s, %s connections, %s per run (after %s warm-up); servers on CPU %s; %s users\n' \
        "$LOAD_CPU" "$CONNECTIONS" "$DURATION" "$WARMUP" "$SERVER_CPU" "$USERS"
    printf 'h2load: %s connections x %s streams, one token; unpinned: wrk 2 threads, nginx 2 workers, all on CPUs 0-1\n' \
        "$H2_CONNECTIONS" "$H2_STREAMS"
    printf 'medians of %s interleaved rounds\n\n' "$ROUNDS"
    printf '%-30s %10s %8s %8s %9s %9s %9s %9s %9s\n' case "req/s" "p50 ms" "p99 ms" "RSS MB" "CPU us" "rps/ngx" "p99/ngx" \
        "CPU/ngx"
    for pair in "${PAIRS[@]}"; do
        nrps=$(median "nginx $pair" 1)
        np99=$(median "nginx $pair" 3)
        ncpu=$(median "nginx $pair" 4)
        for side in nginx gateway; do
            name="$side $pair"
            rps=$(median "$name" 1)
            p50=$(median "$name" 2)
            p99=$(median "$name" 3)
            cpu=$(median "$name" 4)
            [[ $pair == h2 ]] && p99=-
            # shellcheck disable=SC2086
            printf '%-30s %10.0f %8s %8s %9s %9s %9s %9s %9s\n' "$name" "$rps" "$p50" "$p99" \
                "$(mb "$(mem_kb VmRSS ${pid[$name]})")" "$cpu" "$(ratio "$rps" "$nrps")" \
                "$([[ $pair == h2 ]] && echo - || ratio "$p99" "$np99")" "$(ratio "$cpu" "$ncpu")"
        done
    done
    printf '\n%s idle keep-alive connections (RSS MB: before, held after %s, after the rounds; KB per connection):\n' \
        "$IDLE" "12 s"
    for side in nginx gateway; do
        name="$side 10k idle"
        printf '%-30s %8s %8s %8s %8s KB\n' "$name" "$(mb "${rss_before[$name]}")" "$(mb "${rss_held[$name]}")" \
            "$(mb "${rss_after[$name]}")" \
            "$(awk -v a="${rss_held[$name]}" -v b="${rss_before[$name]}" -v n="$IDLE" 'BEGIN { printf "%.2f", (a - b) / n }')"
        printf '   p99 with them %s ms, without (%s prod RS256) %s ms: %s\n' "$(median "$name" 3)" "$side" \
            "$(median "$side prod RS256" 3)" "$(ratio "$(median "$name" 3)" "$(median "$side prod RS256" 3)")"
    done
    printf '\ngateway idle RSS before any load: %s MB\n' "$(mb "$IDLE_BEFORE_KB")"
    report_invalid
}

main "$@"

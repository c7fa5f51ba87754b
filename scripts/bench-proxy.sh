#!/usr/bin/env bash
# bench-proxy.sh: how much a request costs through persona-gate, next to nginx. A benchmark, not a
# test: it prints figures and judges nothing but whether the responses were the expected 200s.
#
# One run drives the same wrk load (1 thread, $CONNECTIONS keep-alive connections, a Lua script
# rotating `Authorization: Bearer` over $USERS distinct users' tokens) through:
#   1. upstream direct     the app itself (HS256 tokens);
#   2. nginx proxy ALG     nginx as a plain reverse proxy (no auth) to the same app, once with each
#                          algorithm's tokens (HS256, RS256, ES256);
#   3. persona-gate HS256  the gateway verifying HS256 tokens, forwarding to the same app;
#   4. persona-gate RS256  ... RSA-2048 tokens;
#   5. persona-gate ES256  ... P-256 tokens.
# With BARE=1, also "bare hyper proxy" (benches/bare_proxy.rs, HS256 tokens): hyper's HTTP/1 server
# and client with nothing of the gateway's, the floor for what persona-gate's own work costs.
# Each gateway case is compared with the nginx case that carried the very same requests: an RS256
# token is about 480 bytes against HS256's 190, and nginx reads and forwards that header too, so a
# ratio across different token streams would compare different loads. Each nginx case runs just
# before its gateway case, so the two also see the same moment of the machine.
# wrk is pinned to CPU $LOAD_CPU and every server to CPU $SERVER_CPU (`taskset`), as a sidecar and
# its app would share a node. Each gateway case has a gateway process of its own, so its peak RSS
# is its own.
#
# A shared machine drifts by several percent within a minute, which would favour whichever case
# ran in the quieter moment. So the cases run in turn, $ROUNDS times over (each time after a short
# warm-up), and each figure printed is the median of a case's rounds.
#
# The app is nginx answering `return 200` from one worker: about as cheap per request as an app
# can be, so the figures show proxy overhead, and it is neither of the proxies under test (a hyper
# app would flatter hyper's client). Both proxies forward the same X-Forwarded-* headers and keep
# pooled keep-alive connections to it; neither writes access logs (the gateway runs at
# log level $GATEWAY_LOG).
#
# Printed: each round's requests/s, p50/p99 latency (wrk --latency) and the server's CPU
# microseconds per request as it runs; then per case the medians, peak RSS (VmHWM from
# /proc/PID/status; for nginx the master plus its worker) and
# ratios to the nginx proxy with the same tokens (HS256's for the upstream); and the gateway's idle
# RSS (VmRSS once it answers /healthz, before any load).
#
# If any case got a non-200 answer or a socket error, its figures measure an error path, not the
# real work: the script says so loudly and exits 1 (e.g. RS256/ES256 401s while auth verification is missing).
#
# Usage: scripts/bench-proxy.sh            (from anywhere; needs 2+ CPUs)
# Knobs (environment): DURATION=10s WARMUP=3s ROUNDS=3 CONNECTIONS=64 USERS=1000 LOAD_CPU=0
#                      SERVER_CPU=1 GATEWAY_LOG=warn KEEP=1 (keep the temp dir: configs, keys, logs)
#                      BARE=1 (add the bare hyper proxy; one more release build)
#                      INSTRUCTIONS=1 (no timed rounds: count the gateway's instructions per
#                      request under valgrind instead; see `count_instructions`)
# Needs wrk, nginx, curl, openssl and taskset (and valgrind with INSTRUCTIONS=1); missing ones
# are installed with apt-get (sudo when not root). Note that installing the nginx package may
# also start the system's nginx on port 80.
# Builds persona-gate in release mode and the token minter (benches/bench_tokens.rs) in the dev
# profile (it only signs a few thousand tokens, and a second release link would take minutes).

set -euo pipefail

DURATION=${DURATION:-10s}
WARMUP=${WARMUP:-3s}
ROUNDS=${ROUNDS:-3}
CONNECTIONS=${CONNECTIONS:-64}
USERS=${USERS:-1000}
LOAD_CPU=${LOAD_CPU:-0}
SERVER_CPU=${SERVER_CPU:-1}
GATEWAY_LOG=${GATEWAY_LOG:-warn}
BARE=${BARE:-}
INSTRUCTIONS=${INSTRUCTIONS:-}
# With one connection a request's work does not depend on how the others' happen to batch, so
# the count holds even on a busy machine; more connections count what batching saves too.
INSTR_CONNECTIONS=${INSTR_CONNECTIONS:-16}

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
WORK=$(mktemp -d /tmp/persona-gate-bench.XXXXXX)
# nginx workers drop to an unprivileged user when started as root; let them read the configs.
chmod 755 "$WORK"
STARTED_PIDS=()

cleanup() {
    local pid
    for pid in "${STARTED_PIDS[@]}"; do
        kill "$pid" 2>/dev/null || true
    done
    wait 2>/dev/null || true
    if [[ "${KEEP:-0}" == 1 ]]; then
        echo "kept $WORK"
    else
        rm -rf "$WORK"
    fi
}
trap cleanup EXIT

say() { printf '\n== %s\n' "$*" >&2; }
die() { printf 'bench-proxy: %s\n' "$*" >&2; exit 2; }

install_missing() {
    local missing=() tool pkg
    local tools=(wrk nginx curl openssl taskset)
    [[ -n "$INSTRUCTIONS" ]] && tools+=(valgrind)
    for tool in "${tools[@]}"; do
        if ! command -v "$tool" >/dev/null 2>&1; then
            case "$tool" in
                taskset) pkg=util-linux ;;
                *) pkg=$tool ;;
            esac
            missing+=("$pkg")
        fi
    done
    [[ ${#missing[@]} -eq 0 ]] || apt_install "${missing[@]}"
}

# apt_install PACKAGE...: installs Debian packages (with sudo when not root).
apt_install() {
    say "installing $*"
    local sudo=""
    [[ $(id -u) -ne 0 ]] && sudo=sudo
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "$@" >/dev/null
}

# A free loopback port, probed with bash's /dev/tcp (a refused connect means nobody listens).
free_port() {
    local port
    for port in $(seq "$1" $(($1 + 200))); do
        if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
            echo "$port"
            return
        fi
    done
    die "no free port near $1"
}

# wait_for_200 URL [TRIES]: tries every 0.1 s, 100 times unless told.
wait_for_200() {
    local url=$1 tries=${2:-100} i
    for i in $(seq "$tries"); do
        [[ $(curl -s -o /dev/null -w '%{http_code}' "$url" || true) == 200 ]] && return
        sleep 0.1
    done
    die "$url did not answer 200"
}

# VmHWM or VmRSS (kB) summed over the given pids.
mem_kb() {
    local field=$1 pid total=0 kb
    shift
    for pid in "$@"; do
        kb=$(awk -v f="$field:" '$1 == f { print $2 }' "/proc/$pid/status" 2>/dev/null || echo 0)
        total=$((total + ${kb:-0}))
    done
    echo "$total"
}

# nginx master plus the workers it forked (children of that pid only).
nginx_pids() {
    echo "$1" $(pgrep -P "$1" || true)
}

# start_nginx NAME SERVER-BLOCKS: one worker on the server CPU (NGINX_WORKERS and NGINX_CPUS
# override both); sets NGINX_PID (the master).
start_nginx() {
    local name=$1 body=$2
    cat >"$WORK/$name.conf" <<EOF
worker_processes ${NGINX_WORKERS:-1};
worker_rlimit_nofile 20000;
daemon off;
pid $WORK/$name.pid;
error_log $WORK/$name-error.log warn;
events { worker_connections 20000; }
http {
    access_log off;
    client_body_temp_path $WORK/$name-body;
    proxy_temp_path $WORK/$name-proxy;
    fastcgi_temp_path $WORK/$name-fastcgi;
    uwsgi_temp_path $WORK/$name-uwsgi;
    scgi_temp_path $WORK/$name-scgi;
    keepalive_requests 10000000;
$body
}
EOF
    taskset -c "${NGINX_CPUS:-$SERVER_CPU}" nginx -e "$WORK/$name-error.log" -c "$WORK/$name.conf" >/dev/null 2>&1 &
    STARTED_PIDS+=($!)
    NGINX_PID=$!
}

# start_gateway NAME PORT: one gateway process per case; sets GATEWAY_PID.
start_gateway() {
    local name=$1 port=$2 config="$WORK/gateway-$1.toml"
    sed "s/@PORT@/$port/" "$WORK/gateway.toml.in" >"$config"
    "$ROOT/target/release/persona-gate" check --config "$config" >/dev/null \
        || die "the bench gateway config is invalid: $("$ROOT/target/release/persona-gate" check --config "$config" 2>&1)"
    taskset -c "$SERVER_CPU" "$ROOT/target/release/persona-gate" --config "$config" \
        >>"$WORK/gateway-$name.log" 2>&1 &
    STARTED_PIDS+=($!)
    GATEWAY_PID=$!
    wait_for_200 "http://127.0.0.1:$port/healthz"
}

# wrk prints latencies as 812.00us / 1.23ms / 1.02s; normalise to milliseconds.
to_ms() {
    awk -v v="$1" 'BEGIN {
        n = v + 0
        if (v ~ /us$/) n = n / 1000; else if (v ~ /ms$/) n = n; else if (v ~ /s$/) n = n * 1000
        printf "%.2f", n
    }'
}

INVALID=()
# Per case, one line per round: "rps p50 p99 cpu" (see `measure`).
declare -A ROUND_LINES
CASES=()

# cpu_ticks PID...: the CPU time the processes have used, user and system, in clock ticks.
cpu_ticks() {
    local pid total=0 ticks
    for pid in "$@"; do
        # Fields 14 and 15 of /proc/PID/stat, counted after the command name's closing parenthesis.
        ticks=$(sed 's/^.*) //' "/proc/$pid/stat" 2>/dev/null | awk '{ print $12 + $13 }')
        total=$((total + ${ticks:-0}))
    done
    echo "$total"
}

# cpu_us_per_request TICKS REQUESTS: the server's CPU microseconds per request. When the load
# generator is the one saturated (full TLS handshakes cost the client more than the server), req/s
# measures the client; this measures the server.
cpu_us_per_request() {
    awk -v t="$1" -v n="$2" -v hz="$(getconf CLK_TCK)" 'BEGIN { if (n > 0) printf "%.1f", t * 1e6 / hz / n; else print 0 }'
}

# measure NAME URL TOKENS [PIDS]: one round of one case (warm-up, then the measured run); PIDS (a
# space-separated list) are the server's processes, whose CPU per request is recorded. wrk runs
# on WRK_CPUS (default: the load CPU) with WRK_THREADS threads (default 1); BENCH_CLOSE=1 in its
# environment closes every connection after one request (see `write_rotate_lua`).
measure() {
    local name=$1 url=$2 tokens=$3 pids=${4:-}
    BENCH_TOKENS=$tokens taskset -c "${WRK_CPUS:-$LOAD_CPU}" wrk -t"${WRK_THREADS:-1}" -c"$CONNECTIONS" -d"$WARMUP" -s "$WORK/rotate.lua" "$url" >/dev/null
    local out ticks
    # shellcheck disable=SC2086 # a space-separated list
    ticks=$(cpu_ticks $pids)
    out=$(BENCH_TOKENS=$tokens taskset -c "${WRK_CPUS:-$LOAD_CPU}" wrk -t"${WRK_THREADS:-1}" -c"$CONNECTIONS" -d"$DURATION" --latency \
        -s "$WORK/rotate.lua" "$url")
    # shellcheck disable=SC2086
    ticks=$(($(cpu_ticks $pids) - ticks))
    echo "$out" >>"$WORK/wrk-${name// /-}.txt"
    local rps p50 p99 total non2xx errors
    rps=$(awk '/^Requests\/sec:/ { print $2 }' <<<"$out")
    p50=$(to_ms "$(awk '$1 == "50%" { print $2 }' <<<"$out")")
    p99=$(to_ms "$(awk '$1 == "99%" { print $2 }' <<<"$out")")
    total=$(awk '/requests in/ { print $1 }' <<<"$out")
    non2xx=$(awk '/Non-2xx or 3xx responses:/ { print $NF }' <<<"$out")
    errors=$(awk '/Socket errors:/ { print }' <<<"$out")
    [[ -n "$errors" ]] && INVALID+=("$name: $errors")
    [[ -n "$non2xx" ]] && INVALID+=("$name: $non2xx of $total responses were not 2xx")
    local cpu
    cpu=$(cpu_us_per_request "$ticks" "$total")
    printf '   %-20s %10.0f req/s  p50 %6s ms  p99 %6s ms  %6s us CPU/req\n' "$name" "$rps" "$p50" "$p99" "$cpu" >&2
    ROUND_LINES[$name]+="$rps $p50 $p99 $cpu"$'\n'
}

# The median of column COL of a case's round lines.
median() {
    local name=$1 col=$2
    printf '%s' "${ROUND_LINES[$name]}" | awk -v c="$col" 'NF { print $c }' | sort -g \
        | awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2]; else printf "%.2f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

# wrk's script: one Authorization header per request, cycling through the tokens in
# $BENCH_TOKENS; with $BENCH_CLOSE set, `Connection: close` too, so every request opens (and for
# https handshakes) a connection of its own.
write_rotate_lua() {
    cat >"$WORK/rotate.lua" <<'EOF'
local tokens = {}
for line in io.lines(os.getenv("BENCH_TOKENS")) do
    if #line > 0 then tokens[#tokens + 1] = "Bearer " .. line end
end
local close = os.getenv("BENCH_CLOSE")
local i = 0
function request()
    i = i % #tokens + 1
    local headers = { ["Authorization"] = tokens[i] }
    if close then headers["Connection"] = "close" end
    return wrk.format("GET", "/", headers)
end
EOF
}

# check_sample NAME URL TOKENS: a case whose first answer is not 200 would measure an error path.
check_sample() {
    local name=$1 url=$2 tokens=$3 sample
    sample=$(curl -sk -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $(head -n1 "$tokens")" "$url")
    say "$name: $url (sample answer: $sample)"
    [[ "$sample" == 200 ]] || INVALID+=("$name: a sample request got $sample")
    CASES+=("$name")
}

main() {
    install_missing
    [[ $(nproc) -ge 2 ]] || die "needs at least 2 CPUs (load on one, servers on another)"

    say "building persona-gate (release) and the token minter (dev)"
    # Two builds: an example pulls in dev-dependency features (tokio test-util), which must not
    # leak into the binary under test.
    (cd "$ROOT" && cargo build --quiet --example bench_tokens)
    (cd "$ROOT" && cargo build --release --quiet --bin persona-gate)
    if [[ -n "$BARE" ]]; then
        (cd "$ROOT" && cargo build --release --quiet --example bare_proxy)
    fi

    say "keys and $USERS tokens per algorithm in $WORK"
    local hs_secret
    hs_secret="bench-hs256-secret-$(openssl rand -hex 16)"
    openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$WORK/rs256.pem" 2>/dev/null
    openssl pkey -in "$WORK/rs256.pem" -pubout -out "$WORK/rs256.pub.pem"
    openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$WORK/es256.pem" 2>/dev/null
    openssl pkey -in "$WORK/es256.pem" -pubout -out "$WORK/es256.pub.pem"
    local mint="$ROOT/target/debug/examples/bench_tokens"
    "$mint" HS256 "$hs_secret" bench-hs "$USERS" >"$WORK/hs256.tokens"
    "$mint" RS256 "$WORK/rs256.pem" bench-rs "$USERS" >"$WORK/rs256.tokens"
    "$mint" ES256 "$WORK/es256.pem" bench-es "$USERS" >"$WORK/es256.tokens"

    write_rotate_lua

    UP_PORT=$(free_port 18300)
    start_nginx upstream "    server {
        listen 127.0.0.1:$UP_PORT backlog=4096;
        location / { default_type text/plain; return 200 \"hello from the app\\n\"; }
    }"
    local upstream_pid=$NGINX_PID
    wait_for_200 "http://127.0.0.1:$UP_PORT/"
    NGX_PORT=$(free_port $((UP_PORT + 1)))
    start_nginx proxy "    upstream app { server 127.0.0.1:$UP_PORT; keepalive 256; }
    server {
        listen 127.0.0.1:$NGX_PORT backlog=4096;
        location / {
            proxy_pass http://app;
            proxy_http_version 1.1;
            proxy_set_header Connection \"\";
            proxy_set_header Host \$host;
            proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for;
            proxy_set_header X-Forwarded-Proto \$scheme;
            proxy_set_header X-Forwarded-Host \$host;
            proxy_set_header X-Request-Id \$request_id;
        }
    }"
    local proxy_pid=$NGINX_PID
    wait_for_200 "http://127.0.0.1:$NGX_PORT/"
    cat >"$WORK/gateway.toml.in" <<EOF
[server]
http = "127.0.0.1:@PORT@"

[log]
format = "json"
level = "$GATEWAY_LOG"

[upstream]
url = "http://127.0.0.1:$UP_PORT"

[auth]
sources = ["header"]
public_paths = []

[[auth.keys]]
kid = "bench-hs"
algorithms = ["HS256"]
secret = { value = "$hs_secret" }

[[auth.keys]]
kid = "bench-rs"
algorithms = ["RS256"]
public_key_pem = "$WORK/rs256.pub.pem"

[[auth.keys]]
kid = "bench-es"
algorithms = ["ES256"]
public_key_pem = "$WORK/es256.pub.pem"
EOF

    if [[ -n "$INSTRUCTIONS" ]]; then
        count_instructions
        report_invalid
        return
    fi

    local -A url tokens pid
    url["upstream direct"]="http://127.0.0.1:$UP_PORT/"
    tokens["upstream direct"]="$WORK/hs256.tokens"
    pid["upstream direct"]="$(nginx_pids "$upstream_pid")"
    local idle="" alg port=$((NGX_PORT + 1)) name
    for alg in HS256 RS256 ES256; do
        name="nginx proxy $alg"
        url[$name]="http://127.0.0.1:$NGX_PORT/"
        tokens[$name]="$WORK/${alg,,}.tokens"
        pid[$name]="$(nginx_pids "$proxy_pid")"
        port=$(free_port $((port + 1)))
        name="persona-gate $alg"
        start_gateway "$alg" "$port"
        # Before any load: what a sidecar costs while nothing happens.
        [[ -z "$idle" ]] && idle=$(mem_kb VmRSS "$GATEWAY_PID")
        url[$name]="http://127.0.0.1:$port/"
        tokens[$name]="$WORK/${alg,,}.tokens"
        pid[$name]=$GATEWAY_PID
    done

    local order=("upstream direct")
    if [[ -n "$BARE" ]]; then
        port=$(free_port $((port + 1)))
        taskset -c "$SERVER_CPU" "$ROOT/target/release/examples/bare_proxy" "127.0.0.1:$port" "127.0.0.1:$UP_PORT" \
            >>"$WORK/bare-proxy.log" 2>&1 &
        STARTED_PIDS+=($!)
        url["bare hyper proxy"]="http://127.0.0.1:$port/"
        tokens["bare hyper proxy"]="$WORK/hs256.tokens"
        pid["bare hyper proxy"]=$!
        wait_for_200 "${url["bare hyper proxy"]}"
        order+=("bare hyper proxy")
    fi
    order+=("nginx proxy HS256" "persona-gate HS256" "nginx proxy RS256" "persona-gate RS256"
        "nginx proxy ES256" "persona-gate ES256")
    for name in "${order[@]}"; do
        check_sample "$name" "${url[$name]}" "${tokens[$name]}"
    done
    local round
    for round in $(seq "$ROUNDS"); do
        say "round $round of $ROUNDS"
        for name in "${CASES[@]}"; do
            measure "$name" "${url[$name]}" "${tokens[$name]}" "${pid[$name]}"
        done
    done
    declare -gA PEAK_MB
    for name in "${CASES[@]}"; do
        # shellcheck disable=SC2086 # a case's pids are a space-separated list
        PEAK_MB[$name]=$(($(mem_kb VmHWM ${pid[$name]}) / 1024))
    done

    report "$idle"
}

report() {
    local idle_kb=$1 name rps p50 p99 nginx nginx_rps nginx_p99
    printf '\nwrk: 1 thread on CPU %s, %s connections, %s per run (after %s warm-up); servers on CPU %s; %s users\n' \
        "$LOAD_CPU" "$CONNECTIONS" "$DURATION" "$WARMUP" "$SERVER_CPU" "$USERS"
    printf 'medians of %s interleaved rounds\n\n' "$ROUNDS"
    printf '%-20s %10s %8s %8s %9s %9s %9s %9s\n' case "req/s" "p50 ms" "p99 ms" "peak MB" "CPU us" "rps/ngx" "p99/ngx"
    for name in "${CASES[@]}"; do
        rps=$(median "$name" 1)
        p50=$(median "$name" 2)
        p99=$(median "$name" 3)
        # The nginx case that carried the same tokens.
        case $name in
            *HS256 | "upstream direct" | "bare hyper proxy") nginx="nginx proxy HS256" ;;
            *RS256) nginx="nginx proxy RS256" ;;
            *ES256) nginx="nginx proxy ES256" ;;
        esac
        nginx_rps=$(median "$nginx" 1)
        nginx_p99=$(median "$nginx" 3)
        printf '%-20s %10.0f %8s %8s %9s %9s %9s %9s\n' "$name" "$rps" "$p50" "$p99" "${PEAK_MB[$name]}" "$(median "$name" 4)" \
            "$(awk -v a="$rps" -v b="$nginx_rps" 'BEGIN { printf "%.2fx", a / b }')" \
            "$(awk -v a="$p99" -v b="$nginx_p99" 'BEGIN { printf "%.2fx", a / b }')"
    done
    printf '\npersona-gate idle RSS: %.1f MB\n' "$(awk -v k="$idle_kb" 'BEGIN { print k / 1024 }')"
    report_invalid
}

report_invalid() {
    if [[ ${#INVALID[@]} -gt 0 ]]; then
        printf '\n!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!\n'
        printf '!!! NOT VALID: these cases got errors or non-200 answers, so they measured an error path:\n'
        printf '!!!   %s\n' "${INVALID[@]}"
        printf '!!! Fix the cause (keys, tokens, auth) and rerun before quoting their figures.\n'
        printf '!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!\n'
        exit 1
    fi
}

# INSTRUCTIONS=1: instead of timed rounds, user-space instructions per proxied request through
# persona-gate, counted by valgrind's callgrind. Requests/s on a shared VM move by several percent
# from run to run; this count moves by well under 1%, so it shows a change of a few hundred
# instructions (about 1% of a request) that timed rounds cannot. It ranks changes; requests/s
# judges them: it sees no kernel time (most of a request's CPU here) and no cache misses, and
# valgrind runs SHA-256 in plain AVX code, several times the instructions of the CPU's SHA
# extensions, so that share is printed on its own.
count_instructions() {
    local alg port config sha
    printf '\ninstructions per request (callgrind; wrk: 1 thread, %s connections, %s users)\n\n' "$INSTR_CONNECTIONS" "$USERS"
    printf '%-20s %12s %12s %10s\n' case "instr/req" "SHA-256" requests
    for alg in HS256 RS256 ES256; do
        port=$(free_port $((UP_PORT + 40)))
        config="$WORK/gateway-instructions-$alg.toml"
        sed "s/@PORT@/$port/" "$WORK/gateway.toml.in" >"$config"
        callgrind_count "$alg" "persona-gate $alg" "$ROOT/target/release/persona-gate" "$config" "$port" "$WORK/${alg,,}.tokens"
        sha=$(callgrind_annotate "$CG_PROFILE" 2>/dev/null \
            | awk '/sha256_block_data_order/ && !/=>/ { gsub(",", "", $1); s += $1 } END { print s + 0 }')
        printf '%-20s %12d %12d %10d\n' "persona-gate $alg" $((CG_TOTAL / CG_REQUESTS)) $((sha / CG_REQUESTS)) "$CG_REQUESTS"
    done
}

# callgrind_count NAME LABEL BINARY CONFIG PORT TOKENS: runs BINARY with CONFIG (listening on PORT)
# under callgrind, warms it up with 10 s of wrk over TOKENS (every token verified and cached,
# upstream connections open), then counts the instructions of 5 s more. Sets CG_TOTAL,
# CG_REQUESTS and CG_PROFILE (the callgrind file); a non-2xx answer goes to INVALID under LABEL.
callgrind_count() {
    local name=$1 label=$2 binary=$3 config=$4 port=$5 tokens=$6 vg out non2xx
    taskset -c "$SERVER_CPU" valgrind --tool=callgrind --instr-atstart=no \
        --callgrind-out-file="$WORK/callgrind-$name.out" \
        "$binary" --config "$config" >>"$WORK/callgrind-$name.log" 2>&1 &
    vg=$!
    STARTED_PIDS+=("$vg")
    wait_for_200 "http://127.0.0.1:$port/healthz" 300
    BENCH_TOKENS="$tokens" taskset -c "$LOAD_CPU" wrk -t1 -c"$INSTR_CONNECTIONS" -d10s -s "$WORK/rotate.lua" \
        "http://127.0.0.1:$port/" >/dev/null
    callgrind_control -i on "$vg" >/dev/null 2>&1
    out=$(BENCH_TOKENS="$tokens" taskset -c "$LOAD_CPU" wrk -t1 -c"$INSTR_CONNECTIONS" -d5s -s "$WORK/rotate.lua" \
        "http://127.0.0.1:$port/")
    callgrind_control -i off "$vg" >/dev/null 2>&1
    callgrind_control -d "$vg" >/dev/null 2>&1
    kill "$vg"
    wait "$vg" 2>/dev/null || true
    CG_REQUESTS=$(awk '/requests in/ { print $1 }' <<<"$out")
    non2xx=$(awk '/Non-2xx or 3xx responses:/ { print $NF }' <<<"$out")
    [[ -n "$non2xx" ]] && INVALID+=("$label: $non2xx of $CG_REQUESTS responses were not 2xx")
    CG_PROFILE="$WORK/callgrind-$name.out.1"
    CG_TOTAL=$(callgrind_annotate "$CG_PROFILE" 2>/dev/null | awk '/PROGRAM TOTALS/ { gsub(",", "", $1); print $1 }')
}

# scripts/bench-gateway.sh sources this file for its helpers.
if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then
    main "$@"
fi

#!/usr/bin/env bash
# Rate-limit benchmark: memory-backend decisions/s, Redis-backend latency per decision on
# loopback, and RSS per 1M tracked keys. Builds the driver (benches/ratelimit.rs) optimised and
# starts a private redis-server on a free port when one is installed. Not a test: it prints figures.
set -euo pipefail
cd "$(dirname "$0")/.."

redis_pid=""
cleanup() { if [ -n "$redis_pid" ]; then kill "$redis_pid" 2>/dev/null || true; fi; }
trap cleanup EXIT

if command -v redis-server >/dev/null; then
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  redis-server --port "$port" --bind 127.0.0.1 --save "" --appendonly no >/dev/null &
  redis_pid=$!
  for _ in $(seq 50); do
    (exec 3<>/dev/tcp/127.0.0.1/"$port") 2>/dev/null && break
    sleep 0.1
  done
  export REDIS_URL="redis://127.0.0.1:$port"
else
  echo "redis-server not installed: the Redis figures are skipped" >&2
fi

cargo bench --bench ratelimit

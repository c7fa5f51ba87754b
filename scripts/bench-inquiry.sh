#!/usr/bin/env sh
# Benchmarks POST /api/inquiries/get-or-create against the in-process Persona emulator (50 ms per
# call): 2,000 distinct users (create, then the created one) and one hot user. Builds in release
# (the bench profile). Prints calls/s, p50/p99 and Persona calls per get-or-create.
# BENCH_CONCURRENCY=10 shows the latency the gateway adds without queueing (default 200).
set -eu
cd "$(dirname "$0")/.."
exec cargo bench --bench inquiry "$@"

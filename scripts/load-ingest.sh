#!/usr/bin/env bash
# End-to-end load run for the ingest sub-topology (BENCHMARKS.md): starts a Tansu broker on a
# free loopback port, runs benches/e2e_ingest.rs against it — (a) raw rdkafka passthrough and
# (b) ScoreStream ingest on the same events, in one run — prints both rates and their ratio,
# and stops the broker it started.
#
#   scripts/load-ingest.sh [EVENTS] [BENCH]   (default 1000000 e2e_ingest)
#
# BENCH=e2e_restore instead writes EVENTS changelog records and times a full restore into
# RocksDB, with the process's peak RSS.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -f scripts/env.sh ] && . scripts/env.sh
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/scorestream-target}"
EVENTS="${1:-1000000}"
BENCH="${2:-e2e_ingest}"

TANSU="${TANSU_BIN:-}"
if [ -z "$TANSU" ]; then
  for c in "$HOME/.cache/scorestream/bin/tansu" "$(command -v tansu || true)"; do
    if [ -n "$c" ] && [ -x "$c" ]; then TANSU="$c"; break; fi
  done
fi
if [ -z "$TANSU" ]; then
  echo "no tansu binary; run scripts/install-deps.sh first" >&2
  exit 1
fi

PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
LOG=$(mktemp -t tansu-load.XXXXXX.log)
"$TANSU" broker --listener-url "tcp://127.0.0.1:$PORT" --advertised-listener-url "tcp://127.0.0.1:$PORT" \
  --storage-engine memory://tansu/ >"$LOG" 2>&1 &
BROKER_PID=$!
trap 'kill "$BROKER_PID" 2>/dev/null || true; wait "$BROKER_PID" 2>/dev/null || true' EXIT
for _ in $(seq 1 100); do
  if (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; then break; fi
  sleep 0.1
done
echo "Tansu $("$TANSU" --version | awk '{print $2}') on 127.0.0.1:$PORT (pid $BROKER_PID), $EVENTS events, $(nproc) cores"
SCORESTREAM_BENCH_BOOTSTRAP="127.0.0.1:$PORT" SCORESTREAM_BENCH_EVENTS="$EVENTS" RUST_LOG=warn \
  cargo bench --bench "$BENCH"

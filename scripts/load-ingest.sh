#!/usr/bin/env bash
# End-to-end load run (BENCHMARKS.md, issue 15): starts a Tansu broker on a free loopback port,
# builds the `scorestream` binary and runs benches/e2e_ingest.rs against the broker: the same
# pre-produced events through (a) a raw rdkafka passthrough, (b) `scorestream run` with the
# minimal workload (benches/minimal-rules.toml, churn off) and (c) `scorestream run` with the
# full bundled topology, each in its own process, in one run; prints events/s, app CPU per
# million events, peak RSS and ratios to (a); stops the broker it started.
#
#   scripts/load-ingest.sh [EVENTS] [BENCH]   (default 1000000 e2e_ingest)
#
# Environment (see benches/e2e_ingest.rs for all of them):
#   SCORESTREAM_BENCH_EXTRA_TOML   TOML merged over each ScoreStream mode's configuration,
#                                  e.g. $'runtime.commit_interval = "500ms"'
#   SCORESTREAM_BENCH_MODES        default passthrough,minimal,full (also full-nochurn)
#   SCORESTREAM_BENCH_ROUNDS       repeat the modes (default 1)
#   SCORESTREAM_BENCH_PERF_DIR     perf record the ScoreStream modes into this directory
#   SCORESTREAM_BENCH_PROFILE      cargo profile of both binaries (default release; "dev"
#                                  for a quick check of the harness, not for numbers)
#   SCORESTREAM_BENCH_CARGO_ARGS   extra arguments to both cargo commands, e.g. the optimised
#                                  dev build when release (RocksDB's C++ at -O3) cannot be
#                                  built in time: SCORESTREAM_BENCH_PROFILE=dev and
#                                  "--config profile.dev.package.scorestream.opt-level=3"
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
# The binary the ScoreStream modes run, built with the same profile as the bench.
PROFILE="${SCORESTREAM_BENCH_PROFILE:-release}"
if [ "$PROFILE" = release ]; then BENCH_PROFILE=(); else BENCH_PROFILE=(--profile "$PROFILE"); fi
read -r -a CARGO_ARGS <<<"${SCORESTREAM_BENCH_CARGO_ARGS:-}"
cargo build --profile "$PROFILE" "${CARGO_ARGS[@]}" --bin scorestream
if [ "$PROFILE" = dev ]; then OUT=debug; else OUT="$PROFILE"; fi
SCORESTREAM_BENCH_BIN="$CARGO_TARGET_DIR/$OUT/scorestream" SCORESTREAM_BENCH_BROKER_PID="$BROKER_PID" \
  SCORESTREAM_BENCH_BOOTSTRAP="127.0.0.1:$PORT" SCORESTREAM_BENCH_EVENTS="$EVENTS" RUST_LOG=warn \
  cargo bench "${BENCH_PROFILE[@]}" "${CARGO_ARGS[@]}" --bench "$BENCH"

#!/usr/bin/env bash
# Runs `scorestream demo`: the whole pipeline on librdkafka's in-process mock cluster, fed by
# the built-in generator; one summary line per second; ends by itself. Extra arguments go to
# the demo (see `scorestream demo --help`).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
. scripts/env.sh
cargo run --release --quiet -- demo "$@"

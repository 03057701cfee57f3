#!/usr/bin/env bash
# Runs every test: unit tests, normalization case files, property tests, engine tests, and
# the integration tests against Tansu and librdkafka's mock cluster. Installs what is
# missing first.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
. scripts/env.sh
cargo test --all-targets "$@"

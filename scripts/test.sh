#!/usr/bin/env bash
# Runs every test: unit tests, normalization case files, property tests, engine tests, and
# the integration tests against Tansu and librdkafka's mock cluster. Installs what is
# missing first.
#
# The suites that spend most of their time waiting on brokers and restarts (the kill -9
# crash suite, the broker outage and restart suites) run beside the rest, each group in its
# own process, so the wall time is the longest group rather than the sum. Every test still
# runs exactly once; a failure in any group fails the run and prints that group's output.
#   scripts/test.sh                  everything, grouped
#   scripts/test.sh <cargo args>     plain `cargo test --all-targets <args>` (e.g. a filter)
#   SCORESTREAM_TEST_SERIAL=1 scripts/test.sh   everything, one binary after another
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
. scripts/env.sh

if [[ $# -gt 0 || -n "${SCORESTREAM_TEST_SERIAL:-}" ]]; then
  exec cargo test --all-targets "$@"
fi

# Slow groups: binaries (by target name) that run beside the main sequence.
groups=("state_crash" "broker_outage broker_outage_logs broker_restart")

work=$(mktemp -d)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill -- "$pid" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

# Build every test target once and list the executables with their target names.
cargo test --all-targets --no-run --message-format=json-render-diagnostics >"$work/build.json"
python3 - "$work/build.json" >"$work/binaries" <<'EOF'
import json, sys
for line in open(sys.argv[1]):
    msg = json.loads(line)
    if msg.get("reason") == "compiler-artifact" and msg.get("executable") and msg["profile"]["test"]:
        print(msg["target"]["name"], msg["target"]["kind"][0], msg["executable"])
EOF

# Runs the named binaries one after another (all of them when none are named, minus
# every grouped one); returns non-zero if any failed.
run_binaries() {
  local status=0 name kind exe
  while read -r name kind exe; do
    if [[ $# -gt 0 ]]; then
      [[ " $* " == *" $name "* && $kind == test ]] || continue
    else
      [[ $kind == test && " ${groups[*]} " == *" $name "* ]] && continue
    fi
    echo "     Running $kind $name ($exe)"
    "$exe" || { status=1; echo "FAILED: $kind $name"; }
  done <"$work/binaries"
  return $status
}

i=0
for group in "${groups[@]}"; do
  # shellcheck disable=SC2086 # a group is a space-separated list of target names
  (run_binaries $group) >"$work/group$i.log" 2>&1 &
  pids+=("$!")
  i=$((i + 1))
done

failed=0
run_binaries || failed=1
i=0
for pid in "${pids[@]}"; do
  if wait "$pid"; then
    echo; echo "=== group: ${groups[$i]} (passed)"; cat "$work/group$i.log"
  else
    failed=1; echo; echo "=== group: ${groups[$i]} (FAILED)"; cat "$work/group$i.log"
  fi
  i=$((i + 1))
done
pids=()
exit $failed

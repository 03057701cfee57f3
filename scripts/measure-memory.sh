#!/usr/bin/env bash
# Peak memory of one `scorestream run` working through a backlog (issue 15 item 6,
# docs/operations.md "Memory"): starts a Tansu broker (memory storage) on a free loopback
# port, sends EVENTS generator events over CUSTOMERS customers to the five seed topics
# (no bad records), then runs the binary on them with default settings and reports its
# peak RSS (VmHWM), events/s from its first consumed record to the last processed one, and
# the CPU seconds it used (utime + stime). Stops what it started.
#
#   scripts/measure-memory.sh [EVENTS] [CUSTOMERS] [WORKLOAD]   (default 1000000 100000 minimal)
#
# WORKLOAD: `minimal` = one points rule per event type (one points_awarded per event), churn
# off; `bundled` = the bundled topology (gamification rules and churn) as shipped.
# Environment: SCORESTREAM_BIN (default $CARGO_TARGET_DIR/debug/scorestream), PARTITIONS
# (per input topic, default 4), EXTRA_CONFIG (TOML lines with dotted keys appended to the
# generated config file, e.g. "state.cache_bytes = '16 MiB'", to compare settings).
set -euo pipefail
cd "$(dirname "$0")/.."
[ -f scripts/env.sh ] && . scripts/env.sh
EVENTS="${1:-1000000}"
CUSTOMERS="${2:-100000}"
WORKLOAD="${3:-minimal}"
PARTITIONS="${PARTITIONS:-4}"
BIN="${SCORESTREAM_BIN:-$CARGO_TARGET_DIR/debug/scorestream}"
TANSU="${TANSU_BIN:-$HOME/.cache/scorestream/bin/tansu}"
[ -x "$BIN" ] || { echo "no binary at $BIN (cargo build first, or set SCORESTREAM_BIN)" >&2; exit 1; }
[ -x "$TANSU" ] || { echo "no tansu binary; run scripts/install-deps.sh first" >&2; exit 1; }

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
PORT=$(free_port)
HTTP_PORT=$(free_port)
WORK=$(mktemp -d -t measure-memory.XXXXXX)
BROKER_PID=""
RUN_PID=""
cleanup() {
  [ -n "$RUN_PID" ] && kill "$RUN_PID" 2>/dev/null && wait "$RUN_PID" 2>/dev/null
  [ -n "$BROKER_PID" ] && kill "$BROKER_PID" 2>/dev/null && wait "$BROKER_PID" 2>/dev/null
  rm -rf "$WORK"
}
trap cleanup EXIT

"$TANSU" broker --listener-url "tcp://127.0.0.1:$PORT" --advertised-listener-url "tcp://127.0.0.1:$PORT" \
  --storage-engine memory://tansu/ >"$WORK/tansu.log" 2>&1 &
BROKER_PID=$!
for _ in $(seq 1 100); do
  if (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; then break; fi
  sleep 0.1
done

TOPICS="customer-events,cdr-events,billing-events,crm-events,app-events"
RUST_LOG=warn "$BIN" generate --bootstrap-servers "127.0.0.1:$PORT" --rate 0 --count "$EVENTS" \
  --customers "$CUSTOMERS" --bad-ratio 0 --topics "$TOPICS" --create-topics \
  --partitions "$PARTITIONS" >"$WORK/generate.log" 2>&1 \
  || { cat "$WORK/generate.log" >&2; exit 1; }

# One points rule for every event type the generator sends.
RULES="$WORK/minimal-rules.toml"
{
  echo '[point_types.xp]'
  for t in data_usage voice_call recharge kyc_update plan_downgrade complaint order_placed \
    login product_viewed payment_failed cart_abandoned email_opened post_liked post_created \
    user_login video_uploaded; do
    printf '[points.%s]\nevent_type = "%s"\npoint_type = "xp"\nbase = 1\n' "$t" "$t"
  done
} >"$RULES"

{
  # Dotted keys only, so EXTRA_CONFIG can set any key (a table header would end the file's
  # top level).
  echo "application_id = \"mem-$RANDOM$RANDOM\""
  echo "bootstrap_servers = \"127.0.0.1:$PORT\""
  echo "state_dir = \"$WORK/state\""
  echo "http_addr = \"127.0.0.1:$HTTP_PORT\""
  echo "inputs = [$(echo "$TOPICS" | sed 's/\([^,]*\)/"\1"/g')]"
  echo 'runtime.replication_factor = 1'
  echo 'runtime.session_timeout = "6s"'
  if [ "$WORKLOAD" = minimal ]; then
    echo "gamification.rules_file = \"$RULES\""
    echo 'churn.enabled = false'
  fi
  printf '%s\n' "${EXTRA_CONFIG:-}"
} >"$WORK/config.toml"

metric_sum() { # name [label filter]: the sum of a metric's samples
  awk -v name="$1" -v filter="${2:-}" '
    index($0, name) == 1 && (filter == "" || index($0, filter) > 0) { s += $NF }
    END { printf "%.0f\n", s }' "$WORK/metrics"
}
metric_max() { # name: the largest of a metric's samples
  awk -v name="$1" 'index($0, name) == 1 && $NF > m { m = $NF } END { printf "%.0f\n", m }' "$WORK/metrics"
}

RUST_LOG=warn "$BIN" run --config "$WORK/config.toml" >"$WORK/run.log" 2>&1 &
RUN_PID=$!
TICK=$(getconf CLK_TCK)
START=""; LAST_CHANGE=""; LAST=-1; PEAK_FETCHQ=0; PEAK_PRODQ=0
for _ in $(seq 1 7200); do
  sleep 0.25
  kill -0 "$RUN_PID" 2>/dev/null || { echo "scorestream exited:" >&2; tail -20 "$WORK/run.log" >&2; exit 1; }
  curl -sf "http://127.0.0.1:$HTTP_PORT/metrics" >"$WORK/metrics" || continue
  INPUT=$(metric_sum 'scorestream_records_consumed_total{' 'events"')
  KEYED=$(metric_sum 'scorestream_records_consumed_total{' 'events-by-customer')
  # librdkafka reports the group consumer's one shared queue for each of its partitions.
  FETCHQ=$(metric_max scorestream_kafka_consumer_fetch_queue_messages)
  PRODQ=$(metric_sum scorestream_kafka_producer_queue_bytes)
  [ "$FETCHQ" -gt "$PEAK_FETCHQ" ] && PEAK_FETCHQ=$FETCHQ
  [ "$PRODQ" -gt "$PEAK_PRODQ" ] && PEAK_PRODQ=$PRODQ
  NOW=$(date +%s.%N)
  [ -z "$START" ] && [ "$INPUT" -gt 0 ] && START=$NOW
  if [ "$KEYED" != "$LAST" ]; then LAST=$KEYED; LAST_CHANGE=$NOW; fi
  # Done: every event consumed from the inputs and again from the repartition topic.
  if [ "$INPUT" -ge "$EVENTS" ] && [ "$KEYED" -ge "$EVENTS" ]; then break; fi
done
HWM=$(awk '/^VmHWM:/ {print $2}' "/proc/$RUN_PID/status")
RSS=$(awk '/^VmRSS:/ {print $2}' "/proc/$RUN_PID/status")
read -r UTIME STIME < <(awk '{print $14, $15}' "/proc/$RUN_PID/stat")
THREADS=$(awk '/^Threads:/ {print $2}' "/proc/$RUN_PID/status")
awk -v events="$EVENTS" -v keyed="$LAST" -v start="$START" -v end="$LAST_CHANGE" \
  -v hwm="$HWM" -v rss="$RSS" -v cpu="$(( UTIME + STIME ))" -v tick="$TICK" \
  -v threads="$THREADS" -v fq="$PEAK_FETCHQ" -v pq="$PEAK_PRODQ" -v w="$WORKLOAD" -v bin="$BIN" '
  BEGIN {
    secs = end - start
    printf "workload=%s binary=%s events=%d processed=%d\n", w, bin, events, keyed
    printf "peak_rss_mib=%.1f (%.1f MB) rss_at_end_mib=%.1f threads=%d\n", hwm / 1024, hwm * 1.024 / 1000, rss / 1024, threads
    printf "seconds=%.1f events_per_s=%.0f cpu_s=%.1f cpu_us_per_event=%.1f\n", secs, keyed / secs, cpu / tick, cpu / tick / keyed * 1e6
    printf "peak_sampled: consumer_fetch_queue_messages=%d producer_queue_mib=%.1f\n", fq, pq / 1048576
  }'

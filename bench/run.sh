#!/usr/bin/env bash
# Reproducible load benchmark, loopback only, bounded in time. Usage: bench/run.sh [SECONDS]
# Prints one JSON line per scenario and a summary; writes them to bench/results.json.
#  1. bare axum ACK server (the yardstick)
#  2. ACK path: signed search -> verify -> core schema + domain rules -> recorded (SQLite) -> ACK
#  3. end to end: search -> sample ERP -> mapping -> signed on_search delivered to a buyer sink
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_PER_RUN=${1:-10}
CONNS=${BENCH_CONNECTIONS:-50}
export BENCH_BAP_KEY='aBifWLXHoxVC0WeJuJQmRJhX+Fpx+ohWEDiRPAbQ65FoHiMBd69dUJq/Uo9mPcpwbi+ZfqbLiDkEOiP2Pwy/rg=='  # test-only
cargo build --release --quiet -p beckn-adapter -p loadgen
BIN=target/release
TMP=$(mktemp -d)
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$TMP"; }
trap cleanup EXIT

wait_port() { for _ in $(seq 1 200); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.05; done; echo "port $1 did not open" >&2; exit 1; }
sink_count() { curl -s 127.0.0.1:7293/count | sed "s/.*\"$1\":\([0-9]*\).*/\1/"; }
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
TICK_US=$(( 1000000 / $(getconf CLK_TCK) ))
field() { echo "$1" | sed "s/.*\"$2\":\([0-9.]*\).*/\1/"; }
# drain SENT BEFORE: waits (bounded) until SENT more callbacks than BEFORE reached the sink;
# sets GOT and END_MS
drain() {
  for _ in $(seq 1 600); do
    GOT=$(( $(sink_count received) - $2 ))
    [ "$GOT" -ge "$1" ] && break
    sleep 0.1
  done
  END_MS=$(date +%s%3N)
}
peak_rss_mb() { awk '/VmHWM/ {printf "%.1f", $2/1024}' "/proc/$1/status"; }

# 1. yardstick
$BIN/loadgen ack-server --listen 127.0.0.1:7291 & PIDS+=($!); wait_port 7291
BARE=$($BIN/loadgen run --url http://127.0.0.1:7291/search --connections "$CONNS" --seconds "$SECONDS_PER_RUN" --bap-uri http://127.0.0.1:7293 --unsigned)
echo "bare-axum-ack $BARE"

# shared stand-ins: the buyer app's sink and the sample ERP
$BIN/loadgen sink --listen 127.0.0.1:7293 & PIDS+=($!); wait_port 7293
$BIN/beckn-adapter sample-erp --listen 127.0.0.1:7280 2>/dev/null & PIDS+=($!); wait_port 7280
export FARMER_APP_URL=http://127.0.0.1:7293 BECKN_LOG=warn

# 2. ACK path
BENCH_ACK_LISTEN=127.0.0.1:7292 $BIN/beckn-adapter serve bench/flows --mappings mappings --schemas schemas \
  --store "sqlite://$TMP/ack.db" --admin 127.0.0.1:7294 --no-watch 2>"$TMP/ack.log" & ACK_PID=$!; PIDS+=($ACK_PID); wait_port 7292
ACK_T0=$(cpu_ticks $ACK_PID); ACK_BEFORE=$(sink_count received)
ACKP=$($BIN/loadgen run --url http://127.0.0.1:7292/search --connections "$CONNS" --seconds "$SECONDS_PER_RUN" --bap-uri http://127.0.0.1:7293)
drain "$(field "$ACKP" requests)" "$ACK_BEFORE"; ACK_GOT=$GOT
ACK_CPU_US=$(( ($(cpu_ticks $ACK_PID) - ACK_T0) * TICK_US / $(field "$ACKP" requests) ))
ACK_CALLBACKS=$(awk -v n="$ACK_GOT" -v a="$(field "$ACKP" started_ms)" -v b="$END_MS" 'BEGIN {printf "%.0f", n * 1000 / (b - a)}')
ACK_RSS=$(peak_rss_mb $ACK_PID)
echo "ack-path $ACKP callbacks=$ACK_GOT callbacks_per_s=$ACK_CALLBACKS cpu_us_per_request=$ACK_CPU_US peak_rss_mb=$ACK_RSS"
kill $ACK_PID; wait $ACK_PID 2>/dev/null || true

# 3. end to end through the sample lab flow
BEFORE=$(sink_count received); ERR_BEFORE=$(sink_count errors)
GFSL_LISTEN=127.0.0.1:7201 KTH_LISTEN=127.0.0.1:7202 GATEWAY_LISTEN=127.0.0.1:7203 \
GFSL_ERP_URL=http://127.0.0.1:7280/api/v1/labs/GFSL KTH_ERP_URL=http://127.0.0.1:7280/api/v1/labs/KTH \
  $BIN/beckn-adapter serve flows --store "sqlite://$TMP/e2e.db" --admin 127.0.0.1:7295 --no-watch 2>"$TMP/e2e.log" & E2E_PID=$!; PIDS+=($E2E_PID); wait_port 7201
E2E_T0=$(cpu_ticks $E2E_PID)
E2E=$($BIN/loadgen run --url http://127.0.0.1:7201/search --connections "$CONNS" --seconds "$SECONDS_PER_RUN" --bap-uri http://127.0.0.1:7293)
SENT=$(field "$E2E" requests)
# the rate runs from the first request sent (after the load generator's signing) to the last
# callback seen
drain "$SENT" "$BEFORE"
E2E_CPU_US=$(( ($(cpu_ticks $E2E_PID) - E2E_T0) * TICK_US / SENT ))
E2E_RATE=$(awk -v n="$GOT" -v a="$(field "$E2E" started_ms)" -v b="$END_MS" 'BEGIN {printf "%.0f", n * 1000 / (b - a)}')
E2E_RSS=$(peak_rss_mb $E2E_PID)
E2E_ERRORS=$(( $(sink_count errors) - ERR_BEFORE ))
echo "end-to-end $E2E delivered=$GOT of $SENT error_callbacks=$E2E_ERRORS round_trips_per_s=$E2E_RATE cpu_us_per_round_trip=$E2E_CPU_US peak_rss_mb=$E2E_RSS"

BARE_RPS=$(field "$BARE" rps); ACK_RPS=$(field "$ACKP" rps)
ACK_RATIO=$(awk -v a="$ACK_RPS" -v b="$BARE_RPS" 'BEGIN {printf "%.4f", a/b}')
E2E_RATIO=$(awk -v a="$E2E_RATE" -v b="$BARE_RPS" 'BEGIN {printf "%.4f", a/b}')
echo "ratios to the bare axum ACK: ack-path $ACK_RATIO, end-to-end $E2E_RATIO"

cat > bench/results.json <<JSON
{"machine": "$(nproc) cores, $(free -g | awk '/Mem:/ {print $2}') GiB", "connections": $CONNS, "seconds": $SECONDS_PER_RUN,
 "bare_axum_ack": $BARE,
 "ack_path": $ACKP, "ack_path_callbacks_per_s": $ACK_CALLBACKS, "ack_path_cpu_us_per_request": $ACK_CPU_US, "ack_path_peak_rss_mb": $ACK_RSS,
 "end_to_end": $E2E, "end_to_end_delivered": $GOT, "end_to_end_error_callbacks": $E2E_ERRORS, "end_to_end_round_trips_per_s": $E2E_RATE, "end_to_end_cpu_us_per_round_trip": $E2E_CPU_US, "end_to_end_peak_rss_mb": $E2E_RSS,
 "ack_path_to_bare_ratio": $ACK_RATIO, "end_to_end_to_bare_ratio": $E2E_RATIO}
JSON
echo "written bench/results.json"
if [ "$E2E_ERRORS" -ne 0 ] || [ "$(sink_count errors)" -ne 0 ]; then
  echo "callbacks carried errors: the numbers above measure the error path, not the flows" >&2
  exit 1
fi

#!/usr/bin/env bash
# Reproducible load benchmark, loopback only, bounded in time. Usage: bench/run.sh [SECONDS]
# Prints one JSON line per scenario and a summary; writes them to bench/results.json.
#  1. bare axum ACK server (the yardstick)
#  2. ACK path: signed search -> verify -> core schema + domain rules -> recorded (SQLite) -> ACK
#  3. end to end: search -> sample ERP -> mapping -> signed on_search delivered to a buyer sink
#  4. (with BENCH_POSTGRES_URL, a PostgreSQL server the script may create a database on) end to
#     end on the PostgreSQL store, the database's CPU measured beside the adapter's
# For each: rate, p50/p99, server CPU per request, peak RSS, ratio to the bare ACK.
# BENCH_BIN=dir runs the binaries in dir instead of building (to compare two trees).
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_PER_RUN=${1:-10}
CONNS=${BENCH_CONNECTIONS:-50}
export BENCH_BAP_KEY='aBifWLXHoxVC0WeJuJQmRJhX+Fpx+ohWEDiRPAbQ65FoHiMBd69dUJq/Uo9mPcpwbi+ZfqbLiDkEOiP2Pwy/rg=='  # test-only
if [ -n "${BENCH_BIN:-}" ]; then BIN=$BENCH_BIN; else
  cargo build --release --quiet -p beckn-adapter -p loadgen
  BIN=target/release
fi
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
$BIN/loadgen ack-server --listen 127.0.0.1:7291 & BARE_PID=$!; PIDS+=($BARE_PID); wait_port 7291
BARE_T0=$(cpu_ticks $BARE_PID)
BARE=$($BIN/loadgen run --url http://127.0.0.1:7291/search --connections "$CONNS" --seconds "$SECONDS_PER_RUN" --bap-uri http://127.0.0.1:7293 --unsigned)
BARE_CPU_US=$(( ($(cpu_ticks $BARE_PID) - BARE_T0) * TICK_US / $(field "$BARE" requests) ))
BARE_RSS=$(peak_rss_mb $BARE_PID)
echo "bare-axum-ack $BARE cpu_us_per_request=$BARE_CPU_US peak_rss_mb=$BARE_RSS"

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

# 3. end to end through the sample lab flow; e2e STORE ADMIN_PORT sets E2E, GOT, SENT,
# E2E_CPU_US, E2E_RATE, E2E_RSS, E2E_ERRORS, E2E_PID
e2e() {
  local before err_before
  before=$(sink_count received); err_before=$(sink_count errors)
  GFSL_LISTEN=127.0.0.1:7201 KTH_LISTEN=127.0.0.1:7202 GATEWAY_LISTEN=127.0.0.1:7203 \
  GFSL_ERP_URL=http://127.0.0.1:7280/api/v1/labs/GFSL KTH_ERP_URL=http://127.0.0.1:7280/api/v1/labs/KTH \
    $BIN/beckn-adapter serve flows --store "$1" --admin "127.0.0.1:$2" --no-watch 2>>"$TMP/e2e.log" & E2E_PID=$!; PIDS+=($E2E_PID); wait_port 7201
  [ -n "${DB_NAME:-}" ] && db_ticks_start
  local t0; t0=$(cpu_ticks $E2E_PID)
  E2E=$($BIN/loadgen run --url http://127.0.0.1:7201/search --connections "$CONNS" --seconds "$SECONDS_PER_RUN" --bap-uri http://127.0.0.1:7293)
  SENT=$(field "$E2E" requests)
  # the rate runs from the first request sent (after the load generator's signing) to the last
  # callback seen
  drain "$SENT" "$before"
  E2E_CPU_US=$(( ($(cpu_ticks $E2E_PID) - t0) * TICK_US / SENT ))
  E2E_RATE=$(awk -v n="$GOT" -v a="$(field "$E2E" started_ms)" -v b="$END_MS" 'BEGIN {printf "%.0f", n * 1000 / (b - a)}')
  E2E_RSS=$(peak_rss_mb $E2E_PID)
  E2E_ERRORS=$(( $(sink_count errors) - err_before ))
}
e2e "sqlite://$TMP/e2e.db" 7295
echo "end-to-end $E2E delivered=$GOT of $SENT error_callbacks=$E2E_ERRORS round_trips_per_s=$E2E_RATE cpu_us_per_round_trip=$E2E_CPU_US peak_rss_mb=$E2E_RSS"
kill $E2E_PID; wait $E2E_PID 2>/dev/null || true
S_E2E=$E2E S_SENT=$SENT S_GOT=$GOT S_ERRORS=$E2E_ERRORS S_RATE=$E2E_RATE S_CPU=$E2E_CPU_US S_RSS=$E2E_RSS

# 4. end to end on PostgreSQL (optional): a database of its own, its backends' CPU counted
PG_JSON=""
if [ -n "${BENCH_POSTGRES_URL:-}" ]; then
  DB_NAME="beckn_bench_$$"
  psql -q "$BENCH_POSTGRES_URL" -c "CREATE DATABASE $DB_NAME" >/dev/null
  trap 'cleanup; psql -q "$BENCH_POSTGRES_URL" -c "DROP DATABASE IF EXISTS $DB_NAME WITH (FORCE)" >/dev/null 2>&1 || true' EXIT
  db_pids() { psql -At "$BENCH_POSTGRES_URL" -c "SELECT pid FROM pg_stat_activity WHERE datname = '$DB_NAME'"; }
  # CPU of the database's backends: at the start of the load, and summed again at the end
  declare -A DB_T0
  db_ticks_start() { for p in $(db_pids); do DB_T0[$p]=$(cpu_ticks "$p" 2>/dev/null || echo 0); done; }
  db_ticks_used() {
    local sum=0 p now
    for p in $(db_pids); do now=$(cpu_ticks "$p" 2>/dev/null || echo 0); sum=$(( sum + now - ${DB_T0[$p]:-0} )); done
    echo "$sum"
  }
  PG_URL="${BENCH_POSTGRES_URL%/*}/$DB_NAME"
  e2e "$PG_URL" 7296
  PG_DB_US=$(( $(db_ticks_used) * TICK_US / SENT ))
  kill $E2E_PID; wait $E2E_PID 2>/dev/null || true
  echo "end-to-end-postgres $E2E delivered=$GOT of $SENT error_callbacks=$E2E_ERRORS round_trips_per_s=$E2E_RATE cpu_us_per_round_trip=$E2E_CPU_US database_cpu_us_per_round_trip=$PG_DB_US peak_rss_mb=$E2E_RSS"
  PG_RATIO=$(awk -v a="$E2E_RATE" -v b="$(field "$BARE" rps)" 'BEGIN {printf "%.4f", a/b}')
  PG_JSON=" \"end_to_end_postgres\": $E2E, \"end_to_end_postgres_round_trips_per_s\": $E2E_RATE, \"end_to_end_postgres_cpu_us_per_round_trip\": $E2E_CPU_US, \"end_to_end_postgres_database_cpu_us_per_round_trip\": $PG_DB_US, \"end_to_end_postgres_peak_rss_mb\": $E2E_RSS, \"end_to_end_postgres_error_callbacks\": $E2E_ERRORS, \"end_to_end_postgres_to_bare_ratio\": $PG_RATIO,"
  PG_ROW="$E2E_RATE $(field "$E2E" p50_ms) $(field "$E2E" p99_ms) $E2E_CPU_US+$PG_DB_US $E2E_RSS $PG_RATIO"
  PG_ERRS=$E2E_ERRORS
fi
ERRORS=$(( S_ERRORS + ${PG_ERRS:-0} ))

BARE_RPS=$(field "$BARE" rps); ACK_RPS=$(field "$ACKP" rps)
ratio() { awk -v a="$1" -v b="$BARE_RPS" 'BEGIN {printf "%.4f", a/b}'; }
ACK_RATIO=$(ratio "$ACK_RPS"); E2E_RATIO=$(ratio "$S_RATE")
echo
printf '%-22s %10s %9s %9s %16s %9s %8s\n' scenario "rate/s" "p50 ms" "p99 ms" "CPU µs/request" "RSS MB" "ratio"
row() { printf '%-22s %10s %9s %9s %16s %9s %8s\n' "$@"; }
row bare-axum-ack "$BARE_RPS" "$(field "$BARE" p50_ms)" "$(field "$BARE" p99_ms)" "$BARE_CPU_US" "$BARE_RSS" 1
row ack-path "$ACK_RPS" "$(field "$ACKP" p50_ms)" "$(field "$ACKP" p99_ms)" "$ACK_CPU_US" "$ACK_RSS" "$ACK_RATIO"
row ack-path-callbacks "$ACK_CALLBACKS" - - - - "$(ratio "$ACK_CALLBACKS")"
row end-to-end "$S_RATE" "$(field "$S_E2E" p50_ms)" "$(field "$S_E2E" p99_ms)" "$S_CPU" "$S_RSS" "$E2E_RATIO"
[ -n "${PG_ROW:-}" ] && row end-to-end-postgres $PG_ROW
echo "(p50/p99: of the ACKs; end to end: its rate is callbacks delivered per second, its CPU per round trip; postgres CPU: adapter+database)"

cat > bench/results.json <<JSON
{"machine": "$(nproc) cores, $(free -g | awk '/Mem:/ {print $2}') GiB", "connections": $CONNS, "seconds": $SECONDS_PER_RUN,
 "bare_axum_ack": $BARE, "bare_axum_ack_cpu_us_per_request": $BARE_CPU_US, "bare_axum_ack_peak_rss_mb": $BARE_RSS,
 "ack_path": $ACKP, "ack_path_callbacks_per_s": $ACK_CALLBACKS, "ack_path_cpu_us_per_request": $ACK_CPU_US, "ack_path_peak_rss_mb": $ACK_RSS,
 "end_to_end": $S_E2E, "end_to_end_delivered": $S_GOT, "end_to_end_error_callbacks": $S_ERRORS, "end_to_end_round_trips_per_s": $S_RATE, "end_to_end_cpu_us_per_round_trip": $S_CPU, "end_to_end_peak_rss_mb": $S_RSS,
$PG_JSON
 "ack_path_to_bare_ratio": $ACK_RATIO, "end_to_end_to_bare_ratio": $E2E_RATIO}
JSON
echo "written bench/results.json"
if [ "$ERRORS" -ne 0 ] || [ "$(sink_count errors)" -ne 0 ]; then
  echo "callbacks carried errors: the numbers above measure the error path, not the flows" >&2
  exit 1
fi

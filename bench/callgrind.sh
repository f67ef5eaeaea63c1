#!/usr/bin/env bash
# Instructions per request, by stage: the adapter under valgrind's callgrind, measured over
# N requests after a warm-up (caches, pools, connections), collection on only for those.
# Usage: bench/callgrind.sh ack|e2e [N] [BIN_DIR]  (BIN_DIR: release binaries, default
# target/release). Prints the inclusive instructions per request of the functions that
# make up each stage (they nest: the stages do not add up) and leaves the profile in
# $OUT (default /tmp/callgrind.<scenario>.out) for callgrind_annotate.
set -euo pipefail
cd "$(dirname "$0")/.."
SCENARIO=${1:?ack or e2e}; N=${2:-200}; BIN=${3:-target/release}
OUT=${OUT:-/tmp/callgrind.$SCENARIO.out}
export BENCH_BAP_KEY='aBifWLXHoxVC0WeJuJQmRJhX+Fpx+ohWEDiRPAbQ65FoHiMBd69dUJq/Uo9mPcpwbi+ZfqbLiDkEOiP2Pwy/rg=='  # test-only
TMP=$(mktemp -d); PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$TMP"; }
trap cleanup EXIT
wait_port() { for _ in $(seq 1 600); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.1; done; echo "port $1 did not open" >&2; exit 1; }
received() { curl -s 127.0.0.1:7393/count | sed 's/.*"received":\([0-9]*\).*/\1/'; }
wait_received() { for _ in $(seq 1 1200); do [ "$(received)" -ge "$1" ] && return 0; sleep 0.1; done; echo "callbacks missing" >&2; exit 1; }

$BIN/loadgen sink --listen 127.0.0.1:7393 & PIDS+=($!); wait_port 7393
export FARMER_APP_URL=http://127.0.0.1:7393 BECKN_LOG=warn
VG="valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file=$OUT"
if [ "$SCENARIO" = ack ]; then
  PORT=7392
  BENCH_ACK_LISTEN=127.0.0.1:$PORT $VG $BIN/beckn-adapter serve bench/flows --mappings mappings \
    --schemas schemas --store "sqlite://$TMP/s.db" --admin 127.0.0.1:7394 --no-watch 2>"$TMP/log" & PID=$!
else
  PORT=7301
  $BIN/beckn-adapter sample-erp --listen 127.0.0.1:7380 2>/dev/null & PIDS+=($!); wait_port 7380
  GFSL_LISTEN=127.0.0.1:$PORT KTH_LISTEN=127.0.0.1:7302 GATEWAY_LISTEN=127.0.0.1:7303 \
  GFSL_ERP_URL=http://127.0.0.1:7380/api/v1/labs/GFSL KTH_ERP_URL=http://127.0.0.1:7380/api/v1/labs/KTH \
    $VG $BIN/beckn-adapter serve flows --store "sqlite://$TMP/s.db" --admin 127.0.0.1:7395 --no-watch 2>"$TMP/log" & PID=$!
fi
PIDS+=($PID); wait_port $PORT
load() { $BIN/loadgen run --url "http://127.0.0.1:$PORT/search" --connections 4 --seconds 600 --requests "$1" --bap-uri http://127.0.0.1:7393 2>/dev/null; }
load 50 >/dev/null; wait_received 50
callgrind_control -i on $PID >/dev/null
RUN=$(load "$N"); wait_received $((50 + N))
callgrind_control -d $PID >/dev/null; callgrind_control -i off $PID >/dev/null
echo "$RUN" >&2
kill $PID; wait $PID 2>/dev/null || true
F=$(ls -t "$OUT".* | head -1)
callgrind_annotate --inclusive=yes --threshold=100 "$F" > "$TMP/annotated" 2>/dev/null
TOTAL=$(awk '/PROGRAM TOTALS/ {gsub(",","",$1); print $1+0; exit}' "$TMP/annotated")
echo "scenario $SCENARIO: $N requests, $(( TOTAL / N )) instructions per request in all"
stage() { # name, regex of function names: the largest inclusive cost among them
  local best
  best=$( (grep -E "$2" "$TMP/annotated" || true) | awk '{gsub(",","",$1); if ($1+0 > m) m = $1+0} END {print m+0}')
  printf '  %-44s %10d  %5.1f%%\n' "$1" $(( best / N )) "$(awk -v a="$best" -v b="$TOTAL" 'BEGIN {print 100*a/b}')"
}
stage "HTTP in (hyper server, whole request)" 'beckn_adapter::server::connection::serve_connection'
stage "bpp handler (until the ACK)" 'beckn_adapter::roles::bpp::receive|beckn_adapter::roles::bpp::handle'
stage "signature verify (registry key, ed25519)" 'beckn_adapter::beckn::trust::verify_inbound'
stage "duplicate-key scan" 'beckn_adapter::beckn::context::duplicate_key'
stage "JSON parse of the request" 'serde_json::de::from_slice'
stage "core schema" 'beckn_adapter::beckn::schema::'
stage "domain rules" 'beckn_adapter::beckn::domain::'
stage "store: accept (caller side)" 'beckn_adapter::store::inbox::.*accept'
stage "store: SQLite writer (commit)" 'beckn_adapter::store::sqlite::writer::commit'
stage "worker: process (after the ACK)" 'beckn_adapter::roles::bpp::process'
stage "engine: run the action" 'beckn_adapter::engine::trace_action_in'
stage "template render (minijinja)" 'beckn_adapter::mapping::templates::Templates::render '
stage "rhai scripts" 'beckn_adapter::mapping::scripts::ScriptEngine::run'
stage "backend calls (reqwest)" 'beckn_adapter::backend::.*HttpTransport.*send|beckn_adapter::backend::.*call'
stage "callback: outgoing schema + rules" 'beckn_adapter::intake::answer::callback_body'
stage "callback: queued (outbox)" 'beckn_adapter::roles::queue_callback'
stage "delivery: attempt (sign + POST)" 'beckn_adapter::delivery::Outbox::deliver|beckn_adapter::delivery::.*deliver::'
stage "signing (ed25519 + BLAKE2b)" 'beckn_adapter::beckn::trust::sign_outbound'
stage "transaction memory recall" 'beckn_adapter::store::memory::.*recall'
stage "sqlx reads" 'sqlx_core::.*fetch|sqlx_sqlite::connection::worker'
stage "metrics" 'beckn_adapter::telemetry::'
stage "allocation (mimalloc)" '^[0-9,]+ .*\(mi_malloc|mi_free\)|_mi_malloc_generic|mi_heap_malloc'
stage "statement renumbering" 'beckn_adapter::store::sqlite::writer::numbered'

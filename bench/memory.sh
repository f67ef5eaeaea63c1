#!/usr/bin/env bash
# Where the ACK path's memory is at its peak. Usage: bench/memory.sh [SECONDS] [VAR=value...]
# Runs the ACK path of bench/run.sh (same flow, ports and load) with the given environment,
# samples the server's /proc status and smaps every 250 ms, and prints its peak RSS (VmHWM),
# the anonymous and file-backed parts at the largest sample, the largest mappings then (a
# mimalloc arena shows as one anonymous mapping, with its AnonHugePages), and the server's CPU
# per request. BENCH_BIN=dir runs the binaries in dir instead of building.
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_PER_RUN=${1:-5}; shift || true
export BENCH_BAP_KEY='aBifWLXHoxVC0WeJuJQmRJhX+Fpx+ohWEDiRPAbQ65FoHiMBd69dUJq/Uo9mPcpwbi+ZfqbLiDkEOiP2Pwy/rg=='  # test-only
if [ -n "${BENCH_BIN:-}" ]; then BIN=$BENCH_BIN; else
  cargo build --release --quiet -p beckn-adapter -p loadgen
  BIN=target/release
fi
TMP=$(mktemp -d); PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$TMP"; }
trap cleanup EXIT
wait_port() { for _ in $(seq 1 200); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.05; done; echo "port $1 did not open" >&2; exit 1; }
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
TICK_US=$(( 1000000 / $(getconf CLK_TCK) ))

$BIN/loadgen sink --listen 127.0.0.1:7293 & PIDS+=($!); wait_port 7293
env "$@" FARMER_APP_URL=http://127.0.0.1:7293 BECKN_LOG=warn BENCH_ACK_LISTEN=127.0.0.1:7292 \
  $BIN/beckn-adapter serve bench/flows --mappings mappings --schemas schemas \
  --store "sqlite://$TMP/ack.db" --admin 127.0.0.1:7294 --no-watch 2>"$TMP/ack.log" & P=$!; PIDS+=($P); wait_port 7292
# the sampler: one status line and one copy of smaps per tick
( n=0; while kill -0 $P 2>/dev/null; do
    awk '/VmRSS|RssAnon|RssFile/ {printf "%s %s ", $1, $2} END {print ""}' "/proc/$P/status" >> "$TMP/samples"
    cp "/proc/$P/smaps" "$TMP/smaps.$n" 2>/dev/null; n=$((n + 1)); sleep 0.25
  done ) 2>/dev/null & SAMPLER=$!
T0=$(cpu_ticks $P)
RUN=$($BIN/loadgen run --url http://127.0.0.1:7292/search --connections "${BENCH_CONNECTIONS:-50}" --seconds "$SECONDS_PER_RUN" --bap-uri http://127.0.0.1:7293)
sleep 1  # the callbacks still under way
REQUESTS=$(echo "$RUN" | sed 's/.*"requests":\([0-9]*\).*/\1/')
echo "$RUN"
echo "cpu_us_per_request=$(( ($(cpu_ticks $P) - T0) * TICK_US / REQUESTS ))"
grep -E 'VmHWM' "/proc/$P/status" | tr -s ' \t' ' '
kill $SAMPLER 2>/dev/null || true; wait $SAMPLER 2>/dev/null || true
echo "largest sample (kB): $(sort -k2 -n -r "$TMP/samples" | head -1)"
BEST=$(for f in "$TMP"/smaps.*; do echo "$(awk '/^Rss:/ {s += $2} END {print s}' "$f") $f"; done | sort -n -r | head -1 | cut -d' ' -f2)
echo "largest mappings then (Rss kB, AnonHugePages kB, range, file):"
awk '/^[0-9a-f]+-[0-9a-f]+ / {range = $1; name = $6} /^Rss:/ {rss = $2} /^AnonHugePages:/ {print rss, $2, range, name}' "$BEST" | sort -n -r | head -8

#!/usr/bin/env bash
# What the PostgreSQL store's writes of one message cost the database: pgbench replays the
# rows of one end-to-end message (request accepted, answer queued, answer delivered) written
# statement by statement in transactions (pg/separate.sql) and one statement per stage
# (pg/one.sql, as the store writes them), and prints for each the messages per second and the
# CPU of the database's backends per message (from /proc, as bench/run.sh counts it).
# Usage: BENCH_POSTGRES_URL=postgres://postgres@127.0.0.1:5432/test bench/pg-statements.sh [SECONDS] [CLIENTS]
# (a server the script may create a database on; it needs pgbench, and /proc of the server).
set -euo pipefail
cd "$(dirname "$0")/.."
SECS=${1:-10}; CLIENTS=${2:-4}
URL=${BENCH_POSTGRES_URL:?set BENCH_POSTGRES_URL}
PGBENCH=${PGBENCH:-$(command -v pgbench || ls /usr/lib/postgresql/*/bin/pgbench | tail -1)}
DB="beckn_pgbench_$$"
psql -q "$URL" -c "CREATE DATABASE $DB" >/dev/null
trap 'psql -q "$URL" -c "DROP DATABASE IF EXISTS $DB WITH (FORCE)" >/dev/null 2>&1 || true' EXIT
DB_URL="${URL%/*}/$DB"
for m in migrations/postgres/*.sql; do psql -q -v ON_ERROR_STOP=1 "$DB_URL" -f "$m" >/dev/null; done
TICK_US=$(( 1000000 / $(getconf CLK_TCK) ))
# CPU ticks of the pgbench backends (the pids found at the start, read again at the end)
backends() { psql -At "$URL" -c "SELECT pid FROM pg_stat_activity WHERE datname = '$DB' AND backend_type = 'client backend' AND pid <> pg_backend_pid()"; }
ticks() { local sum=0 p; for p in $PIDS_NOW; do
  sum=$(( sum + $(awk '{print $14 + $15}' "/proc/$p/stat" 2>/dev/null || echo 0) )); done; echo "$sum"; }
delivered() { psql -At "$DB_URL" -c "SELECT count(*) FROM outbox WHERE state = 'delivered'"; }
for script in separate one; do
  psql -q "$DB_URL" -c "TRUNCATE inbox, transactions, messages, outbox, action_steps" >/dev/null
  "$PGBENCH" -n -M prepared -c "$CLIENTS" -j 1 -T $(( SECS + 10 )) -f "bench/pg/$script.sql" "$DB_URL" >/tmp/pgbench.$$.out 2>&1 &
  PB=$!
  sleep 2; PIDS_NOW=$(backends); T0=$(ticks); N0=$(delivered)
  sleep "$SECS"; T1=$(ticks); N1=$(delivered)
  wait $PB || { cat /tmp/pgbench.$$.out >&2; exit 1; }
  N=$(( N1 - N0 ))
  echo "$script: $(( N / SECS )) messages/s, database backends $(( (T1 - T0) * TICK_US / N )) µs CPU per message ($N messages, $CLIENTS clients, load $(cut -d' ' -f1-3 /proc/loadavg))"
done
rm -f /tmp/pgbench.$$.out

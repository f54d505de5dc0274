#!/usr/bin/env bash
# Memory through a long outage of the followers' servers: examples/load_server in
# `audit-followers-down` (PostgreSQL and NATS followers at a closed port: an outage as long
# as the run) under a steady GET load, its resident memory sampled as the followers fall
# further behind. A follower keeps a cursor, not the events it has not shipped: the resident
# set should stay flat however long the outage.
#
#   benches/outage_memory.sh                  # 600 s, sampled every 30 s
#   DURATION=60 SAMPLE=5 benches/outage_memory.sh
#
# Needs wrk. Traffic goes to 127.0.0.1 only: CONNECTIONS (default 8) connections, each
# waiting PACE_MS (default 1) ms after each answer, for DURATION seconds. The trail (about
# 0.5 KB an event) is deleted at the end.
set -euo pipefail
DURATION=${DURATION:-600}
SAMPLE=${SAMPLE:-30}
CONNECTIONS=${CONNECTIONS:-8}
export LOAD_PACE_MS=${PACE_MS:-1} LOAD_WORKLOAD=get-paced
for number in DURATION SAMPLE CONNECTIONS LOAD_PACE_MS; do
    [[ ${!number} =~ ^[1-9][0-9]*$ ]] || { echo "outage_memory.sh: $number must be a whole number above 0, not '${!number}'" >&2; exit 1; }
done
cd "$(dirname "$0")/.."
command -v wrk >/dev/null || { echo "outage_memory.sh: wrk not found (Debian: apt-get install wrk)" >&2; exit 1; }
cargo build --release --quiet --example load_server
SERVER="${CARGO_TARGET_DIR:-target}/release/examples/load_server"
WORK=$(mktemp -d)
SERVER_PID= WRK_PID=
cleanup() {
    [[ -n "$WRK_PID" ]] && kill "$WRK_PID" 2>/dev/null || true
    [[ -n "$SERVER_PID" ]] && kill "$SERVER_PID" 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT

PORT=3190
"$SERVER" audit-followers-down --addr "127.0.0.1:$PORT" --dir "$WORK/trail" >"$WORK/server.log" 2>&1 &
SERVER_PID=$!
for _ in $(seq 100); do
    grep -q '^listening on' "$WORK/server.log" && break
    sleep 0.1
done
grep -q '^listening on' "$WORK/server.log" || { echo "outage_memory.sh: the server did not start:" >&2; cat "$WORK/server.log" >&2; exit 1; }

wrk -t1 -c"$CONNECTIONS" -d"$DURATION"s -s benches/load.lua "http://127.0.0.1:$PORT/hello" >"$WORK/wrk.out" &
WRK_PID=$!
status() { awk -v k="$1" '$1 == k":" { print $2 }' "/proc/$SERVER_PID/status"; }
echo "| after (s) | events in the trail | resident (MiB) | peak resident (MiB) |"
echo "|---:|---:|---:|---:|"
elapsed=0
while kill -0 "$WRK_PID" 2>/dev/null; do
    sleep "$SAMPLE"
    elapsed=$((elapsed + SAMPLE))
    kill -0 "$WRK_PID" 2>/dev/null || break
    events=$(cat "$WORK"/trail/audit-*.jsonl | wc -l)
    awk -v t="$elapsed" -v e="$events" -v r="$(status VmRSS)" -v p="$(status VmHWM)" \
        'BEGIN { printf "| %d | %d | %.1f | %.1f |\n", t, e, r / 1024, p / 1024 }'
done
wait "$WRK_PID" || true
WRK_PID=
grep '^RESULT' "$WORK/wrk.out" || true
kill -TERM "$SERVER_PID"
wait "$SERVER_PID" || { echo "outage_memory.sh: the server failed:" >&2; cat "$WORK/server.log" >&2; exit 1; }
SERVER_PID=

#!/usr/bin/env bash
# End-to-end load test: the same hello-world axum app served bare, with tower-http's
# TraceLayer writing JSON through tracing-appender, and with the audit layer, driven by wrk
# in alternating rounds (bare trace audit, bare trace audit, ...) so that drift on a shared
# machine hits every setup alike. Prints one markdown table of medians over the rounds.
#
#   benches/load.sh                      # 3 rounds, 5 s per run, 32 connections
#   ROUNDS=5 DURATION=10 CONNECTIONS=64 benches/load.sh
#   SERVICES=1 benches/load.sh           # also audit-services: file trail + PostgreSQL + NATS
#   FOLLOWERS=1 benches/load.sh          # also audit-followers (PostgreSQL and NATS following
#                                        # the trail) and audit-followers-down (their servers down)
#                                        # (AUDIT_TEST_POSTGRES_URL / AUDIT_TEST_NATS_URL)
#   PREALLOCATE=1 benches/load.sh        # also audit-prealloc: the audit trail's file
#                                        # zero-filled 1 MiB ahead (JsonlFileSinkBuilder::preallocate)
#   ALLOCATOR=mimalloc benches/load.sh   # every server on mimalloc instead of glibc's malloc
#   PACED=1 benches/load.sh              # also get-paced: GET /hello on PACED_CONNECTIONS
#                                        # (default 8) connections, each waiting PACE_MS
#                                        # (default 1) ms after each answer: latency at a
#                                        # steady load below saturation
#   BUSY_NS=1000 benches/load.sh         # also bare-busy, GET workloads only: the bare router
#                                        # whose handler first spins BUSY_NS ns, the yardstick
#                                        # for what the layers add (that much of the
#                                        # application's own work costs this, here)
#   FLOOR=1 benches/load.sh              # also floor-layer and floor-handoff, GET workloads
#                                        # only: a layer that does nothing, and one that
#                                        # hands each request's record to another thread
#                                        # (examples/shared/floor.rs), the least any layer
#                                        # and any off-thread record costs, here
#
# Needs wrk (Debian: apt-get install wrk). Traffic goes to 127.0.0.1 only, bounded by
# ROUNDS x 6 runs (2 more each with PREALLOCATE=1 and SERVICES=1, half as many more with
# PACED=1, 1 more per GET workload with BUSY_NS and 2 more with FLOOR=1) x (DURATION + 1 s
# warm-up). Where
# `perf stat` can count them, the table also gives the server's instructions per request
# (user and kernel): a figure that moves far less than CPU time with a shared host's load.
set -euo pipefail

ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-5}
CONNECTIONS=${CONNECTIONS:-32}
THREADS=${THREADS:-1}
WARMUP=1
MODES=(bare trace audit)
[[ ${PREALLOCATE:-0} == 1 ]] && MODES+=(audit-prealloc)
[[ ${SERVICES:-0} == 1 ]] && MODES+=(audit-services)
[[ ${FOLLOWERS:-0} == 1 ]] && MODES+=(audit-followers audit-followers-down)
if [[ -n ${BUSY_NS:-} ]]; then
    [[ $BUSY_NS =~ ^[0-9]+$ ]] || { echo "load.sh: BUSY_NS must be a whole number of nanoseconds, not '$BUSY_NS'" >&2; exit 1; }
    MODES+=(bare-busy)
fi
[[ ${FLOOR:-0} == 1 ]] && MODES+=(floor-layer floor-handoff)
WORKLOADS=(get post)
[[ ${PACED:-0} == 1 ]] && WORKLOADS+=(get-paced)
PACED_CONNECTIONS=${PACED_CONNECTIONS:-8}
export LOAD_PACE_MS=${PACE_MS:-1}
[[ $LOAD_PACE_MS =~ ^[0-9]+$ ]] || { echo "load.sh: PACE_MS must be a whole number of milliseconds, not '$LOAD_PACE_MS'" >&2; exit 1; }

cd "$(dirname "$0")/.."
command -v wrk >/dev/null || { echo "load.sh: wrk not found (Debian: apt-get install wrk)" >&2; exit 1; }

FEATURES=()
[[ -n ${ALLOCATOR:-} ]] && FEATURES=(--features "$ALLOCATOR")
cargo build --release --quiet --example load_server "${FEATURES[@]}"
SERVER="${CARGO_TARGET_DIR:-target}/release/examples/load_server"
LUA="benches/load.lua"
WORK=$(mktemp -d)
RESULTS="$WORK/results"
SERVER_PID=
cleanup() {
    [[ -n "$SERVER_PID" ]] && kill "$SERVER_PID" 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT

TICKS=$(getconf CLK_TCK)
# shellcheck source=benches/server_stats.sh
source benches/server_stats.sh
PORT=3100

# Whether a setup runs for a workload: the busy handler and the floors are GET's only.
runs_for() { # workload mode
    [[ $1 != post ]] || [[ $2 != bare-busy && $2 != floor-* ]]
}

# One wrk run; prints its RESULT line.
drive() { # workload seconds url
    local connections=$CONNECTIONS
    [[ $1 == get-paced ]] && connections=$PACED_CONNECTIONS
    LOAD_WORKLOAD=$1 wrk -t"$THREADS" -c"$connections" -d"$2"s -s "$LUA" "$3" | grep '^RESULT'
}
field() { # name line
    sed -n "s/.*\b$1=\([0-9]*\).*/\1/p" <<<"$2"
}

run_one() { # workload mode round
    local workload=$1 mode=$2 round=$3
    local dir="$WORK/$mode-$workload-$round" log="$WORK/$mode-$workload-$round.log"
    PORT=$((PORT + 1))
    local server_args=("$mode")
    [[ $mode == audit-prealloc ]] && server_args=(audit --preallocate 1048576)
    [[ $mode == bare-busy ]] && server_args=(bare --busy-ns "$BUSY_NS")
    "$SERVER" "${server_args[@]}" --addr "127.0.0.1:$PORT" --dir "$dir" >"$log" 2>&1 &
    SERVER_PID=$!
    for _ in $(seq 100); do
        grep -q '^listening on' "$log" && break
        sleep 0.1
    done
    grep -q '^listening on' "$log" || { echo "load.sh: $mode server did not start:" >&2; cat "$log" >&2; exit 1; }

    local path=/hello
    [[ $workload == post ]] && path=/settings/0
    local url="http://127.0.0.1:$PORT$path"
    local warm measured before after
    warm=$(drive "$workload" "$WARMUP" "$url")
    start_counting "$SERVER_PID" "$WORK/instructions"
    before=$(cpu_ticks "$SERVER_PID")
    measured=$(drive "$workload" "$DURATION" "$url")
    after=$(cpu_ticks "$SERVER_PID")
    stop_counting "$WORK/instructions"
    local rss_kb
    rss_kb=$(awk '/^VmHWM/ {print $2}' "/proc/$SERVER_PID/status")
    kill -TERM "$SERVER_PID"
    wait "$SERVER_PID" || { echo "load.sh: $mode server failed:" >&2; cat "$log" >&2; exit 1; }
    SERVER_PID=

    local requests duration
    requests=$(field requests "$measured")
    duration=$(field duration_us "$measured")
    local answered=$(( $(field requests "$warm") + requests ))
    local errors=$(( $(field socket_errors "$measured") + $(field non2xx "$measured") ))
    # Events the setup wrote for those requests: one per request for the audit trail
    # (system events aside), one "finished processing request" line for TraceLayer.
    # The audit server prints its sync count at shutdown.
    local syncs
    syncs=$(sed -n 's/.*syncs=\([0-9]*\).*/\1/p' "$log")
    local events=-
    case $mode in
        audit*) events=$(cat "$dir"/audit-*.jsonl | grep -vc '"category":"system"' || true) ;;
        trace) events=$(grep -c 'finished processing request' "$dir/access.jsonl" || true) ;;
        floor-handoff) events=$(sed -n 's/^floor drained=\([0-9]*\).*/\1/p' "$log") ;;
    esac
    # Counted, the run's files go: kept, their dirty pages (hundreds of MB a run) would be
    # written back by the kernel's flusher during later runs, on the cores the next setup
    # is measured on.
    rm -rf "$dir"
    awk -v w="$workload" -v m="$mode" -v r="$round" -v n="$requests" -v d="$duration" \
        -v p50="$(field p50_us "$measured")" -v p99="$(field p99_us "$measured")" \
        -v cpu=$((after - before)) -v ticks="$TICKS" -v ev="$events" -v ans="$answered" \
        -v rss="$rss_kb" -v err="$errors" -v syncs="${syncs:-0}" -v ins="$INSTRUCTIONS" 'BEGIN {
            printf "%s %s %s %.0f %s %s %.1f %s %s %s %s %s %s\n", w, m, r, n / (d / 1e6), p50, p99,
                cpu / ticks * 1e6 / n, ev, ans, rss, err, syncs,
                (ins == "-") ? "-" : sprintf("%.0f", ins / n)
        }' >>"$RESULTS"
    echo "round $round  $workload  $mode: $(tail -n1 "$RESULTS" | cut -d' ' -f4) req/s" >&2
}

for round in $(seq "$ROUNDS"); do
    for workload in "${WORKLOADS[@]}"; do
        for mode in "${MODES[@]}"; do
            runs_for "$workload" "$mode" && run_one "$workload" "$mode" "$round"
        done
    done
done

total() { awk '{ s += $1 } END { print s + 0 }'; }
median() { sort -n | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
column_of() { # workload mode column
    awk -v w="$1" -v m="$2" -v c="$3" '$1 == w && $2 == m { print $c }' "$RESULTS"
}

echo
paced=
[[ ${PACED:-0} == 1 ]] && paced=" (get-paced: $PACED_CONNECTIONS connections, ${LOAD_PACE_MS} ms between a connection's answer and its next request)"
echo "$ROUNDS rounds x ${DURATION}s, $CONNECTIONS connections$paced, wrk -t$THREADS, allocator: ${ALLOCATOR:-glibc malloc}; medians over rounds"
echo
echo "| workload | setup | requests/s | ratio to bare | p50 (us) | p99 (us) | server CPU per request (us) | server instructions per request | events written / requests answered | events per sync | errors | peak RSS (MiB) |"
echo "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
for workload in "${WORKLOADS[@]}"; do
    bare_rps=$(column_of "$workload" bare 4 | median)
    for mode in "${MODES[@]}"; do
        runs_for "$workload" "$mode" || continue
        rps=$(column_of "$workload" "$mode" 4 | median)
        p50=$(column_of "$workload" "$mode" 5 | median)
        p99=$(column_of "$workload" "$mode" 6 | median)
        cpu=$(column_of "$workload" "$mode" 7 | median)
        instructions=$(column_of "$workload" "$mode" 13 | { grep -v -- - || true; })
        [[ -n $instructions ]] && instructions=$(median <<<"$instructions")
        label=$mode
        [[ $mode == bare-busy ]] && label="bare, handler spins $BUSY_NS ns"
        if [[ $mode == bare* || $mode == floor-layer ]]; then
            written="-"
        else
            written="$(column_of "$workload" "$mode" 8 | total) / $(column_of "$workload" "$mode" 9 | total)"
        fi
        errors=$(column_of "$workload" "$mode" 11 | total)
        per_sync="-"
        if [[ $mode == audit || $mode == audit-prealloc ]]; then
            per_sync=$(awk -v e="$(column_of "$workload" "$mode" 8 | total)" \
                -v s="$(column_of "$workload" "$mode" 12 | total)" \
                'BEGIN { if (s > 0) printf "%.1f", e / s; else print "-" }')
        fi
        rss=$(column_of "$workload" "$mode" 10 | sort -n | tail -n1)
        awk -v w="$workload" -v m="$label" -v rps="$rps" -v bare="$bare_rps" -v p50="$p50" \
            -v p99="$p99" -v cpu="$cpu" -v wr="$written" -v err="$errors" -v rss="$rss" \
            -v ps="$per_sync" -v ins="$instructions" 'BEGIN {
                printf "| %s | %s | %.0f | %.2fx | %s | %s | %.1f | %s | %s | %s | %s | %.1f |\n",
                    w, m, rps, rps / bare, p50, p99, cpu,
                    (ins == "") ? "-" : sprintf("%.0f", ins), wr, ps, err, rss / 1024
            }'
    done
done

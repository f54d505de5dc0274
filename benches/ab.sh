#!/usr/bin/env bash
# A/B of two builds of examples/load_server: the same setup (audit by default) served by an
# old and a new binary in alternating rounds, so that the host's drift hits both alike; or of
# two setups of one build (OLD_MODE / NEW_MODE).
# Prints requests/s, p99 and p50 latency, server CPU (and the kernel's share of it) and (where
# perf can count them) server instructions per request for each run, then the medians of each
# side.
# Use an even number of rounds: each side then runs first in half of them.
#
#   git worktree add /tmp/old <rev>
#   (cd /tmp/old && CARGO_TARGET_DIR=/tmp/old-target cargo build --release --example load_server)
#   cargo build --release --example load_server
#   benches/ab.sh /tmp/old-target/release/examples/load_server target/release/examples/load_server
#   ROUNDS=3 WORKLOAD=post MODE=audit benches/ab.sh OLD NEW
#   OLD_MODE=audit-discard NEW_MODE=audit benches/ab.sh BIN BIN   # what the file sink adds
#   WORKLOAD=get-paced CONNECTIONS=8 OLD_MODE=bare NEW_MODE=audit benches/ab.sh BIN BIN
#                                    # latency below saturation (see load.lua; PACE_MS=1)
#   OLD_MODE=bare OLD_ARGS="--busy-ns 1500" NEW_MODE=audit benches/ab.sh BIN BIN
#                                    # the layer against 1.5 us of the handler's own work
#
# Needs wrk. Traffic goes to 127.0.0.1 only: ROUNDS x 2 runs of 1 s warm-up + DURATION s.
set -euo pipefail
OLD=$1
NEW=$2
ROUNDS=${ROUNDS:-4}
DURATION=${DURATION:-5}
WORKLOAD=${WORKLOAD:-get}
CONNECTIONS=${CONNECTIONS:-32}
export LOAD_PACE_MS=${PACE_MS:-1}
[[ $LOAD_PACE_MS =~ ^[0-9]+$ ]] || { echo "ab.sh: PACE_MS must be a whole number of milliseconds, not '$LOAD_PACE_MS'" >&2; exit 1; }
MODE=${MODE:-audit}
OLD_MODE=${OLD_MODE:-$MODE}
NEW_MODE=${NEW_MODE:-$MODE}
# More arguments for each side's server (split on spaces), such as "--busy-ns 1500".
read -r -a OLD_ARGS <<<"${OLD_ARGS:-}"
read -r -a NEW_ARGS <<<"${NEW_ARGS:-}"
LUA="$(dirname "$0")/load.lua"
# As in load.sh (load.lua picks the POST's path itself).
URL_PATH=/hello
[[ $WORKLOAD == post ]] && URL_PATH=/settings/0
RUNS=$(mktemp)
pid=
# A run cut short (Ctrl-C, a non-2xx stop) leaves no server behind.
trap 'rm -f "$RUNS" "$RUNS.instructions"; [[ -z $pid ]] || kill "$pid" 2>/dev/null || true' EXIT
TICKS=$(getconf CLK_TCK)
PORT=4300

# shellcheck source=benches/server_stats.sh
source "$(dirname "$0")/server_stats.sh"

for round in $(seq "$ROUNDS"); do
    # Which build runs first alternates (old new, new old, ...): on this host, swapping the
    # order of the same two builds was seen to move their difference by 5 to 8%.
    order="old new"
    (( round % 2 == 0 )) && order="new old"
    for which in $order; do
        server=$OLD mode=$OLD_MODE extra=("${OLD_ARGS[@]}")
        [[ $which == new ]] && server=$NEW mode=$NEW_MODE extra=("${NEW_ARGS[@]}")
        PORT=$((PORT + 1))
        dir=$(mktemp -d)
        "$server" "$mode" "${extra[@]}" --addr "127.0.0.1:$PORT" --dir "$dir" >/dev/null 2>&1 &
        pid=$!
        for _ in $(seq 50); do
            (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && break
            sleep 0.1
        done
        LOAD_WORKLOAD=$WORKLOAD wrk -t1 -c"$CONNECTIONS" -d1s -s "$LUA" "http://127.0.0.1:$PORT$URL_PATH" >/dev/null
        start_counting "$pid" "$RUNS.instructions"
        before=$(cpu_ticks "$pid") kernel_before=$(kernel_ticks "$pid")
        result=$(LOAD_WORKLOAD=$WORKLOAD wrk -t1 -c"$CONNECTIONS" -d"$DURATION"s -s "$LUA" \
            "http://127.0.0.1:$PORT$URL_PATH" | grep '^RESULT')
        after=$(cpu_ticks "$pid") kernel_after=$(kernel_ticks "$pid")
        stop_counting "$RUNS.instructions"
        kill "$pid"
        wait "$pid" 2>/dev/null || true
        pid=
        rm -rf "$dir"
        requests=$(sed -n 's/.*requests=\([0-9]*\).*/\1/p' <<<"$result")
        non2xx=$(sed -n 's/.*non2xx=\([0-9]*\).*/\1/p' <<<"$result")
        p99=$(sed -n 's/.*p99_us=\([0-9]*\).*/\1/p' <<<"$result")
        p50=$(sed -n 's/.*p50_us=\([0-9]*\).*/\1/p' <<<"$result")
        if [[ $non2xx != 0 ]]; then
            echo "ab.sh: $non2xx answers were not 2xx: not the workload meant" >&2
            exit 1
        fi
        awk -v r="$round" -v w="$which" -v n="$requests" -v d="$DURATION" \
            -v c=$((after - before)) -v t="$TICKS" -v l="$WORKLOAD" \
            -v m="$mode${extra[*]:+[$(tr ' ' = <<<"${extra[*]}")]}" \
            -v i="$INSTRUCTIONS" -v p="$p99" -v p50="$p50" -v k=$((kernel_after - kernel_before)) \
            'BEGIN { printf "round %d %-3s %s %s: %.0f requests/s, %.2f us CPU/request, %s instructions/request, p99 %d us, p50 %d us, kernel %.2f us\n",
                     r, w, m, l, n / d, c / t * 1e6 / n, (i == "-") ? "-" : sprintf("%.0f", i / n), p, p50, k / t * 1e6 / n }' \
            | tee -a "$RUNS"
    done
done

# The median of a column of numbers.
median() { sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
for which in old new; do
    rps=$(awk -v w="$which" '$3 == w { print $6 }' "$RUNS" | median)
    cpu=$(awk -v w="$which" '$3 == w { print $8 }' "$RUNS" | median)
    p99=$(awk -v w="$which" '$3 == w { print $14 }' "$RUNS" | median)
    p50=$(awk -v w="$which" '$3 == w { print $17 }' "$RUNS" | median)
    kernel=$(awk -v w="$which" '$3 == w { print $20 }' "$RUNS" | median)
    instructions=$(awk -v w="$which" '$3 == w && $11 != "-" { print $11 }' "$RUNS")
    [[ -n $instructions ]] && instructions=$(median <<<"$instructions") || instructions=-
    printf '%s: median %.0f requests/s, %.2f us CPU/request (kernel %.2f), %s instructions/request, p99 %.0f us, p50 %.0f us over %d rounds\n' \
        "$which" "$rps" "$cpu" "$kernel" "$instructions" "$p99" "$p50" "$ROUNDS"
done

#!/usr/bin/env bash
# Instructions per request, bare and audited, both threads included, counted by valgrind's
# callgrind: repeatable to a few instructions whatever else the machine is doing, so a
# change's cost shows even where wall-clock benches drown in the host's noise.
#
#   benches/instructions.sh              # 2,000 and 12,000 requests per setup
#   TOP=25 benches/instructions.sh       # and, for each, the 25 functions auditing adds most to
#
# GET /hello with a chained file trail (and with a sink that keeps nothing, which splits the
# layer's and its pipeline's share from the file sink's; and behind the load server's two
# floor layers, for the least any layer adds), and a sensitive POST (state loaded before and
# after, diffed, redacted; the event "synced" by a sink that keeps nothing, before the
# response).
# Each setup runs twice, with N1 and N2 requests; the difference divided by N2 - N1 is the
# cost per request without start-up and shutdown. Needs valgrind (apt-get install valgrind).
#
# valgrind runs one thread at a time; `--fair-sched=yes` hands the CPU round in turn, so that
# the writer thread keeps up with the requests as it does on real cores (with the default,
# the busy request thread takes the lock back at once and the writer runs seldom: then
# two requests in three found no spare event to reuse, against one in seventy natively).
#
# valgrind does not emulate the CPU's SHA extensions, so under callgrind sha2 runs its
# portable code: the chain's SHA-256 is printed apart, as it costs far fewer instructions on
# hardware with SHA-NI.
set -euo pipefail
N1=${N1:-2000}
N2=${N2:-12000}
TOP=${TOP:-0}

cd "$(dirname "$0")/.."
command -v valgrind >/dev/null || { echo "instructions.sh: valgrind not found (apt-get install valgrind)" >&2; exit 1; }
BIN=$(cargo bench --bench instructions --no-run 2>&1 | sed -n 's/.*Executable .*(\(.*\)).*/\1/p')
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

# Total instructions, and those inside SHA-256's compression function, of one run.
count() { # mode requests
    local out="$WORK/$1.$2"
    valgrind --tool=callgrind --fair-sched=yes --callgrind-out-file="$out" "$BIN" "$1" "$2" >/dev/null 2>&1
    local total sha
    total=$(callgrind_annotate "$out" 2>/dev/null | awk '/PROGRAM TOTALS/ {gsub(",", "", $1); print $1}')
    sha=$(callgrind_annotate --inclusive=yes "$out" 2>/dev/null \
        | awk '/sha2::sha256::compress256/ {gsub(",", "", $1); print $1; exit}')
    echo "$total ${sha:-0}"
}

per_request() { # mode
    read -r t1 s1 <<<"$(count "$1" "$N1")"
    read -r t2 s2 <<<"$(count "$1" "$N2")"
    echo "$(( (t2 - t1) / (N2 - N1) )) $(( (s2 - s1) / (N2 - N1) ))"
}

# Per function: instructions per request that auditing adds, from the four runs of a pair of
# setups: (audited N2 - audited N1) - (bare N2 - bare N1), over N2 - N1.
top_functions() { # audited-mode bare-mode
    local file sign
    for run in "$1.$N2 1" "$1.$N1 -1" "$2.$N2 -1" "$2.$N1 1"; do
        read -r file sign <<<"$run"
        callgrind_annotate --threshold=100 "$WORK/$file" 2>/dev/null \
            | sed -n '/file:function/,$p' | tail -n +3 \
            | awk -v sign="$sign" 'match($0, /^ *[0-9,]+ +\( *[0-9.]+%\) +/) {
                n = $1; gsub(",", "", n)
                name = substr($0, RSTART + RLENGTH); sub(/ \[[^]]*\]$/, "", name); sub(/^[?]+:/, "", name)
                print sign * n "\t" name }'
    done | awk -F'\t' -v per="$((N2 - N1))" '
        { sum[$2] += $1 }
        END { for (f in sum) { v = sum[f] / per; if (v >= 1) printf "%10.0f  %s\n", v, f } }' \
        | sort -g -r | awk -v top="$TOP" 'NR <= top' # reads it all: no SIGPIPE under pipefail
}

read -r bare _ <<<"$(per_request bare)"
read -r audited sha <<<"$(per_request audited)"
read -r detectors _ <<<"$(per_request audited-detectors)"
read -r discard _ <<<"$(per_request audited-discard)"
read -r floor_layer _ <<<"$(per_request floor-layer)"
read -r floor_handoff _ <<<"$(per_request floor-handoff)"
read -r sensitive_bare _ <<<"$(per_request sensitive-bare)"
read -r sensitive _ <<<"$(per_request sensitive)"
echo "instructions per request (callgrind; $N1 and $N2 requests per setup)"
echo "GET /hello"
printf '  bare router:                        %8d\n' "$bare"
printf '  audited, file trail, both threads:  %8d\n' "$audited"
printf '  added by auditing:                  %8d\n' "$((audited - bare))"
printf '    of which SHA-256 (portable code): %8d\n' "$sha"
printf '    the rest:                         %8d\n' "$((audited - bare - sha))"
printf '      with a sink that keeps nothing: %8d\n' "$((discard - bare))"
printf '      the file sink, SHA-256 aside:   %8d\n' "$((audited - sha - discard))"
printf '  then added by the demo'"'"'s detectors: %8d\n' "$((detectors - audited))"
echo "  the floors (examples/shared/floor.rs), added to the bare router:"
printf '    a layer that does nothing:        %8d\n' "$((floor_layer - bare))"
printf '    one that hands a record off:      %8d\n' "$((floor_handoff - bare))"
echo "POST /settings/{id}, sensitive, \"synced\" by a sink that keeps nothing"
printf '  unaudited handler:                  %8d\n' "$sensitive_bare"
printf '  #[sensitive], both threads:         %8d\n' "$sensitive"
printf '  added by auditing:                  %8d\n' "$((sensitive - sensitive_bare))"
echo "one event encoded (a request's and a role change's in turn; benches/instructions.rs)"
read -r audit_format _ <<<"$(per_request format-audit)"
printf '  audit/1:                            %8d\n' "$audit_format"
for format in ocsf ecs cef; do
    read -r cost _ <<<"$(per_request "format-$format")"
    printf '  %-5s                               %8d  (%s x audit/1)\n' "$format:" "$cost" \
        "$(awk -v a="$cost" -v b="$audit_format" 'BEGIN { printf "%.2f", a / b }')"
done
if [ "$TOP" -gt 0 ]; then
    echo "GET /hello: the $TOP functions with the most instructions added per request"
    top_functions audited bare | cut -c1-160
    echo "POST /settings/{id}: the $TOP functions with the most instructions added per request"
    top_functions sensitive sensitive-bare | cut -c1-160
fi

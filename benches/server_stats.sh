# Sourced by load.sh and ab.sh: what a server process costs while wrk measures it.

# utime + stime of a process, in clock ticks (fields 14 and 15 of /proc/PID/stat,
# counted after the command name, which may hold spaces).
cpu_ticks() { sed 's/.*) //' "/proc/$1/stat" | awk '{print $12 + $13}'; }

# stime alone: the CPU the kernel spends for the process (its sockets, syscalls, wake-ups).
kernel_ticks() { sed 's/.*) //' "/proc/$1/stat" | awk '{print $13}'; }

# Instructions a process retires (user and kernel), counted by `perf stat`: unlike CPU time,
# they hardly move with a shared host's load. COUNT_INSTRUCTIONS is 0 where perf cannot
# count them (not installed, perf_event_paranoid, a VM that exposes no counters).
COUNT_INSTRUCTIONS=0
if command -v perf >/dev/null && perf stat -x, -e instructions -o /dev/null true 2>/dev/null; then
    COUNT_INSTRUCTIONS=1
fi

# Starts counting PID's instructions into FILE, and sets COUNTER to the counter's pid (or
# leaves it empty). Both functions set variables instead of printing: in `$(...)`, the
# counter would not be this shell's own child.
start_counting() { # pid file
    COUNTER=
    [[ $COUNT_INSTRUCTIONS == 1 ]] || return 0
    perf stat -x, -e instructions -p "$1" -o "$2" >/dev/null 2>&1 &
    COUNTER=$!
}

# Stops the counter start_counting started, and sets INSTRUCTIONS to its count, or "-".
stop_counting() { # file
    INSTRUCTIONS=-
    [[ -n $COUNTER ]] || return 0
    kill -INT "$COUNTER"
    wait "$COUNTER" || true
    local count
    count=$(awk -F, '$3 ~ /^instructions/ && $1 ~ /^[0-9]+$/ { print $1 }' "$1")
    INSTRUCTIONS=${count:--}
}

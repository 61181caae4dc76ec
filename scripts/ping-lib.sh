# Sourced by the ping benchmarks (scripts/ping-*.sh).

# `ping_lua FILE` writes a wrk script that
# POSTs keyless pings ({"schemaHash":""}) to 1,000 random peer ids in turn,
# the load genesis-bench's wrk phase puts on genesis's own registered ids.
ping_lua() {
    {
        echo 'local ids = {'
        for _ in $(seq 1000); do echo "\"$(cat /proc/sys/kernel/random/uuid)\","; done
        echo '}'
        echo 'local i = 0'
        echo 'local headers = {["Content-Type"] = "application/json"}'
        echo 'request = function()'
        echo '  i = i + 1'
        echo '  return wrk.format("POST", "/peers/" .. ids[(i % #ids) + 1] .. "/ping", headers, '"'"'{"schemaHash":""}'"'"')'
        echo 'end'
    } >"$1"
}

# `bench_under_callgrind WORK GENESIS BENCH_ARGS...` starts `$bench`
# (genesis-bench) with GENESIS run under callgrind (instrumentation off,
# profiles WORK/cg.out.*) and waits until its peers are registered; then
# `$run` is the bench, `$pid` genesis, and `pings` prints genesis's count of
# pings.
bench_under_callgrind() {
    local work="$1" genesis="$2"
    shift 2
    printf '#!/bin/sh\nexec valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file=%s "%s" "$@"\n' \
        "$work/cg.out" "$genesis" >"$work/genesis"
    chmod +x "$work/genesis"
    "$bench" --genesis "$work/genesis" "$@" >"$work/bench.txt" 2>"$work/valgrind.txt" &
    run=$!
    until grep -q "genesis RSS:" "$work/bench.txt"; do
        kill -0 "$run" 2>/dev/null || { cat "$work/bench.txt" "$work/valgrind.txt" >&2; exit 1; }
        sleep 0.1
    done
    pid="$(pgrep -P "$run" | head -1)"
    port="$(ss -ltnpH | grep "pid=$pid," | awk '{print $4}' | sed 's/.*://' | head -1)"
}

pings() { curl -s "http://127.0.0.1:$port/metrics" | awk '/^plexus_genesis_pings_total /{print $2}'; }

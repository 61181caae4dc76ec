# Shell helpers shared by the scripts that start Plexus servers; source it.
# `cleanup` and `die` expect the script's temporary folder in `work`, the
# servers it started in the array `pids`, and a `say` function.

# cleanup: stops the servers the script started, removes its folder.
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null; done
  rm -rf "$work"
}

# die MESSAGE: says it, shows the end of every server log, and exits 1.
die() {
  say "$*"
  for log in "$work"/*.log; do
    [[ -f "$log" ]] && { echo "--- $log" >&2; tail -20 "$log" >&2; }
  done
  exit 1
}

# listening LOG PID: waits (up to 20 s) for the server PID to print
# "listening on URL" to LOG; prints URL. Fails if PID exits first.
listening() {
  local log="$1" pid="$2"
  for _ in $(seq 1 200); do
    local url
    url="$(sed -n 's/^listening on \(http[^ ]*\).*/\1/p' "$log" | head -1)"
    [[ -n "$url" ]] && { echo "$url"; return 0; }
    kill -0 "$pid" 2>/dev/null || return 1
    sleep 0.1
  done
  return 1
}

# free_port: a TCP port on 127.0.0.1 the OS gave out just now (for tools
# that take a port, not a listener: the wasm test runner).
free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

# Shared by the scripts that run a real chamade server: start one on a free port with a
# fresh data folder and read the owner key it prints.
#   start_server BIN DIR [serve flags…]   sets SERVER_PID, SERVER_URL, SERVER_KEY

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

start_server() {
  local bin=$1 dir=$2; shift 2
  local port log
  port=$(free_port)
  log="$dir/serve.log"
  "$bin" serve --listen "127.0.0.1:$port" --data-dir "$dir/data" "$@" >"$log" 2>"$dir/serve.err" &
  SERVER_PID=$!
  for _ in $(seq 1 100); do
    grep -q "listening on" "$log" 2>/dev/null && break
    kill -0 "$SERVER_PID" 2>/dev/null || { cat "$log" "$dir/serve.err" >&2; echo "server did not start" >&2; return 1; }
    sleep 0.1
  done
  SERVER_URL="http://127.0.0.1:$port"
  SERVER_KEY=$(grep -o 'chmd_[A-Za-z0-9_-]*' "$log" | head -n 1)
  [ -n "$SERVER_KEY" ] || { cat "$log" >&2; echo "no owner key printed" >&2; return 1; }
}

stop_server() {
  kill "$SERVER_PID" 2>/dev/null || true
  wait "$SERVER_PID" 2>/dev/null || true
}

# A Python virtual environment under target/ with the given PyPI packages.
python_venv() {
  local venv=$1; shift
  if [ ! -x "$venv/bin/python" ]; then
    if ! python3 -m venv "$venv" >/dev/null 2>&1; then
      scripts/install-deps python3-venv
      python3 -m venv "$venv"
    fi
  fi
  "$venv/bin/pip" install -q --disable-pip-version-check "$@"
}

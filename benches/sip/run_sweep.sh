#!/usr/bin/env bash
# run_sweep.sh -- concurrent SIP calls into chamade's agent sockets, at several levels.
#
# For each level N: a fresh kamailio trunk (tests/fixtures/kamailio, pinned to core 1), a
# fresh chamade release server (pinned to core 0, SQLite in a temp folder, SIP and HTTP on
# 127.0.0.1), the trunk gw/gwpass (realm trunk.test) and the DID +15550100 connected
# through the API, registration awaited, then loadbench.py (pinned to core 1) places N
# calls through kamailio and plays the agent on chamade's call WebSockets. One JSON line
# per level is appended to $RESULTS, with the binary's hash and the mixer shard's counters
# (GET /metrics) added; the logs, /metrics and the gateway's RSS per second go to
# $OUT/logs-$LABEL-N<level>/. A private copy of the binary runs, so a rebuild of target/
# during the sweep changes nothing. Every process is started and stopped by PID here;
# every wait is bounded.
#
# Usage:  benches/sip/run_sweep.sh            (levels 1 10 50 100 200, 20 s windows)
# Environment (defaults):
#   LEVELS="1 10 50 100 200"  WINDOW=20  SETTLE=3  CPS=10  RATE=16000  ANSWER=accept|auto
#   LABEL=sweep  RESULTS=target/sipbench/results.jsonl  SERIES=1 (per-call latency series)
#   KAM_PORT=15060  GW_SIP_PORT=15070  HTTP_PORT=18100  SHARDS=1  RUST_LOG=info
#   CHAMADE_BIN=target/release/chamade  PY=target/sipbench-venv/bin/python
#   GW_CORE=0  DRIVER_CORE=1
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
HERE=$ROOT/benches/sip

LEVELS=${LEVELS:-"1 10 50 100 200"}
WINDOW=${WINDOW:-20}
SETTLE=${SETTLE:-3}
CPS=${CPS:-10}
RATE=${RATE:-16000}
ANSWER=${ANSWER:-accept}
LABEL=${LABEL:-sweep}
OUT=${OUT:-$ROOT/target/sipbench}
RESULTS=${RESULTS:-$OUT/results.jsonl}
SERIES=${SERIES:-1}
KAM_PORT=${KAM_PORT:-15060}
GW_SIP_PORT=${GW_SIP_PORT:-15070}
HTTP_PORT=${HTTP_PORT:-18100}
SHARDS=${SHARDS:-1}
GW_CORE=${GW_CORE:-0}
DRIVER_CORE=${DRIVER_CORE:-1}
CHAMADE_BIN=${CHAMADE_BIN:-$ROOT/target/release/chamade}
VENV=${VENV:-$ROOT/target/sipbench-venv}
PY=${PY:-$VENV/bin/python}
KAMAILIO=${KAMAILIO:-/usr/sbin/kamailio}
KAMCMD=${KAMCMD:-/usr/sbin/kamcmd}
export RUST_LOG=${RUST_LOG:-info}
URL=http://127.0.0.1:$HTTP_PORT

log() { printf '[run_sweep %s] %s\n' "$(date +%T)" "$*" >&2; }
die() { log "error: $*"; exit 1; }

mkdir -p "$OUT"
[[ -x $CHAMADE_BIN ]] || die "no $CHAMADE_BIN: cargo build --release --bin chamade"
[[ -x $KAMAILIO ]] || die "no kamailio: scripts/install-deps kamailio"
if [[ ! -x $PY ]]; then
  log "creating the Python venv $VENV (websockets, numpy, uvloop)"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q websockets numpy uvloop
fi
"$PY" -c 'import websockets, numpy' || die "$PY lacks websockets/numpy"

KAM_PID= GW_PID= RSS_PID= RUN=

# SIGTERM, wait up to $2 s, then SIGKILL (the PID and the children it had).
stop_pid() {
  local pid=$1 grace=${2:-10} kids
  [[ -n $pid ]] && kill -0 "$pid" 2>/dev/null || return 0
  kids=$(pgrep -P "$pid" || true)
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq $((grace * 10))); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  if kill -0 "$pid" 2>/dev/null; then
    log "PID $pid still running after ${grace}s: SIGKILL"
    kill -KILL "$pid" $kids 2>/dev/null || true
  fi
  wait "$pid" 2>/dev/null || true
}

cleanup() {
  stop_pid "$RSS_PID" 2; RSS_PID=
  stop_pid "$GW_PID" 10; GW_PID=
  stop_pid "$KAM_PID" 5; KAM_PID=
}
trap cleanup EXIT
trap 'exit 130' INT TERM

port_free() {  # $1 udp|tcp  $2 port
  ! ss -Hln"${1:0:1}" "sport = :$2" | grep -q .
}

start_kamailio() {
  port_free udp "$KAM_PORT" || die "UDP port $KAM_PORT is taken (set KAM_PORT)"
  cp -r "$ROOT/tests/fixtures/kamailio/db" "$RUN/kamdb"
  taskset -c "$DRIVER_CORE" "$KAMAILIO" -f "$ROOT/tests/fixtures/kamailio/kamailio.cfg" \
    -DD -E -m 64 -M 8 -Y "$RUN" -w "$RUN" -P "$RUN/kamailio.pid" \
    -A "DBURL=\"text://$RUN/kamdb\"" -A "SIP_PORT=$KAM_PORT" \
    </dev/null >"$RUN/kamailio.log" 2>&1 &
  KAM_PID=$!
  # ready when it answers an OPTIONS to the trunk itself (at most 10 s)
  "$PY" - "$KAM_PORT" <<'EOF' || { tail -20 "$RUN/kamailio.log" >&2; die "kamailio did not start"; }
import socket, sys, time
port = int(sys.argv[1]); s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("127.0.0.1", 0))
s.settimeout(0.2); lp = s.getsockname()[1]; end = time.time() + 10; n = 0
while time.time() < end:
    n += 1
    s.sendto(("OPTIONS sip:127.0.0.1:%d SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:%d;branch=z9hG4bK-p%d;rport\r\n"
              "Max-Forwards: 70\r\nFrom: <sip:probe@127.0.0.1>;tag=p%d\r\nTo: <sip:127.0.0.1:%d>\r\n"
              "Call-ID: probe-%d-%d@127.0.0.1\r\nCSeq: %d OPTIONS\r\nContent-Length: 0\r\n\r\n"
              % (port, lp, n, n, port, n, lp, n)).encode(), ("127.0.0.1", port))
    try:
        if s.recv(2048).startswith(b"SIP/2.0 "):
            sys.exit(0)
    except socket.timeout:
        pass
sys.exit(1)
EOF
}

api() {  # $1 method  $2 path  [$3 json body]
  curl -sS --max-time 10 -X "$1" "$URL$2" -H "X-API-Key: $KEY" \
    ${3:+-H 'Content-Type: application/json' -d "$3"}
}

start_chamade() {
  port_free udp "$GW_SIP_PORT" || die "UDP port $GW_SIP_PORT is taken (set GW_SIP_PORT)"
  port_free tcp "$HTTP_PORT" || die "TCP port $HTTP_PORT is taken (set HTTP_PORT)"
  CHAMADE_SIP_LISTEN=127.0.0.1:$GW_SIP_PORT CHAMADE_MAX_CONCURRENT_CALLS=300 \
  CHAMADE_MIXER_SHARDS=$SHARDS \
    taskset -c "$GW_CORE" "$CHAMADE_BIN" serve --data-dir "$RUN/data" --listen "127.0.0.1:$HTTP_PORT" \
    </dev/null >"$RUN/chamade.log" 2>&1 &
  GW_PID=$!
  KEY=
  for _ in $(seq 200); do          # 20 s
    kill -0 "$GW_PID" 2>/dev/null || { tail -20 "$RUN/chamade.log" >&2; die "chamade exited"; }
    if grep -q "chamade listening on" "$RUN/chamade.log"; then
      KEY=$(sed -n 's/^ *API key *\(chmd_[A-Za-z0-9_-]*\).*/\1/p' "$RUN/chamade.log" | head -1)
      break
    fi
    sleep 0.1
  done
  [[ -n $KEY ]] || { tail -20 "$RUN/chamade.log" >&2; die "chamade did not start or printed no key"; }
}

connect_trunk() {
  local auto=false r
  [[ $ANSWER == auto ]] && auto=true
  r=$(api POST /api/sip/trunk "{\"sip_host\":\"127.0.0.1\",\"sip_port\":$KAM_PORT,\"sip_username\":\"gw\",
       \"sip_password\":\"gwpass\",\"sip_realm\":\"trunk.test\",\"sip_caller_id\":\"+15550100\"}")
  jq -e .trunk_id <<<"$r" >/dev/null || die "POST /api/sip/trunk: $r"
  r=$(api POST /api/sip/trunk/dids "{\"number\":\"+15550100\",\"auto_answer\":$auto}")
  jq -e .did_id <<<"$r" >/dev/null || die "POST /api/sip/trunk/dids: $r"
  for _ in $(seq 150); do          # 15 s
    r=$(api GET /api/sip/trunk)
    if [[ $(jq -r .registration.state <<<"$r") == registered ]] &&
       "$KAMCMD" -s "unix:$RUN/kamailio_ctl" ul.dump 2>/dev/null | grep -q 'AoR: gw$'; then
      return 0
    fi
    sleep 0.1
  done
  die "chamade did not register: $(jq -c .registration <<<"$r")"
}

if [[ -n $(find "$ROOT"/{src,actors,media,vendor} "$ROOT/Cargo.lock" -newer "$CHAMADE_BIN" -type f -print -quit 2>/dev/null) ]]; then
  log "warning: sources changed after $CHAMADE_BIN was built; the label names HEAD, which may not be what runs"
fi
# run a private copy: the shared target/ may be rebuilt while the sweep runs
mkdir -p "$OUT/bin"
cp -p "$CHAMADE_BIN" "$OUT/bin/chamade.tmp" && mv "$OUT/bin/chamade.tmp" "$OUT/bin/chamade"
BIN_BUILT=$(date -u -r "$CHAMADE_BIN" +%FT%TZ)
CHAMADE_BIN=$OUT/bin/chamade
BIN_SHA=$(sha256sum "$CHAMADE_BIN" | cut -c1-12)
COMMIT=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
[[ -n $(git status --porcelain -- src actors media vendor Cargo.toml 2>/dev/null) ]] && COMMIT="$COMMIT+dirty"
log "chamade $COMMIT, levels: $LEVELS, window ${WINDOW}s, rate $RATE, answer $ANSWER -> $RESULTS"

for N in $LEVELS; do
  RUN=$(mktemp -d /tmp/chamade-sipbench.XXXXXX)
  log "N=$N: run folder $RUN"
  start_kamailio
  start_chamade
  connect_trunk
  log "N=$N: chamade PID $GW_PID registered; kamailio PID $KAM_PID"
  series=()
  [[ $SERIES == 1 ]] && series=(--series "$OUT/series-$LABEL-N$N.json")
  # bound: ramp (N/CPS) + settle + window + hang-up, plus a minute of margin
  limit=$(( N / CPS + SETTLE + ${WINDOW%.*} + 60 ))
  curl -sS --max-time 5 "$URL/metrics" >"$RUN/metrics-before.txt" 2>/dev/null || true
  # the gateway's RSS every second (unix time, kB), to see the rings fill
  ( while [[ -r /proc/$GW_PID/status ]]; do
      printf '%s %s\n' "$(date +%s)" "$(awk '/^VmRSS/ {print $2}' /proc/$GW_PID/status 2>/dev/null)"
      sleep 1
    done ) >"$RUN/rss.txt" 2>/dev/null &
  RSS_PID=$!
  rc=0
  timeout -k 5 $((limit + 15)) taskset -c "$DRIVER_CORE" "$PY" "$HERE/loadbench.py" --gw chamade \
    --calls "$N" --cps "$CPS" --window "$WINDOW" --settle "$SETTLE" --max-seconds "$limit" \
    --gw-pid "$GW_PID" --proxy "127.0.0.1:$KAM_PORT" --json "$RESULTS" \
    --label "$LABEL-$COMMIT-r$RATE-$ANSWER" "${series[@]}" \
    --chamade-url "$URL" --chamade-key "$KEY" --rate "$RATE" --answer "$ANSWER" \
    >"$RUN/driver.json" 2>"$RUN/driver.log" || rc=$?
  [[ $rc == 0 ]] || { log "N=$N: driver exit $rc"; tail -20 "$RUN/driver.log" >&2; }
  stop_pid "$RSS_PID" 2; RSS_PID=
  # the mixer shard's counters over the run (ramp, window and hang-up)
  curl -sS --max-time 5 "$URL/metrics" >"$RUN/metrics-after.txt" 2>/dev/null || true
  shard_delta() { awk -v m="$1" '$1 ~ "^"m"[{]" {s += $2} END {print s + 0}' "$2"; }
  for m in chamade_shard_ticks_total chamade_shard_deadline_misses_total chamade_shard_skipped_ticks_total; do
    printf '%s %s\n' "$m" $(( $(shard_delta $m "$RUN/metrics-after.txt") - $(shard_delta $m "$RUN/metrics-before.txt") ))
  done >"$RUN/shard.txt"
  printf 'chamade_shard_tick_duration_max_us %s\n' \
    "$(awk '$1 ~ /^chamade_shard_tick_duration_max_us[{]/ {print $2}' "$RUN/metrics-after.txt" | sort -n | tail -1)" >>"$RUN/shard.txt"
  log "N=$N: shard over the run: $(tr '\n' ' ' <"$RUN/shard.txt")"
  # name the binary and add the shard's counters to the driver's line
  if [[ $rc == 0 ]]; then
    extra=$(jq -Rn --arg head "$COMMIT" --arg sha "$BIN_SHA" --arg built "$BIN_BUILT" --arg shards "$SHARDS" '
      [inputs | split(" ") | {(.[0] | sub("^chamade_"; "")): (.[1] | tonumber? // null)}] | add
      | {bench: {head: $head, bin_sha256: $sha, bin_built: $built, mixer_shards: ($shards | tonumber)}, shard: .}' \
      <"$RUN/shard.txt")
    { head -n -1 "$RESULTS"; tail -n 1 "$RESULTS" | jq -c --argjson x "$extra" '. + $x'; } >"$RESULTS.tmp" &&
      mv "$RESULTS.tmp" "$RESULTS"
  fi
  tail -1 "$RESULTS" | jq -c '{calls, established, media_ws, n_failures, gw_cpu_pct,
      gw_cpu_per_call_pct, gw_rss_per_call_kb, up: .up_rtp2ws_ms.p50, up99: .up_rtp2ws_ms.p99,
      down: .down_ws2rtp_ms.p50, down99: .down_ws2rtp_ms.p99, ws_rx_ratio, rtp_rx_ratio,
      setup_ms_p50, driver_cpu_pct}' >&2 || true
  cleanup
  # keep the logs next to the results; drop the database
  mkdir -p "$OUT/logs-$LABEL-N$N"
  cp "$RUN"/{chamade.log,kamailio.log,driver.log,driver.json,metrics-before.txt,metrics-after.txt,shard.txt,rss.txt} "$OUT/logs-$LABEL-N$N/" 2>/dev/null || true
  rm -rf "$RUN"
  sleep 2
done
log "done: $RESULTS"

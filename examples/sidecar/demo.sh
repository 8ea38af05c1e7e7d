#!/usr/bin/env bash
# The README's walk-through, unattended: a dev agent and the example service under
# `cairn sidecar`, on free loopback ports, showing each state change; cleans up on exit.
# Usage: examples/sidecar/demo.sh   (needs cargo, python3 and curl)
set -euo pipefail
cd "$(dirname "$0")/../.."

cargo build -q -p cairn
CAIRN=./target/debug/cairn
WORK=$(mktemp -d)
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
HTTP=$(port)
SVC=$(port)
export CONSUL_HTTP_ADDR=127.0.0.1:$HTTP

say() { printf '\n==> %s\n' "$*"; }

# Prints the status of check service:web-1 and its output (or "none").
check() {
  curl -s "localhost:$HTTP/v1/health/service/web" | python3 -c '
import json, sys
checks = [c for e in json.load(sys.stdin) for c in e["Checks"] if c["CheckID"] == "service:web-1"]
print("%s: %s" % (checks[0]["Status"], checks[0]["Output"]) if checks else "none")'
}

show() { echo "    service:web-1 -> $(check)"; }

# Waits up to 15 s until the check's status is $1.
wait_for() {
  for _ in $(seq 150); do
    case "$(check)" in "$1"*) return 0 ;; esac
    sleep 0.1
  done
  echo "timed out waiting for $1" >&2
  return 1
}

say "starting a dev agent on 127.0.0.1:$HTTP"
$CAIRN agent -dev -http-port "$HTTP" -dns-port "$(port)" -server-port "$(port)" \
  -serf-lan-port "$(port)" -serf-wan-port "$(port)" >"$WORK/agent.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 150); do curl -sf "localhost:$HTTP/v1/status/leader" | grep -q : && break; sleep 0.1; done

say "running the example service under cairn sidecar (service port $SVC)"
$CAIRN sidecar -name web -id web-1 -port "$SVC" -tag demo \
  -health-url "http://127.0.0.1:$SVC/health" -restart on-failure \
  -- python3 examples/sidecar/service.py "$SVC" "$WORK/web.down" 2>"$WORK/sidecar.log" &
SIDECAR=$!
PIDS+=("$SIDECAR")
wait_for passing
show

say "touch $WORK/web.down: the health endpoint answers 500"
touch "$WORK/web.down"
wait_for critical
show

say "remove it: passing again"
rm "$WORK/web.down"
wait_for passing
show

say "kill -9 the service: the sidecar restarts it (new pid)"
old=$(check | grep -o 'pid=[0-9]*' | cut -d= -f2)
kill -9 "$old"
sleep 0.2
show
for _ in $(seq 150); do
  case "$(check)" in passing*) [ "$(check | grep -o 'pid=[0-9]*' | cut -d= -f2)" != "$old" ] && break ;; esac
  sleep 0.1
done
show

say "SIGTERM the sidecar: forwarded to the service, then the service is deregistered"
kill -TERM "$SIDECAR"
code=0
wait "$SIDECAR" || code=$?
echo "    sidecar exit code: $code"
show

say "the sidecar's log"
sed 's/^/    /' "$WORK/sidecar.log"

#!/usr/bin/env bash
# DNS benchmark: dnsperf (UDP, loopback, time-bounded) against a Cairn dev agent and against
# NSD serving an equivalent static zone, for a 1-instance and a 1,000-instance service.
#
# Usage: bench/dns/run.sh            (needs dnsperf, nsd, dig, python3; see README.md)
# Environment: DURATION (s per run, 10), CLIENTS (8), OUTSTANDING (64), CAIRN_BIN (a built
# cairn binary; default: cargo build --release), NSD_SERVERS (NSD server processes, 2).
# Everything listens on 127.0.0.1 and stops when the script ends.
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
DURATION=${DURATION:-10}
CLIENTS=${CLIENTS:-8}
OUTSTANDING=${OUTSTANDING:-64}
NSD_SERVERS=${NSD_SERVERS:-2}
INSTANCES=1000

for cmd in dnsperf nsd dig python3; do
  command -v "$cmd" >/dev/null || { echo "missing $cmd (apt-get install dnsperf nsd dnsutils python3)"; exit 1; }
done

free_port() {
  python3 -c 'import socket
while True:
    t = socket.socket(); t.bind(("127.0.0.1", 0)); p = t.getsockname()[1]
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        u.bind(("127.0.0.1", p)); print(p); break
    except OSError: pass
    finally: u.close(); t.close()'
}

WORK=$(mktemp -d /tmp/cairn-dnsbench.XXXXXX)
PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT

if [ -z "${CAIRN_BIN:-}" ]; then
  (cd "$ROOT" && cargo build --release -p cairn --quiet)
  CAIRN_BIN="${CARGO_TARGET_DIR:-$ROOT/target}/release/cairn"
fi

HTTP=$(free_port); CAIRN_DNS=$(free_port); NSD_PORT=$(free_port)
"$CAIRN_BIN" agent -dev -node bench -log-level warn -http-port "$HTTP" -dns-port "$CAIRN_DNS" \
  -server-port "$(free_port)" -serf-lan-port "$(free_port)" -serf-wan-port "$(free_port)" \
  >"$WORK/cairn.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 1 200); do
  dig @127.0.0.1 -p "$CAIRN_DNS" +time=1 +tries=1 +short bench.node.consul 2>/dev/null | grep -q . && break
  sleep 0.1
done

# Register the services through the catalog API and write the equivalent zone.
python3 - "$HTTP" "$INSTANCES" "$WORK/consul.zone" <<'PY'
import http.client, json, sys
port, n, zone = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
conn = http.client.HTTPConnection("127.0.0.1", port)
def put(body):
    conn.request("PUT", "/v1/catalog/register", json.dumps(body))
    r = conn.getresponse(); r.read()
    assert r.status == 200, r.status
lines = ["$ORIGIN consul.", "$TTL 0",
         "@ IN SOA ns.consul. hostmaster.consul. 1 3600 600 86400 0",
         "@ IN NS bench.node.dc1.consul.", "bench.node.dc1 IN A 127.0.0.1"]
def add(service, i, addr):
    node = f"{service}-{i}"
    put({"Node": node, "Address": addr, "Service": {"Service": service, "ID": service, "Port": 9000}})
    lines.append(f"{service}.service IN A {addr}")
    lines.append(f"{service}.service IN SRV 1 1 9000 {node}.node.dc1.consul.")
    lines.append(f"{node}.node.dc1 IN A {addr}")
add("one", 0, "10.100.0.1")
for i in range(n):
    add("thousand", i, f"10.101.{i // 250}.{i % 250 + 1}")
open(zone, "w").write("\n".join(lines) + "\n")
PY

cat >"$WORK/nsd.conf" <<CONF
server:
  ip-address: 127.0.0.1
  port: $NSD_PORT
  server-count: $NSD_SERVERS
  username: ""
  chroot: ""
  zonesdir: "$WORK"
  pidfile: "$WORK/nsd.pid"
  xfrdfile: "$WORK/xfrd.state"
  xfrdir: "$WORK"
  zonelistfile: "$WORK/zone.list"
  database: ""
  logfile: "$WORK/nsd.log"
  verbosity: 0
  hide-version: yes
  # No response rate limiting: a benchmark client is one source sending many queries.
  rrl-ratelimit: 0
  rrl-whitelist-ratelimit: 0
remote-control:
  control-enable: no
zone:
  name: consul.
  zonefile: consul.zone
CONF
nsd -d -c "$WORK/nsd.conf" &
PIDS+=($!)
for _ in $(seq 1 100); do
  dig @127.0.0.1 -p "$NSD_PORT" +time=1 +tries=1 +short one.service.consul 2>/dev/null | grep -q . && break
  sleep 0.1
done

perf() { # server-port name type [extra dnsperf args...] -> "qps avg_latency_ms max_latency_ms lost"
  local port=$1 name=$2 type=$3; shift 3
  echo "$name $type" >"$WORK/q.txt"
  dnsperf -s 127.0.0.1 -p "$port" -d "$WORK/q.txt" -l "$DURATION" -c "$CLIENTS" -q "$OUTSTANDING" "$@" \
    >"$WORK/perf.out" 2>&1 || true
  awk '/Queries per second/ {q=$4}
       /Queries lost/ {l=$3}
       /Average Latency/ {a=$4*1000; gsub(/\)/,"",$8); m=$8*1000}
       END {printf "%.0f %.3f %.3f %s\n", q, a, m, l}' "$WORK/perf.out"
}
shape() { # port name type [dig args] -> "answers/size/flags"
  local port=$1 name=$2 type=$3; shift 3
  local out; out=$(dig @127.0.0.1 -p "$port" +noedns +ignore +time=2 +tries=1 "$@" "$name" "$type" 2>/dev/null)
  local ans size tc
  ans=$(echo "$out" | sed -n 's/.*ANSWER: \([0-9]*\).*/\1/p' | head -1)
  size=$(echo "$out" | sed -n 's/.*MSG SIZE  rcvd: \([0-9]*\).*/\1/p' | head -1)
  tc=$(echo "$out" | grep -q 'flags:[^;]* tc' && echo ", TC" || true)
  echo "${ans:-?} answers, ${size:-?} B${tc}"
}

{
echo "| query | server | answer (plain UDP) | queries/s | avg latency ms | max latency ms | lost |"
echo "| --- | --- | --- | ---: | ---: | ---: | ---: |"
for q in "one.service.consul A" "one.service.consul SRV" "thousand.service.consul A" "thousand.service.consul SRV"; do
  set -- $q
  for server in cairn nsd; do
    port=$CAIRN_DNS; [ "$server" = nsd ] && port=$NSD_PORT
    read -r qps avg max lost < <(perf "$port" "$1" "$2")
    echo "| \`$1 $2\` | $server | $(shape "$port" "$1" "$2") | $qps | $avg | $max | $lost |"
  done
done
echo
echo "Latency of the 1,000-instance SRV answer at a light load (1,000 queries/s):"
echo
echo "| transport | server | answer | avg latency ms | max latency ms |"
echo "| --- | --- | --- | ---: | ---: |"
for server in cairn nsd; do
  port=$CAIRN_DNS; [ "$server" = nsd ] && port=$NSD_PORT
  read -r _ avg max _ < <(perf "$port" thousand.service.consul SRV -Q 1000)
  echo "| UDP | $server | $(shape "$port" thousand.service.consul SRV) | $avg | $max |"
  read -r _ avg max _ < <(perf "$port" thousand.service.consul SRV -Q 1000 -e)
  echo "| UDP, EDNS 4096 | $server | $(shape "$port" thousand.service.consul SRV +edns=0 +bufsize=4096) | $avg | $max |"
  read -r _ avg max _ < <(perf "$port" thousand.service.consul SRV -Q 200 -m tcp -c 4)
  echo "| TCP | $server | $(shape "$port" thousand.service.consul SRV +tcp) | $avg | $max |"
done
} | tee "$WORK/table.md"
cp "$WORK/table.md" "$HERE/last-run.md"

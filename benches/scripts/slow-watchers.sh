#!/usr/bin/env bash
# Slow watchers, etcd against skiff: one member each (fresh data dir); 10 watchers that read
# and N that never read their streams (`skiff bench watch --slow-watchers N`, on connections
# of their own), 4 writers at 500 puts/s of 1 KiB values for 20 s. Prints the readers'
# events received/expected and event latency, and the member's peak RSS, as markdown rows.
# Usage: benches/scripts/slow-watchers.sh [N]   (default 100)
# Env: SKIFF (default target/release/skiff), ETCD (default /usr/bin/etcd).
set -euo pipefail
SKIFF="${SKIFF:-target/release/skiff}"
ETCD="${ETCD:-/usr/bin/etcd}"
SLOW="${1:-100}"
READY_ATTEMPTS_MAX=300 # x 0.1 s
work="$(mktemp -d -t skiff-slow-watchers-XXXXXX)"
pid=""
cleanup() { [[ -n "$pid" ]] && kill "$pid" 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

echo "| store | slow watchers | puts/s | events received / expected (readers) | event p50 | event p99 | event max | peak RSS |"
echo "|---|---:|---:|---:|---:|---:|---:|---:|"
for db in etcd skiff; do
  dir="$work/$db"; port="$(free_port)"; peer="$(free_port)"
  mkdir -p "$dir"
  args=(--name m1 --data-dir "$dir/data"
    --listen-client-urls "http://127.0.0.1:$port" --advertise-client-urls "http://127.0.0.1:$port"
    --listen-peer-urls "http://127.0.0.1:$peer" --initial-advertise-peer-urls "http://127.0.0.1:$peer"
    --initial-cluster "m1=http://127.0.0.1:$peer" --logger zap --log-level warn)
  if [[ "$db" == etcd ]]; then "$ETCD" "${args[@]}" >"$dir/log" 2>&1 &
  else "$SKIFF" store "${args[@]}" >"$dir/log" 2>&1 & fi
  pid=$!
  for ((i = 0; i < READY_ATTEMPTS_MAX; i++)); do
    "$SKIFF" bench --endpoints "127.0.0.1:$port" --json put --total 10 2>/dev/null |
      grep -q '"errors_total": 0' && break
    sleep 0.1
  done
  for slow in 0 "$SLOW"; do
    "$SKIFF" bench --endpoints "127.0.0.1:$port" --clients 4 --json watch --streams 10 \
      --watch-per-stream 1 --watched-key-total 1 --slow-watchers "$slow" --duration 20s \
      --rate 500 --val-size 1024 >"$dir/out-$slow.json"
    python3 - "$db" "$slow" "$dir/out-$slow.json" "$pid" <<'PY'
import json, sys
db, slow, path, pid = sys.argv[1:]
d = json.load(open(path))
f = d["figures"]
ev = next(s for s in d["sections"] if s["operation"].startswith("event"))
put = next(s for s in d["sections"] if s["operation"] == "put")
hwm = next(l for l in open(f"/proc/{pid}/status") if l.startswith("VmHWM")).split()[1]
print(f"| {db} | {slow} | {put['throughput_rps']:.0f} | {f['events_received']:,.0f} / {f['events_expected']:,.0f}"
      f" | {ev['latency_us']['p50']/1e3:.2f} ms | {ev['latency_us']['p99']/1e3:.1f} ms"
      f" | {ev['latency_us']['max']/1e3:.1f} ms | {int(hwm)/1024:.0f} MiB |")
PY
  done
  kill "$pid"; wait "$pid" 2>/dev/null || true; pid=""
done

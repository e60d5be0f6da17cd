#!/usr/bin/env bash
# CPU per durable put, etcd against skiff: one member each (fresh data dir), a closed-loop
# `skiff bench put` (8 connections, 64 clients, 256-byte values over 100 000 keys) for
# DURATION, then the member's user and system CPU time (/proc/PID/stat) and the client's
# (`/usr/bin/time`), each divided by the puts done. On a CPU-bound machine throughput is
# cores ÷ (CPU per put of server + client), so this is where a throughput ratio comes from.
# Usage: benches/scripts/put-cpu.sh [ROUNDS]   (default 3; the stores alternate)
# Env: SKIFF (default target/release/skiff), ETCD (default /usr/bin/etcd), DURATION (8s).
set -euo pipefail
SKIFF="${SKIFF:-target/release/skiff}"
ETCD="${ETCD:-/usr/bin/etcd}"
DURATION="${DURATION:-8s}"
ROUNDS="${1:-3}"
READY_ATTEMPTS_MAX=300 # x 0.1 s
work="$(mktemp -d -t skiff-put-cpu-XXXXXX)"
pid=""
cleanup() { [[ -n "$pid" ]] && kill "$pid" 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
ticks="$(getconf CLK_TCK)"

run() { # db round
  local db="$1" dir="$work/$1-$2" port peer
  port="$(free_port)"; peer="$(free_port)"
  mkdir -p "$dir"
  local args=(--name m1 --data-dir "$dir/data"
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
  local b_user b_sys s_user s_sys
  read -r b_user b_sys < <(awk '{print $14, $15}' "/proc/$pid/stat")
  /usr/bin/time -f '%U %S' -o "$dir/client-cpu" "$SKIFF" bench --endpoints "127.0.0.1:$port" \
    --conns 8 --clients 64 --json put --duration "$DURATION" --val-size 256 \
    --key-space-size 100000 >"$dir/out.json" 2>/dev/null
  read -r s_user s_sys < <(awk '{print $14, $15}' "/proc/$pid/stat")
  kill "$pid"; wait "$pid" 2>/dev/null || true; pid=""
  python3 - "$db" "$dir/out.json" "$dir/client-cpu" \
    $((s_user - b_user)) $((s_sys - b_sys)) "$ticks" <<'EOF'
import json, sys
db, out, client, user, sys_, ticks = sys.argv[1:]
r = json.load(open(out))
puts = r["requests"]
ticks = float(ticks)
cu, cs = (float(x) for x in open(client).read().split()[-2:])
per = lambda seconds: seconds / puts * 1e6  # microseconds per put
su, ss = int(user) / ticks, int(sys_) / ticks
print(f"| {db} | {r['throughput_rps']:,.0f} | {per(su):.1f} | {per(ss):.1f} | {per(su + ss):.1f} "
      f"| {per(cu):.1f} | {per(cs):.1f} | {per(su + ss + cu + cs):.1f} |")
EOF
}

echo "| store | puts/s | server user µs/put | server sys µs/put | server µs/put | client user µs/put | client sys µs/put | all µs/put |"
echo "|---|---:|---:|---:|---:|---:|---:|---:|"
for ((round = 1; round <= ROUNDS; round++)); do
  run skiff "$round"
  run etcd "$round"
done

#!/usr/bin/env bash
# CPU per range request, etcd against skiff, on 1 and 3 members: a closed-loop `skiff bench
# range` of one key (8 connections, 64 clients, over every member's endpoint) for DURATION,
# serializable and linearizable; the members' user + system CPU time over the load
# (/proc/PID/stat, summed over the members) and the client's (`/usr/bin/time`), each divided
# by the requests done. Prints markdown table rows.
# Usage: benches/scripts/range-cpu.sh
# Env: SKIFF (default target/release/skiff), ETCD (default /usr/bin/etcd), DURATION (8s).
set -euo pipefail
SKIFF="${SKIFF:-target/release/skiff}"
ETCD="${ETCD:-/usr/bin/etcd}"
DURATION="${DURATION:-8s}"
READY_ATTEMPTS_MAX=300 # x 0.1 s
work="$(mktemp -d -t skiff-range-cpu-XXXXXX)"
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
ticks="$(getconf CLK_TCK)"
cpu_of_members() { local t=0 p; for p in "${pids[@]}"; do t=$((t + $(awk '{print $14 + $15}' "/proc/$p/stat"))); done; echo "$t"; }

run() { # db members consistency
  local db="$1" n="$2" consistency="$3" dir="$work/$1-$2-$3" i cluster="" endpoints=""
  local -a clients peers
  mkdir -p "$dir"
  for ((i = 1; i <= n; i++)); do
    clients[i]="$(free_port)"; peers[i]="$(free_port)"
    cluster+=",m$i=http://127.0.0.1:${peers[i]}"; endpoints+=",127.0.0.1:${clients[i]}"
  done
  cluster="${cluster#,}"; endpoints="${endpoints#,}"
  pids=()
  for ((i = 1; i <= n; i++)); do
    local args=(--name "m$i" --data-dir "$dir/m$i" --initial-cluster "$cluster"
      --initial-cluster-token range-cpu --logger zap --log-level warn
      --listen-client-urls "http://127.0.0.1:${clients[i]}" --advertise-client-urls "http://127.0.0.1:${clients[i]}"
      --listen-peer-urls "http://127.0.0.1:${peers[i]}" --initial-advertise-peer-urls "http://127.0.0.1:${peers[i]}")
    if [[ "$db" == etcd ]]; then "$ETCD" "${args[@]}" --pre-vote=true >"$dir/m$i.log" 2>&1 &
    else "$SKIFF" store "${args[@]}" >"$dir/m$i.log" 2>&1 & fi
    pids+=($!)
  done
  for ((i = 0; i < READY_ATTEMPTS_MAX; i++)); do
    "$SKIFF" bench --endpoints "$endpoints" --json put --total 10 --key-size 3 2>/dev/null |
      grep -q '"errors_total": 0' && break
    sleep 0.1
  done
  local before after
  before="$(cpu_of_members)"
  /usr/bin/time -f '%U %S' -o "$dir/client-cpu" "$SKIFF" bench --endpoints "$endpoints" \
    --conns 8 --clients 64 --json range foo --consistency "$consistency" \
    --duration "$DURATION" >"$dir/out.json" 2>/dev/null
  after="$(cpu_of_members)"
  for p in "${pids[@]}"; do kill "$p"; wait "$p" 2>/dev/null || true; done
  pids=()
  python3 - "$db" "$n" "$consistency" "$dir/out.json" "$dir/client-cpu" $((after - before)) "$ticks" <<'EOF'
import json, sys
db, n, consistency, out, client, members, ticks = sys.argv[1:]
r = json.load(open(out))
requests = r["requests"]
c = sum(float(x) for x in open(client).read().split()[-2:])
m = int(members) / float(ticks)
per = lambda seconds: seconds / requests * 1e6
print(f"| {n} | {db} | {consistency} | {r['throughput_rps']:,.0f} | {per(m):.1f} | {per(c):.1f} | {per(m + c):.1f} |")
EOF
}

echo "| members | store | consistency | req/s | members µs/req | client µs/req | all µs/req |"
echo "|---:|---|---|---:|---:|---:|---:|"
for n in 1 3; do
  for consistency in s l; do
    run skiff "$n" "$consistency"
    run etcd "$n" "$consistency"
  done
done

#!/usr/bin/env bash
# Watch memory, etcd against skiff: one member each (fresh data dir), N watchers of one key
# opened with `skiff bench watch` (100 streams over 10 connections), 100 puts fanned out to
# all of them, then the member's peak RSS (VmHWM) minus its RSS before the watchers.
# Prints a markdown table row per store and N.
# Usage: benches/scripts/watch-memory.sh [N ...]   (default: 10000 100000)
# Env: SKIFF (default target/release/skiff), ETCD (default /usr/bin/etcd).
set -euo pipefail
SKIFF="${SKIFF:-target/release/skiff}"
ETCD="${ETCD:-/usr/bin/etcd}"
READY_ATTEMPTS_MAX=300 # x 0.1 s
work="$(mktemp -d -t skiff-watch-memory-XXXXXX)"
pid=""
cleanup() { [[ -n "$pid" ]] && kill "$pid" 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

run() { # db watchers
  local db="$1" n="$2" dir="$work/$1-$2" port peer streams before hwm
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
    # Request errors do not fail `skiff bench`: ready when all 100 puts succeeded.
    "$SKIFF" bench --endpoints "127.0.0.1:$port" --json put --total 100 2>/dev/null |
      grep -q '"errors_total": 0' && break
    sleep 0.1
  done
  before="$(awk '/VmRSS/{print $2}' "/proc/$pid/status")"
  streams=$((n >= 100 ? 100 : n))
  "$SKIFF" bench --endpoints "127.0.0.1:$port" --conns 10 --json \
    watch --streams "$streams" --watch-per-stream $((n / streams)) --total 100 >"$dir/out.json"
  hwm="$(awk '/VmHWM/{print $2}' "/proc/$pid/status")"
  echo "| $n | $db | $((before / 1024)) MiB | $((hwm / 1024)) MiB | $(((hwm - before) * 1024 / n))" \
    "| $(python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['figures']['events_missing'])" "$dir/out.json") |"
  kill "$pid"; wait "$pid" 2>/dev/null || true; pid=""
}

[[ $# -gt 0 ]] || set -- 10000 100000
echo "| watchers | store | RSS before | peak RSS | bytes per watcher | events missing |"
echo "|---:|---|---:|---:|---:|---:|"
for n in "$@"; do
  for db in etcd skiff; do run "$db" "$n"; done
done

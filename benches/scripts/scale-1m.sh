#!/usr/bin/env bash
# Scale, etcd against skiff: one member each (fresh data dir, 8 GiB quota), KEYS puts of
# 256-byte values over KEYS sequential keys (`skiff bench put --sequential-keys`, 64
# clients), then the member's RSS and data dir size; kill -9, restart and the time until
# the first read is answered; the RSS 5 s later; and three `limit=500` pages with `count`
# over all keys (the first page of a paginated list, whose count walks the whole range).
# Prints one markdown table row per store.
# Usage: benches/scripts/scale-1m.sh
# Env: SKIFF (default target/release/skiff), ETCD (default /usr/bin/etcd), KEYS (1000000).
set -euo pipefail
SKIFF="${SKIFF:-target/release/skiff}"
ETCD="${ETCD:-/usr/bin/etcd}"
KEYS="${KEYS:-1000000}"
READY_ATTEMPTS_MAX=600 # x 0.05 s
PAGES=3
work="$(mktemp -d -t skiff-scale-XXXXXX)"
pid=""
cleanup() { [[ -n "$pid" ]] && kill "$pid" 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
now() { date +%s.%N; }
rss_kib() { awk '/VmRSS/{print $2}' "/proc/$1/status"; }
mib() { python3 -c "print(f'{$1 / 1024:.0f}')"; }

start() { # db dir port peer
  local args=(--name m1 --data-dir "$2/data" --quota-backend-bytes 8589934592
    --listen-client-urls "http://127.0.0.1:$3" --advertise-client-urls "http://127.0.0.1:$3"
    --listen-peer-urls "http://127.0.0.1:$4" --initial-advertise-peer-urls "http://127.0.0.1:$4"
    --initial-cluster "m1=http://127.0.0.1:$4" --logger zap --log-level warn)
  if [[ "$1" == etcd ]]; then "$ETCD" "${args[@]}" >>"$2/log" 2>&1 &
  else "$SKIFF" store "${args[@]}" >>"$2/log" 2>&1 & fi
  pid=$!
}

wait_read() { # port: until a read is answered
  for ((i = 0; i < READY_ATTEMPTS_MAX; i++)); do
    ETCDCTL_API=3 etcdctl --endpoints "127.0.0.1:$1" --command-timeout=1s get probe >/dev/null 2>&1 && return 0
    sleep 0.05
  done
  echo "no read answered on port $1" >&2; return 1
}

echo "| store | load puts/s | RSS after load | data dir | kill -9 → first read | RSS 5 s after restart | page of 500 with count |"
echo "|---|---:|---:|---:|---:|---:|---:|"
for db in etcd skiff; do
  dir="$work/$db"; mkdir -p "$dir"
  port="$(free_port)"; peer="$(free_port)"
  start "$db" "$dir" "$port" "$peer"
  wait_read "$port"
  rps="$("$SKIFF" bench --endpoints "127.0.0.1:$port" --conns 8 --clients 64 --json put \
    --total "$KEYS" --val-size 256 --key-space-size "$KEYS" --sequential-keys 2>/dev/null |
    python3 -c 'import json,sys; print(format(json.load(sys.stdin)["throughput_rps"], ",.0f"))')"
  sleep 3
  rss="$(rss_kib "$pid")"
  disk="$(du -sk "$dir/data" | cut -f1)"
  kill -9 "$pid"; wait "$pid" 2>/dev/null || true
  t0="$(now)"
  start "$db" "$dir" "$port" "$peer"
  wait_read "$port"
  t1="$(now)"
  sleep 5
  rss2="$(rss_kib "$pid")"
  pages=()
  for ((p = 0; p < PAGES; p++)); do
    a="$(now)"
    ETCDCTL_API=3 etcdctl --endpoints "127.0.0.1:$port" --command-timeout=30s get "" --from-key \
      --limit 500 -w json >"$dir/page.json"
    b="$(now)"
    pages+=("$(python3 -c "print(f'{$b - $a:.2f}')")")
  done
  count="$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["count"])' "$dir/page.json")"
  [[ "$count" -ge "$KEYS" ]] || { echo "$db: count $count < $KEYS" >&2; exit 1; }
  kill "$pid"; wait "$pid" 2>/dev/null || true; pid=""
  sorted="$(printf '%s\n' "${pages[@]}" | sort -n | paste -sd' ')"
  read -r lo _ hi <<<"$sorted"
  echo "| $db | $rps | $(mib "$rss") MiB | $(mib "$disk") MiB | $(python3 -c "print(f'{$t1 - $t0:.2f}')") s" \
    "| $(mib "$rss2") MiB | ${lo}–${hi} s (count $count) |"
done

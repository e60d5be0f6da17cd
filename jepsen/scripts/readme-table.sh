#!/usr/bin/env bash
# Runs every workload × fault combination of the README's jepsen table against skiff and
# etcd 3.4, 20 s each, and prints one line per run: db, workload, faults, exit code,
# verdict and the checker's headline. Usage: jepsen/scripts/readme-table.sh [RESULTS_DIR]
# (default results/readme-table). Needs target/debug/skiff and /usr/bin/etcd; the netns rows
# need root, ip and nft. ONLY=REGEX runs just the rows whose "workload faults flags" match.
set -uo pipefail
here="$(cd "$(dirname "$0")/../.." && pwd)"
skiff="$here/target/debug/skiff"
out="${1:-results/readme-table}"
mkdir -p "$out"
common=(--nodes 3 --time-limit 20s --concurrency 6 --rate 80 --keys 4
        --heartbeat-interval 50 --election-timeout 500 --op-timeout 2s
        --nemesis-interval 2s..4s --seed 42)
runs=(
  "register kill"
  "register pause"
  "register partition"
  "register partition-one-way,drop,delay"
  "register clock"
  "register membership"
  "register disk"
  "register disk-state"
  "register power-loss"
  "set power-loss,kill"
  "register move-leader,compact"
  "set kill,pause,partition"
  "set membership,disk"
  "append kill,pause,partition"
  "append partition-one-way,drop,delay"
  "watch kill,pause,partition"
  "watch membership,disk"
  "kube kill,pause,partition"
  "kube partition-one-way,drop,delay"
  "lease-lock pause"
  "lease-lock kill,partition"
  "register grow-shrink"
  "set grow-shrink,kill"
  "register snapshot"
  "register partition,partition-one-way,drop --net netns"
  "append partition,kill --net netns"
)
for db in skiff etcd; do
  for run in "${runs[@]}"; do
    [[ -n "${ONLY:-}" && ! "$run" =~ $ONLY ]] && continue
    read -r workload nemesis extra <<<"$run"
    read -ra extra_flags <<<"${extra:-}"
    dir="$out/$db-$workload-${nemesis//,/+}${extra:+-${extra//[ -]/}}"
    rm -rf "$dir"
    "$skiff" jepsen run --db "$db" --workload "$workload" --nemesis "$nemesis" \
      "${common[@]}" "${extra_flags[@]}" --results-dir "$dir" >"$dir.out" 2>&1
    code=$?
    verdict="$(grep -o 'verdict: [A-Z]*' "$dir.out" | tail -1)"
    headline="$(grep -E '^(linearizable|set|elle|watch guarantees|kube|lock mutual|lease-guarded)' "$dir.out" | tr '\n' ' ' | cut -c1-300)"
    faults="$(grep -E '^faults:' "$dir.out")"
    printf '%s\t%s\t%s%s\texit %s\t%s\t%s\t%s\n' "$db" "$workload" "$nemesis" "${extra:+ $extra}" "$code" "$verdict" "$faults" "$headline"
  done
done
if [[ -x "$skiff" && -z "${ONLY:-}" ]]; then
  dir="$out/skiff-register-partition-unsafe-no-read-index"
  rm -rf "$dir"
  "$skiff" jepsen run --db skiff --workload register --nemesis partition --unsafe-no-read-index \
    "${common[@]}" --results-dir "$dir" >"$dir.out" 2>&1
  code=$?
  printf 'skiff\tregister --unsafe-no-read-index\tpartition\texit %s\t%s\t%s\n' "$code" \
    "$(grep -o 'verdict: [A-Z]*' "$dir.out" | tail -1)" "$(grep -E '^linearizable' "$dir.out")"
fi

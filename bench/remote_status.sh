#!/usr/bin/env bash
# `d1ctl status` of 4 D1 envs x 20 migrations against the bundled simulator (`d1ctl sim`) with
# 100 ms of injected latency per request, beside `d1ctl status dev` (one env) and one bare
# round trip (curl, one /raw request).
#
#   bash bench/remote_status.sh          # from the repository root
#   D1CTL=/path/to/d1ctl RUNS=30 LATENCY_MS=100 bash bench/remote_status.sh
#
# Needs: hyperfine, curl, jq. Only 127.0.0.1 is contacted.
set -euo pipefail

D1CTL=${D1CTL:-target/release/d1ctl}
RUNS=${RUNS:-30}
WARMUP=${WARMUP:-2}
LATENCY_MS=${LATENCY_MS:-100}
MIGRATIONS=${MIGRATIONS:-20}

die() { echo "bench/remote_status.sh: $*" >&2; exit 2; }
for tool in hyperfine curl jq; do
  command -v "$tool" >/dev/null || die "needs \`$tool\`"
done
[[ -x $D1CTL ]] || die "no d1ctl binary at \`$D1CTL\` (build: cargo build --release --locked, or set D1CTL)"
D1CTL=$(cd "$(dirname "$D1CTL")" && pwd)/$(basename "$D1CTL")

work=$(mktemp -d "${TMPDIR:-/tmp}/d1ctl-bench-remote.XXXXXX")
sim_pid=
cleanup() {
  if [[ -n $sim_pid ]]; then
    kill -INT "$sim_pid" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$sim_pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$sim_pid" 2>/dev/null || true
    wait "$sim_pid" 2>/dev/null || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT
cd "$work"

account=abcdefabcdefabcdefabcdefabcdef12
token=bench-token-$RANDOM$RANDOM
envs=(dev staging qa production)
declare -A uuid=(
  [dev]=00000000-0000-4000-8000-00000000000d
  [staging]=00000000-0000-4000-8000-00000000000e
  [qa]=00000000-0000-4000-8000-00000000000a
  [production]=00000000-0000-4000-8000-00000000000f
)

# --- the simulator: 4 databases, a free port --------------------------------------------------
sim_args=(sim --port 0 --data "$work/sim" --token "$token")
for env in "${envs[@]}"; do sim_args+=(--database "bench-$env=${uuid[$env]}"); done
"$D1CTL" "${sim_args[@]}" 2> sim.log &
sim_pid=$!
base=
for _ in $(seq 100); do   # up to ~10 s for the simulator to say where it listens and accept
  kill -0 "$sim_pid" 2>/dev/null || { cat sim.log >&2; die "the simulator exited"; }
  if [[ -z $base ]]; then
    base=$(grep -o 'http://127\.0\.0\.1:[0-9]*' sim.log | head -n 1 || true)
  fi
  if [[ -n $base ]] && curl -sf "$base/__sim/stats" >/dev/null; then break; fi
  sleep 0.1
done
[[ -n $base ]] && curl -sf "$base/__sim/stats" >/dev/null || { cat sim.log >&2; die "the simulator did not start"; }
sim() { curl -sf -X POST -H 'content-type: application/json' "$@"; }

# --- the project: 4 d1 envs, MIGRATIONS small migrations ------------------------------------------
mkdir migrations
{
  printf '[project]\nmigrations_dir = "migrations"\nladder = [%s]\n' \
    "$(printf '"%s", ' "${envs[@]}" | sed 's/, $//')"
  for env in "${envs[@]}"; do
    # production is deliberately not `protected = true`: apply refuses protected envs.
    printf '\n[env.%s]\nbackend = "d1"\naccount_id = "%s"\ndatabase_id = "%s"\ndatabase_name = "bench-%s"\n' \
      "$env" "$account" "${uuid[$env]}" "$env"
  done
} > environments.toml
for ((i = 1; i <= MIGRATIONS; i++)); do
  n=$(printf '%04d' "$i")
  printf -- '-- Migration number: %s\nCREATE TABLE t%s (\n  id INTEGER PRIMARY KEY,\n  label TEXT NOT NULL\n);\nCREATE INDEX t%s_label ON t%s(label);\n' \
    "$n" "$n" "$n" "$n" > "migrations/${n}_table_$n.sql"
done

export CLOUDFLARE_API_BASE_URL=$base/client/v4 CLOUDFLARE_API_TOKEN=$token
# Keep a developer's own settings out of the measurement.
unset CLOUDFLARE_ACCOUNT_ID CLOUDFLARE_D1_DATABASE_ID NO_COLOR 2>/dev/null || true

for env in "${envs[@]}"; do "$D1CTL" apply "$env" -q; done
"$D1CTL" status | tail -n 6

echo
echo "d1ctl:     $D1CTL ($("$D1CTL" --version 2>/dev/null || echo unknown version))"
echo "hyperfine: $(hyperfine --version)"
echo "simulator: $base, ${#envs[@]} databases, $MIGRATIONS migrations each, latency $LATENCY_MS ms"
echo "load average at start: $(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null || echo unknown)"
echo

# --- requests per status run ---------------------------------------------------------------------
requests() { # runs "$@" once; prints the simulator's request count for it
  sim "$base/__sim/stats/reset" >/dev/null
  "$@" >/dev/null
  curl -sf "$base/__sim/stats" | jq -c '{total, by_endpoint}'
}
sim -d '{"latency_ms":0}' "$base/__sim/faults" >/dev/null
req_all=$(requests "$D1CTL" status)
req_one=$(requests "$D1CTL" status dev)
echo "requests for one \`d1ctl status\` (4 envs): $req_all"
echo "requests for one \`d1ctl status dev\`:      $req_one"
echo

# --- timing --------------------------------------------------------------------------------------
# A bare round trip: the same request d1ctl sends per env (/raw, one batch of two SELECTs).
raw_body='{"batch":[{"sql":"SELECT name, applied_at FROM d1_migrations ORDER BY id","params":[]},{"sql":"SELECT name, sha256, sha256_lf, applied_at, applied_by FROM _d1ctl_migrations ORDER BY applied_at, name","params":[]}]}'
printf '%s' "$raw_body" > raw.json
raw_url=$base/client/v4/accounts/$account/d1/database/${uuid[dev]}/raw
curl -sf -X POST -H "authorization: Bearer $token" -H 'content-type: application/json' \
  --data-binary @raw.json "$raw_url" | jq -e '.success' >/dev/null || die "the /raw request failed"

# -N: no intermediate shell (a command near 5 ms is below what hyperfine can correct for when it
# subtracts a shell's start-up time).
echo "== status at 0 ms injected latency (fixed cost: process, HTTP client, local work)"
hyperfine -N --warmup "$WARMUP" --runs "$RUNS" --export-json zero.json \
  -n 'd1ctl status (4 envs), 0 ms' "'$D1CTL' status" \
  -n 'd1ctl status dev, 0 ms' "'$D1CTL' status dev"
echo

sim -d "{\"latency_ms\":$LATENCY_MS}" "$base/__sim/faults" >/dev/null
sim "$base/__sim/stats/reset" >/dev/null
echo "== status at $LATENCY_MS ms injected latency"
hyperfine -N --warmup "$WARMUP" --runs "$RUNS" --export-json latency.json \
  -n "d1ctl status (4 envs)" "'$D1CTL' status" \
  -n "d1ctl status dev" "'$D1CTL' status dev" \
  -n "curl, one /raw round trip" "curl -sf -o /dev/null -X POST -H 'authorization: Bearer $token' -H 'content-type: application/json' --data-binary @raw.json '$raw_url'"
total=$(curl -sf "$base/__sim/stats" | jq '.total')
expected=$(( (WARMUP + RUNS) * (${#envs[@]} + 1 + 1) ))
echo "simulator requests during these runs: $total (expected $expected: $((WARMUP + RUNS)) runs x (${#envs[@]} + 1 + 1))"
sim -d '{"latency_ms":0}' "$base/__sim/faults" >/dev/null
echo

# --- summary -------------------------------------------------------------------------------------
stat() { jq -r --arg n "$2" '.results[] | select(.command == $n) | "\(.mean * 1000) \(.stddev * 1000) \(.median * 1000) \(.min * 1000) \(.max * 1000)"' "$1"; }
echo "== summary (round trip injected: $LATENCY_MS ms)"
echo "| command | injected latency | mean ± σ | median | min … max | mean / $LATENCY_MS ms |"
echo "|---|---|---|---|---|---|"
line() { # file name latency
  read -r m s med lo hi < <(stat "$1" "$2")
  awk -v n="$2" -v l="$3" -v m="$m" -v s="$s" -v med="$med" -v lo="$lo" -v hi="$hi" -v rt="$LATENCY_MS" 'BEGIN {
    printf "| %s | %s ms | %.1f ± %.1f ms | %.1f ms | %.1f … %.1f ms | %.2f |\n", n, l, m, s, med, lo, hi, m / rt }'
}
line zero.json 'd1ctl status (4 envs), 0 ms' 0
line zero.json 'd1ctl status dev, 0 ms' 0
line latency.json 'd1ctl status (4 envs)' "$LATENCY_MS"
line latency.json 'd1ctl status dev' "$LATENCY_MS"
line latency.json 'curl, one /raw round trip' "$LATENCY_MS"
echo
read -r all _ < <(stat latency.json 'd1ctl status (4 envs)')
read -r one _ < <(stat latency.json 'd1ctl status dev')
read -r zero _ < <(stat zero.json 'd1ctl status (4 envs), 0 ms')
awk -v all="$all" -v one="$one" -v zero="$zero" -v rt="$LATENCY_MS" 'BEGIN {
  rts = (all - zero) / rt
  printf "status (4 envs) spends %.1f ms over its 0 ms-latency time: %.2f round trips of %d ms\n", all - zero, rts, rt
  printf "status (4 envs) / status dev: %.2fx\n", all / one
  printf "target (about one round trip, not four): %s\n", (rts < 1.5 ? "MET" : "MISSED")
}'
echo "requests per \`d1ctl status\` (expect 4, one per env): $(jq '.total' <<<"$req_all")"
echo "load average at end: $(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null || echo unknown)"

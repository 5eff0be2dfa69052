#!/usr/bin/env bash
# Issue 5 benchmark: promoting 20 migrations to a D1 target with 100 ms injected latency, per
# migration and all in one, with the requests each took.
# Usage: bash bench/promote.sh   (D1CTL=path/to/d1ctl, default target/release/d1ctl)
set -euo pipefail
D1CTL=$(realpath "${D1CTL:-target/release/d1ctl}")
PORT=${PORT:-18792}
RUNS=${RUNS:-5}
work=$(mktemp -d)
sim_pid=
cleanup() { [ -n "$sim_pid" ] && kill "$sim_pid" 2>/dev/null; wait 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT
cd "$work"
ACCOUNT=abcdefabcdefabcdefabcdefabcdef12
STAGING=11111111-1111-4111-8111-111111111111

# One fresh production database per timed run, so every run promotes all 20.
declare=(--database "staging=$STAGING")
targets=()
for i in $(seq 1 $((RUNS * 2))); do
  uuid=$(printf 'eeeeeeee-eeee-4eee-8eee-%012d' "$i")
  declare+=(--database "prod$i=$uuid")
  targets+=("$i:$uuid")
done
"$D1CTL" sim --port "$PORT" --data sim --token bench "${declare[@]}" 2> sim.log &
sim_pid=$!
for _ in $(seq 1 200); do curl -sf "http://127.0.0.1:$PORT/__sim/stats" >/dev/null && break; sleep 0.05; done

mkdir migrations
for n in $(seq -w 1 20); do
  echo "CREATE TABLE t$n (id INTEGER PRIMARY KEY, name TEXT NOT NULL DEFAULT '');" > "migrations/00${n}_t$n.sql"
  echo "CREATE INDEX t${n}_name ON t$n(name);" >> "migrations/00${n}_t$n.sql"
done
cat > environments.toml <<TOML
[project]
ladder = ["local", "staging", "production"]

[env.local]
backend = "sqlite"
path = "local.sqlite"

[env.staging]
backend = "d1"
account_id = "$ACCOUNT"
database_id = "$STAGING"
database_name = "staging"

[env.production]
backend = "d1"
protected = true
account_id = "$ACCOUNT"
database_id = "\${PROD_ID}"
database_name = "\${PROD_NAME}"
TOML
export CLOUDFLARE_API_BASE_URL="http://127.0.0.1:$PORT/client/v4" CLOUDFLARE_API_TOKEN=bench
PROD_ID=$(printf 'eeeeeeee-eeee-4eee-8eee-%012d' 1) PROD_NAME=prod1 "$D1CTL" promote --to staging --cascade -q

curl -sf -X POST -H 'content-type: application/json' -d '{"latency_ms":100}' "http://127.0.0.1:$PORT/__sim/faults" >/dev/null
run() {  # run LABEL FLAGS... : times one promotion per fresh target
  local label=$1; shift
  local total=0
  for r in $(seq 1 "$RUNS"); do
    local entry=${targets[0]}; targets=("${targets[@]:1}")
    local i=${entry%%:*} uuid=${entry#*:}
    curl -sf -X POST "http://127.0.0.1:$PORT/__sim/stats/reset" >/dev/null
    local start end
    start=$(date +%s.%N)
    PROD_ID=$uuid PROD_NAME=prod$i "$D1CTL" promote --to production --yes -q "$@"
    end=$(date +%s.%N)
    local seconds requests
    seconds=$(echo "$end - $start" | bc -l)
    requests=$(curl -sf "http://127.0.0.1:$PORT/__sim/stats" | python3 -c 'import json,sys; print(json.load(sys.stdin)["total"])')
    printf '%s run %d: %.2f s, %s requests (source and target)\n' "$label" "$r" "$seconds" "$requests"
    total=$(echo "$total + $seconds" | bc -l)
  done
  printf '%s mean: %.2f s over %d runs\n' "$label" "$(echo "$total / $RUNS" | bc -l)" "$RUNS"
}
echo "== promote 20 migrations to a fresh D1 target, 100 ms per request"
run "per migration"
run "--all-in-one" --all-in-one

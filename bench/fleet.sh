#!/usr/bin/env bash
# Issue 12 benchmark: promoting a fleet of 1,000 members by 3 migrations at a scaled-down rate
# limit (1,200 requests per 30 s, Cloudflare's count in a tenth of its window), with 0, 10 and
# 100 ms injected latency; then a rollout killed at half way and its rerun.
# Usage: bash bench/fleet.sh   (D1CTL=path/to/d1ctl, default target/release/d1ctl)
set -euo pipefail
D1CTL=$(realpath "${D1CTL:-target/release/d1ctl}")
PORT=${PORT:-18793}
MEMBERS=${MEMBERS:-1000}
LIMIT=${LIMIT:-1200}
WINDOW_S=${WINDOW_S:-30}
work=$(mktemp -d)
sim_pid=
cleanup() { [ -n "$sim_pid" ] && kill "$sim_pid" 2>/dev/null; wait 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT
cd "$work"
ACCOUNT=abcdefabcdefabcdefabcdefabcdef12
SIM="http://127.0.0.1:$PORT"

"$D1CTL" sim --port "$PORT" --data sim --token bench \
  --create "a-:$MEMBERS" --create "b-:$MEMBERS" --create "c-:$MEMBERS" --create "d-:$MEMBERS" 2> sim.log &
sim_pid=$!
for _ in $(seq 1 400); do curl -sf "$SIM/__sim/stats" >/dev/null && break; sleep 0.05; done

mkdir migrations
echo "CREATE TABLE users (id INTEGER PRIMARY KEY, email TEXT NOT NULL);" > migrations/0001_users.sql
echo "CREATE TABLE posts (id INTEGER PRIMARY KEY, user_id INTEGER REFERENCES users(id));" > migrations/0002_posts.sql
echo "CREATE INDEX posts_user ON posts(user_id);" > migrations/0003_index.sql
config() {  # config PREFIX
  cat > environments.toml <<TOML
[project]
ladder = ["local", "tenants"]

[env.local]
backend = "sqlite"
path = "local.sqlite"

[env.tenants]
backend = "d1"
account_id = "$ACCOUNT"
fleet.name_prefix = "$1"
TOML
}
export CLOUDFLARE_API_BASE_URL="$SIM/client/v4" CLOUDFLARE_API_TOKEN=bench
config a-
"$D1CTL" promote --to local -q

faults() {  # faults LATENCY_MS
  curl -sf -X POST -H 'content-type: application/json' \
    -d "{\"latency_ms\":$1,\"rate_limit\":{\"requests\":$LIMIT,\"window_ms\":$((WINDOW_S * 1000)),\"lockout_ms\":300000}}" \
    "$SIM/__sim/faults" >/dev/null
}
stat() { curl -sf "$SIM/__sim/stats" | python3 -c "import json,sys; s=json.load(sys.stdin); print($1)"; }
rate="$LIMIT/${WINDOW_S}s"
budget=$(echo "$LIMIT / $WINDOW_S" | bc -l)

runs=("a- 0" "b- 10" "c- 100")
[ -n "${ONLY_RESUME:-}" ] && runs=()
for run in "${runs[@]}"; do
  set -- $run
  config "$1"
  faults "$2"
  curl -sf -X POST "$SIM/__sim/stats/reset" >/dev/null
  start=$(date +%s.%N)
  "$D1CTL" promote --to tenants --rate "$rate" -q
  end=$(date +%s.%N)
  seconds=$(echo "$end - $start" | bc -l)
  requests=$(stat 's["total"]')
  printf '%s ms latency: %.1f s, %d requests (%.3f per member), %.1f s at the budget (%.3fx), %s lockouts, %s answered 429\n' \
    "$2" "$seconds" "$requests" "$(echo "$requests / $MEMBERS" | bc -l)" \
    "$(echo "$requests / $budget" | bc -l)" "$(echo "$seconds / ($requests / $budget)" | bc -l)" \
    "$(stat 's["lockouts"]')" "$(stat 's["rate_limited"]')"
done

echo "== killed at half way (10 ms latency), then rerun"
config d-
faults 10
curl -sf -X POST "$SIM/__sim/stats/reset" >/dev/null
"$D1CTL" promote --to tenants --rate "$rate" -q &
child=$!
while [ "$(stat 's["by_endpoint"].get("raw", 0)')" -lt $((MEMBERS / 2)) ]; do sleep 0.2; done
kill -9 "$child"; wait "$child" 2>/dev/null || true
finished=$(stat 's["by_endpoint"].get("raw", 0)')
curl -sf -X POST "$SIM/__sim/stats/reset" >/dev/null
start=$(date +%s.%N)
"$D1CTL" promote --to tenants --rate "$rate" -q --format json > rerun.json
end=$(date +%s.%N)
requests=$(stat 's["total"]')
read -r finished_members unfinished <<<"$(python3 -c '
import json; r = json.load(open("rerun.json"))["rungs"][0]["rollout"]["members"]
done = sum(1 for m in r if m["outcome"] == "up_to_date")
print(done, len(r) - done)')"
lists=$(stat 's["by_endpoint"].get("list_databases", 0)')
echo "killed after $finished requests; the rerun found $finished_members members finished and $unfinished not"
echo "rerun: $requests requests ($lists to list the fleet) in $(echo "$end - $start" | bc -l | cut -c1-5) s, $(stat 's["lockouts"]') lockouts"
extra=$((requests - lists - unfinished))
echo "extra requests over one per unfinished member: $extra for $finished_members finished members ($(echo "$extra / $finished_members" | bc -l | cut -c1-5) each)"

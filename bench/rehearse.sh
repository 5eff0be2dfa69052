#!/usr/bin/env bash
# Rehearsal benchmark: `d1ctl rehearse` of a 1 GB target, a local SQLite file and the same data
# as a D1 database on the simulator (export + load). Target: d1ctl's peak resident memory stays
# under 64 MB beyond SQLite's own page cache, whatever the size of the database.
# Usage: bash bench/rehearse.sh   (D1CTL=path/to/d1ctl, default target/release/d1ctl;
#        BIG_ROWS=1000000 rows of ~1,000 bytes; USERS=10000; SKIP_D1=1 skips the D1 target)
set -euo pipefail
D1CTL=$(realpath "${D1CTL:-target/release/d1ctl}")
PORT=${PORT:-18793}
BIG_ROWS=${BIG_ROWS:-1000000}
USERS=${USERS:-10000}
SKIP_D1=${SKIP_D1:-}
work=$(mktemp -d)
sim_pid=
# Everything (the 1 GB files included) lives under $work and goes with it.
cleanup() { [ -n "$sim_pid" ] && kill "$sim_pid" 2>/dev/null; wait 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT
cd "$work"
ACCOUNT=abcdefabcdefabcdefabcdefabcdef12
REMOTE=dddddddd-dddd-4ddd-8ddd-dddddddddddd

mkdir migrations
cat > migrations/0001_schema.sql <<'SQL'
CREATE TABLE users (id INTEGER PRIMARY KEY, email TEXT NOT NULL);
CREATE TABLE items (id INTEGER PRIMARY KEY, user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE, payload TEXT NOT NULL);
CREATE INDEX items_user ON items(user_id);
SQL
cat > environments.toml <<'TOML'
[project]
ladder = ["local", "big"]

[env.local]
backend = "sqlite"
path = "local.sqlite"

[env.big]
backend = "sqlite"
path = "big.sqlite"
TOML
cat > d1.toml <<TOML
[project]
ladder = ["local", "remote"]

[env.local]
backend = "sqlite"
path = "local.sqlite"

[env.remote]
backend = "d1"
account_id = "$ACCOUNT"
database_id = "$REMOTE"
database_name = "remote"
TOML

echo "== building the 1 GB target"
"$D1CTL" promote --to big --cascade -q
sqlite3 big.sqlite "PRAGMA journal_mode=OFF; PRAGMA synchronous=OFF;
  WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM n WHERE x < $USERS)
  INSERT INTO users SELECT x, 'user' || x || '@example.com' FROM n;
  WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM n WHERE x < $BIG_ROWS)
  INSERT INTO items SELECT x, 1 + x % $USERS, hex(randomblob(500)) FROM n;" >/dev/null
echo "big.sqlite: $(du -h big.sqlite | cut -f1), $BIG_ROWS items, $USERS users"

# Pending on `big`: an additive migration that scans the big table (a new column and an index
# on an expression: SQLite's sorter over 1M rows), then drizzle's rebuild of `users` inside the
# defer pair, which on D1 semantics cascades into every item.
cat > migrations/0002_items_note.sql <<'SQL'
ALTER TABLE items ADD COLUMN note TEXT;
CREATE INDEX items_payload_prefix ON items(substr(payload, 1, 8));
SQL
cat > migrations/0003_rebuild_users.sql <<'SQL'
PRAGMA defer_foreign_keys = on;
CREATE TABLE __new_users (id INTEGER PRIMARY KEY, email TEXT NOT NULL, name TEXT);
INSERT INTO __new_users (id, email) SELECT id, email FROM users;
DROP TABLE users;
ALTER TABLE __new_users RENAME TO users;
PRAGMA defer_foreign_keys = off;
SQL
mv migrations/0003_rebuild_users.sql rebuild.sql
"$D1CTL" promote --to local -q

# run LABEL EXPECTED_EXIT ARGS...: GNU time's peak RSS and wall time, and the JSON report.
run() {
  local label=$1 expected=$2; shift 2
  local code=0
  /usr/bin/time -v -o "$label.time" "$D1CTL" "$@" --format json > "$label.json" 2> "$label.err" || code=$?
  if [ "$code" != "$expected" ]; then
    echo "$label: exit $code, expected $expected"; cat "$label.err"; exit 1
  fi
  local rss wall left
  rss=$(awk -F': ' '/Maximum resident set size/ {print $2}' "$label.time")
  wall=$(awk -F': ' '/Elapsed \(wall clock\)/ {print $2}' "$label.time")
  left=$(find .d1ctl/tmp -type f 2>/dev/null | wc -l)
  printf '| %s | %s | %.1f MB | %s s wall (copy %s ms, migrations %s ms) | %s | %s left in .d1ctl/tmp |\n' \
    "$label" "$(jq -r '.outcome' "$label.json")" "$(awk -v kb="$rss" 'BEGIN {print kb / 1024}')" "$wall" \
    "$(jq -r '.copy.duration_ms' "$label.json")" \
    "$(jq -r '[.migrations[].duration_ms // 0] | add' "$label.json")" \
    "$(jq -r '[.tables[] | "\(.table) \(.rows_before)→\(.rows_after)"] | join(", ")' "$label.json")" \
    "$left" | tee -a results.md
}

echo "== baseline: d1ctl status big (process, binary, no rehearsal)"
/usr/bin/time -f "%M" -o status.time "$D1CTL" status big >/dev/null
echo "status: $(( $(cat status.time) / 1024 )) MB peak RSS"

echo "== rehearse on the local 1 GB file"
echo "| run | outcome | d1ctl peak RSS | time | rows before→after | leftovers |" | tee results.md
echo "|---|---|---|---|---|---|" | tee -a results.md
run "sqlite additive" 0 rehearse --to big
mv rebuild.sql migrations/0003_rebuild_users.sql
"$D1CTL" promote --to local -q
run "sqlite additive+rebuild" 1 rehearse --to big

if [ -z "$SKIP_D1" ]; then
  echo "== rehearse on the same data as a D1 database (simulator: export, download, load)"
  mkdir -p sim/databases
  cp big.sqlite "sim/databases/$REMOTE.sqlite"
  "$D1CTL" sim --port "$PORT" --data sim --token bench --database "remote=$REMOTE" 2> sim.log &
  sim_pid=$!
  for _ in $(seq 1 200); do curl -sf "http://127.0.0.1:$PORT/__sim/stats" >/dev/null && break; sleep 0.05; done
  export CLOUDFLARE_API_BASE_URL="http://127.0.0.1:$PORT/client/v4" CLOUDFLARE_API_TOKEN=bench
  curl -sf -X POST "http://127.0.0.1:$PORT/__sim/stats/reset" >/dev/null
  run "d1 additive+rebuild" 1 --config d1.toml rehearse --to remote
  echo "requests to the D1 target: $(curl -sf "http://127.0.0.1:$PORT/__sim/stats")"
  echo "peak RSS of the simulator process: $(grep VmHWM /proc/$sim_pid/status)"
fi

echo "== results"
cat results.md
echo "target: d1ctl under 64 MB beyond SQLite's page cache (default cache_size -2000: 2 MB per connection)"

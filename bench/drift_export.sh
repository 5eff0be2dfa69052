#!/usr/bin/env bash
# Issue 4 benchmarks: `drift` of two environments of 500 tables and 1,500 indexes (requests and
# compute), and `export` of a 1 GB database from the simulator (peak resident memory).
# Usage: bash bench/drift_export.sh   (D1CTL=path/to/d1ctl, default target/release/d1ctl)
set -euo pipefail
D1CTL=$(realpath "${D1CTL:-target/release/d1ctl}")
PORT=${PORT:-18791}
BIG_ROWS=${BIG_ROWS:-1000000}   # rows of ~1,000 bytes: about 1 GB
work=$(mktemp -d)
sim_pid=
cleanup() { [ -n "$sim_pid" ] && kill "$sim_pid" 2>/dev/null; wait 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT
cd "$work"

A=aaaaaaaa-aaaa-4aaa-8aaa-aaaaaaaaaaaa
B=bbbbbbbb-bbbb-4bbb-8bbb-bbbbbbbbbbbb
BIG=cccccccc-cccc-4ccc-8ccc-cccccccccccc
ACCOUNT=abcdefabcdefabcdefabcdefabcdef12

echo "== building the databases"
python3 - > schema.sql <<'PY'
for t in range(500):
    parent = f" REFERENCES t{t - 1}(id) ON DELETE CASCADE" if t else ""
    print(f"CREATE TABLE t{t} (id INTEGER PRIMARY KEY, a TEXT NOT NULL DEFAULT '', b INTEGER, c REAL, parent_id INTEGER{parent});")
    for i, column in enumerate("abc"):
        print(f"CREATE INDEX t{t}_i{i} ON t{t}({column});")
PY
mkdir -p sim/databases
# Both envs are tracked by d1ctl, as any env it manages is: their ledgers exist, so each is read
# in one request (an untracked database takes a second one to learn which ledgers exist).
cat >> schema.sql <<'SQL'
CREATE TABLE IF NOT EXISTS "d1_migrations"(
		id         INTEGER PRIMARY KEY AUTOINCREMENT,
		name       TEXT UNIQUE,
		applied_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP NOT NULL
);
CREATE TABLE IF NOT EXISTS _d1ctl_migrations (name TEXT PRIMARY KEY NOT NULL, sha256 TEXT NOT NULL, sha256_lf TEXT NOT NULL, applied_at TEXT NOT NULL, applied_by TEXT NOT NULL, duration_ms INTEGER, statements INTEGER NOT NULL, d1ctl_version TEXT NOT NULL);
SQL
sqlite3 "sim/databases/$A.sqlite" < schema.sql
sqlite3 "sim/databases/$B.sqlite" < schema.sql
cp "sim/databases/$A.sqlite" local_a.sqlite
cp "sim/databases/$B.sqlite" local_b.sqlite
sqlite3 "sim/databases/$BIG.sqlite" "PRAGMA journal_mode=OFF; CREATE TABLE rows (id INTEGER PRIMARY KEY, payload TEXT NOT NULL);
  WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM n WHERE x < $BIG_ROWS)
  INSERT INTO rows SELECT x, hex(randomblob(500)) FROM n;"
echo "big database: $(du -h "sim/databases/$BIG.sqlite" | cut -f1)"

"$D1CTL" sim --port "$PORT" --data sim --token bench --database a=$A --database b=$B --database big=$BIG 2> sim.log &
sim_pid=$!
for _ in $(seq 1 200); do curl -sf "http://127.0.0.1:$PORT/__sim/stats" >/dev/null && break; sleep 0.05; done

mkdir -p migrations
cat > environments.toml <<TOML
[env.la]
backend = "sqlite"
path = "local_a.sqlite"

[env.lb]
backend = "sqlite"
path = "local_b.sqlite"

[env.a]
backend = "d1"
account_id = "$ACCOUNT"
database_id = "$A"
database_name = "a"

[env.b]
backend = "d1"
account_id = "$ACCOUNT"
database_id = "$B"
database_name = "b"

[env.big]
backend = "d1"
account_id = "$ACCOUNT"
database_id = "$BIG"
database_name = "big"
TOML
export CLOUDFLARE_API_BASE_URL="http://127.0.0.1:$PORT/client/v4" CLOUDFLARE_API_TOKEN=bench

echo "== drift of two D1 envs of 500 tables and 1,500 indexes"
curl -sf -X POST "http://127.0.0.1:$PORT/__sim/stats/reset" >/dev/null
"$D1CTL" drift a b >/dev/null
echo "requests for one drift: $(curl -sf "http://127.0.0.1:$PORT/__sim/stats")"
hyperfine -N --style basic --warmup 2 --runs 15 \
  -n "drift a b (D1 simulator)" "$D1CTL drift a b" \
  -n "drift la lb (local files, no HTTP)" "$D1CTL drift la lb" \
  -n "d1ctl --version (process start)" "$D1CTL --version"

echo "== export of the big database"
/usr/bin/time -f "export: %e s wall, peak RSS of d1ctl %M KB" "$D1CTL" export big -o big.sql -q
echo "dump: $(du -h big.sql | cut -f1)"
echo "peak RSS of the simulator process: $(grep VmHWM /proc/$sim_pid/status)"

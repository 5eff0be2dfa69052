#!/usr/bin/env bash
# Cost of the row guard on a 1,000,000-row child table (local SQLite).
#
#   bash bench/row_guard.sh             # from the repository root, after a release build
#   D1CTL=/path/to/d1ctl RUNS=10 ROWS=1000000 bash bench/row_guard.sh
#
# Two projects share one database template: `users` (1,000 rows), `posts` (ROWS rows,
# `user_id` REFERENCES users ON DELETE CASCADE) and `tags` (1 row, referenced by nothing).
# a. guarded: migration `DELETE FROM users WHERE id = -1` — `posts` is reachable through the
#    cascade, so the unit counts `posts` (rows and `user_id` values) at its start and end.
# b. unguarded: migration `DELETE FROM tags WHERE id = -1` — nothing references `tags`, so the
#    guard counts nothing. Same apply, same ledger writes.
# The difference a − b is the guard's cost. Each timed run starts from a fresh copy of the
# template (hyperfine --prepare). c. the two guard statements alone, in the sqlite3 CLI.
#
# Needs: hyperfine, sqlite3. Nothing leaves the machine.
set -euo pipefail

D1CTL=${D1CTL:-target/release/d1ctl}
RUNS=${RUNS:-10}
ROWS=${ROWS:-1000000}
SQLITE3=${SQLITE3:-sqlite3}

die() { echo "bench/row_guard.sh: $*" >&2; exit 2; }
for tool in hyperfine "$SQLITE3"; do
  command -v "$tool" >/dev/null || die "needs \`$tool\`"
done
[[ -x $D1CTL ]] || die "no d1ctl binary at \`$D1CTL\` (build: cargo build --release --locked, or set D1CTL)"
D1CTL=$(cd "$(dirname "$D1CTL")" && pwd)/$(basename "$D1CTL")

work=$(mktemp -d "${TMPDIR:-/tmp}/d1ctl-bench-guard.XXXXXX")
trap 'rm -rf "$work"' EXIT
cd "$work"

schema="CREATE TABLE users (id INTEGER PRIMARY KEY, email TEXT NOT NULL);
CREATE TABLE posts (id INTEGER PRIMARY KEY, user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE, title TEXT);
CREATE INDEX posts_user ON posts(user_id);
CREATE TABLE tags (id INTEGER PRIMARY KEY, name TEXT);"

for project in guarded unguarded; do
  mkdir -p "$project/migrations"
  printf '[project]\nladder = ["local"]\n\n[env.local]\nbackend = "sqlite"\npath = "local.sqlite"\n' \
    > "$project/environments.toml"
  printf '%s\n' "$schema" > "$project/migrations/0001_schema.sql"
done
echo "DELETE FROM users WHERE id = -1;" > guarded/migrations/0002_change.sql
echo "DELETE FROM tags WHERE id = -1;" > unguarded/migrations/0002_change.sql

# The template: 0001 applied by d1ctl (so the ledgers are its own), then the rows.
(cd guarded && mv migrations/0002_change.sql /tmp/.0002 && "$D1CTL" apply local -q \
  && mv /tmp/.0002 migrations/0002_change.sql)
"$SQLITE3" guarded/local.sqlite "
WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 1000)
  INSERT INTO users SELECT i, 'user' || i || '@example.com' FROM n;
WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < $ROWS)
  INSERT INTO posts SELECT i, 1 + i % 1000, 'post ' || i FROM n;
INSERT INTO tags VALUES (1, 'one');"
cp guarded/local.sqlite template.sqlite
echo "template: $(du -h template.sqlite | cut -f1), $ROWS rows in posts"

hyperfine --runs "$RUNS" --warmup 1 --export-markdown results.md \
  --prepare "cp $work/template.sqlite $work/guarded/local.sqlite; cp $work/template.sqlite $work/unguarded/local.sqlite" \
  -n guarded "cd $work/guarded && $D1CTL apply local -q" \
  -n unguarded "cd $work/unguarded && $D1CTL apply local -q"
cat results.md

echo "--- the guard's two statements alone (sqlite3 .timer)"
cp template.sqlite alone.sqlite
"$SQLITE3" alone.sqlite <<'SQL'
.timer on
CREATE TABLE _d1ctl_unit_state (key TEXT PRIMARY KEY, value TEXT NOT NULL);
INSERT OR REPLACE INTO _d1ctl_unit_state (key, value) SELECT 'rows:posts', json_array(count(*), count("user_id")) FROM "posts";
SELECT CASE WHEN json_extract(now.counts, '$[0]') < json_extract(g.value, '$[0]') THEN 1 END FROM _d1ctl_unit_state AS g, (SELECT json_array(count(*), count("user_id")) AS counts FROM "posts") AS now WHERE g.key = 'rows:posts';
SQL

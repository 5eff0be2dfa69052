#!/usr/bin/env bash
# Splitting benchmark: `d1ctl status local` over big and many migrations, beside the sqlite3 CLI
# reading the same SQL.
#
#   bash bench/parse.sh                  # from the repository root, after a release build
#   D1CTL=/path/to/d1ctl RUNS=20 bash bench/parse.sh
#
# a. One migration of CREATE TABLE + 40,000 single-row INSERTs (1.4 MB). d1ctl `status local`
#    (reads and splits every file, checksums it, reads the ledger of a database that has none)
#    beside `sqlite3 :memory: < 0001_seed.sql` (parses and runs it: more work than splitting).
# b. 2,000 small migrations (a table and an index each). d1ctl `status local` beside
#    `sqlite3 :memory: < all.sql`, the same 2,000 files concatenated beforehand.
# c. Case a with an unclosed quote on line 1: d1ctl refuses it (exit 2) after one pass. (Every
#    later quote then pairs with the wrong one; the quote left open is on the last line.)
#
# Needs: hyperfine, sqlite3, python3 (for the table). Nothing leaves the machine.
set -euo pipefail

D1CTL=${D1CTL:-target/release/d1ctl}
RUNS=${RUNS:-20}
WARMUP=${WARMUP:-3}
ROWS=${ROWS:-40000}
FILES=${FILES:-2000}
SQLITE3=${SQLITE3:-sqlite3}

die() { echo "bench/parse.sh: $*" >&2; exit 2; }
for tool in hyperfine "$SQLITE3"; do
  command -v "$tool" >/dev/null || die "needs \`$tool\`"
done
[[ -x $D1CTL ]] || die "no d1ctl binary at \`$D1CTL\` (build: cargo build --release --locked, or set D1CTL)"
D1CTL=$(cd "$(dirname "$D1CTL")" && pwd)/$(basename "$D1CTL")
SQLITE3=$(command -v "$SQLITE3")

work=$(mktemp -d "${TMPDIR:-/tmp}/d1ctl-bench-parse.XXXXXX")
trap 'rm -rf "$work"' EXIT

project() { # $1: folder
  mkdir -p "$1/migrations"
  printf '[project]\nmigrations_dir = "migrations"\n\n[env.local]\nbackend = "sqlite"\npath = "local.sqlite"\n' \
    > "$1/environments.toml"
}

# --- a. one big seed ----------------------------------------------------------------------------
project "$work/big"
{
  echo "CREATE TABLE s (id INTEGER PRIMARY KEY, v TEXT);"
  # Each value is a string holding a `;`, as seeds' text often does.
  awk -v rows="$ROWS" 'BEGIN { for (i = 1; i <= rows; i++) printf "INSERT INTO s VALUES(%d,%ca;%c);\n", i, 39, 39 }'
} > "$work/big/migrations/0001_seed.sql"

# --- b. many small migrations -------------------------------------------------------------------
project "$work/many"
awk -v files="$FILES" -v dir="$work/many/migrations" 'BEGIN {
  for (i = 1; i <= files; i++) {
    file = sprintf("%s/%04d_t%d.sql", dir, i, i)
    printf "-- Migration number: %04d\nCREATE TABLE t%d (id INTEGER PRIMARY KEY, v TEXT DEFAULT %c;%c);\nCREATE INDEX t%d_v ON t%d(v);\n", i, i, 39, 39, i, i > file
    close(file)
  }
}'
cat "$work"/many/migrations/*.sql > "$work/many/all.sql"

# --- c. the seed with an unclosed quote on line 1 -----------------------------------------------
project "$work/open"
{ echo "INSERT INTO s VALUES(0,'never closed);"; cat "$work/big/migrations/0001_seed.sql"; } \
  > "$work/open/migrations/0001_seed.sql"

big_bytes=$(wc -c < "$work/big/migrations/0001_seed.sql")
many_bytes=$(wc -c < "$work/many/all.sql")
echo "a. 1 file, $((ROWS + 1)) statements, $big_bytes bytes"
echo "b. $FILES files, $((FILES * 2)) statements, $many_bytes bytes"

export_json=$work/results
mkdir "$export_json"
{ echo "BEGIN;"; cat "$work/big/migrations/0001_seed.sql"; echo "COMMIT;"; } > "$work/big/one_transaction.sql"
cd "$work/big"
hyperfine -N --warmup "$WARMUP" --runs "$RUNS" --export-json "$export_json/a.json" \
  -n "d1ctl status local (1 file, 40 k statements)" "$D1CTL status local -q" \
  -n "sqlite3 :memory: < 0001_seed.sql" "bash -c '$SQLITE3 :memory: < migrations/0001_seed.sql'" \
  -n "sqlite3 :memory: < BEGIN + 0001_seed.sql + COMMIT" "bash -c '$SQLITE3 :memory: < one_transaction.sql'"
cd "$work/many"
hyperfine -N --warmup "$WARMUP" --runs "$RUNS" --export-json "$export_json/b.json" \
  -n "d1ctl status local ($FILES files)" "$D1CTL status local -q" \
  -n "sqlite3 :memory: < all.sql" "bash -c '$SQLITE3 :memory: < all.sql'"
cd "$work/open"
hyperfine -N -i --warmup "$WARMUP" --runs "$RUNS" --export-json "$export_json/c.json" \
  -n "d1ctl status local (unclosed quote on line 1)" "$D1CTL status local -q"
"$D1CTL" status local -q 2>&1 | head -1 || true

echo
echo "| case | d1ctl (mean ± σ) | sqlite3 (mean ± σ) | d1ctl / sqlite3 |"
echo "|---|---|---|---|"
for case in a b; do
  python3 - "$export_json/$case.json" "$case" <<'PY'
import json, sys
d1ctl, *baselines = json.load(open(sys.argv[1]))["results"]
ms = lambda r: f"{r['mean'] * 1000:.1f} ± {r['stddev'] * 1000:.1f} ms"
for sqlite3 in baselines:
    ratio = d1ctl["mean"] / sqlite3["mean"]
    print(f"| {sys.argv[2]}: {d1ctl['command']} | {ms(d1ctl)} | {sqlite3['command']}: {ms(sqlite3)} | {ratio:.2f}× |")
    print(f"{sys.argv[2]}: {'MET' if ratio <= 2 else 'MISSED'} (within 2× of {sqlite3['command']})", file=sys.stderr)
PY
done
python3 - "$export_json/c.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))["results"][0]
print(f"| c: {r['command']} | {r['mean'] * 1000:.1f} ± {r['stddev'] * 1000:.1f} ms (refused, exit 2) | | |")
PY

#!/usr/bin/env bash
# Local SQLite benchmark of d1ctl, beside the sqlite3 CLI doing the same work.
#
#   bash bench/local.sh                  # from the repository root
#   D1CTL=/path/to/d1ctl RUNS=100 bash bench/local.sh
#
# a. `d1ctl apply local -q` of two small migrations to a fresh database, beside sqlite3 running
#    script.sql (wrangler's ledger table, then per migration
#    BEGIN; <migration>; INSERT INTO d1_migrations ...; COMMIT;) and script2.sql (the same, with
#    the ledger table created in the first transaction: 2 commits, as d1ctl does).
# b. `d1ctl status local` on that database (2 migrations applied), beside
#    `sqlite3 local.sqlite 'SELECT name FROM d1_migrations ORDER BY id'`.
# c. Peak resident memory (GNU time %M), median of MEM_RUNS runs.
#
# The databases live in a `mktemp -d` folder under $TMPDIR (default /tmp): apply's time is mostly
# that disk's fsync latency. TMPDIR=/dev/shm (tmpfs, fsync free) leaves the CPU and process cost.
#
# Needs: hyperfine, GNU time (/usr/bin/time), sqlite3, jq. Nothing leaves the machine.
set -euo pipefail

D1CTL=${D1CTL:-target/release/d1ctl}
RUNS=${RUNS:-60}          # timed runs per command (>= 30), spread over ROUNDS hyperfine rounds
ROUNDS=${ROUNDS:-6}       # interleaved rounds (see `rounds` below)
WARMUP=${WARMUP:-5}       # hyperfine warmup runs before the first round (1 before the others)
MEM_RUNS=${MEM_RUNS:-9}   # runs for the peak-RSS median
SQLITE3=${SQLITE3:-sqlite3}
GNU_TIME=${GNU_TIME:-/usr/bin/time}

die() { echo "bench/local.sh: $*" >&2; exit 2; }
for tool in hyperfine jq "$SQLITE3" "$GNU_TIME"; do
  command -v "$tool" >/dev/null || die "needs \`$tool\`"
done
[[ -x $D1CTL ]] || die "no d1ctl binary at \`$D1CTL\` (build: cargo build --release --locked, or set D1CTL)"
D1CTL=$(cd "$(dirname "$D1CTL")" && pwd)/$(basename "$D1CTL")
SQLITE3=$(command -v "$SQLITE3")

work=$(mktemp -d "${TMPDIR:-/tmp}/d1ctl-bench-local.XXXXXX")
trap 'rm -rf "$work"' EXIT
cd "$work"

# --- the project: one local env, two small migrations ------------------------------------------
mkdir migrations
cat > environments.toml <<'TOML'
[project]
migrations_dir = "migrations"

[env.local]
backend = "sqlite"
path = "local.sqlite"
TOML

cat > migrations/0001_create_users.sql <<'SQL'
-- Migration number: 0001
CREATE TABLE users (
  id INTEGER PRIMARY KEY,
  email TEXT NOT NULL UNIQUE,
  name TEXT,
  created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);
SQL

cat > migrations/0002_create_posts.sql <<'SQL'
-- Migration number: 0002
CREATE TABLE posts (
  id INTEGER PRIMARY KEY,
  author_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
  title TEXT NOT NULL,
  body TEXT NOT NULL DEFAULT '',
  updated_at TEXT
);

CREATE INDEX posts_author_id ON posts(author_id);

CREATE TRIGGER posts_touch AFTER UPDATE OF title, body ON posts
BEGIN
  UPDATE posts SET updated_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now') WHERE id = NEW.id;
END;
SQL

# The same work for the sqlite3 CLI: wrangler's ledger table, then one transaction per migration
# holding the migration and its ledger row.
{
  printf 'PRAGMA foreign_keys=ON;\n'
  printf 'CREATE TABLE IF NOT EXISTS d1_migrations(\n  id INTEGER PRIMARY KEY AUTOINCREMENT,\n  name TEXT UNIQUE,\n  applied_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP NOT NULL\n);\n'
  for file in migrations/*.sql; do
    printf 'BEGIN;\n'
    cat "$file"
    printf "INSERT INTO d1_migrations(name) VALUES('%s');\nCOMMIT;\n" "$(basename "$file")"
  done
} > script.sql

# A variant with the commit count of d1ctl: the ledger table is created inside the first
# migration's transaction, so 2 commits instead of 3 (each commit costs fsyncs).
{
  printf 'PRAGMA foreign_keys=ON;\n'
  first=1
  for file in migrations/*.sql; do
    printf 'BEGIN;\n'
    if ((first)); then
      printf 'CREATE TABLE IF NOT EXISTS d1_migrations(\n  id INTEGER PRIMARY KEY AUTOINCREMENT,\n  name TEXT UNIQUE,\n  applied_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP NOT NULL\n);\n'
      first=0
    fi
    cat "$file"
    printf "INSERT INTO d1_migrations(name) VALUES('%s');\nCOMMIT;\n" "$(basename "$file")"
  done
} > script2.sql

# Sanity: both sides produce the same schema and ledger.
rm -f local.sqlite*
"$D1CTL" apply local -q
d1ctl_schema=$("$SQLITE3" local.sqlite "SELECT type, name FROM sqlite_master WHERE name NOT LIKE '%d1ctl%' AND name NOT LIKE 'sqlite_%' ORDER BY name")
d1ctl_ledger=$("$SQLITE3" local.sqlite 'SELECT name FROM d1_migrations ORDER BY id')
rm -f local.sqlite*
"$SQLITE3" local.sqlite < script.sql
sqlite_schema=$("$SQLITE3" local.sqlite "SELECT type, name FROM sqlite_master WHERE name NOT LIKE 'sqlite_%' ORDER BY name")
sqlite_ledger=$("$SQLITE3" local.sqlite 'SELECT name FROM d1_migrations ORDER BY id')
[[ $d1ctl_schema == "$sqlite_schema" && $d1ctl_ledger == "$sqlite_ledger" ]] ||
  die "d1ctl and sqlite3 did not produce the same schema/ledger:"$'\n'"$d1ctl_schema"$'\n---\n'"$sqlite_schema"
rm -f local.sqlite*
"$SQLITE3" local.sqlite < script2.sql
[[ $("$SQLITE3" local.sqlite "SELECT type, name FROM sqlite_master WHERE name NOT LIKE 'sqlite_%' ORDER BY name") == "$sqlite_schema" ]] ||
  die "script2.sql does not produce the same schema as script.sql"
rm -f local.sqlite*

echo "d1ctl:   $D1CTL ($("$D1CTL" --version 2>/dev/null || echo unknown version))"
echo "sqlite3: $("$SQLITE3" --version | cut -d' ' -f1-2)"
echo "hyperfine: $(hyperfine --version)"
echo "runs: $RUNS per command in $ROUNDS interleaved rounds (warmup $WARMUP), memory runs: $MEM_RUNS"
echo "load average at start: $(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null || echo unknown)"
echo

# --- timing in interleaved rounds ---------------------------------------------------------------
# hyperfine runs all runs of one command before the next, so a slow spell of the disk (fsync) or
# of a neighbour on this machine lands on one command only. Instead: ROUNDS rounds of
# ceil(RUNS / ROUNDS) runs per command, the command order reversed every other round, and the
# runs of all rounds merged per command (mean, σ, median, min, max over every run).
#
# rounds OUT PREPARE LABEL CMD [LABEL CMD ...]; PREPARE may be empty.
rounds() {
  local out=$1 prepare=$2 per=$(( (RUNS + ROUNDS - 1) / ROUNDS )) r i
  shift 2
  local -a labels=() cmds=() files=() order args prep
  while (($#)); do labels+=("$1"); cmds+=("$2"); shift 2; done
  for ((r = 0; r < ROUNDS; r++)); do
    order=()
    for i in "${!labels[@]}"; do
      if ((r % 2)); then order=("$i" "${order[@]}"); else order+=("$i"); fi
    done
    args=()
    for i in "${order[@]}"; do args+=(-n "${labels[i]}" "${cmds[i]}"); done
    prep=()
    [[ -n $prepare ]] && prep=(--prepare "$prepare")
    # -N: no intermediate shell. These commands can take under 5 ms, below what hyperfine can
    # correct for when it subtracts a shell's start-up time.
    hyperfine -N --style none --warmup $((r == 0 ? WARMUP : 1)) --runs "$per" "${prep[@]}" \
      --export-json "$out.$r" "${args[@]}"
    files+=("$out.$r")
  done
  jq -s '{results: ([.[].results[]] | group_by(.command) | map(
      {command: .[0].command, times: (map(.times) | add),
       user: (map(.user) | add / length), system: (map(.system) | add / length)}
      | (.times | add / length) as $m
      | . + {mean: $m, min: (.times | min), max: (.times | max),
             median: (.times | sort | if length % 2 == 1 then .[length / 2 | floor]
                      else (.[length / 2 - 1] + .[length / 2]) / 2 end),
             stddev: (if (.times | length) > 1
                      then (.times | map((. - $m) * (. - $m)) | add / (length - 1) | sqrt)
                      else 0 end)}))}' "${files[@]}" > "$out"
  for i in "${!labels[@]}"; do
    jq -r --arg n "${labels[i]}" '.results[] | select(.command == $n) |
      "  \(.command)\n    \(.mean * 1000 | . * 10 | round / 10) ms ± \(.stddev * 1000 | . * 10 | round / 10) ms (median \(.median * 1000 | . * 10 | round / 10), min \(.min * 1000 | . * 10 | round / 10), max \(.max * 1000 | . * 10 | round / 10)) over \(.times | length) runs; user \(.user * 1000 | . * 10 | round / 10) ms, system \(.system * 1000 | . * 10 | round / 10) ms"' "$out"
  done
}

# --- a. apply to a fresh database ----------------------------------------------------------------
echo "== a. apply 2 migrations to a fresh database"
# Without a shell there is no `<`, so sqlite3 runs the same file with `.read script.sql` (same
# statements, same transactions; section c measures `sqlite3 local.sqlite < script.sql` itself).
rounds apply.json 'rm -f local.sqlite local.sqlite-journal local.sqlite-wal local.sqlite-shm' \
  'd1ctl apply local -q' "'$D1CTL' apply local -q" \
  'sqlite3 local.sqlite .read script.sql' "'$SQLITE3' local.sqlite '.read script.sql'" \
  'sqlite3 local.sqlite .read script2.sql' "'$SQLITE3' local.sqlite '.read script2.sql'"
echo

# --- b. status of the applied database -----------------------------------------------------------
echo "== b. status of one local env (2 migrations applied)"
rm -f local.sqlite*
"$D1CTL" apply local -q
"$D1CTL" status local
rounds status.json '' \
  'd1ctl status local' "'$D1CTL' status local" \
  'sqlite3 SELECT name FROM d1_migrations' "'$SQLITE3' local.sqlite 'SELECT name FROM d1_migrations ORDER BY id'"
echo

# --- c. peak resident memory ---------------------------------------------------------------------
# Prints the median of MEM_RUNS peak RSS values (KB) of "$@"; FRESH=1 deletes the database
# first, STDIN=file feeds that file on standard input.
peak_rss() {
  local values=() i
  for ((i = 0; i < MEM_RUNS; i++)); do
    [[ ${FRESH:-0} == 1 ]] && rm -f local.sqlite*
    "$GNU_TIME" -f '%M' -o rss.txt "$@" < "${STDIN:-/dev/null}" >/dev/null
    values+=("$(tail -n 1 rss.txt)")
  done
  printf '%s\n' "${values[@]}" | sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'
}
echo "== c. peak RSS (median of $MEM_RUNS runs)"
rss_apply=$(FRESH=1 peak_rss "$D1CTL" apply local -q)
rss_sqlite_apply=$(FRESH=1 STDIN=script.sql peak_rss "$SQLITE3" local.sqlite)
rss_status=$(peak_rss "$D1CTL" status local)
rss_sqlite_status=$(peak_rss "$SQLITE3" local.sqlite 'SELECT name FROM d1_migrations ORDER BY id')
printf '%-40s %6s KB\n' 'd1ctl apply local -q' "$rss_apply" 'sqlite3 local.sqlite < script.sql' "$rss_sqlite_apply" \
  'd1ctl status local' "$rss_status" 'sqlite3 SELECT' "$rss_sqlite_status"
echo

# --- summary -------------------------------------------------------------------------------------
# "mean stddev median user+system" in ms of one hyperfine result.
ms() {
  jq -r --arg n "$2" '.results[] | select(.command == $n) |
    "\(.mean * 1000) \(.stddev * 1000) \(.median * 1000) \((.user + .system) * 1000)"' "$1"
}
row() { # file name label rss reference-name
  local m s med cpu rm _
  read -r m s med cpu < <(ms "$1" "$2")
  read -r rm _ < <(ms "$1" "$5")
  awk -v l="$3" -v m="$m" -v s="$s" -v med="$med" -v cpu="$cpu" -v rm="$rm" -v r="$4" 'BEGIN {
    printf "| %s | %.1f ± %.1f ms | %.1f ms | %.1f ms | %.2f× | %s |\n",
      l, m, s, med, cpu, m / rm, (r == "" ? "–" : sprintf("%.1f MB", r / 1024)) }'
}
echo "== summary (ratio: mean time / mean time of the first sqlite3 command of its group)"
echo "| command | mean ± σ | median | user+sys CPU | ratio to sqlite3 | peak RSS (median) |"
echo "|---|---|---|---|---|---|"
A='sqlite3 local.sqlite .read script.sql'
row apply.json 'd1ctl apply local -q' 'd1ctl apply local -q (fresh db)' "$rss_apply" "$A"
row apply.json "$A" 'sqlite3 local.sqlite .read script.sql (3 commits)' "$rss_sqlite_apply" "$A"
row apply.json 'sqlite3 local.sqlite .read script2.sql' 'sqlite3 local.sqlite .read script2.sql (2 commits, as d1ctl)' '' "$A"
S='sqlite3 SELECT name FROM d1_migrations'
row status.json 'd1ctl status local' 'd1ctl status local' "$rss_status" "$S"
row status.json "$S" "sqlite3 local.sqlite 'SELECT name FROM d1_migrations ORDER BY id'" "$rss_sqlite_status" "$S"
echo
verdict() { # file d1ctl-name sqlite-name rss label
  local dm sm _
  read -r dm _ < <(ms "$1" "$2")
  read -r sm _ < <(ms "$1" "$3")
  awk -v l="$5" -v dm="$dm" -v sm="$sm" -v r="$4" -v ref="$3" 'BEGIN {
    printf "%s: within 2x of `%s`: %s (%.2fx); peak RSS under 20 MB: %s (%.1f MB)\n", l, ref,
      (dm / sm <= 2 ? "MET" : "MISSED"), dm / sm, (r / 1024 < 20 ? "MET" : "MISSED"), r / 1024 }'
}
verdict apply.json 'd1ctl apply local -q' "$A" "$rss_apply" apply
verdict apply.json 'd1ctl apply local -q' 'sqlite3 local.sqlite .read script2.sql' "$rss_apply" apply
verdict status.json 'd1ctl status local' "$S" "$rss_status" status
echo "load average at end: $(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null || echo unknown)"

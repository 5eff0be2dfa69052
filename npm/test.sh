#!/usr/bin/env bash
# Checks the npm packages the way a user gets them: packs them (npm/pack.sh), installs the
# launcher and this machine's platform package from the local tarballs into an empty npm project
# with no network and an empty cache (`npm install … --offline`), and runs d1ctl through `npx`:
# its version, the example project's whole ladder, exit codes and signals passed through the
# launcher, and the error when the platform package is missing.
#
#   bash npm/test.sh            pack with a release build, then check
#   bash npm/test.sh --debug    pack the debug build instead (CI: no release build needed)
#
# D1CTL_NPM_TEST_VERBOSE=1 shows what each passing check saw, too.
# Without node and npm it prints SKIPPED and passes, unless D1CTL_REQUIRE_NPM=1 (set by CI).
set -euo pipefail
cd "$(dirname "$0")/.."
repo="$(pwd)"

pack_args=()
for arg in "$@"; do
  case "$arg" in
    --debug) pack_args+=(--debug) ;;
    *) echo "error: unknown argument \`$arg\`" >&2; exit 2 ;;
  esac
done

missing=""
for tool in node npm npx; do
  command -v "$tool" >/dev/null || missing="$missing $tool"
done
if [ -n "$missing" ]; then
  if [ "${D1CTL_REQUIRE_NPM:-0}" != 0 ] && [ -n "${D1CTL_REQUIRE_NPM:-}" ]; then
    echo "error: D1CTL_REQUIRE_NPM is set but${missing} not found" >&2
    exit 1
  fi
  echo "SKIPPED npm/test.sh:${missing} not found; set D1CTL_REQUIRE_NPM=1 to make this a failure"
  exit 0
fi

bash npm/pack.sh "${pack_args[@]}"
out="$(cargo metadata --no-deps --format-version 1 --offline |
  node -e 'console.log(JSON.parse(require("fs").readFileSync(0, "utf8")).target_directory)')/npm"
launchers=("$out"/d1ctl-[0-9]*.tgz)
launcher="${launchers[0]}"
version="${launcher##*/d1ctl-}"
version="${version%.tgz}"
platform_tarballs=()
for tarball in "$out"/d1ctl-*.tgz; do
  [ "$tarball" = "$launcher" ] || platform_tarballs+=("$tarball")
done
[ "${#platform_tarballs[@]}" -gt 0 ] || { echo "error: pack.sh packed no platform package" >&2; exit 1; }

work="$(mktemp -d "${TMPDIR:-/tmp}/d1ctl-npm-test.XXXXXX")"
trap 'rm -rf "$work"' EXIT

passed=0
failed=0
# Runs a check in a subshell with `set -e` in force (an `if` would switch it off), so any
# failing step fails the check.
check() {
  local name="$1" status=0
  shift
  set +e
  (
    set -e
    "$@"
  ) >"$work/check.log" 2>&1
  status=$?
  set -e
  if [ "$status" = 0 ]; then
    echo "ok   $name"
    if [ -n "${D1CTL_NPM_TEST_VERBOSE:-}" ]; then sed 's/^/     /' "$work/check.log"; fi
    passed=$((passed + 1))
  else
    echo "FAIL $name"
    sed 's/^/     /' "$work/check.log"
    failed=$((failed + 1))
  fi
}

# An empty npm project, and an install that can only succeed from the tarballs: offline, with a
# cache of its own that starts empty.
npm_install() {
  local dir="$1"
  shift
  mkdir -p "$dir"
  (cd "$dir" && npm init -y >/dev/null &&
    npm install "$@" --offline --cache "$work/cache-${dir##*/}" --no-audit --no-fund)
}

no_install_scripts() {
  local tarball
  for tarball in "$launcher" "${platform_tarballs[@]}"; do
    tar -xzOf "$tarball" package/package.json | node -e '
      const manifest = JSON.parse(require("fs").readFileSync(0, "utf8"));
      const scripts = Object.keys(manifest.scripts || {});
      if (scripts.length) { console.error(process.argv[1], "has scripts:", scripts); process.exit(1); }
      if (manifest.version !== process.argv[2]) { console.error(process.argv[1], manifest.version); process.exit(1); }
    ' "$tarball" "$version"
  done
}
check "no package has a script, every version is $version" no_install_scripts

project="$work/project"
check "npm install of the launcher and ${platform_tarballs[*]##*/} (offline, empty cache)" \
  npm_install "$project" "$launcher" "${platform_tarballs[@]}"

# The platform package's own binary, to compare the launcher with.
binaries=("$project"/node_modules/@d1ctl/*/bin/d1ctl)
binary="${binaries[0]}"

version_matches() {
  local printed
  printed="$(cd "$project" && npx --offline d1ctl --version)"
  echo "printed: $printed"
  [ "${printed%% (*}" = "d1ctl $version" ]
}
check "npx d1ctl --version says d1ctl $version" version_matches

# The repository's own example project: environments.toml and migrations/, in the npm project.
cp "$repo/environments.toml" "$project/"
cp -R "$repo/migrations" "$project/"

promote_example() {
  cd "$project"
  npx --offline d1ctl promote --to production --cascade --yes
  npx --offline d1ctl status
  npx --offline d1ctl drift production local
}
check "npx d1ctl promote --to production --cascade --yes on the example project" promote_example

# Runs one command through npx and directly; both must end with `expected` and print the same.
same_as_direct() {
  local expected="$1"
  shift
  cd "$project"
  local via=0 direct=0
  npx --offline d1ctl "$@" >"$work/via.out" 2>"$work/via.err" || via=$?
  "$binary" "$@" >"$work/direct.out" 2>"$work/direct.err" || direct=$?
  echo "via npx: $via, direct: $direct, expected: $expected"
  cat "$work/via.err"
  [ "$via" = "$expected" ] && [ "$direct" = "$expected" ] &&
    cmp "$work/via.out" "$work/direct.out" && cmp "$work/via.err" "$work/direct.err"
}
check "exit code 2 passes through (an unknown env)" same_as_direct 2 drift no-such-env
printf 'DROP TABLE posts;\n' >"$project/migrations/0003_drop_posts.sql"
check "exit code 1 passes through (lint finds a dropped table)" same_as_direct 1 lint
rm "$project/migrations/0003_drop_posts.sql"

# Starts `d1ctl sim` with `runner` (the launcher or the binary), sends `signal` once it
# listens, and prints how it ended: the shell's status (128+N for a signal).
ended_with() {
  local signal="$1" pid status=0 waited=0
  shift
  "$@" sim --port 0 --token test --data "$work/sim-data" >/dev/null 2>"$work/sim.err" &
  pid=$!
  until grep -q 'D1 API simulator on' "$work/sim.err" 2>/dev/null; do
    sleep 0.1
    waited=$((waited + 1))
    [ "$waited" -lt 300 ] || { kill -KILL "$pid"; echo timeout; return; }
  done
  kill "-$signal" "$pid"
  wait "$pid" || status=$?
  echo "$status"
}

signal_passes_through() {
  local signal="$1" via direct
  cd "$project"
  via="$(ended_with "$signal" node node_modules/d1ctl/bin/d1ctl.js)"
  direct="$(ended_with "$signal" "$binary")"
  echo "SIG$signal via the launcher: $via, direct: $direct"
  [ "$via" = "$direct" ] && [ "$via" != timeout ] &&
    ! pgrep -f "$work/sim-data" >/dev/null
}
# TERM: d1ctl dies of it (143), and so must the launcher. INT: d1ctl stops the simulator and
# exits 0, and so must the launcher.
check "SIGTERM to the launcher ends d1ctl the same way (and leaves no process)" signal_passes_through TERM
check "SIGINT to the launcher ends d1ctl the same way (and leaves no process)" signal_passes_through INT

bare="$work/launcher-only"
missing_platform_package() {
  npm_install "$bare" "$launcher"
  cd "$bare"
  local status=0
  npx --offline d1ctl --version 2>"$work/missing.err" || status=$?
  cat "$work/missing.err"
  [ "$status" = 2 ] && grep -q "the package \`@d1ctl/.*\`, which holds d1ctl's binary for .* is not installed" "$work/missing.err"
}
check "without its platform package, the launcher names the missing package (exit 2)" missing_platform_package

echo "npm: $passed passed, $failed failed"
[ "$failed" = 0 ]

#!/usr/bin/env bash
# Packs d1ctl's npm packages into target/npm/: the launcher `d1ctl` (npm/d1ctl/) and one
# `@d1ctl/<platform>` package per binary (npm/platforms/<platform>/), every version set to the
# crate's (Cargo.toml), so the launcher and its binaries can never disagree.
#
#   bash npm/pack.sh                    build this machine's binary (release) and pack it
#   bash npm/pack.sh --debug            the same with the debug build (for tests: no release build)
#   bash npm/pack.sh --binaries DIR     also pack DIR/<platform>/d1ctl[.exe] for every platform
#                                       found there (what the release job's builds provide);
#                                       this machine's platform is built only when DIR lacks it
#   bash npm/pack.sh --binaries DIR --require-all
#                                       fail unless all six platforms are packed (the release)
#
# It needs cargo, node and npm; it fetches nothing (`npm pack` of a package without dependencies
# is local) and runs no package scripts.
set -euo pipefail
cd "$(dirname "$0")/.."

PLATFORMS=(linux-x64-gnu linux-arm64-gnu linux-x64-musl darwin-x64 darwin-arm64 win32-x64)

profile=release
binaries=""
require_all=0
while [ $# -gt 0 ]; do
  case "$1" in
    --debug) profile=debug ;;
    --binaries) binaries="${2:?--binaries needs a folder}"; shift ;;
    --require-all) require_all=1 ;;
    -h | --help) sed -n '2,16p' "$0"; exit 0 ;;
    *) echo "error: unknown argument \`$1\` (see \`bash npm/pack.sh --help\`)" >&2; exit 2 ;;
  esac
  shift
done

for tool in cargo node npm; do
  command -v "$tool" >/dev/null || { echo "error: \`$tool\` is needed to pack the npm packages" >&2; exit 2; }
done

# The crate's version and target folder, as cargo sees them (CARGO_TARGET_DIR included).
metadata="$(cargo metadata --no-deps --format-version 1 --offline)"
read -r version target_dir < <(node -e '
  const m = JSON.parse(require("fs").readFileSync(0, "utf8"));
  const p = m.packages.find((p) => p.name === "d1ctl");
  console.log(p.version, m.target_directory);
' <<<"$metadata")

out="$target_dir/npm"
stage="$out/stage"
rm -rf "$stage"
mkdir -p "$stage"
rm -f "$out"/*.tgz

# This machine's platform, in the packages' names; empty when npm has no package for it.
host_platform() {
  local os arch libc=gnu
  os="$(uname -s)"
  arch="$(uname -m)"
  if [ "$os" = Linux ] && ldd --version 2>&1 | grep -qi musl; then libc=musl; fi
  case "$os/$arch/$libc" in
    Linux/x86_64/gnu) echo linux-x64-gnu ;;
    Linux/x86_64/musl) echo linux-x64-musl ;;
    Linux/aarch64/gnu) echo linux-arm64-gnu ;;
    Darwin/x86_64/*) echo darwin-x64 ;;
    Darwin/arm64/*) echo darwin-arm64 ;;
    *) echo "" ;;
  esac
}

# Writes package.json from its template with the crate's version in `version` and in every
# `@d1ctl/*` optional dependency.
stamp() {
  node -e '
    const fs = require("fs");
    const [from, to, version] = process.argv.slice(1);
    const manifest = JSON.parse(fs.readFileSync(from, "utf8"));
    manifest.version = version;
    for (const name of Object.keys(manifest.optionalDependencies || {})) {
      manifest.optionalDependencies[name] = version;
    }
    fs.writeFileSync(to, JSON.stringify(manifest, null, 2) + "\n");
  ' "$1" "$2" "$version"
}

pack() {
  # --ignore-scripts: the packages have none, and a stray one must not run here either.
  (cd "$1" && npm pack --silent --ignore-scripts --pack-destination "$out" >/dev/null)
}

packed=()

pack_platform() {
  local platform="$1" binary="$2" file=d1ctl dir
  [ "${platform#win32}" != "$platform" ] && file=d1ctl.exe
  dir="$stage/$platform"
  mkdir -p "$dir/bin"
  stamp "npm/platforms/$platform/package.json" "$dir/package.json"
  cp "npm/platforms/$platform/README.md" "$dir/README.md"
  cp "$binary" "$dir/bin/$file"
  chmod 755 "$dir/bin/$file"
  case "$platform" in
    *-gnu)
      # The newest glibc symbol version the binary links: the oldest glibc it runs on.
      local glibc
      glibc="$(grep -aoE 'GLIBC_2\.[0-9]+(\.[0-9]+)?' "$binary" | sort -uV | tail -n 1 || true)"
      if [ -n "$glibc" ]; then
        printf '\nThis build needs glibc %s or newer.\n' "${glibc#GLIBC_}" >>"$dir/README.md"
      fi
      ;;
  esac
  pack "$dir"
  packed+=("$platform")
}

host="$(host_platform)"
if [ -n "$binaries" ]; then
  for platform in "${PLATFORMS[@]}"; do
    for candidate in "$binaries/$platform/d1ctl" "$binaries/$platform/d1ctl.exe"; do
      if [ -f "$candidate" ]; then
        pack_platform "$platform" "$candidate"
        break
      fi
    done
  done
fi

if [ -n "$host" ] && [[ " ${packed[*]} " != *" $host "* ]]; then
  echo "--- building d1ctl ($profile) for $host"
  if [ "$profile" = release ]; then
    cargo build --locked --release --bin d1ctl
  else
    cargo build --locked --bin d1ctl
  fi
  pack_platform "$host" "$target_dir/$profile/d1ctl"
fi

mkdir -p "$stage/d1ctl/bin"
stamp npm/d1ctl/package.json "$stage/d1ctl/package.json"
cp npm/d1ctl/README.md "$stage/d1ctl/README.md"
cp npm/d1ctl/bin/d1ctl.js "$stage/d1ctl/bin/d1ctl.js"
chmod 755 "$stage/d1ctl/bin/d1ctl.js"
pack "$stage/d1ctl"

if [ "$require_all" = 1 ] && [ "${#packed[@]}" -ne "${#PLATFORMS[@]}" ]; then
  echo "error: --require-all: packed ${packed[*]:-nothing}, but the release needs ${PLATFORMS[*]}" >&2
  exit 1
fi

echo "d1ctl $version: packed the launcher and ${packed[*]:-no platform package} into $out"
ls -1 "$out"/*.tgz

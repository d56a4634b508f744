#!/usr/bin/env bash
# `npm run prebuild`: cross-builds node-mmap for every platform it ships to, on this Linux x64
# machine, lays the binaries out as napi-rs does (one npm package per platform under npm/), and
# packs the root package and every platform package into dist/:
#
#   dist/node-mmap-<version>.tgz                 the JavaScript, the types and the README; no binary;
#                                                optionalDependencies name every platform package,
#                                                pinned to this version (as `napi pre-publish` writes
#                                                them), so npm installs only the one that fits
#   dist/node-mmap-<platform>-<version>.tgz      one binary, with the package's os/cpu/libc fields
#
#   platform            Rust target                        built with
#   linux-x64-gnu       x86_64-unknown-linux-gnu.2.17      cargo zigbuild (needs glibc >= 2.17)
#   linux-x64-musl      x86_64-unknown-linux-musl          cargo zigbuild, -C target-feature=-crt-static
#   linux-arm64-gnu     aarch64-unknown-linux-gnu.2.17     cargo zigbuild (needs glibc >= 2.17)
#   linux-arm64-musl    aarch64-unknown-linux-musl         cargo zigbuild, -C target-feature=-crt-static
#   darwin-x64          x86_64-apple-darwin                cargo zigbuild, MACOSX_DEPLOYMENT_TARGET=10.13
#   darwin-arm64        aarch64-apple-darwin               cargo zigbuild, MACOSX_DEPLOYMENT_TARGET=11.0
#   win32-x64-gnu       x86_64-pc-windows-gnu              Debian's mingw-w64 (.ci/wine.sh build)
#
# It installs what it lacks: the rustup targets, zig (PyPI `ziglang`) and cargo-zigbuild (PyPI),
# and for Windows what `.ci/wine.sh setup` installs (mingw-w64 and node.exe's import library).
# Nothing is published: a release would run `npm publish` on each tarball, platform packages first
# (README, "Publishing a release"). `.ci/prebuilt.sh` checks and installs what this makes.
#
#   npm run prebuild [-- PLATFORM...]     only the platforms named (the root tarball always)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$PWD

# The versions these tools were checked with; pip installs exactly these.
ZIGLANG_VERSION=0.17.1
CARGO_ZIGBUILD_VERSION=0.24.1

ALL_PLATFORMS=(linux-x64-gnu linux-x64-musl linux-arm64-gnu linux-arm64-musl darwin-x64 darwin-arm64 win32-x64-gnu)
platforms=("$@")
[ ${#platforms[@]} -gt 0 ] || platforms=("${ALL_PLATFORMS[@]}")

VERSION=$(node -p "require('./package.json').version")
export CARGO_BUILD_JOBS=${CARGO_BUILD_JOBS:-2}

triple_of() {
  case $1 in
    linux-x64-gnu) echo x86_64-unknown-linux-gnu ;;
    linux-x64-musl) echo x86_64-unknown-linux-musl ;;
    linux-arm64-gnu) echo aarch64-unknown-linux-gnu ;;
    linux-arm64-musl) echo aarch64-unknown-linux-musl ;;
    darwin-x64) echo x86_64-apple-darwin ;;
    darwin-arm64) echo aarch64-apple-darwin ;;
    win32-x64-gnu) echo x86_64-pc-windows-gnu ;;
    *)
      echo "error: unknown platform '$1' (platforms: ${ALL_PLATFORMS[*]})" >&2
      exit 2
      ;;
  esac
}

say() { printf '\n=== %s\n' "$*"; }

ensure_zigbuild() {
  if command -v cargo-zigbuild >/dev/null && python3 -m ziglang version >/dev/null 2>&1; then
    return
  fi
  say "pip install ziglang==$ZIGLANG_VERSION cargo-zigbuild==$CARGO_ZIGBUILD_VERSION"
  python3 -m pip install --quiet --disable-pip-version-check \
    "ziglang==$ZIGLANG_VERSION" "cargo-zigbuild==$CARGO_ZIGBUILD_VERSION"
  hash -r
  # pip puts the command in Python's scripts folder (or the user one), which may not be on PATH.
  command -v cargo-zigbuild >/dev/null || export PATH="$(python3 -c 'import sysconfig; print(sysconfig.get_path("scripts"))'):$(python3 -m site --user-base)/bin:$PATH"
  command -v cargo-zigbuild >/dev/null || { echo "error: cargo-zigbuild is not on PATH after pip install" >&2; exit 1; }
}

ensure_target() {
  rustup target list --installed | grep -qx "$1" || { say "rustup target add $1"; rustup target add "$1"; }
}

# Builds one platform's binary and prints the path cargo wrote it to.
build() {
  local platform=$1 triple
  triple=$(triple_of "$platform")
  ensure_target "$triple"
  case $platform in
    win32-*)
      bash .ci/wine.sh setup >&2
      bash .ci/wine.sh build >&2
      echo "$ROOT/target/$triple/release/node_mmap.dll"
      ;;
    linux-*-gnu)
      # The suffix asks zig for glibc 2.17's symbols (CentOS 7 and every later distribution).
      cargo zigbuild --release --target "$triple.2.17" >&2
      echo "$ROOT/target/$triple/release/libnode_mmap.so"
      ;;
    linux-*-musl)
      # A cdylib for musl must link musl's libc dynamically: Node has it loaded already.
      RUSTFLAGS="-C target-feature=-crt-static" cargo zigbuild --release --target "$triple" >&2
      echo "$ROOT/target/$triple/release/libnode_mmap.so"
      ;;
    darwin-x64)
      # Without a deployment target zig marks the binary as needing the newest macOS.
      MACOSX_DEPLOYMENT_TARGET=10.13 cargo zigbuild --release --target "$triple" >&2
      echo "$ROOT/target/$triple/release/libnode_mmap.dylib"
      ;;
    darwin-arm64)
      MACOSX_DEPLOYMENT_TARGET=11.0 cargo zigbuild --release --target "$triple" >&2
      echo "$ROOT/target/$triple/release/libnode_mmap.dylib"
      ;;
  esac
}

needs_zig=0
for platform in "${platforms[@]}"; do
  triple_of "$platform" >/dev/null
  case $platform in win32-*) ;; *) needs_zig=1 ;; esac
done
[ $needs_zig = 0 ] || ensure_zigbuild

# The platform packages' folders and package.json files, from package.json's napi.targets.
say "napi create-npm-dirs (npm/<platform>/package.json)"
rm -rf npm
npx --no-install napi create-npm-dirs
# napi-rs gives the Windows gnu package "libc": ["glibc"]; npm knows a libc only on Linux, so
# on Windows it would refuse the package as unsupported. Windows packages name no libc.
node -e '
  const fs = require("node:fs")
  const file = "npm/win32-x64-gnu/package.json"
  const pkg = JSON.parse(fs.readFileSync(file, "utf8"))
  delete pkg.libc
  fs.writeFileSync(file, JSON.stringify(pkg, null, 2) + "\n")
'

rm -rf dist
mkdir -p dist
for platform in "${platforms[@]}"; do
  say "$platform: build"
  artifact=$(build "$platform")
  cp "$artifact" "npm/$platform/node-mmap.$platform.node"
  ls -l "npm/$platform/node-mmap.$platform.node"
  (cd "npm/$platform" && npm pack --silent --pack-destination "$ROOT/dist" >/dev/null)
done

# The root package: the files package.json names, but no binary (each lives in its platform
# package; a git install builds its own with `prepare`), and optionalDependencies pinned to this
# version. Packed from a copy, so that the repository's package.json stays as it is: there the
# platform packages are not published, and `npm ci` would want them in the lock file.
say "root package"
stage=$ROOT/target/prebuild-root
rm -rf "$stage"
mkdir -p "$stage"
cp package.json index.js index.mjs index.d.ts README.md "$stage/"
node -e '
  const fs = require("node:fs")
  const [file, version, ...platforms] = process.argv.slice(1)
  const pkg = JSON.parse(fs.readFileSync(file, "utf8"))
  pkg.optionalDependencies = Object.fromEntries(platforms.map((p) => [`${pkg.name}-${p}`, version]))
  fs.writeFileSync(file, JSON.stringify(pkg, null, 2) + "\n")
' "$stage/package.json" "$VERSION" "${ALL_PLATFORMS[@]}"
(cd "$stage" && npm pack --silent --ignore-scripts --pack-destination "$ROOT/dist" >/dev/null)

say "dist/"
ls -l dist

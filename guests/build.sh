#!/usr/bin/env bash
# Builds every guest (guests/<name>/main.c) into guests/build/<name>.wasm.
#
#   bash guests/build.sh           build into guests/build/
#   bash guests/build.sh --check   build into a temporary directory and fail,
#                                  naming each file, if it differs from the
#                                  committed guests/build/ (used by CI)
#
# Works from any directory. Needs the Debian packages clang-22, lld-22,
# libclang-rt-22-dev-wasm32 and wasi-libc, and (once, to fetch SQLite's
# amalgamation into guests/.src/) npm with access to the npm registry.
#
# The output is deterministic: the same sources and toolchain give the same
# bytes, so --check can compare with what is committed.
set -euo pipefail

GUESTS_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
SRC_DIR="$GUESTS_DIR/.src"   # downloaded sources and cached objects (gitignored)

CLANG=clang-22
# --no-wasm-opt: clang otherwise runs any wasm-opt found on PATH (there is one
#   in node_modules/.bin), which would make the output depend on PATH.
# -Wl,--strip-debug: Debian's wasi-libc libc.a carries DWARF; without this
#   the modules grow and embed build paths. The "name" section stays.
# -Wno-deprecated: clang-22 warns that wasm32-wasi is now spelled
#   wasm32-wasip1, but Debian's wasi-libc layout only matches wasm32-wasi.
COMMON_FLAGS=(--target=wasm32-wasi -O2 -Wno-deprecated)
# shellcheck disable=SC2054  # the commas belong to -Wl,...
LINK_FLAGS=(--no-wasm-opt -Wl,--strip-debug)
WARN_FLAGS=(-Wall -Wextra -Wno-unused-parameter)

# SQLite: the amalgamation shipped inside the better-sqlite3 npm package (so
# the only network access needed is the npm registry), pinned and verified.
SQLITE_NPM_PACKAGE=better-sqlite3
SQLITE_NPM_VERSION=12.11.1               # ships SQLite 3.53.2
SQLITE_C_SHA256=60d2f39a3726cd6b9021da6f4e868608d66fbb6528a9f513dc8ffcc640493422
SQLITE_H_SHA256=9e69a1353a4288450b0d5239ede11fc7f1f4c8e5eb07491fc8317eacb5b7de7e
SQLITE_SRC="$SRC_DIR/$SQLITE_NPM_PACKAGE-$SQLITE_NPM_VERSION"
# How SQLite is built for wasi-libc. SQLite detects __wasi__ itself (no
# mmap, fchown or getpid; threads and extension loading off); on top of that:
SQLITE_DEFINES=(
  -DSQLITE_THREADSAFE=0              # no threads in WASI preview1
  -DSQLITE_OMIT_LOAD_EXTENSION       # no dlopen
  -DSQLITE_OMIT_WAL                  # WAL needs shared memory (mmap)
  -DSQLITE_MAX_MMAP_SIZE=0           # never memory-map the database
  '-DSQLITE_DEFAULT_UNIX_VFS="unix-none"'  # one process: no locks at all
                                     # (the WASI default, unix-dotfile, makes lock dirs)
  -DSQLITE_TEMP_STORE=3              # temporary tables in memory: no temp dir
  -DSQLITE_OMIT_RANDOMNESS           # zero seed: journal and database bytes
                                     # are identical on every run
  -DSQLITE_DEFAULT_MEMSTATUS=0       # the rest: SQLite's recommended options
  -DSQLITE_DQS=0
  -DSQLITE_OMIT_DEPRECATED
  -DSQLITE_OMIT_SHARED_CACHE
)

# Extra flags per guest (compiler and linker), beyond the common ones.
guest_flags() {
  case "$1" in
    # The 12,000-deep recursion keeps a local on the shadow stack in every
    # frame; wasm-ld's default stack is 64 KiB.
    compute) echo "-Wl,-z,stack-size=1048576" ;;
    *) ;;
  esac
}

die() { echo "guests/build.sh: $*" >&2; exit 1; }

CHECK_DIR=""   # --check's temporary output directory, removed on exit
cleanup() { if [[ -n "$CHECK_DIR" ]]; then rm -rf "$CHECK_DIR"; fi; }
trap cleanup EXIT

check_toolchain() {
  command -v "$CLANG" >/dev/null 2>&1 ||
    die "$CLANG not found. Install the Debian packages: apt-get install clang-22 lld-22 libclang-rt-22-dev-wasm32 wasi-libc"
  command -v wasm-ld-22 >/dev/null 2>&1 || command -v wasm-ld >/dev/null 2>&1 ||
    die "wasm-ld not found. Install the Debian package lld-22"
  printf '#include <stdio.h>\nint main(void){return 0;}\n' |
    "$CLANG" "${COMMON_FLAGS[@]}" "${LINK_FLAGS[@]}" -x c - -o /dev/null >/dev/null 2>&1 ||
    die "$CLANG cannot build for wasm32-wasi. Install the Debian packages wasi-libc and libclang-rt-22-dev-wasm32"
}

sha256_of() { sha256sum "$1" | cut -d' ' -f1; }

# Fetches sqlite3.c and sqlite3.h into $SQLITE_SRC (once) and verifies them.
fetch_sqlite() {
  if [[ ! -f "$SQLITE_SRC/sqlite3.c" || ! -f "$SQLITE_SRC/sqlite3.h" ]]; then
    command -v npm >/dev/null 2>&1 || die "npm not found (needed once to fetch SQLite)"
    echo "fetching $SQLITE_NPM_PACKAGE@$SQLITE_NPM_VERSION from the npm registry" >&2
    local tmp
    tmp="$(mktemp -d)"
    (cd "$tmp" && npm pack --silent "$SQLITE_NPM_PACKAGE@$SQLITE_NPM_VERSION" >/dev/null) ||
      { rm -rf "$tmp"; die "npm pack $SQLITE_NPM_PACKAGE@$SQLITE_NPM_VERSION failed"; }
    tar -xzf "$tmp/$SQLITE_NPM_PACKAGE-$SQLITE_NPM_VERSION.tgz" -C "$tmp" \
      package/deps/sqlite3/sqlite3.c package/deps/sqlite3/sqlite3.h ||
      { rm -rf "$tmp"; die "sqlite3.c/sqlite3.h not found in the package"; }
    mkdir -p "$SQLITE_SRC"
    mv "$tmp/package/deps/sqlite3/sqlite3.c" "$tmp/package/deps/sqlite3/sqlite3.h" "$SQLITE_SRC/"
    rm -rf "$tmp"
  fi
  [[ "$(sha256_of "$SQLITE_SRC/sqlite3.c")" == "$SQLITE_C_SHA256" ]] ||
    die "$SQLITE_SRC/sqlite3.c: sha256 is not $SQLITE_C_SHA256 (delete the directory to fetch again)"
  [[ "$(sha256_of "$SQLITE_SRC/sqlite3.h")" == "$SQLITE_H_SHA256" ]] ||
    die "$SQLITE_SRC/sqlite3.h: sha256 is not $SQLITE_H_SHA256 (delete the directory to fetch again)"
}

# Compiles sqlite3.c (about 40 s) into an object cached under .src/, keyed by
# everything that affects it: the source hash, the flags and the compiler.
sqlite_object() {
  fetch_sqlite
  local key obj
  key="$({ echo "$SQLITE_C_SHA256"; printf '%s\n' "${COMMON_FLAGS[@]}" "${SQLITE_DEFINES[@]}";
           "$CLANG" --version; } | sha256sum | cut -c1-16)"
  obj="$SRC_DIR/obj/sqlite3-$key.o"
  if [[ ! -f "$obj" ]]; then
    echo "compiling sqlite3.c (takes about 40 s)" >&2
    mkdir -p "$SRC_DIR/obj"
    "$CLANG" "${COMMON_FLAGS[@]}" "${SQLITE_DEFINES[@]}" -c "$SQLITE_SRC/sqlite3.c" -o "$obj.tmp"
    mv "$obj.tmp" "$obj"
  fi
  echo "$obj"
}

# build_guest NAME OUT_DIR
build_guest() {
  local name="$1" out="$2"
  local -a extra=() inputs=("$GUESTS_DIR/$name/main.c")
  read -r -a extra <<<"$(guest_flags "$name")"
  if [[ "$name" == sqlite ]]; then
    inputs+=("$(sqlite_object)")
    extra+=(-I"$SQLITE_SRC")
  fi
  "$CLANG" "${COMMON_FLAGS[@]}" "${LINK_FLAGS[@]}" "${WARN_FLAGS[@]}" -I"$GUESTS_DIR/include" \
    ${extra[@]+"${extra[@]}"} -o "$out/$name.wasm.tmp" "${inputs[@]}"
  chmod 644 "$out/$name.wasm.tmp"
  mv "$out/$name.wasm.tmp" "$out/$name.wasm"
  echo "built $name.wasm ($(wc -c <"$out/$name.wasm") bytes)" >&2
}

list_guests() {
  local d
  for d in "$GUESTS_DIR"/*/; do
    [[ -f "$d/main.c" ]] && basename "$d"
  done
  return 0
}

main() {
  local mode=build
  case "${1:-}" in
    "") ;;
    --check) mode=check ;;
    -h | --help) sed -n '2,14p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown argument \"$1\" (want --check or nothing)" ;;
  esac
  check_toolchain

  local -a guests
  mapfile -t guests < <(list_guests)
  [[ ${#guests[@]} -gt 0 ]] || die "no guests found under $GUESTS_DIR"

  local out
  if [[ "$mode" == build ]]; then
    out="$GUESTS_DIR/build"
    mkdir -p "$out"
  else
    CHECK_DIR="$(mktemp -d)"
    out="$CHECK_DIR"
  fi

  local name
  for name in "${guests[@]}"; do build_guest "$name" "$out"; done

  if [[ "$mode" == check ]]; then
    local -a bad=()
    for name in "${guests[@]}"; do
      if [[ ! -f "$GUESTS_DIR/build/$name.wasm" ]]; then
        bad+=("guests/build/$name.wasm (missing)")
      elif ! cmp -s "$out/$name.wasm" "$GUESTS_DIR/build/$name.wasm"; then
        bad+=("guests/build/$name.wasm (differs from a fresh build)")
      fi
    done
    local f
    for f in "$GUESTS_DIR"/build/*.wasm; do
      [[ -e "$f" ]] || continue
      [[ -f "$out/$(basename "$f")" ]] || bad+=("guests/build/$(basename "$f") (no guest builds it)")
    done
    if [[ ${#bad[@]} -gt 0 ]]; then
      echo "guests/build.sh --check: guests/build/ is out of date; run bash guests/build.sh and commit:" >&2
      printf '  %s\n' "${bad[@]}" >&2
      exit 1
    fi
    echo "guests/build.sh --check: all ${#guests[@]} guests match guests/build/" >&2
  fi
}

main "$@"

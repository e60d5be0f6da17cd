#!/usr/bin/env bash
# Build RocksDB's C++ library once per librocksdb-sys version into a cache and print
# the directory holding librocksdb.a. Cargo builds (debug and release alike) then link
# against it through ROCKSDB_LIB_DIR + ROCKSDB_STATIC=1 instead of compiling ~13 minutes
# of C++ per profile and per clean clone.
#
# Usage: scripts/rocksdb-cache.sh            # build if missing, print the lib dir
#        scripts/rocksdb-cache.sh --print    # print the lib dir only if it is populated
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
cache_root="${SKIFF_CACHE_DIR:-$HOME/.cache/skiff}"
version="$(awk '/^name = "librocksdb-sys"/{getline; gsub(/[" ]/,"",$0); sub("version=","",$0); print; exit}' "$here/Cargo.lock")"
if [[ -z "$version" ]]; then
  echo "rocksdb-cache: librocksdb-sys not found in Cargo.lock" >&2
  exit 1
fi
# The features decide which -D flags RocksDB was compiled with; key the cache on them too.
features="lz4"
lib_dir="$cache_root/rocksdb-$version-$features/lib"
if [[ -f "$lib_dir/librocksdb.a" ]]; then
  echo "$lib_dir"
  exit 0
fi
if [[ "${1:-}" == "--print" ]]; then
  exit 0
fi
build_dir="$cache_root/rocksdb-$version-$features/build"
mkdir -p "$build_dir" "$lib_dir"
echo "rocksdb-cache: building RocksDB $version once into $lib_dir (about 13 minutes on 2 cores)" >&2
# No debug info in the C++ objects: it would make the archive ~1.5 GB and every link slow.
(cd "$here" && env -u ROCKSDB_LIB_DIR -u ROCKSDB_STATIC CARGO_PROFILE_RELEASE_DEBUG=0 \
  cargo build --release --locked -p librocksdb-sys --target-dir "$build_dir" >&2)
archive="$(ls -t "$build_dir"/release/build/librocksdb-sys-*/out/librocksdb.a | head -n1)"
cp "$archive" "$lib_dir/librocksdb.a.tmp"
mv "$lib_dir/librocksdb.a.tmp" "$lib_dir/librocksdb.a"
rm -rf "$build_dir"
echo "$lib_dir"

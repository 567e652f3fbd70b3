#!/usr/bin/env bash
# Build sbdeploy/kernels/libsbkernels.so, the fused SB operator for ONNX Runtime's CPU provider.
#
# ONNX Runtime's C API headers come from SBDEPLOY_ORT_HEADERS (a folder holding onnxruntime_c_api.h)
# or from Debian trixie's libonnxruntime-dev, fetched with a private apt state into .cache/ortdev/
# (never installed) and kept there by the .deb's sha256; --refresh fetches the suite's current one.
# SBDEPLOY_KERNEL_CXXFLAGS adds compiler flags; SBDEPLOY_KERNEL_OUT and SBDEPLOY_KERNEL_OBJ move the
# library and its objects (tests build variants there).
# Prints one line: what was built, or why it could not be (exit 1).
set -u
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
OUT=${SBDEPLOY_KERNEL_OUT:-sbdeploy/kernels/libsbkernels.so}
OBJ=${SBDEPLOY_KERNEL_OBJ:-build/kernels}
CACHE=$PWD/.cache/ortdev
start=$(date +%s)

# The one line, also kept beside the package's library for `sbdeploy doctor`.
say() {
    echo "$1"
    if [ -z "${SBDEPLOY_KERNEL_OUT:-}" ]; then echo "$1" >sbdeploy/kernels/build.txt; fi
}

fail() {  # a library of older sources is removed once a build of these ones has started, never before
    if [ -n "${building:-}" ]; then rm -f "$OUT"; fi
    say "kernels: not built: $*; the portable ONNX forms run instead"
    exit 1
}

apt_private() {
    apt-get -q -o Dir::Etc::SourceList="$CACHE/apt/none.list" -o Dir::Etc::SourceParts="$CACHE/apt/etc" \
        -o Dir::State::Lists="$CACHE/apt/lists" -o Dir::Cache="$CACHE/apt/cache" \
        -o Dir::State::status=/dev/null -o Debug::NoLocking=1 "$@"
}

# The archive this machine already uses, so no host is written here.
debian_uri() {
    local uri
    uri=$(grep -hs '^URIs:' /etc/apt/sources.list.d/*.sources | awk '{print $2}' | grep -v security | head -n1)
    [ -n "$uri" ] || uri=$(grep -hs '^deb ' /etc/apt/sources.list | awk '{print $2}' | grep -v security | head -n1)
    echo "${SBDEPLOY_DEBIAN_URI:-$uri}"
}

fetch_headers() {
    command -v apt-get >/dev/null && command -v dpkg-deb >/dev/null || return 1
    local uri keyring=/usr/share/keyrings/debian-archive-keyring.gpg
    uri=$(debian_uri)
    [ -n "$uri" ] && [ -f "$keyring" ] || return 1
    mkdir -p "$CACHE/apt/etc" "$CACHE/apt/lists/partial" "$CACHE/apt/cache/archives/partial" "$CACHE/debs"
    : >"$CACHE/apt/none.list"
    printf 'Types: deb\nURIs: %s\nSuites: trixie\nComponents: main\nSigned-By: %s\n' "$uri" "$keyring" \
        >"$CACHE/apt/etc/trixie.sources"
    local try
    for try in 1 2 3; do
        if apt_private update >/dev/null 2>&1 && (cd "$CACHE/debs" && apt_private download libonnxruntime-dev) \
            >/dev/null 2>&1; then
            break
        fi
        [ "$try" = 3 ] && return 1
        sleep $((try * 5))
    done
    local deb sha
    deb=$(ls -t "$CACHE"/debs/libonnxruntime-dev_*.deb | head -n1)
    sha=$(sha256sum "$deb" | cut -c1-64)
    if [ ! -d "$CACHE/$sha" ]; then
        dpkg-deb -x "$deb" "$CACHE/$sha.tmp" && mv "$CACHE/$sha.tmp" "$CACHE/$sha" || return 1
    fi
    echo "$sha" >"$CACHE/current"
}

if [ -n "${SBDEPLOY_ORT_HEADERS:-}" ]; then
    HDR=$SBDEPLOY_ORT_HEADERS
    [ -f "$HDR/onnxruntime_c_api.h" ] || fail "no onnxruntime_c_api.h in SBDEPLOY_ORT_HEADERS=$HDR"
else
    mkdir -p "$CACHE"
    [ -f "$CACHE/.gitignore" ] || echo '*' >"$CACHE/.gitignore"
    if [ "${1:-}" = --refresh ] || [ ! -f "$CACHE/current" ] || [ ! -d "$CACHE/$(cat "$CACHE/current")" ]; then
        fetch_headers || fail "could not fetch ONNX Runtime's C API headers (Debian trixie libonnxruntime-dev); \
name a folder holding onnxruntime_c_api.h in SBDEPLOY_ORT_HEADERS"
    fi
    HDR=$CACHE/$(cat "$CACHE/current")/usr/include/onnxruntime
    [ -f "$HDR/onnxruntime_c_api.h" ] ||
        fail "the cached libonnxruntime-dev has no onnxruntime_c_api.h; rerun with --refresh"
fi

CXX=${CXX:-g++}
command -v "$CXX" >/dev/null || fail "no C++ compiler ($CXX)"
api=$(sed -n 's/^#define ORT_API_VERSION \([0-9]*\).*/\1/p' "$HDR/onnxruntime_c_api.h")
[ -n "$api" ] || fail "no ORT_API_VERSION in $HDR/onnxruntime_c_api.h"
ort=$("$PY" -c 'import onnxruntime; print(onnxruntime.__version__)' 2>/dev/null) ||
    fail "onnxruntime does not import with $PY"
ort_minor=$(echo "$ort" | cut -d. -f2)
[ "$(echo "$ort" | cut -d. -f1)" -ge 1 ] && [ "$ort_minor" -ge "$api" ] ||
    fail "onnxruntime $ort is older than the headers (API $api needs 1.$api or newer)"

mkdir -p "$OBJ"
rm -f "$OBJ"/*.o
building=1
FLAGS=(-std=c++17 -O3 -fPIC -fvisibility=hidden -Wall -Wextra -I "$HDR" ${SBDEPLOY_KERNEL_CXXFLAGS:-})
compile() { # unit, extra flags...
    local unit=$1
    shift
    "$CXX" "${FLAGS[@]}" "$@" -c "csrc/$unit.cc" -o "$OBJ/$unit.o" 2>"$OBJ/$unit.log"
}
if [ "$(uname -m)" = x86_64 ]; then
    units=(sbconv tile_scalar tile_avx2 tile_avx512 tile_avx512_vnni tile_avx512_bf16)
    paths="avx512_bf16, avx512_vnni, avx512, avx2 and scalar paths"
    compile sbconv &
    compile tile_scalar &
    compile tile_avx2 -mavx2 -mfma &
    compile tile_avx512 -mavx512f -mfma &
    compile tile_avx512_vnni -mavx512f -mfma -mavx512vnni &
    compile tile_avx512_bf16 -mavx512f -mfma -mavx512bf16 &
    wait
else
    units=(sbconv tile_scalar)
    paths="scalar path only"
    compile sbconv -DSBK_SCALAR_ONLY &
    compile tile_scalar &
    wait
fi
for unit in "${units[@]}"; do
    [ -f "$OBJ/$unit.o" ] || fail "$CXX failed on csrc/$unit.cc (see $OBJ/$unit.log)"
done
"$CXX" -shared -o "$OUT.tmp" "$OBJ"/*.o -lpthread 2>"$OBJ/link.log" || fail "linking failed (see $OBJ/link.log)"
mv "$OUT.tmp" "$OUT"
say "kernels: built $OUT (ONNX Runtime API $api, onnxruntime $ort; $paths) in $(($(date +%s) - start))s"

#!/usr/bin/env bash
# Build render/librender.so (the C triangle-mesh renderer used by service/render.py).
# Portable x86-64 code on purpose: no -march=native, the library may be copied to other machines.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"

CC="${CC:-gcc}"
if ! command -v "$CC" >/dev/null 2>&1; then
    if [ "$CC" = gcc ] && command -v cc >/dev/null 2>&1; then
        CC=cc
    else
        echo "no C compiler found ($CC): install gcc (apt-get install gcc) and run bash build_render.sh" >&2
        exit 1
    fi
fi

# Build to a temporary name and rename, so a process that has the old library
# mapped (or a concurrent build) never sees a half-written file.
tmp="render/librender.so.tmp.$$"
trap 'rm -f "$tmp"' EXIT
"$CC" -O3 -shared -fPIC -std=c99 -Wall -Wextra -o "$tmp" render/render.c -lm
mv -f "$tmp" render/librender.so
echo "built $(pwd)/render/librender.so with $CC"

#!/usr/bin/env bash
# libsaga.so exports exactly the functions its public headers declare: every
# defined dynamic symbol, whatever its type (text, data, read-only, weak
# definitions, indirect functions...), must be declared SAGA_API in
# sdk/include/saga; only undefined (U) and weak undefined (w) references are
# left out. And libsaga.pc.in's Version is the headers' SAGA_VERSION_STRING.
set -euo pipefail
cd "$(dirname "$0")/../.."
lib=${SAGA_BUILD_DIR:-build}/lib/libsaga.so.2
[[ -f $lib ]] || { echo "test_exports: $lib is missing (build first)" >&2; exit 1; }
declared=$(grep -ho 'SAGA_API [^(]*saga_[a-z_]*(' sdk/include/saga/*.h | grep -o 'saga_[a-z_]*($' |
           tr -d '(' | sort -u)
# nm -D prints "address type name" for definitions and "type name" for
# undefined ones; strip any @VERSION suffix.
syms=$(nm -D "$lib")
exported=$(awk 'NF == 3 && $2 != "U" && $2 != "w" {sub(/@.*/, "", $3); print $3}' <<<"$syms" | sort -u)
[[ -n $exported ]] || { echo "test_exports: nm -D shows no defined symbols in $lib" >&2; exit 1; }
if [[ $declared != "$exported" ]]; then
    echo "test_exports: libsaga.so exports differ from the public headers (< declared only, > exported only):" >&2
    diff <(echo "$declared") <(echo "$exported") >&2 || true
    exit 1
fi
# The soname is the Makefile's (the ABI generation, docs/SDK.md).
soname=$(readelf -d "$lib" | sed -n 's/.*Library soname: \[\(.*\)\].*/\1/p')
want=$(sed -n 's/^SONAME *:= *//p' Makefile)
[[ -n $want && $soname == "$want" ]] ||
    { echo "test_exports: $lib has soname \"$soname\", the Makefile says \"$want\"" >&2; exit 1; }
header=$(sed -n 's/^#define SAGA_VERSION_STRING "\(.*\)"$/\1/p' sdk/include/saga/error.h)
pc=$(sed -n 's/^Version: *//p' sdk/libsaga.pc.in)
if [[ -z $header || $pc != "@VERSION@" && $pc != "$header" ]]; then
    echo "test_exports: sdk/libsaga.pc.in says Version: $pc, sdk/include/saga/error.h says" \
         "SAGA_VERSION_STRING \"$header\"" >&2
    exit 1
fi
echo "test_exports: $(echo "$exported" | wc -l) symbols exported, all declared in sdk/include/saga (no saga__ internals); soname $soname; version $header"

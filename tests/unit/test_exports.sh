#!/usr/bin/env bash
# libsaga.so exports exactly the functions its public headers declare.
set -euo pipefail
cd "$(dirname "$0")/../.."
lib=${SAGA_BUILD_DIR:-build}/lib/libsaga.so.0
[[ -f $lib ]] || { echo "test_exports: $lib is missing (build first)" >&2; exit 1; }
declared=$(grep -ho 'SAGA_API [^(]*saga_[a-z_]*(' sdk/include/saga/*.h | grep -o 'saga_[a-z_]*($' |
           tr -d '(' | sort -u)
exported=$(nm -D --defined-only "$lib" | awk '$2 == "T" || $2 == "D" || $2 == "B" {print $3}' | sort -u)
if [[ $declared != "$exported" ]]; then
    echo "test_exports: libsaga.so exports differ from the public headers:" >&2
    diff <(echo "$declared") <(echo "$exported") >&2 || true
    exit 1
fi
echo "test_exports: $(echo "$exported" | wc -l) symbols exported, all declared in sdk/include/saga"

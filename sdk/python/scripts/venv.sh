#!/usr/bin/env bash
# sdk/python/scripts/venv.sh VENV [LOG]: the virtualenv the tests use
# (tests/integration/test_python_sdk.sh, test_mixed_sdk.sh,
# test_tutorials.sh): the pinned tools installed once, the SDK itself
# (`pip install ./sdk/python[test]`, as a user runs it) again only when its
# files changed. Two runs at once share it (flock). Run from the
# repository's root; pip's output goes to LOG (default /dev/null), the
# reason for a failure to stderr.
set -euo pipefail
venv=${1:?usage: sdk/python/scripts/venv.sh VENV [LOG]}
log=${2:-/dev/null}
export PYTHONDONTWRITEBYTECODE=1 PIP_DISABLE_PIP_VERSION_CHECK=1
pins="setuptools==80.9.0 confluent-kafka==2.16.1 psycopg[binary]==3.3.9 mypy==2.4.1 pytest==9.2.0"
sdk_hash=$(find sdk/python/pyproject.toml sdk/python/src -type f -not -path '*/__pycache__/*' \
    -not -path '*.egg-info*' | sort | xargs sha256sum | sha256sum | cut -c1-16)
mkdir -p "$(dirname "$venv")"
(
    flock 9 # two runs at once share one venv
    if [[ $(cat "$venv/pins" 2>/dev/null) != "$pins" ]]; then
        rm -rf "$venv"
        python3 -m venv "$venv" || { echo "python3 -m venv failed (install python3-venv)" >&2; exit 1; }
        # shellcheck disable=SC2086
        "$venv/bin/pip" install -q $pins >"$log" 2>&1 || { echo "pip: $(tail -5 "$log")" >&2; exit 1; }
        echo "$pins" >"$venv/pins"
    fi
    if [[ $(cat "$venv/sdk-hash" 2>/dev/null) != "$sdk_hash" ]]; then
        # What a user runs, `pip install ./sdk/python[test]`, against the
        # pinned set above (no build isolation: nothing fetched again).
        if ! { "$venv/bin/pip" install -q --no-build-isolation --force-reinstall --no-deps ./sdk/python \
            >"$log" 2>&1 && "$venv/bin/pip" install -q --no-build-isolation \
            "./sdk/python[test]" >>"$log" 2>&1; }; then
            echo "pip install ./sdk/python: $(tail -5 "$log")" >&2
            exit 1
        fi
        echo "$sdk_hash" >"$venv/sdk-hash"
    fi
    # Inside the lock: another run may be building there.
    rm -rf sdk/python/build sdk/python/src/*.egg-info
) 9>"$venv.lock"
echo "$pins"

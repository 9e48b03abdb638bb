#!/usr/bin/env bash
# The DB-backed fuzz target (tests/fuzz/fuzz_apply.c): replies and commands
# through sagad's engine and libsaga's participant against the PostgreSQL
# and Kafka of this run, for FUZZ_APPLY_SECONDS (default 30). Built with
# clang by scripts/fuzz (rebuilt only when a source changed); the corpus
# grows in build/fuzz/corpus-apply from tests/fuzz/seeds/apply. A violated
# invariant, a sanitizer report or a crash fails it, with the crash file
# and the log's tail.
set -euo pipefail
cd "$(dirname "$0")/../.."
: "${SAGA_PG_URL:?run it through scripts/run-tests or scripts/with-services}"
: "${SAGA_KAFKA_BROKERS:?run it through scripts/run-tests or scripts/with-services}"
exec scripts/fuzz --only apply "${FUZZ_APPLY_SECONDS:-30}"

/* Put first on the include path of the floors that must not talk to
 * PostgreSQL (orchestrator/core, obs): including libpq there fails the
 * build. See docs/ARCHITECTURE.md. */
#error                                                                                   \
    "this floor must not use PostgreSQL: only orchestrator/store and the floors above it may include libpq (docs/ARCHITECTURE.md)"

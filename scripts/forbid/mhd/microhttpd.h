/* Put first on the include path of the floors that must not serve HTTP
 * (orchestrator/core, store): including libmicrohttpd there fails the
 * build. See docs/ARCHITECTURE.md. */
#error                                                                                   \
    "this floor must not serve HTTP: only orchestrator/obs may include libmicrohttpd (docs/ARCHITECTURE.md)"
